"""A query before (or just after) the semantic losses started still answers, but says so (issue 18):
after 100 iterations with trainer.semantic_start_step 200 every point came back 'wall' as a plain
success."""

import types

import pytest
import torch
from tiny_config import tiny_config  # noqa: E402 - test/ is on sys.path

from ovs3d_ros.core.query import FEW_SEMANTIC_STEPS, Segmenter, semantic_warning
from ovs3d_ros.core.teachers import build_teacher
from ovs3d_ros.core.trainer import Trainer
from ovs3d_ros.data.synthetic import SyntheticScene


def _trainer(steps, semantic_steps):
    return types.SimpleNamespace(step_count=steps, semantic_step_count=semantic_steps)


def test_warning_names_the_semantic_state():
    cfg = tiny_config()
    cfg.trainer.semantic_start_step = 200
    none = semantic_warning(_trainer(100, 0), cfg)
    assert "not trained" in none and "200" in none and "100" in none
    few = semantic_warning(_trainer(230, 30), cfg)
    assert "only 30 semantic steps" in few
    assert semantic_warning(_trainer(5000, FEW_SEMANTIC_STEPS), cfg) == ""
    assert semantic_warning(object(), cfg) == ""  # a trainer that does not count: no claim either way


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    data = SyntheticScene("room", seed=0).make_frames(2, 1, 24, 18)
    cfg = tiny_config()
    cfg.trainer.semantic_start_step, cfg.trainer.semantic_start_psnr = 200, 99.0  # not within 3 steps
    teacher = build_teacher(cfg.teacher, "cpu", data.class_names)
    trainer = Trainer(cfg, "cpu", teacher)
    for frame in data.train_frames:
        trainer.add_frame(frame)
    for _ in range(3):  # geometry only: the semantic losses start at step 200
        trainer.step()
    return data, cfg, teacher, trainer


def test_segment_answers_and_carries_the_warning(untrained):
    data, cfg, teacher, trainer = untrained
    assert trainer.semantic_step_count == 0
    result = Segmenter(trainer, teacher, cfg).segment(data.class_names, max_points=200)
    assert len(result.labels) > 0  # still an answer
    assert "not trained" in result.warning


@pytest.mark.ros
def test_node_query_message_says_semantics_are_untrained():
    """The node's ~/query still succeeds, with the result's warning appended to its message."""
    import rclpy
    from ovs3d_ros.srv import Query
    from std_srvs.srv import SetBool

    from ovs3d_ros.ros.node import Ovs3dNode

    data = SyntheticScene("room", seed=0).make_frames(2, 1, 24, 18)
    cfg = tiny_config()
    cfg.trainer.semantic_start_step, cfg.ros.autosave_every_s = 200, 0.0
    cfg.trainer.semantic_start_psnr = 99.0
    cfg.ros.pose_source = "pose"
    cfg.teacher.synthetic.class_names = list(data.class_names)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Ovs3dNode(defaults=cfg, context=context)
    try:
        node._on_pause(SetBool.Request(data=True), SetBool.Response())  # no training: 0 semantic steps
        for frame in data.train_frames:
            node.trainer.add_frame(frame)
        res = node._on_query(Query.Request(classes=list(data.class_names), max_points=100), Query.Response())
        assert res.success, res.message
        assert res.message.startswith(f"{len(data.class_names)} classes") and "not trained" in res.message
    finally:
        node.shutdown()
        node.destroy_node()
        context.try_shutdown()
