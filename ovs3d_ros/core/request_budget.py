"""What one query may cost: the mask's size (capped by its longest side and by its ray count) and an
estimate of the field evaluations a request needs, refused with the reason when above the budget.

The estimate counts samples the field is evaluated at: every mask ray at the reference renderer's
``mask_samples_per_ray + mask_importance_samples`` (the surface renderer needs fewer, but falls back to
the reference for rays that find no surface, so the reference is the bound), every refine-set ray at
the training render's samples, and one per cloud point asked for (its latent). On CPU one sample costs
roughly a microsecond (bench/results/query_cpu*.json: 640x480 reference masks), so the default
``query.request_max_samples`` bounds a request to tens of seconds of field evaluation there and well
under a second on a GPU; a chunked render yields the trainer between chunks either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ovs3d_ros.core.vocabulary import QueryError


class RequestTooExpensive(QueryError):
    """A request whose estimated cost is above the configured budget."""


def mask_size(width: int, height: int, max_side: int, max_rays: int) -> tuple[int, int]:
    """(w, h) of a mask for a ``width`` x ``height`` camera: its aspect ratio kept, at most ``max_side``
    pixels on its longest side and at most ``max_rays`` pixels in all, never upscaled, at least 1x1."""
    if width <= 0 or height <= 0:
        raise QueryError(f"mask camera size must be positive, got {width}x{height}")
    if max_side <= 0 or max_rays <= 0:
        raise QueryError(f"query.mask_max_side and query.mask_max_rays must be positive, "
                         f"got {max_side} and {max_rays}")
    scale = min(1.0, max_side / max(width, height), math.sqrt(max_rays / (width * height)))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    while w * h > max_rays and (w > 1 or h > 1):  # rounding up may overshoot by a row or column
        w, h = (w - 1, h) if w >= h and w > 1 else (w, max(1, h - 1))
    return w, h


@dataclass(frozen=True)
class RequestCost:
    mask_rays: int = 0
    mask_samples_per_ray: int = 0
    refine_rays: int = 0
    refine_samples_per_ray: int = 0
    cloud_points: int = 0

    @property
    def samples(self) -> int:
        return (self.mask_rays * self.mask_samples_per_ray + self.refine_rays * self.refine_samples_per_ray
                + self.cloud_points)

    def describe(self) -> str:
        parts = []
        if self.mask_rays:
            parts.append(f"mask {self.mask_rays} rays x {self.mask_samples_per_ray} samples")
        if self.refine_rays:
            parts.append(f"refine {self.refine_rays} rays x {self.refine_samples_per_ray} samples")
        if self.cloud_points:
            parts.append(f"cloud {self.cloud_points} points")
        return " + ".join(parts) or "nothing"


AUTO_CPU_CHUNK_SAMPLES = 32768
"""``query.chunk_samples`` = 0 on a CPU: a 640x480 reference-mask chunk of 8192 rays x 64 samples held
the trainer 3.2 s on this shared 2-core machine (so a save or load waited that long); 65536 samples
kept a load waiting 0.4-0.6 s, 32768 are about half of that."""
MIN_CHUNK_RAYS = 64


def chunk_rays(cfg, samples_per_ray: int, device, max_chunk: int | None = None) -> int:
    """Rays per locked chunk of a query's render with ``samples_per_ray`` samples each: at most
    ``max_chunk`` (default ``trainer.render_chunk``; a trainer passes ``Trainer.render_chunk()``, smaller
    after an out-of-memory) and ``query.chunk_samples`` / samples_per_ray (0 = auto, see the config),
    at least MIN_CHUNK_RAYS."""
    chunk = int(cfg.trainer.render_chunk if max_chunk is None else max_chunk)
    budget = int(cfg.query.chunk_samples)
    if budget == 0:
        budget = AUTO_CPU_CHUNK_SAMPLES if str(device).startswith("cpu") else 0
    if budget > 0:
        chunk = min(chunk, max(MIN_CHUNK_RAYS, budget // max(1, int(samples_per_ray))))
    return max(1, chunk)


def request_cost(cfg, mask_rays: int, refine: bool, cloud_points: int) -> RequestCost:
    """The estimated cost of a query under ``cfg`` (mask of ``mask_rays``, a refine burst or not)."""
    q, t = cfg.query, cfg.trainer
    return RequestCost(
        mask_rays=int(mask_rays),
        mask_samples_per_ray=q.mask_samples_per_ray + q.mask_importance_samples,
        refine_rays=q.refine_rays if refine else 0,
        refine_samples_per_ray=t.render_samples_per_ray + t.render_importance_samples if refine else 0,
        cloud_points=int(cloud_points),
    )


def check_budget(cost: RequestCost, cfg) -> None:
    """Raise RequestTooExpensive, saying which part costs what, when ``cost`` is above the budget."""
    q = cfg.query
    if cost.samples > q.request_max_samples:
        raise RequestTooExpensive(
            f"request refused: estimated {cost.samples / 1e6:.1f}M field samples ({cost.describe()}) "
            f"are above query.request_max_samples = {q.request_max_samples / 1e6:.1f}M; ask for no mask, "
            "no refine or fewer points, or lower query.mask_max_rays / the mask sample counts")
