"""Multi-resolution hash encoding (Instant-NGP, Müller et al. 2022) in pure, vectorised PyTorch.

All levels are evaluated at once: per level the 8 cell corners are indexed either densely (coarse
levels whose (res+1)^3 grid fits in the table) or through the spatial hash
``(x * 1) xor (y * 2654435761) xor (z * 805459861) mod T``; one ``embedding_bag`` call gathers the
corner features and forms the trilinear sum, which keeps CPU memory at (points x levels x 8) indices
instead of (points x levels x 8 x features) gathered values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HASH_PRIMES = (1, 2654435761, 805459861)
# the same primes as int32 bit patterns (2654435761 - 2^32), for wrap-around multiplication
_PRIMES_I32 = tuple(p - (1 << 32) if p >= (1 << 31) else p for p in HASH_PRIMES)


class EncodingError(ValueError):
    """Inconsistent hash-grid settings."""


def level_resolutions(num_levels: int, base_resolution: int, max_resolution: int) -> list[int]:
    """Geometric progression of grid resolutions from base to max (Instant-NGP eq. 2-3)."""
    if num_levels < 1 or base_resolution < 1 or max_resolution < base_resolution:
        raise EncodingError(f"hash grid needs num_levels >= 1 and 1 <= base_resolution <= max_resolution, "
                            f"got {num_levels}, {base_resolution}, {max_resolution}")
    if num_levels == 1:
        return [base_resolution]
    growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (num_levels - 1))
    return [int(math.floor(base_resolution * growth ** level + 1e-6)) for level in range(num_levels)]


class _WeightedGather(torch.autograd.Function):
    """sum_k w[b, k] * table[rows[b, k]] with a bincount backward.

    ``embedding_bag``'s own CPU backward and ``index_add_`` are 4-5x slower than one ``bincount`` per
    feature channel for the scattered, heavily colliding rows of a hash table.
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows, weights)
        ctx.table_rows = table.shape[0]
        return F.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        rows, weights = ctx.saved_tensors
        flat = rows.reshape(-1)
        values = (weights[..., None] * grad_out[:, None, :]).reshape(-1, grad_out.shape[1])
        grad = torch.stack([torch.bincount(flat, values[:, k], minlength=ctx.table_rows)
                            for k in range(grad_out.shape[1])], dim=1)
        return grad.to(grad_out.dtype), None, None


class HashEncoding(nn.Module):
    """(N, 3) points in [0, 1]^3 -> (N, num_levels * features_per_level) features.

    Points outside the unit cube are clamped to it.
    """

    def __init__(self, num_levels: int, features_per_level: int, log2_hashmap_size: int,
                 base_resolution: int, max_resolution: int, init_scale: float = 1e-4):
        super().__init__()
        if features_per_level < 1 or not 4 <= log2_hashmap_size <= 26:
            raise EncodingError(f"features_per_level must be >= 1 and log2_hashmap_size in [4, 26], got "
                                f"{features_per_level}, {log2_hashmap_size}")
        self.num_levels = num_levels
        self.features_per_level = features_per_level
        self.table_size = 2 ** log2_hashmap_size
        resolutions = level_resolutions(num_levels, base_resolution, max_resolution)
        sizes = [min((r + 1) ** 3, self.table_size) for r in resolutions]
        offsets = [0]
        for s in sizes[:-1]:
            offsets.append(offsets[-1] + s)
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        self.register_buffer("level_sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)
        self.register_buffer("level_offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self.register_buffer("dense_levels", torch.tensor([(r + 1) ** 3 <= self.table_size for r in resolutions]),
                             persistent=False)
        n_dense = sum((r + 1) ** 3 <= self.table_size for r in resolutions)
        if any((r + 1) ** 3 <= self.table_size for r in resolutions[n_dense:]):
            raise EncodingError("dense levels must come first (resolutions must increase)")
        self._dense_slice, self._hashed_slice = slice(0, n_dense), slice(n_dense, num_levels)
        self.table = nn.Parameter(torch.empty(sum(sizes), features_per_level).uniform_(-init_scale, init_scale))

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level

    def corner_indices_and_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Table rows (N, L, 8) and trilinear weights (N, L, 8) of each point's cell corners.

        Index arithmetic is int32: the hash's products wrap modulo 2^32 exactly like Instant-NGP's
        uint32 arithmetic, and the table size is a power of two, so ``& (T - 1)`` keeps the same low bits
        an int64 computation would (the reference uses int64 and a test checks they agree).
        """
        pos = x.clamp(0.0, 1.0)[:, None, :] * self.resolutions[None, :, None]  # (N, L, 3)
        lower_f = pos.floor()
        frac = pos - lower_f
        lower = lower_f.to(torch.int32)
        rows = []
        for levels, dense in ((self._dense_slice, True), (self._hashed_slice, False)):
            if levels.stop <= levels.start:
                continue
            low = lower[:, levels]
            # per axis: corner coordinate (lower, lower + 1) -> (N, l, 2)
            cx, cy, cz = (torch.stack((low[..., a], low[..., a] + 1), dim=-1) for a in range(3))
            if dense:
                side = (self.resolutions[levels].to(torch.int32) + 1)[None, :, None, None, None]
                local = cx[..., :, None, None] + (cy[..., None, :, None] + cz[..., None, None, :] * side) * side
            else:
                local = (cx[..., :, None, None] * _PRIMES_I32[0]) ^ (cy[..., None, :, None] * _PRIMES_I32[1]) \
                    ^ (cz[..., None, None, :] * _PRIMES_I32[2])
                local = local & (self.table_size - 1)
            rows.append(local.flatten(2) + self.level_offsets[levels].to(torch.int32)[None, :, None])
        wx, wy, wz = (torch.stack((1.0 - frac[..., a], frac[..., a]), dim=-1) for a in range(3))
        weights = (wx[..., :, None, None] * wy[..., None, :, None] * wz[..., None, None, :]).flatten(2)
        return torch.cat(rows, dim=1).long() if len(rows) > 1 else rows[0].long(), weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != 3:
            raise EncodingError(f"HashEncoding expects (N, 3) points, got {tuple(x.shape)}")
        n = x.shape[0]
        rows, weights = self.corner_indices_and_weights(x.detach())
        out = _WeightedGather.apply(self.table, rows.reshape(-1, 8), weights.reshape(-1, 8))
        return out.reshape(n, self.output_dim)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Slow per-level, per-corner reference (for tests): explicit gather and trilinear sum."""
        outs = []
        for level in range(self.num_levels):
            res = int(self.resolutions[level])
            pos = x.clamp(0.0, 1.0) * res
            lower = pos.floor().long()
            frac = pos - lower.float()
            acc = torch.zeros(x.shape[0], self.features_per_level, dtype=self.table.dtype, device=x.device)
            for corner in range(8):
                bits = [(corner >> 2) & 1, (corner >> 1) & 1, corner & 1]
                c = lower + torch.tensor(bits, device=x.device)
                if bool(self.dense_levels[level]):
                    idx = c[:, 0] + c[:, 1] * (res + 1) + c[:, 2] * (res + 1) ** 2
                else:
                    idx = ((c[:, 0] * HASH_PRIMES[0]) ^ (c[:, 1] * HASH_PRIMES[1]) ^ (c[:, 2] * HASH_PRIMES[2])) \
                        % int(self.level_sizes[level])
                w = torch.ones(x.shape[0], device=x.device)
                for a in range(3):
                    w = w * (frac[:, a] if bits[a] else 1.0 - frac[:, a])
                acc = acc + w[:, None] * self.table[idx + int(self.level_offsets[level])]
            outs.append(acc)
        return torch.cat(outs, dim=-1)
