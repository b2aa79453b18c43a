"""Volume rendering as small pure functions (batched ``(n_rays, n_samples)`` layout, nerfacc-shaped).

- ``render_weights(sigmas, deltas)``: ``w_i = (1 - exp(-sigma_i delta_i)) prod_{j<i} exp(-sigma_j delta_j)``.
- ``composite(weights, values)``: ``sum_i w_i v_i``.
- Samples are intervals between sorted edges; density is evaluated at interval mid-points. Rays with a
  measured depth get depth-guided edges (a dense window around the depth plus uniform edges in front
  of it); rays without get uniform edges (occupancy-skipped) plus one optional importance pass.
- ``render_rays`` renders RGB, depth (``sum_i w_i t_i``, t = optical depth since directions have z = 1
  in the camera), opacity, and, for the first ``semantic_rays`` rays, the semantic latent, the
  CLIP-space feature (expanded after compositing) and the per-ray softmax over the selection scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ovs3d_ros.config import Config
from ovs3d_ros.core.frame import Intrinsics

WEIGHT_SKIP_THRESHOLD = 1e-4
"""Samples lighter than this skip the colour and semantic heads (the original's rule, notes §4.1)."""


class RenderError(ValueError):
    """Bad inputs to a render call (shapes, sizes)."""


@dataclass(frozen=True)
class SamplingSettings:
    near: float
    far: float
    uniform_samples: int
    importance_samples: int
    depth_samples: int
    depth_uniform_samples: int
    depth_sigma_m: float
    depth_sample_sigmas: float
    jitter: bool

    @classmethod
    def for_training(cls, cfg: Config) -> "SamplingSettings":
        t = cfg.trainer
        return cls(
            cfg.field.near_m,
            cfg.field.far_m,
            t.samples_per_ray,
            t.importance_samples,
            t.depth_samples,
            t.depth_uniform_samples,
            t.depth_sigma_m,
            t.depth_sample_sigmas,
            jitter=True,
        )

    @classmethod
    def for_rendering(cls, cfg: Config) -> "SamplingSettings":
        t = cfg.trainer
        return cls(
            cfg.field.near_m,
            cfg.field.far_m,
            t.render_samples_per_ray,
            t.render_importance_samples,
            t.depth_samples,
            t.depth_uniform_samples,
            t.depth_sigma_m,
            t.depth_sample_sigmas,
            jitter=False,
        )


@dataclass
class RenderOutputs:
    rgb: torch.Tensor  # (N, 3)
    depth: torch.Tensor  # (N,) optical depth, metres
    opacity: torch.Tensor  # (N,)
    weights: torch.Tensor  # (N, S)
    t_mid: torch.Tensor  # (N, S)
    latent: torch.Tensor | None = None  # (K, semantic_latent_dim), K = semantic rays (the first K)
    feature: torch.Tensor | None = None  # (K, clip_dim)
    selection: torch.Tensor | None = None  # (K, num_scales), softmax over scales


# ---------------------------------------------------------------------------------------------- maths
def render_weights(sigmas: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """(N, S) densities and metric interval lengths -> (N, S) compositing weights."""
    tau = sigmas * deltas
    # exclusive cumulative sum: transmittance before each sample, exp(-sum_{j<i} tau_j); built by
    # shifting, not as cumsum - tau, which is inf - inf = NaN behind an infinitely dense sample
    before = torch.cat((torch.zeros_like(tau[..., :1]), torch.cumsum(tau[..., :-1], dim=-1)), dim=-1)
    return (1.0 - torch.exp(-tau)) * torch.exp(-before)


def render_weights_reference(sigmas: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Python loop over samples (tests only)."""
    weights = torch.zeros_like(sigmas)
    transmittance = torch.ones(sigmas.shape[0], dtype=sigmas.dtype)
    for i in range(sigmas.shape[1]):
        alpha = 1.0 - torch.exp(-sigmas[:, i] * deltas[:, i])
        weights[:, i] = alpha * transmittance
        transmittance = transmittance * (1.0 - alpha)
    return weights


def composite(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(N, S) weights and (N, S, C) values -> (N, C)."""
    return torch.einsum("ns,nsc->nc", weights, values)


def composite_reference(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Python loop over samples (tests only)."""
    out = torch.zeros(values.shape[0], values.shape[2], dtype=values.dtype)
    for i in range(weights.shape[1]):
        out = out + weights[:, i : i + 1] * values[:, i]
    return out


def stratified_edges(
    near: torch.Tensor, far: torch.Tensor, n: int, jitter: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(N,) near/far -> (N, n + 1) sorted edges, one random point per stratum (its centre without jitter)."""
    steps = torch.arange(n + 1, device=near.device, dtype=near.dtype)
    if jitter:
        u = torch.rand(near.shape[0], n + 1, device=near.device, generator=generator)
    else:
        u = torch.full((near.shape[0], n + 1), 0.5, device=near.device)
    frac = (steps + u) / (n + 1)
    return near[:, None] + (far - near)[:, None] * frac


def sample_pdf(
    edges: torch.Tensor, weights: torch.Tensor, n: int, jitter: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Inverse-CDF sampling: (N, S+1) edges and (N, S) weights -> (N, n) new positions, sorted."""
    pdf = weights + 1e-5
    pdf = pdf / pdf.sum(dim=-1, keepdim=True)
    cdf = torch.cat((torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)), dim=-1).clamp(max=1.0)
    if jitter:
        u = torch.rand(weights.shape[0], n, device=weights.device, generator=generator)
    else:
        u = ((torch.arange(n, device=weights.device) + 0.5) / n).expand(weights.shape[0], n)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, edges.shape[1] - 1)
    cdf_lo, cdf_hi = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    e_lo, e_hi = edges.gather(1, idx - 1), edges.gather(1, idx)
    t = (u - cdf_lo) / (cdf_hi - cdf_lo).clamp_min(1e-8)
    return torch.sort(e_lo + t * (e_hi - e_lo), dim=-1).values


def depth_guided_edges(
    near: torch.Tensor,
    depth: torch.Tensor,
    settings: SamplingSettings,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges for rays with a valid depth: a dense window ``depth +- k sigma`` plus uniform edges in front.

    Returns the sorted edges (N, depth_samples + depth_uniform_samples + 2) and the window (lo, hi).
    """
    half = settings.depth_sample_sigmas * settings.depth_sigma_m
    lo = torch.maximum(depth - half, near)
    hi = torch.maximum(depth + half, lo + 1e-3)
    window = stratified_edges(lo, hi, settings.depth_samples, settings.jitter, generator)
    front = stratified_edges(near, hi, settings.depth_uniform_samples, settings.jitter, generator)
    return torch.sort(torch.cat((window, front), dim=-1), dim=-1).values, lo, hi


# ---------------------------------------------------------------------------------------------- rendering
def _densities(
    field, positions: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Density (N, S) and appearance (M, A) at the kept samples; contracted positions (N*S, 3)."""
    n, s = keep.shape
    contracted = field.contract(positions.reshape(-1, 3))
    flat_keep = keep.reshape(-1).nonzero().squeeze(1)
    density_kept, appearance = field.density_contracted(contracted[flat_keep])
    sigmas = torch.zeros(n * s, dtype=density_kept.dtype, device=positions.device)
    sigmas = sigmas.index_copy(0, flat_keep, density_kept)
    return sigmas.reshape(n, s), appearance, contracted


def render_rays(
    field,
    origins: torch.Tensor,
    directions: torch.Tensor,
    settings: SamplingSettings,
    depth: torch.Tensor | None = None,
    occupancy=None,
    semantic_rays: int = 0,
    generator: torch.Generator | None = None,
) -> RenderOutputs:
    """Render (N, 3) rays (directions with camera z = 1, so t is optical depth).

    ``depth`` (N,) metres, 0/NaN = none: rays with a valid depth use depth-guided sampling.
    ``occupancy`` (an ``OccupancyGrid``) skips samples in empty cells, except inside the depth window.
    The first ``semantic_rays`` rays also get latent, feature and selection (weights detached when
    ``field.cfg.detach_semantic_weights``).
    """
    if origins.ndim != 2 or origins.shape[1] != 3 or directions.shape != origins.shape:
        raise RenderError(
            f"render_rays: origins and directions must both be (N, 3), got "
            f"{tuple(origins.shape)} and {tuple(directions.shape)}"
        )
    n = origins.shape[0]
    device = origins.device
    near = torch.full((n,), settings.near, device=device)
    far = torch.full((n,), settings.far, device=device)
    has_depth = torch.zeros(n, dtype=torch.bool, device=device)
    if depth is not None and settings.depth_samples > 0:
        has_depth = torch.isfinite(depth) & (depth > settings.near)
    if bool(has_depth.any()):
        # every ray gets the same number of edges: rays without depth take uniform ones over [near, far]
        safe_depth = torch.where(has_depth, depth, far)
        guided, lo, hi = depth_guided_edges(near, safe_depth, settings, generator)
        uniform = stratified_edges(near, far, guided.shape[1] - 1, settings.jitter, generator)
        edges = torch.where(has_depth[:, None], guided, uniform)
        lo = torch.where(has_depth, lo, far)
        hi = torch.where(has_depth, hi, far)
    else:
        edges = stratified_edges(near, far, settings.uniform_samples, settings.jitter, generator)
        lo = hi = far
        if settings.importance_samples > 0:
            with torch.no_grad():
                t_mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
                positions = origins[:, None] + directions[:, None] * t_mid[..., None]
                keep = _occupied(field, occupancy, positions)
                sigmas, _, _ = _densities(field, positions, keep)
                weights = render_weights(sigmas, edges.diff(dim=-1) * directions.norm(dim=-1, keepdim=True))
                fine = sample_pdf(edges, weights, settings.importance_samples, settings.jitter, generator)
            edges = torch.sort(torch.cat((edges, fine), dim=-1), dim=-1).values

    t_mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    deltas = edges.diff(dim=-1) * directions.norm(dim=-1, keepdim=True)
    positions = origins[:, None] + directions[:, None] * t_mid[..., None]
    in_window = (t_mid >= lo[:, None]) & (t_mid <= hi[:, None])
    keep = _occupied(field, occupancy, positions) | in_window
    sigmas, appearance, contracted = _densities(field, positions, keep)
    weights = render_weights(sigmas, deltas)

    flat_keep = keep.reshape(-1).nonzero().squeeze(1)
    heavy = weights.detach().reshape(-1)[flat_keep] > WEIGHT_SKIP_THRESHOLD
    shade_idx = flat_keep[heavy]
    view_dirs = directions[:, None].expand(-1, t_mid.shape[1], -1).reshape(-1, 3)
    colors_kept = field.color(appearance[heavy], view_dirs[shade_idx])
    colors = torch.zeros(n * t_mid.shape[1], 3, dtype=colors_kept.dtype, device=device)
    colors = colors.index_copy(0, shade_idx, colors_kept).reshape(n, -1, 3)

    out = RenderOutputs(
        rgb=composite(weights, colors),
        depth=(weights * t_mid).sum(dim=-1),
        opacity=weights.sum(dim=-1),
        weights=weights,
        t_mid=t_mid,
    )
    if semantic_rays > 0:
        k = min(semantic_rays, n)
        s = t_mid.shape[1]
        sem_weights = weights[:k].detach() if field.cfg.detach_semantic_weights else weights[:k]
        sem_idx = shade_idx[shade_idx < k * s]
        latent_kept, logits_kept = field.semantics_contracted(contracted[sem_idx])
        values = torch.cat((latent_kept, torch.sigmoid(logits_kept)), dim=-1)
        dense = torch.zeros(k * s, values.shape[1], dtype=values.dtype, device=device)
        dense = dense.index_copy(0, sem_idx, values).reshape(k, s, -1)
        rendered = composite(sem_weights, dense)
        latent_dim = latent_kept.shape[1]
        out.latent = rendered[:, :latent_dim]
        out.selection = torch.softmax(rendered[:, latent_dim:], dim=-1)
        out.feature = field.expand_feature(out.latent, sem_weights.sum(dim=-1))
    return out


def _occupied(field, occupancy, positions: torch.Tensor) -> torch.Tensor:
    if occupancy is None:
        return torch.ones(positions.shape[:2], dtype=torch.bool, device=positions.device)
    return occupancy.is_occupied(field.contract(positions.reshape(-1, 3))).reshape(positions.shape[:2])


@torch.no_grad()
def render_image(
    field,
    intrinsics: Intrinsics,
    c2w: np.ndarray | torch.Tensor,
    settings: SamplingSettings,
    occupancy=None,
    chunk: int = 8192,
    width: int | None = None,
    height: int | None = None,
    semantics: bool = True,
    feature: bool = True,
    depth: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Render a whole camera in chunks at any resolution (``width``/``height`` rescale the intrinsics).

    Returns (H, W, ...) tensors: rgb, depth, opacity and, with ``semantics``, latent, selection and
    (with ``feature``) the CLIP-space feature. ``depth`` (H, W) enables depth-guided sampling.
    """
    from ovs3d_ros.core.camera import generate_rays

    if (width is None) != (height is None):
        raise RenderError("render_image: give both width and height, or neither")
    if width is not None:
        if width <= 0 or height <= 0:
            raise RenderError(f"render_image: size must be positive, got {width}x{height}")
        intrinsics = intrinsics.scaled(width, height)
    if chunk <= 0:
        raise RenderError(f"render_image: chunk must be positive, got {chunk}")
    device = next(field.parameters()).device
    origins, directions = generate_rays(intrinsics, c2w, device=device)
    flat_depth = None if depth is None else depth.reshape(-1).to(device)
    pieces: dict[str, list[torch.Tensor]] = {}
    for start in range(0, origins.shape[0], chunk):
        sl = slice(start, start + chunk)
        out = render_rays(
            field,
            origins[sl],
            directions[sl],
            settings,
            depth=None if flat_depth is None else flat_depth[sl],
            occupancy=occupancy,
            semantic_rays=chunk if semantics else 0,
        )
        parts = {"rgb": out.rgb, "depth": out.depth, "opacity": out.opacity}
        if semantics:
            parts.update(latent=out.latent, selection=out.selection)
            if feature:
                parts["feature"] = out.feature
        for key, value in parts.items():
            pieces.setdefault(key, []).append(value)
    h, w = intrinsics.height, intrinsics.width
    return {key: torch.cat(values).reshape(h, w, *values[0].shape[1:]) for key, values in pieces.items()}
