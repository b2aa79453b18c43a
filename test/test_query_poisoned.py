"""A poisoned keyframe that got past the input bounds (a future bug, a checkpoint from elsewhere) must
not disable queries: non-finite and absurdly far surface points are excluded and counted before the
voxel downsample (open3d refused the grid of a 1e8 m point: "voxel_size is too small")."""

import dataclasses

import numpy as np
import pytest
from tiny_config import tiny_room_trainer  # noqa: E402 - test/ is on sys.path

from ovs3d_ros.core.query import Segmenter
from ovs3d_ros.core.surface import plausible_point_mask


def _poisoned(frame, kind: str):
    if kind == "far_pose":
        pose = frame.pose.copy()
        pose[:3, 3] += 1e8
        return dataclasses.replace(frame, pose=pose, stamp=frame.stamp + 100.0)
    if kind == "huge_depth":
        return dataclasses.replace(frame, depth=np.full_like(frame.depth, 3e38), stamp=frame.stamp + 100.0)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["far_pose", "huge_depth"])
def test_query_survives_a_poisoned_keyframe(kind):
    trainer, teacher, cfg, data = tiny_room_trainer()
    assert data.train_frames[0].depth is not None
    assert trainer.add_frame(_poisoned(data.train_frames[0], kind))  # straight into the buffer
    segmenter = Segmenter(trainer, teacher, cfg)
    result = segmenter.segment(data.class_names)
    assert len(result.points) > 0 and np.all(np.isfinite(result.points))
    center = trainer.field.scene_center.numpy()
    reach = cfg.input.max_distance_m + cfg.input.depth_max_m
    assert np.linalg.norm(result.points - center, axis=1).max() <= reach
    assert result.points_excluded > 0 and segmenter.points_excluded == result.points_excluded


def test_plausible_point_mask():
    xyz = np.array([[0, 0, 0], [np.nan, 0, 0], [np.inf, 0, 0], [1e8, 0, 0], [3e38, 3e38, 3e38], [5, 5, 5]],
                   np.float32)
    assert plausible_point_mask(xyz, np.zeros(3), 100.0).tolist() == [True, False, False, False, False, True]
