"""``SemanticField``: density, appearance, selection volume and semantic latent over metric space.

Two hash grids share one contraction (``contraction.py``):
- the geometry grid feeds a small density MLP that outputs density and a ``appearance_dim`` feature;
  a colour MLP maps that feature plus the view direction to RGB;
- a separate, coarser semantic grid (on detached positions) feeds a semantic MLP that outputs the
  low-dimensional semantic latent ``z`` and the per-point selection logits (one per CLIP scale).

The CLIP-dimension feature only exists per ray: ``feature = A (sum_i w_i z_i) + b (sum_i w_i)``
(``expand_feature``), the affine-head identity of the original (notes §4.2) without the dense
per-sample 512-d buffer.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ovs3d_ros.config import FieldConfig
from ovs3d_ros.core.field.contraction import contract, to_unit_cube
from ovs3d_ros.core.field.encodings import HashEncoding


class _TruncExp(torch.autograd.Function):
    """exp with a clamped backward (Instant-NGP): keeps early large densities from exploding gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        # capped so a diverging MLP output gives a huge but finite density (exp(30) ~ 1e13), never inf
        return torch.exp(x.clamp(max=30.0))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


def _mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 1) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


class SemanticField(nn.Module):
    SEMANTIC_MODULES = ("semantic_encoding", "semantic_mlp", "feature_head")
    """The modules that map a position to its CLIP-space feature (nothing geometric)."""

    def __init__(self, cfg: FieldConfig):
        super().__init__()
        self.cfg = cfg
        self.order = cfg.contraction_order
        self.geometry_encoding = HashEncoding(
            cfg.num_levels,
            cfg.features_per_level,
            cfg.log2_hashmap_size,
            cfg.base_resolution,
            cfg.max_resolution,
        )
        self.density_mlp = _mlp(self.geometry_encoding.output_dim, cfg.hidden_dim, 1 + cfg.appearance_dim)
        self.color_mlp = _mlp(cfg.appearance_dim + 3, cfg.hidden_dim, 3, layers=2)
        self.semantic_encoding = HashEncoding(
            cfg.semantic_num_levels,
            cfg.features_per_level,
            cfg.semantic_log2_hashmap_size,
            cfg.base_resolution,
            cfg.semantic_max_resolution,
        )
        self.semantic_mlp = _mlp(
            self.semantic_encoding.output_dim,
            cfg.semantic_hidden_dim,
            cfg.semantic_latent_dim + cfg.num_scales,
        )
        self.feature_head = nn.Linear(cfg.semantic_latent_dim, cfg.clip_dim)
        self.register_buffer("scene_center", torch.zeros(3))
        self.register_buffer("scene_radius", torch.tensor(cfg.scene_radius_m))
        self.register_buffer("bounds_set", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ scene bounds
    def set_scene_bounds(self, center: torch.Tensor, radius: float) -> None:
        if not radius > 0:
            raise ValueError(f"scene radius must be positive, got {radius}")
        self.scene_center.copy_(torch.as_tensor(center, dtype=torch.float32))
        self.scene_radius.fill_(float(radius))
        self.bounds_set.fill_(True)

    def contract(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) world -> (N, 3) contracted [-2, 2]^3."""
        return contract(x, self.scene_center, self.scene_radius, self.order)

    # ------------------------------------------------------------------ geometry / appearance
    def density_contracted(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3) contracted points -> density (N,) >= 0 and appearance feature (N, appearance_dim)."""
        h = self.density_mlp(self.geometry_encoding(to_unit_cube(c)))
        return trunc_exp(h[:, 0] - 1.0), h[:, 1:]

    def density(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3) world points -> density (N,) and appearance feature (N, appearance_dim)."""
        return self.density_contracted(self.contract(x))

    def color(self, appearance: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """Appearance feature (N, A) and (N, 3) view directions (any length) -> RGB (N, 3) in [0, 1]."""
        return torch.sigmoid(self.color_mlp(torch.cat((appearance, F.normalize(directions, dim=-1)), dim=-1)))

    # ------------------------------------------------------------------ semantics
    def semantics_contracted(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3) contracted points -> semantic latent (N, L) and selection logits (N, num_scales).

        Positions are detached (LERF): the semantic grid must not move geometry through the contraction.
        """
        h = self.semantic_mlp(self.semantic_encoding(to_unit_cube(c.detach())))
        return h[:, : self.cfg.semantic_latent_dim], h[:, self.cfg.semantic_latent_dim :]

    def semantic_at(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) world points -> (N, semantic_latent_dim) latent at those points (for labelled clouds)."""
        return self.semantics_contracted(self.contract(points))[0]

    def expand_feature(self, latent: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
        """Composited latent (N, L) and opacity (N,) -> CLIP-space feature (N, clip_dim).

        ``A z + b * opacity``: exactly the composite of a per-point affine head, computed once per ray.
        For a single 3-D point pass ``opacity = 1``.
        """
        return F.linear(latent, self.feature_head.weight) + opacity[:, None] * self.feature_head.bias

    def semantic_modules(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in self.SEMANTIC_MODULES}

    def with_semantics(self, modules: dict[str, nn.Module]) -> "SemanticField":
        """A view of this field whose ``SEMANTIC_MODULES`` are ``modules``; every other module, parameter
        and buffer (geometry, scene bounds) is this field's own, shared live. For answering queries
        from averaged semantic weights (``semantic_average.py``); a view is never trained."""
        if set(modules) != set(self.SEMANTIC_MODULES):
            raise ValueError(f"with_semantics needs exactly {self.SEMANTIC_MODULES}, got {sorted(modules)}")
        view = copy.copy(self)  # shares _parameters and _buffers: bounds set later reach the view too
        view._modules = {**self._modules, **modules}
        return view

    # ------------------------------------------------------------------ optimiser groups
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by learning-rate group: hash tables ('grid') vs networks and heads ('mlp')."""
        grids = [self.geometry_encoding.table, self.semantic_encoding.table]
        grid_ids = {id(p) for p in grids}
        return {"grid": grids, "mlp": [p for p in self.parameters() if id(p) not in grid_ids]}
