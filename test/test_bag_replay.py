"""A rosbag2 of a generated scene replays through the real node (Odometry + camera extrinsic as the
pose source) with the project's rosbags-based player, since `ros2 bag play` is not installable here."""

import numpy as np
import pytest
from ovs3d_ros.srv import Query

from ovs3d_ros.data.synthetic import SyntheticScene
from ovs3d_ros.data.writers import BAG_TOPICS, CAMERA_IN_BODY_XYZ_QUAT, write_rosbag
from ovs3d_ros.ros.bag_player import play
from ovs3d_ros.ros.client import Ovs3dClient, init_context, spin_for, start_node_process, stop_node_process

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("storage", ["mcap"])
def test_bag_replays_through_the_node(tmp_path, storage):
    data = SyntheticScene(preset="table", seed=3).make_frames(8, 1, 48, 36)
    bag = write_rosbag(data, tmp_path / "scene_bag", storage=storage, rate_hz=4.0, pose_outputs=("odometry",))
    context, node, executor = init_context()
    params = {
        "device": "cpu",
        "teacher": {"kind": "synthetic", "synthetic": {"class_names": data.class_names}},
        "ros": {
            "pose_source": "odometry",
            "camera_in_body": list(CAMERA_IN_BODY_XYZ_QUAT),
            "world_frame": "map",
        },
        "keyframes": {"min_translation_m": 0.02, "min_rotation_deg": 2.0},
    }
    remaps = {
        "image": BAG_TOPICS["image"],
        "camera_info": BAG_TOPICS["camera_info"],
        "depth": BAG_TOPICS["depth"],
        "labels": BAG_TOPICS["labels"],
        "odom": BAG_TOPICS["odometry"],
    }
    proc = start_node_process(params, remaps=remaps, log_path=tmp_path / "node.log")
    try:
        client = Ovs3dClient(node)
        client.wait_ready(executor, timeout_s=90.0, proc=proc)
        sent = play(node, bag, rate=1.0, spin=lambda s: spin_for(executor, s))
        assert sent >= 8 * 4  # image, camera_info, depth(s), labels, odometry per view
        status = client.wait_status(executor, lambda s: s.keyframes >= 3 and s.iterations > 5, 90.0)
        log = (tmp_path / "node.log").read_text()
        assert status is not None and status.keyframes >= 3, log[-3000:]
        assert status.frames_dropped_no_pose == 0, status
        res = client.query(executor, data.class_names, mask_source=Query.Request.MASK_LATEST_KEYFRAME)
        assert res.success, res.message
        assert res.scene.cloud.width > 0 and res.scene.label_image.width == 48
        # odometry x camera_in_body must reproduce the generator's camera poses: the mask was rendered
        # from the newest keyframe, whose pose comes back in the answer
        from ovs3d_ros.ros import conversions as conv

        returned = conv.pose_msg_to_matrix(res.scene.camera_pose.pose)
        errors = [np.abs(returned - f.pose).max() for f in data.frames]  # the bag holds every view
        assert min(errors) < 1e-4, f"keyframe pose matches no generated pose (closest {min(errors):.3g})"
    finally:
        stop_node_process(proc)
        node.destroy_node()
        context.try_shutdown()
