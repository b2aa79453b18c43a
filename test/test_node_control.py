"""Control services against a busy node (issue 17), from a separate rclpy client like a user's
`ros2 service call`: pause and reset answer within 1 s while a long refine or a 640x480 mask is
running, save and load within 1 s of what they take on an idle node (they wait for the training step
in flight either way), and a reset or load makes that query fail cleanly ("field was reset"); a
storm of 50 resets finishes within 100 s (each within 2 s), after which the node trains and answers.

The long requests are long by their size (a 640x480 mask on this CPU takes tens of seconds; the refine
set is 100k rays), not by sleeping; each test checks that the query was still running when the control
answer came back. The bounds (1 s, 2 s, 100 s) are the issue's; what this test measures is printed
(docs/reliability.md has the figures and the margin)."""

import time

import pytest
from ovs3d_ros.srv import Checkpoint, Query
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger
from stream_node import stream_node  # noqa: E402 - test/ is on sys.path

from ovs3d_ros.data.synthetic import SyntheticScene
from ovs3d_ros.ros import conversions as conv
from ovs3d_ros.ros.client import spin_for

pytestmark = pytest.mark.ros

WIDTH, HEIGHT = 40, 30
CONTROL_BOUND_S = 1.0  # pause and reset while a query runs; what it adds to an idle save or load
RESET_BOUND_S = 2.0  # one reset of the storm
STORM_CALLS, STORM_BOUND_S = 50, 100.0


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene(preset="room", seed=3).make_frames(8, 0, WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def busy_node(scene, tmp_path_factory):
    # a refine long by size: 100k rays rendered for its set, then up to 1e6 steps in 600 s
    query = {"refine_rays": 100_000, "refine_max_steps": 1_000_000, "refine_max_time_s": 600.0,
             "mask_renderer": "reference"}
    with stream_node(tmp_path_factory.mktemp("control"), "/control/camera", scene.class_names,
                     query) as running:
        yield running


def _train(scene, node, t0: float, min_iterations: int = 20):
    client, stream, executor, log = (node[k] for k in ("client", "stream", "executor", "log"))
    for k, i in enumerate(scene.train_indices):
        stream.publish(scene.frames[i], stamp=t0 + 0.2 * k)
        spin_for(executor, 0.2)
    status = client.wait_status(
        executor, lambda s: s.keyframes > 0 and s.iterations >= min_iterations and s.state == "training",
        180.0)
    assert status is not None and status.keyframes > 0 and status.iterations >= min_iterations, \
        log.read_text()[-3000:]
    return status


def _timed(client, service, request, executor, timeout_s: float = 60.0):
    start = time.monotonic()
    res = client.call(service, request, executor, timeout_s)
    return res, time.monotonic() - start


def _control_while_running(node, request: Query.Request, what: str, end_with: str) -> None:
    """Start ``request``; while it runs: pause, resume, save, then ``end_with`` (reset or load of that
    save), each answered within CONTROL_BOUND_S; the query then fails cleanly ("field was reset")."""
    client, executor, log = node["client"], node["executor"], node["log"]
    idle = {}  # the same calls with no query running, for comparison
    for name, service, req in [("save", client.save_client, Checkpoint.Request(path="idle.ckpt")),
                               ("load", client.load_client, Checkpoint.Request(path="idle.ckpt"))]:
        res, idle[name] = _timed(client, service, req, executor)
        assert res.success, (name, res.message)
    future = client.query_client.call_async(request)
    spin_for(executor, 2.0)  # delivery and the start of the query (it then runs for tens of seconds)
    assert not future.done(), (what, future.result().message if future.done() else "")
    calls = [("pause", client.pause_client, SetBool.Request(data=True)),
             ("resume", client.pause_client, SetBool.Request(data=False)),
             ("save", client.save_client, Checkpoint.Request(path="control.ckpt"))]
    calls.append(("reset", client.reset_client, Trigger.Request()) if end_with == "reset"
                 else ("load", client.load_client, Checkpoint.Request(path="control.ckpt")))
    latencies, running = {}, {}
    for name, service, req in calls:
        res, latencies[name] = _timed(client, service, req, executor)
        running[name] = not future.done()
        assert res.success, (name, res.message)
    executor.spin_until_future_complete(future, timeout_sec=120.0)  # the next chunk ends it
    assert future.done(), f"{what}: no end after the {end_with}; log:\n{log.read_text()[-3000:]}"
    answer = future.result()
    print(f"{what}: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in latencies.items())
          + f"; idle: save {idle['save'] * 1e3:.0f} ms, load {idle['load'] * 1e3:.0f} ms"
          + f"; query: {answer.success} {answer.message[:80]}")
    running.pop(end_with)  # the reset or load ends the query: it may be answered first
    assert all(running.values()), f"{what}: the query ended before the control calls were answered {running}"
    # pause and reset wait for nothing: the bound itself. Save and load take the trainer, which an idle
    # node holds for a training step too (seconds on a loaded 2-core CPU): the query may add at most the
    # bound to what the same call costs idle, measured just before
    slow = {k: v - idle.get(k, 0.0) for k, v in latencies.items()}
    assert max(slow.values()) < CONTROL_BOUND_S, (latencies, idle)
    assert not answer.success and "field was reset during the" in answer.message, answer.message


def test_pause_and_reset_answer_at_once_during_a_long_refine(scene, busy_node):
    _train(scene, busy_node, 10.0)
    request = Query.Request(classes=list(scene.class_names), refine=True, max_points=100)
    _control_while_running(busy_node, request, "refine", end_with="reset")


def test_pause_and_reset_answer_at_once_during_a_640x480_mask(scene, busy_node):
    _train(scene, busy_node, 100.0)
    frame = scene.frames[scene.train_indices[0]]
    info = conv.intrinsics_to_camera_info(frame.intrinsics.scaled(640, 480), Header(frame_id="camera"))
    request = Query.Request(classes=list(scene.class_names), max_points=100,
                            mask_source=Query.Request.MASK_POSE, camera_info=info,
                            camera_pose=conv.matrix_to_pose_msg(frame.pose))
    _control_while_running(busy_node, request, "640x480 mask", end_with="load")


def test_a_reset_storm_finishes_in_time_and_the_node_answers_after_it(scene, busy_node):
    client, executor, proc = busy_node["client"], busy_node["executor"], busy_node["proc"]
    _train(scene, busy_node, 300.0, min_iterations=5)
    latencies = []
    start = time.monotonic()
    for _ in range(STORM_CALLS):
        res, seconds = _timed(client, client.reset_client, Trigger.Request(), executor, STORM_BOUND_S)
        assert res.success, res.message
        latencies.append(seconds)
    total = time.monotonic() - start
    latencies.sort()
    print(f"reset storm: {STORM_CALLS} resets in {total:.1f} s, "
          f"median {latencies[len(latencies) // 2]:.2f} s, max {latencies[-1]:.2f} s")
    assert total < STORM_BOUND_S and latencies[-1] < RESET_BOUND_S, (total, latencies[-5:])
    assert proc.poll() is None
    _train(scene, busy_node, 400.0, min_iterations=5)
    res = client.query(executor, scene.class_names, mask_source=Query.Request.MASK_LATEST_KEYFRAME)
    assert res.success and res.scene.cloud.width * res.scene.cloud.height > 0, res.message
    assert res.scene.label_image.width == WIDTH
