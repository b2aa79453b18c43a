"""Live parameters take effect (issue 13): `ros2 param set` of a live key goes through the node's real
on-set (validate) and post-set (apply) callbacks, and the next query, status or training step reflects
it; a key read at start-up is refused with a reason that says it needs a restart.

In-process: one node with a tiny config, training paused, its service callbacks called directly; every
wait is on a condition (the timeouts are safety nets, never the measurement)."""

import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from tiny_config import tiny_config  # noqa: E402 - test/ is on sys.path
from waiting import wait_until  # noqa: E402 - test/ is on sys.path

from ovs3d_ros.data.synthetic import SyntheticScene
from ovs3d_ros.ros import conversions as conv

pytestmark = pytest.mark.ros

UNKNOWN = 65535


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene("room", seed=0).make_frames(3, 0, 24, 18)


@pytest.fixture(scope="module")
def node(scene, tmp_path_factory):
    from std_srvs.srv import SetBool

    from ovs3d_ros.ros.node import Ovs3dNode

    cfg = tiny_config()
    cfg.ros.pose_source, cfg.ros.autosave_every_s = "pose", 0.0
    cfg.ros.checkpoint_dir = str(tmp_path_factory.mktemp("ckpt"))
    cfg.ros.status_rate_hz, cfg.ros.log_every_s = 0.001, 1e6  # neither fires unless changed
    cfg.trainer.max_steps_per_s = 2.0
    cfg.teacher.synthetic.class_names = tuple(scene.class_names)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Ovs3dNode(defaults=cfg, context=context)
    node._on_pause(SetBool.Request(data=True), SetBool.Response())  # the tests step it themselves
    for frame in scene.frames:
        node.trainer.add_frame(frame)
    node.trainer.train(5)  # opaque enough for a surface to sample points from
    node.context_for_test = context
    yield node
    node.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def _set(node, name, value):
    return node.set_parameters([Parameter(name, value=value)])[0]


def _query(node, classes, **fields):
    from ovs3d_ros.srv import Query

    res = node._on_query(Query.Request(classes=list(classes), **fields), Query.Response())
    assert res.success, res.message
    return res


def _cloud_labels(res) -> np.ndarray:
    return conv.cloud_to_structured(res.scene.cloud)["label"]



def test_query_max_points_default_is_live(node, scene):
    before = _query(node, scene.class_names)  # max_points 0 in the request: the configured default
    assert len(_cloud_labels(before)) > 7, "the scene must give more points than the new cap"
    result = _set(node, "query.max_points", 7)
    assert result.successful, result.reason
    after = _query(node, scene.class_names)
    assert 0 < len(_cloud_labels(after)) <= 7


def test_query_score_threshold_default_is_live(node, scene):
    assert (_cloud_labels(_query(node, scene.class_names)) != UNKNOWN).any()
    assert _set(node, "query.score_threshold", 1.0).successful  # no softmax of 2+ classes reaches 1
    try:
        labels = _cloud_labels(_query(node, scene.class_names))
        assert len(labels) and (labels == UNKNOWN).all()
    finally:
        assert _set(node, "query.score_threshold", 0.0).successful


def test_query_canonical_negatives_default_is_live(node, scene, monkeypatch):
    calls = []
    negatives = node.segmenter._negatives
    monkeypatch.setattr(node.segmenter, "_negatives", lambda names: calls.append(names) or negatives(names))
    _query(node, scene.class_names)
    assert not calls
    assert _set(node, "query.use_canonical_negatives", True).successful
    _query(node, scene.class_names)
    assert calls, "the next query did not use the canonical negatives"


def test_query_refine_budget_default_is_live(node, scene, monkeypatch):
    from ovs3d_ros.core import query

    budgets = []

    def no_training(*args, max_time_s, **kwargs):  # record the budget, skip the burst's compute
        budgets.append(max_time_s)
        return {}

    monkeypatch.setattr(query, "train_refine_head", no_training)
    assert _set(node, "query.refine_max_time_s", 1234.0).successful
    _query(node, ["a new vocabulary", "never refined before"], refine=True)
    # the burst gets what the render left of the budget, at least a quarter of it (core/query.py)
    assert budgets and 0.25 * 1234.0 <= budgets[-1] <= 1234.0


def test_log_period_is_live(node, monkeypatch):
    lines = []

    class Logger:
        def info(self, text, **_):
            lines.append(text)

        def warning(self, *_, **__):
            pass

        error = warning

    monkeypatch.setattr(node, "get_logger", lambda: Logger())
    node._publish_status()
    assert not lines  # log_every_s 1e6: no progress line yet
    assert _set(node, "ros.log_every_s", 0.0).successful
    node._publish_status()
    assert any("keyframes" in line for line in lines)


def test_status_rate_is_live(node, monkeypatch):
    published = []
    publish = node.status_pub.publish
    monkeypatch.setattr(node.status_pub, "publish", lambda msg: published.append(msg) or publish(msg))
    executor = SingleThreadedExecutor(context=node.context_for_test)
    executor.add_node(node)
    try:
        assert _set(node, "ros.status_rate_hz", 50.0).successful  # was 0.001 Hz: never within the test
        deadline = time.monotonic() + 30.0  # safety net
        while len(published) < 3 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert len(published) >= 3, "the status timer kept its start-up period"
    finally:
        executor.remove_node(node)
        executor.shutdown()
        assert _set(node, "ros.status_rate_hz", 0.001).successful


def test_a_start_up_key_is_refused_with_restart_in_the_reason(node):
    before = node.cfg.keyframes.capacity
    result = _set(node, "keyframes.capacity", before + 1)
    assert not result.successful
    assert "restart" in result.reason, result.reason
    assert node.get_parameter("keyframes.capacity").value == before
    assert node.cfg.keyframes.capacity == node.trainer.cfg.keyframes.capacity == before


def test_a_bad_live_value_is_refused_and_changes_nothing(node):
    before = node.segmenter.cfg.query.max_points
    assert not _set(node, "query.max_points", 0).successful
    assert node.segmenter.cfg.query.max_points == before == node.get_parameter("query.max_points").value


def test_live_settings_reach_a_trainer_loaded_from_a_checkpoint(node):
    from ovs3d_ros.srv import Checkpoint

    assert node._on_save(Checkpoint.Request(path="live.ckpt"), Checkpoint.Response()).success
    assert _set(node, "query.max_points", 11).successful
    res = node._on_load(Checkpoint.Request(path="live.ckpt"), Checkpoint.Response())
    assert res.success, res.message
    assert node.trainer.cfg.query.max_points == 11  # the checkpoint's own value did not come back
    assert _set(node, "trainer.max_steps_per_s", 3.5).successful
    assert node.trainer.cfg.trainer.max_steps_per_s == 3.5


def test_training_rate_is_live(node):
    """The training loop paces itself from the shared config: after the set, its next wait is the new
    period (1000 s at 0.001 steps/s) instead of the start-up one (0.5 s at 2 steps/s)."""
    from std_srvs.srv import SetBool

    stop = node._training.stop_event  # the event the training thread waits on between steps
    waits = []
    wait = stop.wait
    stop.wait = lambda timeout=None: waits.append(timeout) or wait(timeout)
    try:
        assert _set(node, "trainer.max_steps_per_s", 0.001).successful
        node._on_pause(SetBool.Request(data=False), SetBool.Response())
        assert wait_until(lambda: any(t is not None and t > 500.0 for t in waits)), max(waits, default=None)
    finally:
        node._on_pause(SetBool.Request(data=True), SetBool.Response())
        del stop.wait  # the thread sleeps in the old wait until shutdown sets the event
