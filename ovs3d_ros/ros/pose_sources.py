"""Where a camera pose comes from: TF (a normal ROS install), a PoseStamped topic, or Odometry.

All answer one question: the camera optical frame's pose in the world frame at an image stamp, or
None when there is no pose close enough in time (the frame is then dropped and counted).
"""

from __future__ import annotations

import numpy as np


class TfPoseSource:
    """world_frame <- image frame_id through tf2 at the image stamp (only where tf2_ros is installed)."""

    def __init__(self, node, world_frame: str):
        import tf2_ros  # a normal ROS 2 install has it; the PyPI wheels do not

        self.world_frame = world_frame
        # With the node, the buffer runs on the node's clock (sim time under use_sim_time) and tf2
        # clears it when that clock jumps back (a bag loop); a bare Buffer() keeps the stale
        # transforms and rejects the replayed ones as TF_OLD_DATA.
        self.buffer = tf2_ros.Buffer(node=node)
        self.listener = tf2_ros.TransformListener(self.buffer, node, spin_thread=False)
        # Every tf2 error derives from TransformException: Lookup, Connectivity, Extrapolation, and
        # also InvalidArgument (an empty or malformed frame_id) and Timeout.
        self._exceptions = (tf2_ros.TransformException,)
        self.last_failure = ""
        """Why the last lookup found no pose (tf2's message), for the node's dropped-frame warning."""

    def lookup(self, frame_id: str, stamp_msg, timeout_s: float) -> np.ndarray | None:
        from rclpy.duration import Duration
        from rclpy.time import Time

        from ovs3d_ros.ros.conversions import transform_msg_to_matrix

        try:
            tf = self.buffer.lookup_transform(
                self.world_frame, frame_id, Time.from_msg(stamp_msg), timeout=Duration(seconds=timeout_s)
            )
        except self._exceptions as exc:
            self.last_failure = f"{type(exc).__name__}: {exc}"
            return None
        return transform_msg_to_matrix(tf)


def tf2_available() -> bool:
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return False
    return True
