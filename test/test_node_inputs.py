"""The node's frame assembly against one bad message at a time (in-process: the callbacks are called
directly, the assembler thread does the rest): finite-but-absurd camera_info, depth and poses are
dropped under a named reason and never become keyframes; a refused pose is counted once; poses that
arrive out of order are matched; one outlier stamp does not wipe the pose/depth history."""

import threading

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import Header
from tiny_config import tiny_config  # noqa: E402 - test/ is on sys.path
from waiting import wait_until  # noqa: E402 - test/ is on sys.path

from ovs3d_ros.data.synthetic import SyntheticScene
from ovs3d_ros.ros import conversions as conv

pytestmark = pytest.mark.ros

W, H = 32, 24
TOL = 0.3  # pose_tolerance_s: the out-of-order pose below arrives well within tol + 0.1 s


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene("room", seed=0).make_frames(6, 0, W, H)


@pytest.fixture(scope="module")
def node(scene):
    from ovs3d_ros.ros.node import Ovs3dNode

    cfg = tiny_config()
    cfg.teacher.synthetic.class_names = tuple(scene.class_names)
    cfg.ros.pose_source, cfg.ros.pose_tolerance_s = "pose", TOL
    cfg.trainer.max_steps_per_s = 2.0  # the test is about frames; keep the CPU for the lead's timings
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Ovs3dNode(defaults=cfg, context=context)
    yield node
    node.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def _processed(node) -> int:
    """Images the node has finished with: offered to the keyframe selector (``frames_assembled``, counted
    once ``Trainer.add_frame`` has returned, so the keyframe is in) or dropped."""
    c = node.counters
    return c["frames_assembled"] + c["frames_dropped_invalid"] + c["frames_dropped_no_pose"]



def _pose_msg(pose: np.ndarray, t: float) -> PoseStamped:
    return conv.matrix_to_pose_stamped(pose, "map", conv.sec_to_stamp(t))


def _feed(node, frame, t: float, *, pose=True, info=None, depth=None, quaternion=None):
    """camera_info, pose, depth and labels, then the image; returns once the assembler handled it."""
    hdr = Header(frame_id="cam", stamp=conv.sec_to_stamp(t))
    node._on_camera_info(info or conv.intrinsics_to_camera_info(frame.intrinsics, hdr))
    if pose is True:
        msg = _pose_msg(frame.pose, t)
        if quaternion is not None:
            o = msg.pose.orientation
            o.x, o.y, o.z, o.w = quaternion
        node._on_pose(msg)
    elif pose is not None:
        node._on_pose(_pose_msg(pose, t))
    d = frame.depth if depth is None else depth
    node._on_depth(conv.numpy_to_image(np.nan_to_num(d).astype(np.float32), "32FC1", hdr))
    node._on_labels(conv.numpy_to_image(frame.labels.astype(np.uint8), "mono8", hdr))
    before = _processed(node)
    node._on_image(conv.numpy_to_image(frame.rgb, "rgb8", hdr))
    assert wait_until(lambda: _processed(node) > before), "the assembler did not handle the frame"


def _keyframes(node) -> int:
    return len(node.trainer.keyframes)


def test_good_frames_become_keyframes(node, scene):
    _feed(node, scene.frames[0], 10.0)
    _feed(node, scene.frames[1], 10.2)
    assert _keyframes(node) == 2 and not node.drop_reasons, node.last_error


def test_the_cloud_geometry_is_prepared_when_the_frame_queue_runs_empty(node, scene):
    """query.prepare_cloud_geometry: after a new keyframe, once no image waits, the assembler builds the
    next query's cloud points (the demo's first query paid 1.6-2.2 s for them beside a busy core)."""
    _feed(node, scene.frames[2], 10.4)
    seg = node.segmenter

    def prepared_for_these_keyframes() -> bool:
        ready = seg._geometry
        key = seg._cloud_key(seg._keyframes(), node.cfg.query.max_points)
        return ready is not None and ready[0][0] == key

    assert wait_until(prepared_for_these_keyframes), "no cloud geometry prepared for the new keyframe"


@pytest.mark.parametrize("k, what, reason", [
    (0, "cx", "principal_point"), (1, "fx", "focal_length"), (2, "depth", "depth_range"),
    (3, "far_pose", "pose_position"), (4, "jump_pose", "pose_speed"),
])
def test_absurd_values_are_dropped_with_a_reason(node, scene, k, what, reason):
    frame = scene.frames[2]
    t = 20.0 + 10.0 * k
    hdr = Header(frame_id="cam", stamp=conv.sec_to_stamp(t))
    info = conv.intrinsics_to_camera_info(frame.intrinsics, hdr)
    kwargs = {}
    if what == "cx":
        info.k[2] = 1e30
        kwargs["info"] = info
    elif what == "fx":
        info.k[0] = info.k[4] = 1e-3
        kwargs["info"] = info
    elif what == "depth":
        kwargs["depth"] = np.full((H, W), 3e38, np.float32)
    elif what == "far_pose":
        far = frame.pose.copy()
        far[:3, 3] += 1e8
        kwargs["pose"] = far
    elif what == "jump_pose":
        _feed(node, frame, t)  # a good frame first: the speed bound compares with it
        t += 0.1
        jump = frame.pose.copy()
        jump[0, 3] += 50.0  # 500 m/s
        kwargs["pose"] = jump
    kf, invalid = _keyframes(node), node.counters["frames_dropped_invalid"]
    count = node.drop_reasons.get(reason, 0)
    _feed(node, frame, t, **kwargs)
    assert node.drop_reasons.get(reason, 0) == count + 1, (node.drop_reasons, node.last_error)
    assert node.counters["frames_dropped_invalid"] == invalid + 1
    assert _keyframes(node) == kf
    assert f"implausible:{reason}" in node._warned  # said once, with the value (the rest is throttled)


def test_a_refused_pose_is_counted_once(node, scene):
    invalid, no_pose = node.counters["frames_dropped_invalid"], node.counters["frames_dropped_no_pose"]
    _feed(node, scene.frames[3], 200.0, quaternion=(0.0, 0.0, 0.0, 2.0))
    assert node.rejected_inputs == {"pose_quaternion_norm": 1}
    assert node.counters["frames_dropped_invalid"] == invalid  # the pose is not a frame
    assert node.counters["frames_dropped_no_pose"] == no_pose + 1  # its image: once, for its missing pose


def test_a_pose_arriving_after_a_newer_one_and_after_its_image_is_matched(node, scene):
    frame = scene.frames[4]
    kf, no_pose = _keyframes(node), node.counters["frames_dropped_no_pose"]
    node._on_pose(_pose_msg(frame.pose, 300.5))  # a newer pose first ...
    late = threading.Timer(0.05, lambda: node._on_pose(_pose_msg(frame.pose, 300.0)))
    late.start()  # ... and this image's own pose 50 ms after the image
    try:
        _feed(node, frame, 300.0, pose=None)
    finally:
        late.join()
    assert node.counters["frames_dropped_no_pose"] == no_pose, node.last_error
    assert _keyframes(node) == kf + 1


def test_one_future_image_stamp_does_not_wipe_the_history(node, scene):
    frame = scene.frames[5]
    # poses and depth for the next second are already in (a pose stream runs ahead of the images)
    for i in range(5):
        node._on_pose(_pose_msg(frame.pose, 400.0 + 0.1 * i))
    _feed(node, frame, 400.0)
    _feed(node, frame, 2.0e9, pose=None)  # one image with an absurd stamp: no pose, dropped
    seen, no_pose = node.counters["frames_assembled"], node.counters["frames_dropped_no_pose"]
    _feed(node, frame, 400.3, pose=None)  # its pose arrived before the outlier
    assert node.counters["frames_dropped_no_pose"] == no_pose, node.last_error
    assert node.counters["frames_assembled"] == seen + 1  # it reached the trainer


@pytest.mark.parametrize("side, reason", [
    (9000, "image_too_large"), (14_000, "decompression_bomb"), (64, "image_size_mismatch"),
])
def test_compressed_images_are_size_checked_before_decoding(node, scene, side, reason):
    from sensor_msgs.msg import CompressedImage
    from test_data_image_codec import _png_claiming

    frame = scene.frames[0]
    t = 500.0 + side * 1e-3
    hdr = Header(frame_id="cam", stamp=conv.sec_to_stamp(t))
    node._on_camera_info(conv.intrinsics_to_camera_info(frame.intrinsics, hdr))
    node._on_pose(_pose_msg(frame.pose, t))
    count, before = node.drop_reasons.get(reason, 0), _processed(node)
    node._on_image(CompressedImage(header=hdr, format="png", data=_png_claiming(side, side)))
    assert wait_until(lambda: _processed(node) > before)
    assert node.drop_reasons.get(reason, 0) == count + 1, (node.drop_reasons, node.last_error)


def test_after_every_bad_input_above_the_node_trains_and_answers(node, scene):
    """Runs after the absurd values, refused poses, outlier stamps and decompression bombs above: the
    map still trains and a normal query answers with a cloud and a keyframe-sized mask."""
    from ovs3d_ros.srv import Query

    before = node.trainer.step_count
    assert wait_until(lambda: node.trainer.step_count >= before + 2, 120.0), node.last_error
    request = Query.Request(classes=list(scene.class_names), mask_source=Query.Request.MASK_LATEST_KEYFRAME)
    res = node._on_query(request, Query.Response())
    assert res.success, res.message
    assert res.scene.cloud.width * res.scene.cloud.height > 0
    assert (res.scene.label_image.width, res.scene.label_image.height) == (W, H)
    assert {"principal_point", "decompression_bomb", "image_too_large"} <= set(node.drop_reasons)


def test_waiting_images_are_a_bounded_queue_oldest_dropped_first(scene):
    """With the assembler stopped, images pile up to ros.frame_queue_size; each one beyond drops the
    oldest (counted as superseded) and the newest stay, in order."""
    from ovs3d_ros.ros.node import Ovs3dNode

    cfg = tiny_config()
    cfg.teacher.synthetic.class_names = tuple(scene.class_names)
    cfg.ros.pose_source, cfg.ros.frame_queue_size = "pose", 3
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Ovs3dNode(defaults=cfg, context=context)
    try:
        node._training.pause(True)
        node._shutdown.set()  # stop the assembler thread so nothing leaves the queue
        node._assembler.join(timeout=30.0)
        assert not node._assembler.is_alive()
        images = [conv.numpy_to_image(f.rgb, "rgb8", Header(stamp=conv.sec_to_stamp(float(i)), frame_id="c"))
                  for i, f in enumerate(scene.frames)]
        for image in images:
            node._on_image(image)
        assert node.counters["frames_received"] == 6 and node.counters["frames_superseded"] == 3
        assert [m.header.stamp.sec for m in node._pending_images] == [3, 4, 5]
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_camera_info_depth_and_labels_arriving_after_their_image_are_matched(scene):
    """Each input has its own topic and callback, and a loaded machine may run the image's callback
    first: the assembler waits for what is still in flight, as for the pose. Here each one arrives
    exactly when the assembler first finds it missing (no timer: nothing races the clock)."""
    from ovs3d_ros.ros.node import Ovs3dNode

    cfg = tiny_config()
    cfg.teacher.synthetic.class_names = tuple(scene.class_names)
    cfg.ros.pose_source, cfg.ros.pose_tolerance_s = "pose", TOL
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Ovs3dNode(defaults=cfg, context=context)
    try:
        node._training.pause(True)
        late, found_missing, offered = [], [], []
        wait_for_input, add_frame = node._wait_for_input, node.trainer.add_frame

        def arrives_while_waited_for(lookup, *args):
            if lookup() is None and late:
                name, deliver = late.pop(0)
                found_missing.append(name)
                looks = []

                def look_then_arrive():  # missing at the wait's first look, there at its next one
                    value = lookup()
                    if not looks:
                        looks.append(value)
                        deliver()
                    return value

                return wait_for_input(look_then_arrive, *args)
            return wait_for_input(lookup, *args)

        node._wait_for_input = arrives_while_waited_for
        node.trainer.add_frame = lambda frame: (offered.append(frame), add_frame(frame))[1]
        for k, (t, frame) in enumerate(((100.0, scene.frames[0]), (101.0, scene.frames[1]))):
            hdr = Header(frame_id="cam", stamp=conv.sec_to_stamp(t))
            info = conv.intrinsics_to_camera_info(frame.intrinsics, hdr)
            depth = conv.numpy_to_image(np.nan_to_num(frame.depth).astype(np.float32), "32FC1", hdr)
            labels = conv.numpy_to_image(frame.labels.astype(np.uint8), "mono8", hdr)
            node._on_pose(_pose_msg(frame.pose, t))
            if k == 0:  # the first image comes before any camera_info (the depth stream starts later)
                late.append(("camera_info", lambda i=info: node._on_camera_info(i)))
                node._on_labels(labels)
            else:  # the second one before its depth and labels
                late.append(("depth", lambda d=depth: node._on_depth(d)))
                late.append(("labels", lambda m=labels: node._on_labels(m)))
            before = _processed(node)
            node._on_image(conv.numpy_to_image(frame.rgb, "rgb8", hdr))
            assert wait_until(lambda b=before: _processed(node) > b), "the assembler did not handle the frame"
            if k == 0:
                node._on_depth(depth)  # from here on there is a depth stream, which the next image waits for
        assert found_missing == ["camera_info", "depth", "labels"]
        assert node.counters["frames_assembled"] == 2, (node.drop_reasons, node.last_error)
        assert not node.drop_reasons, (node.drop_reasons, node.last_error)
        assert offered[0].depth is None and offered[1].depth is not None
        assert all(f.labels is not None for f in offered)
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_a_label_image_that_never_comes_is_a_named_drop(node, scene):
    """Synthetic teacher: an image whose label image never arrives is dropped as no_labels after the
    bounded wait (not as an anonymous FrameError), and the node goes on."""
    frame = scene.frames[2]
    t = 600.0
    hdr = Header(frame_id="cam", stamp=conv.sec_to_stamp(t))
    node._on_camera_info(conv.intrinsics_to_camera_info(frame.intrinsics, hdr))
    node._on_pose(_pose_msg(frame.pose, t))
    count, before = node.drop_reasons.get("no_labels", 0), _processed(node)
    node._on_image(conv.numpy_to_image(frame.rgb, "rgb8", hdr))
    assert wait_until(lambda: _processed(node) > before), "the assembler did not handle the frame"
    assert node.drop_reasons.get("no_labels", 0) == count + 1, (node.drop_reasons, node.last_error)


@pytest.mark.parametrize("context_shut_down", [True, False])
def test_main_treats_a_wait_set_error_after_shutdown_as_a_clean_exit(monkeypatch, context_shut_down):
    """A SIGINT can shut the context down between the executor's check and its next wait set; rclpy
    then raises RCLError ('the given context is not valid') instead of ExternalShutdownException, and
    the node exited with code 1 under `ros2 launch`. With the context still alive the error is real."""
    import signal

    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

    from ovs3d_ros.ros import node as node_module

    shut = []

    class StubNode(rclpy.node.Node):
        def __init__(self):
            super().__init__("stub_ovs3d")

        def shutdown(self):
            shut.append(True)

    def spin(executor):
        if context_shut_down:
            rclpy.shutdown()
        raise _rclpy.RCLError("failed to initialize wait set: the given context is not valid")

    monkeypatch.setattr(node_module, "Ovs3dNode", StubNode)
    monkeypatch.setattr(node_module.MultiThreadedExecutor, "spin", spin)
    handler = signal.getsignal(signal.SIGINT)
    try:
        if context_shut_down:
            node_module.main(args=[])
        else:
            with pytest.raises(_rclpy.RCLError):
                node_module.main(args=[])
    finally:
        signal.signal(signal.SIGINT, handler)
    assert shut == [True]  # the clean-up ran either way
