"""Synthetic (benchmark, NOT CLIP) teacher: determinism, text space, blur/confusion, DINO-like tokens."""

import numpy as np
import pytest
import torch

from ovs3d_ros.config import TeacherConfig
from ovs3d_ros.core.frame import Frame, Intrinsics
from ovs3d_ros.core.metrics import paper_metrics
from ovs3d_ros.core.teachers import TeacherError, build_teacher, teacher_labels
from ovs3d_ros.core.teachers.clip import multiscale_boxes, teacher_image_size

CLASSES = ["ball", "box", "floor", "wall"]


def blob_frame(seed: int, width: int = 80, height: int = 60, stamp: float = 0.0) -> Frame:
    """Wall on top, floor below, two rectangles: a label map with known classes and colours."""
    rng = np.random.default_rng(seed)
    labels = np.full((height, width), 3, np.uint8)
    labels[height // 2:] = 2
    for cls in (0, 1):
        x0, y0 = rng.integers(0, width - 24), rng.integers(0, height - 20)
        labels[y0:y0 + int(rng.integers(12, 20)), x0:x0 + int(rng.integers(14, 24))] = cls
    labels[:2, :2] = 255
    palette = np.array([[200, 40, 40], [40, 40, 200], [120, 100, 60], [220, 220, 210], [0, 0, 0]], np.uint8)
    rgb = palette[np.minimum(labels, 4)]
    intr = Intrinsics(60.0, 60.0, width / 2, height / 2, width, height)
    return Frame(rgb=rgb, intrinsics=intr, pose=np.eye(4), stamp=stamp, labels=labels,
                 source_id=f"blob:{seed}")


@pytest.fixture
def teacher():
    return build_teacher(TeacherConfig(kind="synthetic"), "cpu", CLASSES)


def test_text_space_is_deterministic_and_separates_unknown_strings(teacher):
    text = teacher.encode_text(CLASSES)
    assert text.shape == (4, 512) and text.dtype == torch.float32
    assert torch.allclose(text.norm(dim=1), torch.ones(4))
    again = build_teacher(TeacherConfig(kind="synthetic"), "cpu", CLASSES).encode_text(["box"])
    torch.testing.assert_close(again[0], text[1])
    other = teacher.encode_text(["giraffe"])
    assert (text @ other[0]).abs().max() < 0.2
    reseeded = TeacherConfig(kind="synthetic")
    reseeded.synthetic.seed = 1
    assert not torch.allclose(build_teacher(reseeded, "cpu", CLASSES).encode_text(["box"]), again)


def test_features_shapes_determinism_and_view_dependence(teacher):
    frame = blob_frame(0)
    a, b = teacher.extract(frame), teacher.extract(frame)
    w, h = teacher_image_size(80, 60, 8, 40)
    assert a.clip.shape == (3, 512, h, w) and a.clip.dtype == torch.float16
    assert torch.equal(a.clip, b.clip) and torch.equal(a.dino, b.dino)
    norms = a.clip.float().norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=2e-3)
    moved = blob_frame(0, stamp=1.0)  # same content, another view: other jitter and confusions
    assert not torch.equal(teacher.extract(moved).clip, a.clip)


def test_uses_the_clip_crop_boxes(teacher):
    # Same boxes as the real path: with no noise and no confusion, a frame of one class gives that
    # class's text vector everywhere; its crop count is the CLIP path's.
    cfg = TeacherConfig(kind="synthetic")
    cfg.synthetic.noise_std = 0.0
    cfg.synthetic.confusion_prob = 0.0
    clean = build_teacher(cfg, "cpu", CLASSES)
    frame = blob_frame(0)
    frame.labels[:] = 1
    feats = clean.extract(frame).clip.float()
    cos = torch.einsum("sdhw,d->shw", feats, clean.encode_text(["box"])[0])
    assert cos.min() > 0.999
    w, h = teacher_image_size(80, 60, 8, 40)
    assert sum(len(b) for b in multiscale_boxes(w, h, cfg.clip, None)) > 0


def test_teacher_miou_beats_chance_but_is_imperfect(teacher):
    frames = [blob_frame(s, stamp=float(s)) for s in range(6)]
    text = teacher.encode_text(CLASSES)
    preds = [teacher_labels(teacher.extract(f).clip, text, f.height, f.width).numpy() for f in frames]
    miou = paper_metrics(preds, [f.labels for f in frames], len(CLASSES)).miou
    rng = np.random.default_rng(0)
    chance = paper_metrics([rng.integers(0, 4, f.labels.shape) for f in frames],
                           [f.labels for f in frames], len(CLASSES)).miou
    assert chance + 0.3 < miou < 0.95


def test_dino_tokens_are_sharp_and_colour_aware(teacher):
    frame = blob_frame(1)
    raw = teacher.extract(frame).dino
    assert raw.dtype == torch.float16
    tokens = raw.float()
    ht, wt, c = tokens.shape
    assert c == 64
    # Tokens fully inside the wall agree; wall vs floor tokens do not.
    wall, floor = tokens[0, wt - 1], tokens[ht - 1, wt - 1]
    assert torch.dot(wall, tokens[0, wt - 2]) > 0.99 and torch.dot(wall, floor) < 0.7


def test_missing_labels_and_bad_config_raise():
    teacher = build_teacher(TeacherConfig(kind="synthetic"), "cpu", CLASSES)
    frame = blob_frame(0)
    frame.labels = None
    with pytest.raises(TeacherError, match="ground-truth labels"):
        teacher.extract(frame)
    with pytest.raises(TeacherError, match="class_names"):
        build_teacher(TeacherConfig(kind="synthetic"), "cpu")
    bad = TeacherConfig(kind="synthetic")
    bad.synthetic.confusion_prob = 1.5
    with pytest.raises(TeacherError, match="confusion_prob"):
        build_teacher(bad, "cpu", CLASSES)
    with pytest.raises(TeacherError, match="kind"):
        build_teacher(TeacherConfig(kind="nope"), "cpu")
