"""The background training loop of a long-running process (the ROS node): start, pause, stop,
restart on a new Trainer, and whether it died. No ROS: the node only forwards its services here."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

JOIN_TIMEOUT_S = 30.0
# A restart (a reset) waits this long for the old loop's step in flight; a longer step (an occupancy
# update on a large grid) then ends on its own on the old, retired trainer while the new one starts:
# a reset must answer in well under 2 s and never queue behind a step (issue 17).
RESTART_JOIN_S = 0.25


class TrainingThread:
    """Runs ``trainer.run(stop, paused)`` on a daemon thread.

    ``pause``/``resume`` hold the loop between steps; ``restart(trainer)`` stops the current thread and
    starts one on another Trainer (a reset); ``stop`` ends it for good. ``on_error(message, traceback)``
    is called when the loop raises, so the owner can report it (the thread then ends: ``failed``).
    """

    def __init__(self, trainer, on_error: Callable[[str, str], None] | None = None):
        self.paused = threading.Event()
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = self._start(trainer)

    @property
    def stop_event(self) -> threading.Event:
        """The event the current loop waits on between steps (set when it must end)."""
        return self._stop

    def _start(self, trainer) -> threading.Thread:
        self._stop = threading.Event()
        thread = threading.Thread(
            target=self._loop, args=(trainer, self._stop), name="ovs3d_training", daemon=True
        )
        thread.start()
        return thread

    def _loop(self, trainer, stop: threading.Event) -> None:
        try:
            trainer.run(stop, self.paused)
        except Exception as exc:  # report, never crash the owner: the thread ends, `failed` says so
            if self._on_error is not None:
                self._on_error(f"training stopped: {exc!r}", traceback.format_exc())

    def pause(self, paused: bool = True) -> None:
        (self.paused.set if paused else self.paused.clear)()

    @property
    def is_paused(self) -> bool:
        return self.paused.is_set()

    @property
    def failed(self) -> bool:
        """The loop ended without being asked to (it raised)."""
        return not self._thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def restart(self, trainer, timeout_s: float = RESTART_JOIN_S) -> None:
        """Stop the current loop (waiting at most ``timeout_s`` for its step in flight, which then
        finishes on its own: its stop event stays set), then train ``trainer`` (paused stays as it was)."""
        self.stop(timeout_s)
        self._thread = self._start(trainer)
