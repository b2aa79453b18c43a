"""The real node under faults, in its own process over Fast DDS:

1. SIGKILL mid-training with autosave on, restart with ros.resume=true: training resumes from the last
   autosave (status iterations/keyframes >= what the checkpoint held) and at most one autosave interval
   of training is lost.
2. The pose source disappears, then the clock jumps back (a bag loop / sim restart), then poses return:
   frames are dropped and counted, the node never dies, and training resumes with new keyframes.
"""

import os
import signal
import time

import pytest
from std_msgs.msg import Header

from ovs3d_ros.core.checkpoint import read_checkpoint
from ovs3d_ros.data.synthetic import SyntheticScene
from ovs3d_ros.ros import conversions as conv
from ovs3d_ros.ros.camera_stream import CameraStreamPublisher
from ovs3d_ros.ros.client import Ovs3dClient, init_context, spin_for, start_node_process, stop_node_process

pytestmark = pytest.mark.ros

WIDTH, HEIGHT, N_TRAIN = 48, 36, 16
AUTOSAVE_S = 2.0
# The autosave runs from the 1 Hz status timer, so it can come up to one status period late.
STATUS_PERIOD_S = 1.0


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene(preset="room", seed=2).make_frames(N_TRAIN, 0, WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def ros():
    context, node, executor = init_context()
    yield node, executor
    node.destroy_node()
    context.try_shutdown()


def _params(scene, ckpt_dir, resume: bool) -> dict:
    f = {"num_levels": 6, "log2_hashmap_size": 14, "semantic_log2_hashmap_size": 12}
    return {
        "device": "cpu",
        "teacher": {"kind": "synthetic", "synthetic": {"class_names": scene.class_names}},
        "ros": {"pose_source": "pose", "checkpoint_dir": str(ckpt_dir), "pose_tolerance_s": 0.02,
                "autosave_every_s": AUTOSAVE_S, "resume": resume, "status_rate_hz": 1.0 / STATUS_PERIOD_S},
        "keyframes": {"min_translation_m": 0.02, "min_rotation_deg": 2.0},
        "trainer": {"rays_per_step": 256, "semantic_start_step": 20},
        "field": f,
    }


def _stream(stream, executor, frames, t0: float, dt: float = 0.2, with_pose: bool = True) -> None:
    for k, frame in enumerate(frames):
        stamp = t0 + dt * k
        if with_pose:
            stream.publish(frame, stamp=stamp)
        else:  # everything a camera sends, but the pose source is gone
            hdr = Header(frame_id=stream.camera_frame, stamp=conv.sec_to_stamp(stamp))
            stream.info_pub.publish(conv.intrinsics_to_camera_info(frame.intrinsics, hdr))
            stream.depth_pub.publish(conv.numpy_to_image(frame.depth.astype("float32"), "32FC1", hdr))
            stream.labels_pub.publish(conv.numpy_to_image(frame.labels, "mono8", hdr))
            stream.image_pub.publish(conv.numpy_to_image(frame.rgb, "rgb8", hdr))
        spin_for(executor, dt)


def _settled(count: int):
    """A status predicate: at least ``count`` images received and every received image has ended in
    exactly one counter (offered to the keyframe selector, dropped, or superseded): keyframe insertion
    runs behind the stream, so nothing about the keyframes is final before this holds."""
    def done(s) -> bool:
        ended = s.frames_assembled + s.frames_dropped_no_pose + s.frames_dropped_invalid + s.frames_superseded
        return s.frames_received >= count and ended >= s.frames_received
    return done


def _log_tail(path) -> str:
    return path.read_text()[-3000:] if path.exists() else "(no log)"


def test_sigkill_then_resume_loses_at_most_one_autosave_interval(scene, ros, tmp_path):
    node, executor = ros
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    stream = CameraStreamPublisher(node, namespace="/faults/camera", publish_labels=True)
    client = Ovs3dClient(node)
    log1 = tmp_path / "node1.log"
    proc = start_node_process(_params(scene, ckpt, resume=False), remaps=stream.topics(), log_path=log1)
    autosave = ckpt / "autosave.ckpt"
    try:
        client.wait_ready(executor, timeout_s=90.0, proc=proc)
        assert stream.wait_for_subscribers(lambda s: spin_for(executor, s),
                                           names=("image", "camera_info", "pose", "depth", "labels"))
        _stream(stream, executor, [scene.frames[i] for i in scene.train_indices[:8]], t0=100.0)
        # train through at least two autosaves, then kill at once: no shutdown handler runs
        status = client.wait_status(
            executor, lambda s: _settled(8)(s) and s.keyframes > 0 and s.iterations > 0, 120.0)
        assert status is not None and status.keyframes > 0, _log_tail(log1)
        settled_ns = time.time_ns()  # every keyframe is in: an autosave written after this holds them all

        def saved_after_settling() -> bool:
            return autosave.exists() and autosave.stat().st_mtime_ns > settled_ns

        deadline = time.monotonic() + 120  # a safety net: autosaves come every AUTOSAVE_S of training
        while time.monotonic() < deadline and not (saved_after_settling()
                                                   and client.status.training_time_s > 6):
            spin_for(executor, 0.2)
        assert saved_after_settling(), _log_tail(log1)
        spin_for(executor, 1.3)  # the kill lands at some arbitrary point of an autosave interval
        before_kill = client.wait_status(executor, lambda s: True, 2.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    state = read_checkpoint(autosave)  # a complete, loadable file survived the kill
    saved_steps, saved_time = int(state["step"]), float(state["training_time_s"])
    saved_keyframes = len(state["keyframes"]["keyframes"])
    # lost work: at most one autosave interval (+ the status timer's granularity) of training
    lost_s = before_kill.training_time_s - saved_time
    assert -0.5 <= lost_s <= AUTOSAVE_S + STATUS_PERIOD_S + 1.0, (before_kill.training_time_s, saved_time)
    assert saved_steps > 0

    log2 = tmp_path / "node2.log"
    client.status = None
    proc = start_node_process(_params(scene, ckpt, resume=True), remaps=stream.topics(), log_path=log2)
    try:
        client.wait_ready(executor, timeout_s=90.0, proc=proc)
        status = client.wait_status(executor, lambda s: s.iterations > saved_steps, 120.0)
        assert status is not None and status.iterations > saved_steps, _log_tail(log2)
        assert status.keyframes >= saved_keyframes >= 1 and status.keyframes == before_kill.keyframes
        assert "resumed from" in log2.read_text()
    finally:
        stop_node_process(proc)


def test_pose_loss_and_clock_jump_drop_frames_and_training_resumes(scene, ros, tmp_path):
    node, executor = ros
    stream = CameraStreamPublisher(node, namespace="/faults_pose/camera", publish_labels=True)
    client = Ovs3dClient(node, node_name="ovs3d_pose")
    log = tmp_path / "node.log"
    params = _params(scene, tmp_path, resume=False)
    params["ros"]["autosave_every_s"] = 0.0
    proc = start_node_process(params, remaps={**stream.topics(), "__node": "ovs3d_pose"}, log_path=log)
    train = [scene.frames[i] for i in scene.train_indices]
    try:
        client.wait_ready(executor, timeout_s=90.0, proc=proc)
        assert stream.wait_for_subscribers(lambda s: spin_for(executor, s),
                                           names=("image", "camera_info", "pose", "depth", "labels"))
        _stream(stream, executor, train[:5], t0=500.0)
        first = client.wait_status(
            executor, lambda s: _settled(5)(s) and s.keyframes > 0 and s.iterations > 0, 120.0)
        assert first is not None and first.keyframes > 0, _log_tail(log)

        # 1. the pose source disappears: 8 frames without poses
        _stream(stream, executor, train[5:13], t0=502.0, with_pose=False)
        # each of the 8 is either dropped for its missing pose or replaced by a newer one before that
        lost = client.wait_status(
            executor, lambda s: (s.frames_dropped_no_pose + s.frames_superseded
                                 >= first.frames_dropped_no_pose + first.frames_superseded + 8), 120.0)
        assert lost.frames_dropped_no_pose - first.frames_dropped_no_pose >= 4, (first, lost)
        assert proc.poll() is None and lost.keyframes == first.keyframes

        # 2. the clock jumps back by 400 s (a bag loops) and poses return, with views not seen before
        _stream(stream, executor, train[5:], t0=100.0)
        back = client.wait_status(executor, lambda s: s.keyframes > first.keyframes, 120.0)
        assert back is not None and back.keyframes > first.keyframes, (first, back, _log_tail(log))
        assert "jumped back" in log.read_text()
        # at most the first frame after the jump may miss its pose (history cleared under it)
        assert back.frames_dropped_no_pose - lost.frames_dropped_no_pose <= 1, (lost, back)

        # 3. training goes on
        later = client.wait_status(executor, lambda s: s.iterations > back.iterations + 5, 120.0)
        assert later.iterations > back.iterations + 5 and later.state == "training"
        res = client.query(executor, scene.class_names)
        assert res.success, res.message
        assert proc.poll() is None
    finally:
        stop_node_process(proc)
