"""Stamp matching for frame assembly, shared by the ROS node and the rosbag reader (no ROS imports).

A Frame is an image plus the pose, depth and label image that belong to its stamp. The same recording
must give the same Frames live and offline, so both paths match stamps with the rules here:

**Poses** (``pose_at``), at the image stamp ``t``, with a tolerance ``tol``:
  1. a sample stamped exactly ``t`` is used as it is;
  2. else, when two consecutive samples ``t0 < t < t1`` bracket it no more than ``max_gap`` apart
     (default ``2 * tol``: the nearer of the two is within the tolerance), the pose is interpolated
     between them, translation linear and rotation slerp (as tf2 does);
  3. else the nearest sample within ``tol`` is used (the stamp lies before the first or after the
     last sample, or the samples around it are too far apart to interpolate);
  4. else there is no pose and the image is skipped.

**Depth and label images** (``nearest_index``): the nearest within ``tol``, never interpolated.

Stamps are plain numbers in one unit per call; the callers use integer nanoseconds (the header's
``sec * 1e9 + nanosec``), so the live and offline paths compute bit-identical interpolation weights.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

NS_PER_S = 1_000_000_000


def seconds_to_ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


def interpolate_pose(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """Pose between ``a`` (alpha 0) and ``b`` (alpha 1): translation linear, rotation slerp."""
    slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]])))
    out = np.eye(4)
    out[:3, :3] = slerp([alpha]).as_matrix()[0]
    out[:3, 3] = (1 - alpha) * a[:3, 3] + alpha * b[:3, 3]
    return out


def nearest_index(stamps: Sequence, stamp, tolerance) -> int | None:
    """Index of the sorted ``stamps`` entry nearest ``stamp`` when within ``tolerance``, else None."""
    i = bisect_left(stamps, stamp)
    near = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
    if not near:
        return None
    best = min(near, key=lambda j: abs(stamps[j] - stamp))
    return best if abs(stamps[best] - stamp) <= tolerance else None


def pose_at(stamps: Sequence, poses: Sequence[np.ndarray], stamp, tolerance, max_gap=None):
    """The pose at ``stamp`` from samples sorted by stamp, by the module's rule; None when none fits."""
    if not stamps:
        return None
    max_gap = 2 * tolerance if max_gap is None else max_gap
    i = bisect_left(stamps, stamp)
    if i < len(stamps) and stamps[i] == stamp:
        return np.array(poses[i], dtype=np.float64)
    if 0 < i < len(stamps):
        t0, t1 = stamps[i - 1], stamps[i]
        if t1 - t0 <= max_gap:
            return interpolate_pose(poses[i - 1], poses[i], (stamp - t0) / (t1 - t0))
    j = nearest_index(stamps, stamp, tolerance)
    return None if j is None else np.array(poses[j], dtype=np.float64)


def pose_is_final(stamps: Sequence, stamp) -> bool:
    """Whether a sample at or after ``stamp`` exists: only then can no later sample change ``pose_at``
    (a live caller may wait for one; a bag is complete)."""
    return bool(stamps) and stamps[-1] >= stamp


class PoseTrack:
    """Poses of one frame over time, added in any order; ``at(t)`` applies ``pose_at``."""

    def __init__(self) -> None:
        self._stamps: list[int] = []
        self._poses: list[np.ndarray] = []
        self._sorted = True

    def add(self, stamp: int, pose: np.ndarray) -> None:
        if self._stamps and stamp < self._stamps[-1]:
            self._sorted = False
        self._stamps.append(int(stamp))
        self._poses.append(np.asarray(pose, dtype=np.float64))

    def __len__(self) -> int:
        return len(self._stamps)

    def _sort(self) -> None:
        if not self._sorted:
            order = np.argsort(self._stamps, kind="stable")
            self._stamps = [self._stamps[i] for i in order]
            self._poses = [self._poses[i] for i in order]
            self._sorted = True

    def at(self, stamp: int, tolerance_ns: int, max_gap_ns: int | None = None) -> np.ndarray | None:
        self._sort()
        return pose_at(self._stamps, self._poses, stamp, tolerance_ns, max_gap_ns)
