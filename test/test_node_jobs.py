"""The node's non-ROS jobs, moved out of ros/node.py into the core (issue 13): the training thread's
control and the checkpoint directory (sandboxed names, periodic autosave). No ROS needed."""

import threading

import pytest
from waiting import wait_until  # noqa: E402 - test/ is on sys.path

from ovs3d_ros.core.checkpoint_store import AUTOSAVE_NAME, CheckpointStore
from ovs3d_ros.core.training_thread import TrainingThread


class FakeTrainer:
    """``run`` as the Trainer's: steps until stopped, idles while paused; may raise on a chosen step."""

    def __init__(self, fail_at: int | None = None):
        self.steps, self.fail_at, self.saved = 0, fail_at, []

    def run(self, stop: threading.Event, paused: threading.Event) -> None:
        while not stop.is_set():
            if paused.is_set():
                stop.wait(0.005)
                continue
            self.steps += 1
            if self.steps == self.fail_at:
                raise RuntimeError("boom")
            stop.wait(0.001)

    def save(self, path):
        path.write_text("ckpt")
        self.saved.append(path)


def test_training_thread_pauses_restarts_and_stops():
    first, second = FakeTrainer(), FakeTrainer()
    training = TrainingThread(first)
    try:
        assert wait_until(lambda: first.steps > 3)
        training.pause()
        assert training.is_paused and not training.failed
        training.restart(second)  # a reset: the old loop ends, the new one inherits the pause
        frozen = first.steps
        assert second.steps == 0
        training.pause(False)
        assert wait_until(lambda: second.steps > 3)
        assert first.steps == frozen
    finally:
        training.stop()
    assert not training.failed  # asked to stop: not a failure


def test_a_training_error_is_reported_and_shows_as_failed():
    errors = []
    training = TrainingThread(FakeTrainer(fail_at=2), on_error=lambda msg, trace: errors.append((msg, trace)))
    assert wait_until(lambda: training.failed)
    assert errors and "boom" in errors[0][0] and "RuntimeError" in errors[0][1]


@pytest.mark.parametrize("name", ["../outside.ckpt", "/etc/passwd", "a/../../b.ckpt"])
def test_checkpoint_names_outside_the_directory_are_refused(tmp_path, name):
    store = CheckpointStore(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="outside the allowed directory"):
        store.path(name)


def test_checkpoint_store_saves_inside_and_autosaves_on_its_period(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt", every_s=1e-9)
    trainer = FakeTrainer()
    assert store.save(trainer, "sub/a.ckpt") == (tmp_path / "ckpt" / "sub" / "a.ckpt").resolve()
    assert store.existing("sub/a.ckpt").is_file()
    with pytest.raises(FileNotFoundError):
        store.existing("missing.ckpt")
    assert store.path("").name == AUTOSAVE_NAME
    assert not store.autosave_due(has_data=False)  # nothing to save yet
    assert store.autosave_due(has_data=True)
    assert not CheckpointStore(tmp_path, every_s=0.0).autosave_due(has_data=True)  # off
    assert not CheckpointStore(tmp_path, every_s=1e9).autosave_due(has_data=True)  # not yet
