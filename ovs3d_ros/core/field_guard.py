"""Chunked access to a field that training, resets and checkpoint loads may change between chunks.

A long request (a 640x480 mask, the refine set, the cloud's latents) takes the trainer lock per chunk,
not for the whole request, so training steps and control services run in between. ``FieldGuard`` is
that per-chunk context (a ``rendering.ChunkGuard``): it takes ``Trainer.exclusive`` and checks that the
field is still the one the request started on. A reset retires the trainer and a load swaps its field
(both bump ``Trainer.field_version``); the request's next chunk then raises ``FieldReplaced`` instead of
mixing two fields in one answer, and the reset never waits for the request to finish.
"""

from __future__ import annotations

import contextlib
import time

from ovs3d_ros.core.vocabulary import QueryError


class FieldReplaced(QueryError):
    """The field was reset or reloaded while a request was using it."""


def field_version(trainer) -> int:
    """The trainer's field version (0 for trainer-like objects that never replace their field)."""
    return int(getattr(trainer, "field_version", 0))


def exclusive(trainer):
    """``trainer.exclusive()`` (the training loop lets a waiter in after the step in flight), or nothing
    for an object without one."""
    enter = getattr(trainer, "exclusive", None)
    return enter() if enter is not None else contextlib.nullcontext()


YIELD_EVERY_S = 0.2
"""A request lets one pending training step in after holding the trainer this long (chunk by chunk): a
query's chunks re-take the lock within microseconds, and the run loop polls every millisecond, so
without this a long render would starve training. A query passes its own (query.training_step_every_s)."""


class FieldGuard:
    """Per-chunk exclusive access to ``trainer``'s field as it was when the guard was made. Before each
    chunk it lets those queued for the lock go first (``Trainer.let_waiters_in``: saves, loads), and
    every ``yield_every_s`` a pending training step (``Trainer.yield_to_step``; <= 0: never).

    ``holding_training()`` spans a whole request: training then steps only when the guard lets it in,
    not in every gap between chunks (an operator waiting for an answer goes first)."""

    def __init__(self, trainer, what: str = "query", yield_every_s: float = YIELD_EVERY_S):
        self.trainer = trainer
        self.what = what
        self.version = field_version(trainer)
        self.yield_every_s = yield_every_s
        self.steps_let_in = 0
        self.wait_s = 0.0  # spent waiting: for the lock, for queued waiters and for steps let in
        self._since = time.perf_counter()

    def check(self) -> None:
        """Raise FieldReplaced when a reset or load replaced the field since the guard was made."""
        if field_version(self.trainer) != self.version:
            raise FieldReplaced(f"field was reset during the {self.what} (a reset or checkpoint load "
                                "replaced it); nothing was answered from a mix of two fields, ask again")

    def holding_training(self):
        """``Trainer.hold_training`` for the request's duration (nothing for a trainer without one)."""
        hold = getattr(self.trainer, "hold_training", None)
        return hold() if hold is not None else contextlib.nullcontext()

    def _maybe_yield(self) -> None:
        let_in = getattr(self.trainer, "yield_to_step", None)
        if let_in is None or self.yield_every_s <= 0:
            return
        if time.perf_counter() - self._since < self.yield_every_s:
            return
        if let_in():
            self.steps_let_in += 1
        self._since = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self):
        t = time.perf_counter()
        self._maybe_yield()
        let_waiters_in = getattr(self.trainer, "let_waiters_in", None)
        if let_waiters_in is not None:
            let_waiters_in()
        with exclusive(self.trainer):
            self.wait_s += time.perf_counter() - t
            self.check()
            yield
