"""Occupancy grid for empty-space skipping (after nerfacc's ``OccGridEstimator``).

The grid covers the contracted cube [-2, 2]^3. Each cell keeps an exponential moving average of the
opacity a reference step would have at a random point inside it; cells above a threshold are occupied.
Cells where a depth sensor measured a surface (``mark_measured``) stay occupied whatever the estimate says:
one random point per 25 cm cell almost never lands on a 5 cm object, so its cell decayed to "empty" and
every ray without measured depth (a query's mask) skipped the object.
The field is passed in as a callback (``density_fn(contracted points) -> density``), so the grid never
owns the network, and its state lives in buffers so ``state_dict()`` checkpoints it.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class OccupancyGrid(nn.Module):
    def __init__(
        self, resolution: int, threshold: float, ema_decay: float, warmup_steps: int, update_fraction: float
    ):
        super().__init__()
        if resolution < 2:
            raise ValueError(f"field.occupancy_resolution must be >= 2, got {resolution}")
        if not 0.0 < update_fraction <= 1.0:
            raise ValueError(f"field.occupancy_update_fraction must be in (0, 1], got {update_fraction}")
        self.resolution = resolution
        self.threshold = threshold
        self.ema_decay = ema_decay
        self.warmup_steps = warmup_steps
        self.update_fraction = update_fraction
        n = resolution**3
        self.register_buffer("opacity", torch.zeros(n))
        self.register_buffer("occupied", torch.ones(n, dtype=torch.bool))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("measured", torch.zeros(n, dtype=torch.bool))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before ``measured`` existed: no cell marked
        state_dict.setdefault(prefix + "measured", torch.zeros_like(self.measured))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def mark_measured(self, contracted: torch.Tensor) -> None:
        """Keep the cells of (N, 3) contracted measured surface points occupied from now on."""
        if contracted.numel():
            cells = self.cell_index(contracted.to(self.measured.device))
            self.measured[cells] = True
            self.occupied[cells] = True

    def cell_index(self, contracted: torch.Tensor) -> torch.Tensor:
        """(N, 3) contracted points -> (N,) flat cell indices (x major)."""
        ijk = ((contracted + 2.0) * 0.25 * self.resolution).long().clamp(0, self.resolution - 1)
        return (ijk[:, 0] * self.resolution + ijk[:, 1]) * self.resolution + ijk[:, 2]

    def cell_centers(self, cells: torch.Tensor) -> torch.Tensor:
        r = self.resolution
        ijk = torch.stack((cells // (r * r), (cells // r) % r, cells % r), dim=-1).float()
        return (ijk + 0.5) / r * 4.0 - 2.0

    def is_occupied(self, contracted: torch.Tensor) -> torch.Tensor:
        """(N, 3) contracted points -> (N,) bool."""
        return self.occupied[self.cell_index(contracted)]

    def occupied_fraction(self) -> float:
        return float(self.occupied.float().mean())

    @torch.no_grad()
    def update(
        self,
        step: int,
        density_fn: Callable[[torch.Tensor], torch.Tensor],
        step_size: float,
        generator: torch.Generator | None = None,
        chunk: int = 65536,
    ) -> None:
        """EMA update from the density at one random point per selected cell.

        Each update visits a random ``update_fraction`` of the cells plus, after warm-up, every currently
        occupied cell (nerfacc's recipe); during warm-up all cells stay occupied while the estimate fills.
        ``step_size`` (metres) turns density into opacity: ``1 - exp(-density * step_size)``.
        """
        n = self.opacity.numel()
        device = self.opacity.device
        count = max(1, int(n * self.update_fraction))
        cells = torch.randint(0, n, (count,), device=device, generator=generator)
        if step >= self.warmup_steps:
            cells = torch.cat((cells, self.occupied.nonzero().squeeze(1)))
        cells = torch.unique(cells)
        jitter = torch.rand(cells.numel(), 3, device=device, generator=generator) - 0.5
        points = self.cell_centers(cells) + jitter * (4.0 / self.resolution)
        density = torch.cat([density_fn(p).reshape(-1) for p in points.split(chunk)])
        opacity = 1.0 - torch.exp(-density.clamp_min(0.0) * step_size)
        self.opacity[cells] = torch.maximum(self.opacity[cells] * self.ema_decay, opacity)
        self.updates += 1
        if step < self.warmup_steps:
            self.occupied.fill_(True)
        else:
            # the mean guards against a scene whose every cell is below the fixed threshold
            threshold = min(self.threshold, float(self.opacity.mean()))
            self.occupied.copy_((self.opacity > threshold) | self.measured)
