"""Out-of-memory guards: a step or a query that runs out of (GPU) memory shrinks its budget and goes on.

A long-running node must not die because one batch did not fit (another process took GPU memory, a
query asked for a huge mask, the keyframe buffer grew). The pieces:

- ``is_out_of_memory(exc)``: ``torch.OutOfMemoryError`` (CUDA's caching allocator) or the CPU
  allocator's ``RuntimeError`` ("can't allocate memory").
- ``oom_guard(on_oom, warn)``: a context manager that swallows an out-of-memory error, releases the
  cached blocks, calls ``on_oom(exc)`` (which shrinks a budget) and logs a warning.
- ``guarded_step(trainer)``: ``trainer.step()`` under the guard; on OOM the trainer's ray budgets halve
  (``trainer.rays_per_step`` and ``semantic.rays_per_step``, floor ``trainer.oom_min_rays_per_step``)
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


def halve_training_budget(trainer) -> str:
    """Halve the trainer's rays per step (and feature rays), never below ``trainer.oom_min_rays_per_step``.

    Mutates ``trainer.cfg`` (the trainer's own copy of the budgets: ``step()`` reads them every call)."""
    t, sem = trainer.cfg.trainer, trainer.cfg.semantic
    floor = max(1, int(t.oom_min_rays_per_step))
    before = (t.rays_per_step, sem.rays_per_step)
    t.rays_per_step = max(floor, t.rays_per_step // 2)
    sem.rays_per_step = max(min(floor, t.rays_per_step), sem.rays_per_step // 2)
    if (t.rays_per_step, sem.rays_per_step) == before:
        return f"rays per step already at the floor {floor}; retrying with the same budget"
    return (f"rays per step {before[0]} -> {t.rays_per_step}, feature rays {before[1]} -> "
            f"{sem.rays_per_step}; training continues")


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
            trainer_cfg = segmenter.trainer.cfg.trainer
            trainer_cfg.render_chunk = max(trainer_cfg.oom_min_rays_per_step, trainer_cfg.render_chunk // 2)
            max_points = max(1, int(max_points) // 2)
            (warn or LOGGER.warning)(f"query out of memory ({what}); retrying with {max_points} points, "
                                     f"render chunk {trainer_cfg.render_chunk}")
    raise AssertionError("unreachable")
