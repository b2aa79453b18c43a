"""Feature rays drawn towards rare colours in a keyframe (``semantic.rare_ray_fraction``).

Why: uniform pixel sampling gives a 5 cm ball (0.15 % of the training pixels) under one feature ray per
step, and the cosine distillation loss of a pixel whose target is 85 % table and 15 % ball hardly moves
when the ball's share is missed; the field then renders less than half of the ball's target share and no
rule finds it (bench/results/issue14/tuning_s8). Drawing a share of the feature rays with probability
inverse to how common the pixel's colour is in its keyframe gives every colour about the same number of
rays, whatever the size of what wears it: a class-balanced sampler with colour bins standing in for the
classes, which needs no labels. DINO tokens would group better, but at the node's teacher resolutions a
token (8-16 px) is as large as the small object, so its token is mostly table (measured in tuning_s8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ColourBins:
    """A keyframe's pixels grouped by colour bin: ``order`` (H*W,) int32 row-major pixel indices sorted by
    bin, and per occupied bin its ``starts`` and ``counts`` in ``order``. 4 bytes per pixel."""
    order: torch.Tensor
    starts: torch.Tensor
    counts: torch.Tensor

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.order, self.starts, self.counts))


def colour_bins(rgb: torch.Tensor, bins: int) -> ColourBins:
    """(H, W, 3) uint8 -> its pixels grouped into ``bins`` per channel colour bins."""
    if bins < 1 or bins > 256:
        raise ValueError(f"semantic.rare_colour_bins must be in [1, 256], got {bins}")
    q = (rgb.reshape(-1, 3).long() * bins) // 256
    key = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    order = torch.argsort(key, stable=True)
    counts = torch.bincount(key, minlength=bins ** 3)
    starts = torch.cumsum(counts, 0) - counts
    occupied = counts > 0
    return ColourBins(order.int(), starts[occupied], counts[occupied])


def sample_rare_pixels(groups: ColourBins, width: int, count: int, generator: torch.Generator
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` pixels (u, v) long: an occupied colour bin drawn uniformly, then a uniform pixel of it,
    i.e. each pixel with probability 1 / (occupied bins x pixels in its bin)."""
    b = torch.randint(0, len(groups.counts), (count,), generator=generator)
    offset = (torch.rand(count, generator=generator, dtype=torch.float64) * groups.counts[b]).long()
    index = groups.order[groups.starts[b] + offset.clamp_max(groups.counts[b] - 1)].long()
    return index % width, index // width
