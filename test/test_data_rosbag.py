"""rosbag2 reader details: tf chains and interpolation, skipped frames, compressed images, encodings."""

import io

import numpy as np
import pytest
from PIL import Image
from rosbags.rosbag2 import Writer
from scipy.spatial.transform import Rotation

from ovs3d_ros.core.camera import pose_from_xyz_quat, xyz_quat_from_pose
from ovs3d_ros.data import read_rosbag
from ovs3d_ros.data.rosbag import PoseTrack, TfBuffer, default_typestore, interpolate_pose

TS = default_typestore()
T = TS.types
S = 1_000_000_000
RGB = np.random.default_rng(0).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)


def header(ns, frame):
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=ns // S, nanosec=ns % S), frame_id=frame
    )


def tf_msg(ns, parent, child, pose):
    xyz, q = xyz_quat_from_pose(pose)
    return T["geometry_msgs/msg/TransformStamped"](
        header=header(ns, parent),
        child_frame_id=child,
        transform=T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=xyz[0], y=xyz[1], z=xyz[2]),
            rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]),
        ),
    )


def camera_info(ns):
    return T["sensor_msgs/msg/CameraInfo"](
        header=header(ns, "cam"),
        height=6,
        width=8,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.array([10.0, 0, 4, 0, 10, 3, 0, 0, 1]),
        r=np.eye(3).ravel(),
        p=np.zeros(12),
        binning_x=0,
        binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def image(ns, encoding="rgb8", data=None, step=24):
    data = RGB.tobytes() if data is None else data
    return T["sensor_msgs/msg/Image"](
        header=header(ns, "cam"),
        height=6,
        width=8,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=np.frombuffer(data, np.uint8),
    )


def write_bag(path, messages):
    """messages: (topic, msgtype, stamp_ns, msg)"""
    with Writer(path, version=8) as w:
        conns = {}
        for topic, msgtype, ns, msg in sorted(messages, key=lambda m: m[2]):
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=TS)
            w.write(conns[topic], ns, TS.serialize_cdr(msg, msgtype))
    return path


def test_interpolate_pose_linear_translation_and_slerp():
    a = pose_from_xyz_quat((0, 0, 0), (0, 0, 0, 1))
    b = pose_from_xyz_quat((2, 4, 0), Rotation.from_euler("z", 90, degrees=True).as_quat())
    mid = interpolate_pose(a, b, 0.5)
    np.testing.assert_allclose(mid[:3, 3], [1, 2, 0])
    np.testing.assert_allclose(
        mid[:3, :3], Rotation.from_euler("z", 45, degrees=True).as_matrix(), atol=1e-12
    )


def test_pose_track_tolerance_and_gaps():
    track = PoseTrack()
    track.add(2 * S, pose_from_xyz_quat((2, 0, 0), (0, 0, 0, 1)))
    track.add(1 * S, pose_from_xyz_quat((1, 0, 0), (0, 0, 0, 1)))  # out of order is fine
    tol = S // 10
    np.testing.assert_allclose(track.at(1 * S + S // 4, tol, max_gap_ns=S)[:3, 3], [1.25, 0, 0])
    assert track.at(1 * S + S // 4, tol) is None  # samples 1 s apart: too far to interpolate by default
    np.testing.assert_allclose(track.at(2 * S + S // 20, tol)[:3, 3], [2, 0, 0])  # past the end, within tol
    assert track.at(3 * S, tol) is None
    # too far from both samples: no pose, even though it lies between them
    wide = PoseTrack()
    wide.add(0, np.eye(4))
    wide.add(10 * S, np.eye(4))
    assert wide.at(5 * S, tol) is None


def test_tf_chain_through_static_and_dynamic_edges():
    tf = TfBuffer()
    odom_in_map = pose_from_xyz_quat((10, 0, 0), Rotation.from_euler("z", 90, degrees=True).as_quat())
    cam_in_base = pose_from_xyz_quat((0.1, 0, 0.3), (-0.5, 0.5, -0.5, 0.5))
    tf.add("map", "odom", 0, odom_in_map, static=True)
    tf.add("base", "cam", 0, cam_in_base, static=True)
    tf.add("odom", "base", 1 * S, pose_from_xyz_quat((0, 0, 0), (0, 0, 0, 1)), static=False)
    tf.add("odom", "base", 2 * S, pose_from_xyz_quat((2, 0, 0), (0, 0, 0, 1)), static=False)
    got = tf.lookup("map", "cam", 1 * S + S // 2, tolerance_ns=S)
    base_in_odom = pose_from_xyz_quat((1, 0, 0), (0, 0, 0, 1))
    np.testing.assert_allclose(got, odom_in_map @ base_in_odom @ cam_in_base, atol=1e-12)
    # inverse direction and frames in other branches
    np.testing.assert_allclose(
        tf.lookup("cam", "map", 1 * S, S), np.linalg.inv(tf.lookup("map", "cam", 1 * S, S)), atol=1e-12
    )
    assert tf.lookup("map", "cam", 9 * S, S // 10) is None  # no dynamic data then
    assert tf.lookup("map", "elsewhere", 1 * S, S) is None


def test_bag_with_tf_skips_images_without_pose_and_interpolates(tmp_path):
    cam_in_map_0 = pose_from_xyz_quat((0, 0, 1), (0, 0, 0, 1))
    cam_in_map_1 = pose_from_xyz_quat((1, 0, 1), Rotation.from_euler("y", 20, degrees=True).as_quat())
    t0 = 100 * S
    msgs = [
        (
            "/tf",
            "tf2_msgs/msg/TFMessage",
            t0,
            T["tf2_msgs/msg/TFMessage"](transforms=[tf_msg(t0, "map", "cam", cam_in_map_0)]),
        ),
        (
            "/tf",
            "tf2_msgs/msg/TFMessage",
            t0 + S // 10,
            T["tf2_msgs/msg/TFMessage"](transforms=[tf_msg(t0 + S // 10, "map", "cam", cam_in_map_1)]),
        ),
        ("/cam/info", "sensor_msgs/msg/CameraInfo", t0, camera_info(t0)),
    ]
    for k, ns in enumerate([t0 + S // 20, t0 + 5 * S, t0 - 3 * S, t0 + S // 10]):
        msgs.append(("/cam/image", "sensor_msgs/msg/Image", ns + k, image(ns)))
    bag = write_bag(tmp_path / "bag", msgs)
    ds = read_rosbag(bag, tolerance_s=0.06)
    stats = ds.metadata["stats"]
    assert stats.images == 4 and stats.frames == 2 and stats.skipped_no_pose == 2
    np.testing.assert_allclose(
        ds.frames[0].pose, interpolate_pose(cam_in_map_0, cam_in_map_1, 0.5), atol=1e-9
    )
    np.testing.assert_allclose(ds.frames[1].pose, cam_in_map_1, atol=1e-9)
    np.testing.assert_array_equal(ds.frames[0].rgb, RGB)
    assert ds.frames[0].intrinsics.fx == 10.0 and ds.frames[0].depth is None


def test_bag_with_compressed_images_bgr_and_bad_encodings(tmp_path):
    t0 = 50 * S
    png = io.BytesIO()
    Image.fromarray(RGB).save(png, format="PNG")
    pose = T["geometry_msgs/msg/PoseStamped"](
        header=header(t0, "map"),
        pose=T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=1.0, y=2.0, z=3.0),
            orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        ),
    )
    compressed = T["sensor_msgs/msg/CompressedImage"](
        header=header(t0, "cam"), format="png", data=np.frombuffer(png.getvalue(), np.uint8)
    )
    msgs = [
        ("/pose", "geometry_msgs/msg/PoseStamped", t0, pose),
        ("/cam/info", "sensor_msgs/msg/CameraInfo", t0, camera_info(t0)),
        ("/cam/compressed", "sensor_msgs/msg/CompressedImage", t0, compressed),
        ("/cam/raw", "sensor_msgs/msg/Image", t0, image(t0, "bgr8", RGB[:, :, ::-1].tobytes())),
        ("/cam/raw", "sensor_msgs/msg/Image", t0 + 1, image(t0 + 1, "yuv422", b"\0" * 96, step=16)),
        ("/cam/raw", "sensor_msgs/msg/Image", t0 + 2, image(t0 + 2, "rgb8", RGB.tobytes()[:-3])),
    ]
    bag = write_bag(tmp_path / "bag", msgs)
    ds = read_rosbag(bag, image_topic="/cam/compressed")
    assert ds.metadata["pose_source"] == "pose"
    np.testing.assert_array_equal(ds.frames[0].rgb, RGB)
    np.testing.assert_allclose(ds.frames[0].pose[:3, 3], [1, 2, 3])
    raw = read_rosbag(bag, image_topic="/cam/raw")
    np.testing.assert_array_equal(raw.frames[0].rgb, RGB)
    assert raw.metadata["stats"].skipped_decode_error == 2 and raw.metadata["stats"].frames == 1
    with pytest.raises(Exception, match="several possible image topics"):
        read_rosbag(bag)


def test_bag_every_n_and_max_frames(tmp_path):
    t0 = 10 * S
    msgs = [
        (
            "/pose",
            "geometry_msgs/msg/PoseStamped",
            t0,
            T["geometry_msgs/msg/PoseStamped"](
                header=header(t0, "map"),
                pose=T["geometry_msgs/msg/Pose"](
                    position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                    orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                ),
            ),
        ),
        ("/cam/info", "sensor_msgs/msg/CameraInfo", t0, camera_info(t0)),
    ]
    msgs += [("/cam/image", "sensor_msgs/msg/Image", t0 + k, image(t0 + k)) for k in range(7)]
    bag = write_bag(tmp_path / "bag", msgs)
    ds = read_rosbag(bag, every_n=3)
    assert len(ds.frames) == 3 and ds.metadata["stats"].skipped_by_stride == 4
    assert len(read_rosbag(bag, max_frames=2).frames) == 2
