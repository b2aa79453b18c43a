"""Where a camera pose comes from: TF (a normal ROS install), a PoseStamped topic, or Odometry.

All answer one question: the camera optical frame's pose in the world frame at an image stamp, or
None when there is no pose close enough in time (the frame is then dropped and counted).
"""

from __future__ import annotations

import bisect
import threading
from collections import deque

import numpy as np

# Stamps going back by more than this are a clock jump (bag loop, sim restart), not reordering.
CLOCK_JUMP_BACK_S = 1.0
# Poses kept for matching: a few seconds of a 100 Hz odometry stream.
POSE_HISTORY = 512


class PoseBuffer:
    """Stamped 4x4 poses, matched to image stamps by the nearest stamp within a tolerance.

    Thread-safe: subscriptions add, the frame assembler looks up. A stamp that jumps back by more than
    CLOCK_JUMP_BACK_S clears the history (poses from the old timeline must not match new images).
    """

    def __init__(self, maxlen: int = POSE_HISTORY):
        self._stamps: deque[float] = deque(maxlen=maxlen)
        self._poses: deque[np.ndarray] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.clock_jumps = 0

    def add(self, stamp: float, pose: np.ndarray) -> None:
        with self._lock:
            if self._stamps and stamp < self._stamps[-1] - CLOCK_JUMP_BACK_S:
                self._stamps.clear()
                self._poses.clear()
                self.clock_jumps += 1
            if self._stamps and stamp < self._stamps[-1]:
                # mild reordering: keep the deque sorted (a full deque cannot insert: drop the oldest
                # first, or the newcomer itself when it is older than everything kept)
                i = bisect.bisect(list(self._stamps), stamp)
                if len(self._stamps) == self._stamps.maxlen:
                    if i == 0:
                        return
                    self._stamps.popleft()
                    self._poses.popleft()
                    i -= 1
                self._stamps.insert(i, stamp)
                self._poses.insert(i, pose)
                return
            self._stamps.append(stamp)
            self._poses.append(pose)

    def latest_stamp(self) -> float | None:
        with self._lock:
            return self._stamps[-1] if self._stamps else None

    def lookup(self, stamp: float, tolerance_s: float) -> np.ndarray | None:
        with self._lock:
            if not self._stamps:
                return None
            stamps = list(self._stamps)
            i = bisect.bisect_left(stamps, stamp)
            best = None
            for j in (i - 1, i):
                if 0 <= j < len(stamps) and abs(stamps[j] - stamp) <= tolerance_s:
                    if best is None or abs(stamps[j] - stamp) < abs(stamps[best] - stamp):
                        best = j
            return None if best is None else self._poses[best].copy()

    def clear(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._poses.clear()


class TfPoseSource:
    """world_frame <- image frame_id through tf2 at the image stamp (only where tf2_ros is installed)."""

    def __init__(self, node, world_frame: str):
        import tf2_ros  # a normal ROS 2 install has it; the PyPI wheels do not

        self.world_frame = world_frame
        self.buffer = tf2_ros.Buffer()
        self.listener = tf2_ros.TransformListener(self.buffer, node, spin_thread=False)
        self._exceptions = (
            tf2_ros.LookupException,
            tf2_ros.ConnectivityException,
            tf2_ros.ExtrapolationException,
        )

    def lookup(self, frame_id: str, stamp_msg, timeout_s: float) -> np.ndarray | None:
        from rclpy.duration import Duration
        from rclpy.time import Time

        from ovs3d_ros.ros.conversions import transform_msg_to_matrix

        try:
            tf = self.buffer.lookup_transform(
                self.world_frame, frame_id, Time.from_msg(stamp_msg), timeout=Duration(seconds=timeout_s)
            )
        except self._exceptions:
            return None
        return transform_msg_to_matrix(tf)


def tf2_available() -> bool:
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return False
    return True
