"""One stamp-matching rule for the live node and the rosbag reader (issue 13, core/frame_assembly.py):
the same recording gives bit-identical poses through both paths, interpolated where two poses bracket
the image stamp and the nearest within the tolerance elsewhere."""

import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from tiny_config import tiny_config  # noqa: E402 - test/ is on sys.path

from ovs3d_ros.core.camera import pose_from_xyz_quat
from ovs3d_ros.core.frame_assembly import interpolate_pose, nearest_index, pose_at
from ovs3d_ros.data.rosbag import read_rosbag
from ovs3d_ros.data.synthetic import SyntheticScene
from ovs3d_ros.data.writers import BAG_TOPICS, write_rosbag

S = 1_000_000_000
TOL_S = 0.05
POSE_DELAY_S = 0.03  # poses stamped 30 ms after their image; images at 10 Hz


def _pose(x: float, yaw_deg: float) -> np.ndarray:
    return pose_from_xyz_quat((x, 0, 0), Rotation.from_euler("z", yaw_deg, degrees=True).as_quat())


def test_the_rule_exact_interpolated_nearest_none():
    stamps, poses = [10, 20, 60], [_pose(1, 0), _pose(2, 90), _pose(6, 0)]
    np.testing.assert_array_equal(pose_at(stamps, poses, 20, 5), poses[1])  # exact
    np.testing.assert_allclose(pose_at(stamps, poses, 15, 5), interpolate_pose(poses[0], poses[1], 0.5))
    np.testing.assert_allclose(pose_at(stamps, poses, 8, 5), poses[0])  # before the first: nearest
    np.testing.assert_allclose(pose_at(stamps, poses, 64, 5), poses[2])  # after the last: nearest
    np.testing.assert_allclose(pose_at(stamps, poses, 23, 5), poses[1])  # gap 40 > 2 x 5: nearest
    assert pose_at(stamps, poses, 40, 5) is None  # between, too far from both
    assert pose_at(stamps, poses, 40, 5, max_gap=40) is not None  # a wider gap may be allowed
    assert nearest_index(stamps, 24, 5) == 1 and nearest_index(stamps, 40, 5) is None
    assert pose_at([], [], 1, 5) is None


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    data = SyntheticScene("room", seed=0).make_frames(5, 0, 24, 18)
    path = tmp_path_factory.mktemp("bag") / "delayed"
    write_rosbag(data, path, pose_outputs=("pose",), pose_delay_s=POSE_DELAY_S, depth_encodings=("32FC1",))
    return path, data


def _node_poses(bag_path, class_names) -> list[np.ndarray]:
    """Feed the bag's messages to an in-process node (poses, camera info, depth, labels first, then
    one image at a time) and collect the pose of every Frame it assembles."""
    import rclpy
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    from ovs3d_ros.ros.bag_player import message_class
    from ovs3d_ros.ros.node import Ovs3dNode

    cfg = tiny_config()
    cfg.ros.pose_source, cfg.ros.pose_tolerance_s, cfg.ros.autosave_every_s = "pose", TOL_S, 0.0
    cfg.teacher.synthetic.class_names = tuple(class_names)
    cfg.input.max_speed_m_s = 0.0  # 5 views around a room at 10 Hz: faster than a robot, not a fault
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Ovs3dNode(defaults=cfg, context=context)
    poses = []
    node.trainer.add_frame = lambda frame: poses.append(frame.pose) or False  # assembly only
    handlers = {BAG_TOPICS["pose"]: node._on_pose, BAG_TOPICS["camera_info"]: node._on_camera_info,
                BAG_TOPICS["depth"]: node._on_depth, BAG_TOPICS["labels"]: node._on_labels}
    images = []
    try:
        with Reader(bag_path) as reader:
            for conn, _, raw in reader.messages():
                msg = deserialize_message(bytes(raw), message_class(conn.msgtype))
                if conn.topic == BAG_TOPICS["image"]:
                    images.append(msg)
                elif conn.topic in handlers:
                    handlers[conn.topic](msg)
        for k, msg in enumerate(images):
            node._on_image(msg)
            deadline = time.monotonic() + 30.0  # a safety net: the loop ends on the condition
            while len(poses) + sum(node.drop_reasons.values()) <= k and time.monotonic() < deadline:
                time.sleep(0.01)
        assert not node.drop_reasons, (node.drop_reasons, node.last_error)
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    return poses


@pytest.mark.ros
def test_node_and_bag_reader_give_identical_poses(bag):
    path, data = bag
    offline = [f.pose for f in read_rosbag(path, tolerance_s=TOL_S).frames]
    live = _node_poses(path, data.class_names)
    assert len(offline) == len(live) == len(data.frames)
    for a, b in zip(offline, live, strict=True):
        np.testing.assert_array_equal(a, b)
    # both rules were used: the first image has no pose before it (nearest = its own), the others
    # lie between the previous image's pose and their own (interpolated, equal to neither)
    np.testing.assert_allclose(offline[0], data.frames[0].pose, atol=1e-12)
    for k in range(1, len(offline)):
        assert not np.allclose(offline[k], data.frames[k].pose, atol=1e-6)
        assert not np.allclose(offline[k], data.frames[k - 1].pose, atol=1e-6)
