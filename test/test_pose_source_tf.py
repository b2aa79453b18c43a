"""TfPoseSource against the tf2_ros API (issue 18), without any ROS install: a stand-in with the
upstream exception hierarchy (tf2_py: every tf2 error derives from TransformException) and the
upstream Buffer signature (cache_time=None, node=None) is injected. These run where the vendored
upstream sources are absent; test/test_ros_tf_upstream.py checks the same against the real tf2."""

import sys
import types

import pytest


class _Tf2Error(Exception):
    pass


def _fake_tf2_ros(lookup):
    """A tf2_ros module whose Buffer.lookup_transform is `lookup` and that records its Buffer's args."""
    mod = types.ModuleType("tf2_ros")
    mod.TransformException = _Tf2Error
    for name in (
        "LookupException",
        "ConnectivityException",
        "ExtrapolationException",
        "InvalidArgumentException",
        "TimeoutException",
    ):
        setattr(mod, name, type(name, (_Tf2Error,), {}))
    mod.buffers = []

    class Buffer:
        def __init__(self, cache_time=None, node=None):
            self.cache_time, self.node = cache_time, node
            mod.buffers.append(self)

        def lookup_transform(self, target, source, time, timeout=None):
            return lookup(mod, target, source)

    class TransformListener:
        def __init__(self, buffer, node, spin_thread=True):
            self.buffer, self.node = buffer, node

    mod.Buffer, mod.TransformListener = Buffer, TransformListener
    return mod


@pytest.fixture
def fake_tf2(monkeypatch):
    def install(lookup):
        mod = _fake_tf2_ros(lookup)
        monkeypatch.setitem(sys.modules, "tf2_ros", mod)
        return mod

    return install


def _stamp():
    from builtin_interfaces.msg import Time

    return Time(sec=10, nanosec=0)


def test_buffer_is_created_with_the_node(fake_tf2):
    """Only a Buffer given the node uses the node's clock, whose jump callback (sim time: a bag loop)
    clears the buffer; Buffer() alone keeps stale transforms and answers TF_OLD_DATA."""
    from ovs3d_ros.ros.pose_sources import TfPoseSource

    mod = fake_tf2(lambda *a: None)
    node = object()
    TfPoseSource(node, "map")
    assert len(mod.buffers) == 1 and mod.buffers[0].node is node


@pytest.mark.parametrize(
    "error", ["InvalidArgumentException", "TimeoutException", "LookupException", "TransformException"]
)
def test_any_tf2_error_is_no_pose_and_remembered(fake_tf2, error):
    """An empty frame_id raises InvalidArgumentException: a dropped frame, not a traceback."""
    from ovs3d_ros.ros.pose_sources import TfPoseSource

    def fail(mod, target, source):
        raise getattr(mod, error)(f"invalid frame id '{source}'")

    fake_tf2(fail)
    source = TfPoseSource(object(), "map")
    assert source.lookup("", _stamp(), timeout_s=0.0) is None
    assert "invalid frame id ''" in source.last_failure


def test_a_found_transform_is_a_pose(fake_tf2):
    from geometry_msgs.msg import TransformStamped

    from ovs3d_ros.ros.pose_sources import TfPoseSource

    def found(mod, target, source):
        tf = TransformStamped()
        tf.transform.translation.x, tf.transform.rotation.w = 2.0, 1.0
        return tf

    fake_tf2(found)
    pose = TfPoseSource(object(), "map").lookup("cam", _stamp(), timeout_s=0.0)
    assert pose is not None and pose[0, 3] == 2.0


@pytest.mark.ros
def test_node_counts_an_empty_frame_id_as_a_no_pose_drop(fake_tf2):
    """In TF mode an image with an empty frame_id is a counted 'no pose' drop with tf2's reason, not
    an 'invalid' frame with an ERROR traceback per image."""
    import time

    import numpy as np
    import rclpy
    from std_msgs.msg import Header
    from tiny_config import tiny_config

    from ovs3d_ros.core.frame import Intrinsics
    from ovs3d_ros.ros import conversions as conv
    from ovs3d_ros.ros.node import Ovs3dNode

    def invalid(mod, target, source):
        raise mod.InvalidArgumentException(f"Invalid argument \"{source}\" passed to lookupTransform")

    fake_tf2(invalid)
    cfg = tiny_config()
    cfg.ros.pose_source, cfg.ros.autosave_every_s = "tf", 0.0
    cfg.teacher.synthetic.class_names = ["a", "b"]
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Ovs3dNode(defaults=cfg, context=context)
    try:
        assert node.pose_source == "tf"
        header = Header(stamp=_stamp(), frame_id="")
        node._on_camera_info(conv.intrinsics_to_camera_info(Intrinsics(8, 8, 4, 3, 8, 6), header))
        for _ in range(3):
            node._on_image(conv.numpy_to_image(np.zeros((6, 8, 3), np.uint8), "rgb8", header))
            deadline = time.monotonic() + 20.0  # safety net; the frame thread takes milliseconds
            while node._pending_images and time.monotonic() < deadline:
                time.sleep(0.01)
        deadline = time.monotonic() + 20.0
        while sum(node.counters[k] for k in ("frames_dropped_no_pose", "frames_dropped_invalid")) < 3:
            assert time.monotonic() < deadline, node.counters
            time.sleep(0.01)
        assert node.counters["frames_dropped_no_pose"] == 3, node.counters
        assert node.counters["frames_dropped_invalid"] == 0
        assert "InvalidArgumentException" in node.last_error
    finally:
        node.shutdown()
        node.destroy_node()
        context.try_shutdown()
