"""A faithful re-implementation of 3D-OVS's feature rendering (notes/3dovs_method.md §4.2, §7.1), for
the side-by-side benchmark only: ``render_feature_map`` allocates ``zeros[chunk, N_samples, 512]``,
scatters the per-point 512-d features of the valid samples into it, forms ``weight[..., None] *
features`` and sums over samples. Ours composites the low-dimensional latent and expands it once per
ray (``SemanticField.expand_feature``); for an affine head both are the same number (exactness is
checked by ``feature_render_pair``).

Both functions take the same inputs: the field, contracted sample positions (N, S, 3), the sample
mask (N, S) of samples that pass the weight threshold, and the compositing weights (N, S).
"""

from __future__ import annotations

import torch


def original_feature_render(field, contracted: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor,
                            chunk: int = 4096) -> torch.Tensor:
    """3D-OVS: dense per-sample 512-d buffer per chunk of rays -> (N, clip_dim)."""
    n, s, _ = contracted.shape
    outs = []
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        pos, mask, w = contracted[sl], valid[sl], weights[sl]
        dense = torch.zeros(pos.shape[0], s, field.cfg.clip_dim, dtype=torch.float32, device=pos.device)
        if bool(mask.any()):
            latent, _ = field.semantics_contracted(pos[mask])
            # the original's per-point head: a 512-d feature for every valid sample
            per_point = field.expand_feature(latent, torch.ones(latent.shape[0], device=pos.device))
            dense[mask] = per_point
        outs.append(torch.sum(w[..., None] * dense, dim=-2))
    return torch.cat(outs)


def ours_feature_render(field, contracted: torch.Tensor, valid: torch.Tensor,
                        weights: torch.Tensor) -> torch.Tensor:
    """Composite the latent over samples, expand to clip_dim once per ray -> (N, clip_dim)."""
    n, s, _ = contracted.shape
    latent, _ = field.semantics_contracted(contracted[valid])
    dense = torch.zeros(n, s, latent.shape[1], dtype=latent.dtype, device=contracted.device)
    dense[valid] = latent
    composited = torch.sum(weights[..., None] * dense, dim=-2)
    return field.expand_feature(composited, (weights * valid).sum(dim=-1))


def random_samples(field, rays: int, samples: int, valid_fraction: float, seed: int = 0, device: str = "cpu"):
    """Contracted positions, a validity mask and weights like a training batch's."""
    g = torch.Generator().manual_seed(seed)
    contracted = (torch.rand(rays, samples, 3, generator=g) * 4.0 - 2.0).to(device)
    valid = (torch.rand(rays, samples, generator=g) < valid_fraction).to(device)
    weights = torch.rand(rays, samples, generator=g).to(device)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return contracted, valid, weights * valid
