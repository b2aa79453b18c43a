"""The package's own generated interfaces: import, construct, serialise round trip (no DDS needed)."""

import numpy as np
from ovs3d_ros.msg import SegmentedScene, TrainingStatus
from ovs3d_ros.srv import Query
from rclpy.serialization import deserialize_message, serialize_message


def test_query_request_round_trip():
    req = Query.Request(
        classes=["wooden chair", "sofa", "floor", "日本語の椅子"],
        refine=True,
        max_time_s=2.5,
        max_points=1234,
        score_threshold=-1.0,
        mask_source=Query.Request.MASK_POSE,
        keyframe_index=3,
    )
    req.camera_pose.position.x = 1.5
    req.camera_info.width = 64
    back = deserialize_message(serialize_message(req), Query.Request)
    assert list(back.classes) == list(req.classes)
    assert back.refine and back.max_points == 1234 and back.mask_source == Query.Request.MASK_POSE
    assert back.max_time_s == 2.5 and back.camera_pose.position.x == 1.5 and back.camera_info.width == 64
    assert Query.Request().mask_source == Query.Request.MASK_LATEST_KEYFRAME


def test_segmented_scene_round_trip_with_cloud_and_images():
    from std_msgs.msg import Header

    from ovs3d_ros.ros import conversions as conv

    rng = np.random.default_rng(0)
    n = 1000
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, size=n).astype(np.uint16)
    scores = rng.random(n).astype(np.float32)
    header = Header(frame_id="map")
    scene = SegmentedScene(header=header, class_names=["a", "b", "c", "d", "e"])
    scene.class_colors = [conv.color_msg(c) for c in rng.integers(0, 256, size=(5, 3))]
    scene.cloud = conv.labeled_cloud(xyz, rgb, labels, scores, header)
    label_img = rng.integers(0, 5, size=(12, 16)).astype(np.uint8)
    scene.label_image = conv.numpy_to_image(label_img, "mono8", header)
    scene.overlay_image = conv.numpy_to_image(
        rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), "rgb8", header
    )
    scene.score_image = conv.numpy_to_image(rng.random((12, 16)).astype(np.float32), "32FC1", header)

    back = deserialize_message(serialize_message(scene), SegmentedScene)
    pts = conv.cloud_to_structured(back.cloud)
    assert [f.name for f in back.cloud.fields] == ["x", "y", "z", "rgb", "label", "score"]
    np.testing.assert_array_equal(np.stack([pts["x"], pts["y"], pts["z"]], 1), xyz)
    np.testing.assert_array_equal(conv.unpack_rgb_float(pts["rgb"]), rgb)
    np.testing.assert_array_equal(pts["label"], labels)
    np.testing.assert_array_equal(pts["score"], scores)
    np.testing.assert_array_equal(conv.image_to_numpy(back.label_image), label_img)
    assert back.overlay_image.encoding == "rgb8" and back.overlay_image.step == 16 * 3
    assert SegmentedScene.UNKNOWN_LABEL_MONO8 == 255 and SegmentedScene.UNKNOWN_LABEL_MONO16 == 65535


def test_rgb_packing_matches_rviz_layout():
    from ovs3d_ros.ros.conversions import pack_rgb_float

    packed = pack_rgb_float(np.array([[255, 0, 0], [0, 128, 1]], dtype=np.uint8))
    assert packed.view(np.uint32).tolist() == [0xFF0000, 0x008001]


def test_training_status_round_trip():
    st = TrainingStatus(
        state="training",
        frames_received=10,
        keyframes=3,
        iterations=99,
        loss_names=["rgb", "depth"],
        loss_values=[0.5, 0.25],
    )
    back = deserialize_message(serialize_message(st), TrainingStatus)
    assert back.state == "training" and back.iterations == 99 and list(back.loss_names) == ["rgb", "depth"]
    assert list(back.loss_values) == [0.5, 0.25]


def test_pose_and_camera_info_conversions():
    import pytest
    from geometry_msgs.msg import Pose
    from std_msgs.msg import Header

    from ovs3d_ros.core.frame import FrameError, Intrinsics
    from ovs3d_ros.ros import conversions as conv

    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = 1.0, 2.0, 3.0
    s = np.sqrt(0.5)
    pose.orientation.z, pose.orientation.w = s, s  # 90 degrees about z
    m = conv.pose_msg_to_matrix(pose)
    np.testing.assert_allclose(m[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(m[:3, 3], [1, 2, 3])
    back = conv.matrix_to_pose_msg(m)
    assert abs(back.orientation.z - s) < 1e-12 and back.position.y == 2.0
    pose.orientation.x = float("nan")
    with pytest.raises(FrameError, match="NaN"):
        conv.pose_msg_to_matrix(pose)

    intr = Intrinsics(fx=100.0, fy=101.0, cx=32.0, cy=24.0, width=64, height=48)
    info = conv.intrinsics_to_camera_info(intr, Header())
    assert conv.camera_info_to_intrinsics(info) == Intrinsics(
        100.0, 101.0, 32.0, 24.0, 64, 48, "plumb_bob", (0.0,) * 5
    )
    info.k = [0.0] * 9
    with pytest.raises(FrameError):
        conv.camera_info_to_intrinsics(info)
