"""Every QoS profile the package uses, in one place, so a publisher and its subscribers cannot drift
apart (an incompatible pair connects silently to nothing).

Compatibility rules that shaped these: a RELIABLE publisher serves BEST_EFFORT and RELIABLE
subscriptions, a BEST_EFFORT one only BEST_EFFORT; a TRANSIENT_LOCAL publisher serves both
durabilities, a VOLATILE one only VOLATILE subscriptions.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data


def reliable(depth: int) -> QoSProfile:
    """Reliable, volatile, keep last ``depth``."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def latched(depth: int) -> QoSProfile:
    """Reliable, transient local (late subscribers get the last ``depth`` messages)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


SENSOR_QOS: QoSProfile = qos_profile_sensor_data
"""The node's camera inputs (image, camera_info, depth, labels): best effort, keep last 5, so a slow
consumer drops old frames instead of queueing them; any camera driver's publisher matches it."""

POSE_QOS = reliable(50)
"""Pose/odometry inputs: reliable, with a history deep enough to bracket image stamps."""

CAMERA_STREAM_QOS = reliable(5)
"""The demo's and the tests' camera publisher: reliable, so it serves the best-effort sensor inputs
and reliable pose inputs alike."""

STATUS_QOS = reliable(10)
"""~/status, published and subscribed (the client) with the same profile."""

LATCHED_QOS = latched(1)
"""Query results (cloud, masks, markers): the last answer is kept for subscribers that join later
(RViz started after the query)."""

PLAYBACK_QOS = reliable(10)
"""A recorded topic replayed by the bag player (rosbag2's default: reliable, volatile)."""

TF_STATIC_QOS = latched(100)
"""/tf_static (and any topic recorded transient local) on replay or subscription: tf2's static
listener only takes transient-local publishers; the depth keeps several static broadcasters' messages
for late subscribers."""

CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
"""/clock from the bag player: rclcpp::ClockQoS as rosbag2 publishes it (keep last 1, best effort)."""
