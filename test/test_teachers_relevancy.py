"""Relevancy maps: cosine, min-max per image, per scale, per class (hand-made inputs)."""

import pytest
import torch

from ovs3d_ros.core.teachers import TeacherError, relevancy_maps, teacher_labels, unknown_mask
from ovs3d_ros.core.teachers.relevancy import teacher_class_areas


def unit(*v):
    t = torch.tensor(v, dtype=torch.float32)
    return t / t.norm()


def test_relevancy_min_max_per_scale_and_class():
    # 2 scales, D = 2, 1 x 3 pixels; text: class 0 = x axis, class 1 = y axis.
    s0 = torch.stack([unit(1, 0), unit(1, 1), unit(0, 1)], dim=1).view(2, 1, 3)
    s1 = torch.stack([unit(1, 0), unit(1, 0), unit(1, 1)], dim=1).view(2, 1, 3)
    clip = torch.stack([s0, s1]).half()
    text = torch.stack([unit(1, 0), unit(0, 1)])
    rel = relevancy_maps(clip, text)
    assert rel.shape == (2, 2, 1, 3) and rel.dtype == torch.float32
    r = 2 ** -0.5
    # scale 0: cos to x = [1, r, 0] -> [1, r, 0]; cos to y = [0, r, 1] -> [0, r, 1]
    torch.testing.assert_close(rel[0, 0, 0], torch.tensor([1.0, r, 0.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(rel[0, 1, 0], torch.tensor([0.0, r, 1.0]), atol=1e-3, rtol=0)
    # scale 1: cos to x = [1, 1, r] -> [1, 1, 0]; cos to y = [0, 0, r] -> [0, 0, 1]
    torch.testing.assert_close(rel[1, 0, 0], torch.tensor([1.0, 1.0, 0.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(rel[1, 1, 0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3, rtol=0)


def test_constant_map_gives_zeros_not_nan():
    clip = unit(1, 0).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    rel = relevancy_maps(clip, torch.stack([unit(1, 0)]))
    assert torch.equal(rel, torch.zeros(1, 1, 2, 2))


def test_shape_errors():
    with pytest.raises(TeacherError, match=r"\(S, D, h, w\)"):
        relevancy_maps(torch.zeros(2, 4, 4), torch.zeros(1, 2))
    with pytest.raises(TeacherError, match="text features"):
        relevancy_maps(torch.zeros(1, 3, 2, 2), torch.zeros(2, 2))


def test_teacher_labels_and_unknown_mask():
    # Left column points at class 0, right column at class 1; 2x2 map upsampled to 4x4.
    clip = torch.stack([unit(1, 0), unit(0, 1)], dim=1).view(2, 1, 2).expand(2, 2, 2)[None]
    text = torch.stack([unit(1, 0), unit(0, 1)])
    labels = teacher_labels(clip, text, 4, 4)
    assert labels.tolist() == [[0, 0, 1, 1]] * 4
    # Negative along y: the right column is claimed by it when only class 0 is asked for.
    mask = unknown_mask(clip, text[:1], torch.stack([unit(0, 1)]))
    assert mask.tolist() == [[False, True], [False, True]]


def test_teacher_class_areas_are_the_teachers_own_label_shares():
    # map 1: 3 of 4 cells class 0; map 2: 2 of 4 -> mean shares (0.625, 0.375); class 2 never wins
    text = torch.stack([unit(1, 0), unit(0, 1), unit(-1, -1)])
    x, y = unit(1, 0), unit(0, 1)
    a = torch.stack([x, x, x, y], dim=1).view(2, 2, 2)[None]
    b = torch.stack([x, y, x, y], dim=1).view(2, 2, 2)[None]
    areas = teacher_class_areas([a, b], text)
    torch.testing.assert_close(areas, torch.tensor([0.625, 0.375, 0.0]))
    assert teacher_class_areas([], text) is None
