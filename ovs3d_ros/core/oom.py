"""Out-of-memory guards: a step or a query that runs out of (GPU) memory shrinks its budget and goes on.

A long-running node must not die because one batch did not fit (another process took GPU memory, a
query asked for a huge mask, the keyframe buffer grew). The pieces:

- ``is_out_of_memory(exc)``: ``torch.OutOfMemoryError`` (CUDA's caching allocator) or the CPU
  allocator's ``RuntimeError`` ("can't allocate memory").
- ``oom_guard(on_oom, warn)``: a context manager that swallows an out-of-memory error, releases the
  cached blocks, calls ``on_oom(exc)`` (which shrinks a budget) and logs a warning.
- ``MemoryBudget``: caps the device has taught the trainer (rays per step, feature rays, render
  chunk), kept beside the config. The config stays what the user set (it is shared with the node and
  reported as its parameters); the trainer uses ``min(config, cap)``.
- ``guarded_step(trainer)``: ``trainer.step()`` under the guard; on OOM the trainer's ray caps halve
  (from ``trainer.rays_per_step`` and ``semantic.rays_per_step``, floor ``trainer.oom_min_rays_per_step``)
  and it returns None. Training continues with the next call.
- ``segment_with_oom_retry(segmenter, classes, **kw)``: ``Segmenter.segment`` retried up to
  ``query.oom_retries`` times, each time with half the points and half the render chunk; when it still
  does not fit, ``QueryOutOfMemory`` (a ValueError, so the node answers ``success=False``).

Never imports ROS.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

LOGGER = logging.getLogger("ovs3d_ros.oom")
Warn = Callable[[str], None]


class QueryOutOfMemory(ValueError):
    """A query still ran out of memory after its retries with smaller budgets."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the CUDA allocator's OutOfMemoryError and for the CPU allocator's failure."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc)
                                              or "CUDA out of memory" in str(exc))


def release_cached_memory() -> None:
    """Drop the exception's frames' tensors and hand cached CUDA blocks back (they are fragmented now)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def oom_guard(on_oom: Callable[[], str], warn: Warn | None = None) -> Iterator[None]:
    """Swallow an out-of-memory error raised inside; ``on_oom()`` shrinks a budget and returns a
    sentence saying what it did, which is logged as a warning. Every other exception passes through."""
    try:
        yield
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        del exc  # the traceback holds the frames (and their tensors) that did not fit
        release_cached_memory()
        action = on_oom()
        (warn or LOGGER.warning)(f"out of memory ({what}); {action}")


@dataclass
class MemoryBudget:
    """Caps learned from out-of-memory errors (None: no cap yet). The effective budget is the smaller
    of the config's value (which a user may change live) and the cap."""

    rays_per_step: int | None = None
    feature_rays_per_step: int | None = None
    render_chunk: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @staticmethod
    def _capped(value: int, cap: int | None) -> int:
        return int(value) if cap is None else min(int(value), cap)

    def rays(self, cfg) -> int:
        """Rays per training step."""
        return self._capped(cfg.trainer.rays_per_step, self.rays_per_step)

    def feature_rays(self, cfg) -> int:
        """Rays per step that carry the feature loss (never more than the step's rays)."""
        return min(self._capped(cfg.semantic.rays_per_step, self.feature_rays_per_step), self.rays(cfg))

    def chunk(self, cfg) -> int:
        """Rays per rendering chunk."""
        return self._capped(cfg.trainer.render_chunk, self.render_chunk)

    def halve_training(self, cfg) -> tuple[tuple[int, int], tuple[int, int]]:
        """Halve rays and feature rays, never below ``trainer.oom_min_rays_per_step``:
        ((rays, feature rays) before, after)."""
        floor = max(1, int(cfg.trainer.oom_min_rays_per_step))
        with self._lock:
            before = (self.rays(cfg), self.feature_rays(cfg))
            self.rays_per_step = max(floor, before[0] // 2)
            self.feature_rays_per_step = max(min(floor, self.rays_per_step), before[1] // 2)
            return before, (self.rays(cfg), self.feature_rays(cfg))

    def halve_render_chunk(self, cfg) -> int:
        """Halve the render chunk, never below ``trainer.oom_min_rays_per_step``; the new chunk."""
        with self._lock:
            self.render_chunk = max(int(cfg.trainer.oom_min_rays_per_step), self.chunk(cfg) // 2)
            return self.chunk(cfg)


def halve_training_budget(trainer) -> str:
    """Halve the trainer's rays per step (and feature rays) in its ``memory_budget``; the config is
    left as the user set it."""
    before, after = trainer.memory_budget.halve_training(trainer.cfg)
    if after == before:
        floor = max(1, int(trainer.cfg.trainer.oom_min_rays_per_step))
        return f"rays per step already at the floor {floor}; retrying with the same budget"
    return (f"rays per step {before[0]} -> {after[0]}, feature rays {before[1]} -> "
            f"{after[1]}; training continues")


def guarded_step(trainer, warn: Warn | None = None) -> dict[str, float] | None:
    """``trainer.step()``; on out-of-memory the budget halves and None comes back (the step is skipped).

    Safe: an OOM in the forward pass changes nothing; in backward it leaves partial gradients, which
    the next step's ``zero_grad`` clears before its own backward.
    """
    result: dict[str, float] | None = None
    with oom_guard(lambda: halve_training_budget(trainer), warn):
        result = trainer.step()
    if result is None:
        trainer.optimizer.zero_grad(set_to_none=True)
    return result


def segment_with_oom_retry(segmenter, classes, warn: Warn | None = None, **kwargs: Any):
    """``segmenter.segment(classes, **kwargs)``, retried with half ``max_points`` and half the trainer's
    render chunk after each out-of-memory, at most ``query.oom_retries`` times.

    The render chunk reduction stays (the device evidently cannot hold that much); max_points is only
    reduced for the retried call, so the next query asks for its own size again.
    """
    cfg = segmenter.cfg
    retries = max(0, int(cfg.query.oom_retries))
    max_points = kwargs.pop("max_points", None)
    if max_points is None:
        max_points = cfg.query.max_points
    for attempt in range(retries + 1):
        try:
            return segmenter.segment(classes, max_points=max_points, **kwargs)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            del exc
            release_cached_memory()
            if attempt == retries:
                raise QueryOutOfMemory(f"query ran out of memory after {retries} retries with smaller "
                                       f"budgets (last: {max_points} points): {what}") from None
            trainer = segmenter.trainer
            chunk = trainer.memory_budget.halve_render_chunk(trainer.cfg)
            max_points = max(1, int(max_points) // 2)
            (warn or LOGGER.warning)(f"query out of memory ({what}); retrying with {max_points} points, "
                                     f"render chunk {chunk}")
    raise AssertionError("unreachable")
