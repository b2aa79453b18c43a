"""The real node with the real teacher path (`teacher.kind: clip`) and the project's committed tiny
CLIP + DINO: fed a generated stream over Fast DDS, its answer on a held-out view beats the tiny CLIP's
own 2D segmentation of that view."""

from pathlib import Path

import pytest
import torch
from ovs3d_ros.srv import Query
from std_msgs.msg import Header

from ovs3d_ros.config import Config, apply_flat
from ovs3d_ros.core import metrics
from ovs3d_ros.core.teachers import build_teacher, teacher_labels
from ovs3d_ros.core.teachers.tiny import tiny_teacher_settings
from ovs3d_ros.data.synthetic import SyntheticScene
from ovs3d_ros.ros import conversions as conv
from ovs3d_ros.ros.camera_stream import CameraStreamPublisher
from ovs3d_ros.ros.client import Ovs3dClient, init_context, spin_for, start_node_process, stop_node_process
from ovs3d_ros.ros.demo import tiny_clip_params

pytestmark = pytest.mark.ros

MODELS = Path(__file__).resolve().parents[1] / "models" / "tiny"
WIDTH, HEIGHT, N_TRAIN = 96, 72, 16
SEMANTIC_ITERATIONS = 300  # waited on as a count; the timeout below is only a safety net
TRAINING_TIMEOUT_S = 1200.0


def test_node_with_tiny_clip_beats_its_2d_teacher_on_a_held_out_view(tmp_path):
    scene = SyntheticScene(preset="room", seed=3).make_frames(N_TRAIN, 1, WIDTH, HEIGHT)
    held_out = scene.frames[scene.test_indices[0]]
    context, node, executor = init_context()
    stream = CameraStreamPublisher(node, namespace="/tiny/camera", publish_labels=False)
    params = {"device": "cpu", **tiny_clip_params(),
              "ros": {"pose_source": "pose", "pose_tolerance_s": 0.02},
              "keyframes": {"min_translation_m": 0.02, "min_rotation_deg": 2.0}}
    log = tmp_path / "node.log"
    proc = start_node_process(params, remaps=stream.topics(), log_path=log)
    try:
        client = Ovs3dClient(node)
        client.wait_ready(executor, timeout_s=120.0, proc=proc)
        assert stream.wait_for_subscribers(lambda s: spin_for(executor, s),
                                           names=("image", "camera_info", "pose", "depth"))
        for i in scene.train_indices:
            stream.publish(scene.frames[i], stamp=1000.0 + 0.2 * i)
            spin_for(executor, 0.2)
        status = client.wait_status(executor, lambda s: s.semantic_iterations >= SEMANTIC_ITERATIONS,
                                    timeout_s=TRAINING_TIMEOUT_S)
        assert status is not None, f"node did not train; log:\n{log.read_text()[-3000:]}"
        info = conv.intrinsics_to_camera_info(held_out.intrinsics, Header(frame_id="map"))
        res = client.query(executor, scene.class_names, mask_source=Query.Request.MASK_POSE,
                           camera_pose=conv.matrix_to_pose_msg(held_out.pose), camera_info=info)
        assert res.success, res.message
        mask = conv.image_to_numpy(res.scene.label_image)
    finally:
        stop_node_process(proc)
        node.destroy_node()
        context.try_shutdown()
    cfg = apply_flat(Config(), tiny_teacher_settings(MODELS) | {"teacher.dino.enabled": False})
    teacher = build_teacher(cfg.teacher, "cpu")
    with torch.no_grad():
        text = teacher.encode_text(scene.class_names).float()
        labels_2d = teacher_labels(teacher.extract(held_out).clip.float(), text, HEIGHT, WIDTH).numpy()
    c = len(scene.class_names)
    miou_3d = metrics.paper_metrics([mask], [held_out.labels], c).miou
    miou_2d = metrics.paper_metrics([labels_2d], [held_out.labels], c).miou
    assert miou_3d > miou_2d, f"3D {miou_3d:.3f} vs tiny-CLIP 2D {miou_2d:.3f} mIoU on the held-out view"
