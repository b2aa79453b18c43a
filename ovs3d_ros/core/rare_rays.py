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

import torch


def colour_rarity(rgb: torch.Tensor, bins: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (H * W,) float64 cumulative sampling distribution, row-major, ending at 1.

    Each pixel's weight is 1 / (pixels of the image in its colour bin; ``bins`` per channel), so every
    colour bin present holds the same mass however many pixels fall in it. Cumulative, so drawing is a
    binary search per ray (``sample_rare_pixels``) rather than a pass over the image per draw."""
    if bins < 1 or bins > 256:
        raise ValueError(f"semantic.rare_colour_bins must be in [1, 256], got {bins}")
    q = (rgb.reshape(-1, 3).long() * bins) // 256
    key = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    counts = torch.bincount(key, minlength=bins ** 3)
    cdf = torch.cumsum(1.0 / counts[key].double(), dim=0)
    return cdf / cdf[-1]


def sample_rare_pixels(cdf: torch.Tensor, width: int, count: int, generator: torch.Generator
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` pixels (u, v) long drawn from the row-major cumulative distribution ``cdf``
    (``colour_rarity``)."""
    draw = torch.rand(count, generator=generator, dtype=torch.float64)
    index = torch.searchsorted(cdf, draw, right=True).clamp_max(len(cdf) - 1)
    return index % width, index // width
