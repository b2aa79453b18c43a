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

import contextlib
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ovs3d_ros.config import Config
from ovs3d_ros.core.frame import Intrinsics

# Entered around each chunk's field evaluation by the whole-image renderers: a query passes
# ``Trainer.exclusive`` so that training steps (and control requests) run between chunks of a long render
# instead of waiting for the whole image.
ChunkGuard = Callable[[], AbstractContextManager]

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


def with_importance_edges(edges: torch.Tensor, weights: torch.Tensor, settings: SamplingSettings,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, S+1) edges plus ``settings.importance_samples`` drawn from the (N, S) coarse ``weights``
    (``sample_pdf``), sorted: the second pass of ``render_rays`` and ``march_weights``."""
    fine = sample_pdf(edges, weights, settings.importance_samples, settings.jitter, generator)
    return torch.sort(torch.cat((edges, fine), dim=-1), dim=-1).values


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
    feature: bool = True,
) -> RenderOutputs:
    """Render (N, 3) rays (directions with camera z = 1, so t is optical depth).

    ``depth`` (N,) metres, 0/NaN = none: rays with a valid depth use depth-guided sampling.
    ``occupancy`` (an ``OccupancyGrid``) skips samples in empty cells, except inside the depth window.
    The first ``semantic_rays`` rays also get latent, feature and selection (weights detached when
    ``field.cfg.detach_semantic_weights``); ``feature=False`` leaves their CLIP-space feature out (a
    caller that labels the latents, ``query.classify_latent``, never needs the (N, clip_dim) expansion).
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
                edges = with_importance_edges(edges, weights, settings, generator)
    return render_edges(field, origins, directions, edges, lo, hi, occupancy, semantic_rays, feature=feature)


def render_edges(
    field,
    origins: torch.Tensor,
    directions: torch.Tensor,
    edges: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    occupancy=None,
    semantic_rays: int = 0,
    sample_mask: torch.Tensor | None = None,
    feature: bool = True,
) -> RenderOutputs:
    """Render (N, 3) rays through given sorted (N, S+1) interval edges (the second half of ``render_rays``).

    Samples inside ``[lo, hi]`` (N,) are always evaluated; the others only in occupied cells
    (``occupancy`` None = all). ``sample_mask`` (N, S) bool: samples outside it have zero density
    whatever the field says there. ``semantic_rays`` and ``feature`` as in ``render_rays``.
    """
    n = origins.shape[0]
    device = origins.device
    t_mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    deltas = edges.diff(dim=-1) * directions.norm(dim=-1, keepdim=True)
    positions = origins[:, None] + directions[:, None] * t_mid[..., None]
    in_window = (t_mid >= lo[:, None]) & (t_mid <= hi[:, None])
    keep = _occupied(field, occupancy, positions) | in_window
    if sample_mask is not None:
        keep = keep & sample_mask
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
        if feature:
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
    chunk_guard: ChunkGuard | None = None,
) -> dict[str, torch.Tensor]:
    """Render a whole camera in chunks at any resolution (``width``/``height`` rescale the intrinsics).

    Returns (H, W, ...) tensors: rgb, depth, opacity and, with ``semantics``, latent, selection and
    (with ``feature``) the CLIP-space feature. ``depth`` (H, W) enables depth-guided sampling.
    ``chunk_guard`` (see ``ChunkGuard``) is entered around every chunk's field evaluation.
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
    guard = chunk_guard or contextlib.nullcontext
    pieces: dict[str, list[torch.Tensor]] = {}
    for start in range(0, origins.shape[0], chunk):
        sl = slice(start, start + chunk)
        with guard():
            out = render_rays(
                field,
                origins[sl],
                directions[sl],
                settings,
                depth=None if flat_depth is None else flat_depth[sl],
                occupancy=occupancy,
                semantic_rays=chunk if semantics else 0,
                feature=feature,
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


# ------------------------------------------------------------------------------------------ surface-guided
# After training the density sits on a thin surface, so a query mask does not need a training-style march
# (uniform + importance samples along the whole ray). ``render_image_surface`` finds the surface once at
# low resolution with the reference renderer, then spends a handful of samples per full-resolution ray in
# windows around the depths of the low-resolution neighbourhood. Rays whose windows found nothing although
# their neighbourhood is opaque fall back to the reference renderer, so a miss costs time, never a label.

def _parts(out: RenderOutputs, semantics: bool, feature: bool) -> dict[str, torch.Tensor]:
    parts = {"rgb": out.rgb, "depth": out.depth, "opacity": out.opacity}
    if semantics:
        parts.update(latent=out.latent, selection=out.selection)
        if feature:
            parts["feature"] = out.feature
    return parts


def median_depth(weights: torch.Tensor, t_mid: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """(N, S) weights and sample depths -> (N,) depth where the ray's opacity reaches half its total.

    Unlike the mean (``sum w t / sum w``) it is a depth some surface is at: a ray split between a faint
    halo in front and a wall behind has its mean in the free space between them.
    """
    cum = torch.cumsum(weights, dim=-1)
    idx = torch.searchsorted(cum, (0.5 * opacity)[:, None].contiguous()).clamp(max=t_mid.shape[1] - 1)
    return t_mid.gather(1, idx).squeeze(1)


MARCH_SEGMENT = 16
"""Samples per step of ``march_weights``: the rays still transparent after each step go on."""
MARCH_MIN_TRANSMITTANCE = 1e-4
"""``march_weights`` stops a ray once this little light gets through (weights behind it are below it)."""


def _marched_densities(
    field, origins: torch.Tensor, directions: torch.Tensor, edges: torch.Tensor, occupancy, segment: int,
    max_optical_depth: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, S) densities, sample depths and interval lengths of sorted (N, S+1) ``edges``, evaluated
    ``segment`` samples at a time and only for the rays whose optical depth so far is below
    ``max_optical_depth`` (zero behind where a ray stopped)."""
    t_mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    deltas = edges.diff(dim=-1) * directions.norm(dim=-1, keepdim=True)
    sigmas = torch.zeros_like(t_mid)
    optical_depth = torch.zeros(origins.shape[0], device=origins.device)
    for start in range(0, t_mid.shape[1], segment):
        rows = (optical_depth < max_optical_depth).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        cols = slice(start, start + segment)
        positions = origins[rows, None] + directions[rows, None] * t_mid[rows, cols, None]
        part, _, _ = _densities(field, positions, _occupied(field, occupancy, positions))
        sigmas[rows, cols] = part
        optical_depth[rows] += (part * deltas[rows, cols]).sum(dim=-1)
    return sigmas, t_mid, deltas


def march_weights(field, origins: torch.Tensor, directions: torch.Tensor, settings: SamplingSettings,
                  occupancy=None, segment: int = MARCH_SEGMENT,
                  min_transmittance: float = MARCH_MIN_TRANSMITTANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, S) compositing weights and sample depths of ``render_rays`` (no depth guide, no colour or
    semantics), with early ray termination: samples are evaluated ``segment`` at a time along the
    rays, and a ray stops once its transmittance is below ``min_transmittance``, in the uniform pass
    and again in the final one (uniform + importance samples). Every weight it leaves out is below
    ``min_transmittance``; the importance samples may differ a little from ``render_rays``'s, which
    also places some behind a stopped ray. Why: the surface renderer's depth pass needs many uniform
    samples to find thin objects (``SurfaceSettings.depth_pass_samples``), and most of them lie behind
    the first surface (a desk seen from 1 m under a 7.5 m far plane).
    """
    n, device = origins.shape[0], origins.device
    max_optical_depth = -math.log(min_transmittance)
    edges = stratified_edges(torch.full((n,), settings.near, device=device),
                             torch.full((n,), settings.far, device=device), settings.uniform_samples,
                             settings.jitter)
    if settings.importance_samples > 0:
        sigmas, _, deltas = _marched_densities(field, origins, directions, edges, occupancy, segment,
                                               max_optical_depth)
        edges = with_importance_edges(edges, render_weights(sigmas, deltas), settings)
    sigmas, t_mid, deltas = _marched_densities(field, origins, directions, edges, occupancy, segment,
                                               max_optical_depth)
    return render_weights(sigmas, deltas), t_mid


@torch.no_grad()
def render_surface_depth(
    field, intrinsics: Intrinsics, c2w, settings: SamplingSettings, occupancy=None, chunk: int = 8192,
    chunk_guard: ChunkGuard | None = None, march: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Median depth and opacity, (H, W) each, without semantics: ``march_weights`` (early termination),
    or with ``march=False`` the reference ``render_rays`` it is checked against."""
    from ovs3d_ros.core.camera import generate_rays

    device = next(field.parameters()).device
    origins, directions = generate_rays(intrinsics, c2w, device=device)
    guard = chunk_guard or contextlib.nullcontext
    depth, opacity = [], []
    for start in range(0, origins.shape[0], chunk):
        o, d = origins[start:start + chunk], directions[start:start + chunk]
        with guard():
            if march:
                weights, t_mid = march_weights(field, o, d, settings, occupancy)
            else:
                out = render_rays(field, o, d, settings, occupancy=occupancy)
                weights, t_mid = out.weights, out.t_mid
        opacity.append(weights.sum(dim=-1))
        depth.append(median_depth(weights, t_mid, opacity[-1]))
    shape = (intrinsics.height, intrinsics.width)
    return torch.cat(depth).reshape(shape), torch.cat(opacity).reshape(shape)


def neighbourhood_depths(
    depth: torch.Tensor, opacity: torch.Tensor, height: int, width: int, min_opacity: float = 0.1,
    support: int = 3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per full-resolution pixel, what a low-resolution render says about its surface.

    Args:
        depth, opacity: (h, w) low-resolution surface depth (``median_depth``) and opacity.
    Returns six (height * width,) tensors, row-major: the interpolated surface depth, the min and max
    surface depth over the 3x3 low-resolution neighbourhood of the nearest low-resolution pixel, the
    max opacity over it, whether it has any surface, and ``error``: a bound (metres) on the
    interpolation error, inf where a neighbour has no surface.
    The interpolation is bilinear in inverse depth, which is exact for a plane (1/depth is affine in
    the image); ``error`` comes from the largest second difference of inverse depth in the
    neighbourhood (0 on a plane, large at a depth edge): bilinear error <= |second difference| / 8,
    and d(depth) = depth^2 d(1/depth). Pixels below ``min_opacity`` have no surface.
    ``support`` 2: the neighbourhood is instead the 2x2 low-resolution pixels the bilinear interpolation
    of the pixel uses (the cell its centre falls in; border cells repeat the border pixels). A depth
    edge between two low-resolution pixels then flags the full-resolution pixels between their centres,
    not the three low-resolution pixels around each: at 1/8 resolution that is what makes half of a
    160x120 image "edge" pixels with three windows each.
    """
    valid = opacity > min_opacity
    inv = torch.where(valid, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    size = (height, width)

    def up(x: torch.Tensor, mode: str) -> torch.Tensor:
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        return F.interpolate(x[None, None], size=size, mode=mode, **kwargs)[0, 0].reshape(-1)

    def pool_max(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x[None, None], 3, stride=1, padding=1)[0, 0]

    if support == 2:
        pool_max, up_nearest = _cell_max, _cell_lookup(depth.shape, size)
        up_any = up

        def up(x: torch.Tensor, mode: str) -> torch.Tensor:
            return up_nearest(x) if mode == "nearest" else up_any(x, mode)
    elif support != 3:
        raise RenderError(f"neighbourhood_depths: support must be 2 or 3, got {support}")
    vf = valid.float()
    weight = up(vf, "bilinear")
    centre_inv = up(inv, "bilinear") / weight.clamp_min(1e-6)
    big = torch.finfo(depth.dtype).max
    surf = torch.where(valid, depth, torch.zeros_like(depth))
    dmax = up(pool_max(torch.where(valid, surf, torch.full_like(surf, -big))), "nearest")
    dmin = -up(pool_max(torch.where(valid, -surf, torch.full_like(surf, -big))), "nearest")
    any_valid = up(pool_max(vf), "nearest") > 0
    all_valid = up(-pool_max(-vf), "nearest") > 0
    near_opacity = up(pool_max(opacity), "nearest")
    curvature = up(pool_max(torch.maximum(_second_difference(inv, 1), _second_difference(inv, 0))), "nearest")
    centre = torch.where(weight > 0, 1.0 / centre_inv.clamp_min(1e-6), dmin)
    bound = curvature / 8.0 * dmax * dmax
    if support == 2:
        # within one cell the interpolated depth lies between the cell's depths, so it is off by at most
        # their range wherever the surface does not bulge out between the samples (a bulge narrower
        # than a low-resolution pixel is invisible to the curvature test too); the second differences
        # reach one pixel beyond the cell and would flag the cells next to every depth edge as well
        bound = torch.minimum(bound, dmax - dmin)
    error = torch.where(all_valid, bound, torch.full_like(centre, float("inf")))
    zero = torch.zeros_like(centre)
    return (torch.where(any_valid, centre, zero), torch.where(any_valid, dmin, zero),
            torch.where(any_valid, dmax, zero), near_opacity, any_valid, error)


def _cell_max(x: torch.Tensor) -> torch.Tensor:
    """(h, w) -> (h + 1, w + 1): the max over each 2x2 cell of low-resolution pixels, cell (i, j) spanning
    pixels i-1..i, j-1..j (replicated at the border)."""
    padded = F.pad(x[None, None], (1, 1, 1, 1), mode="replicate")
    return F.max_pool2d(padded, 2, stride=1)[0, 0]


def _cell_lookup(low: torch.Size, size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """For (h + 1, w + 1) per-cell values (``_cell_max``), the value of each full-resolution pixel's cell
    (the one its centre falls in, as ``F.interpolate(..., "bilinear", align_corners=False)`` sees it),
    flat (height * width,)."""
    (h, w), (height, width) = low, size

    def cell(n_low: int, n_full: int) -> torch.Tensor:
        centre = (torch.arange(n_full, dtype=torch.float64) + 0.5) * n_low / n_full - 0.5
        return (centre.floor().long() + 1).clamp(0, n_low)

    rows, cols = cell(h, height), cell(w, width)
    return lambda cells: cells[rows.to(cells.device)][:, cols.to(cells.device)].reshape(-1)


def _second_difference(x: torch.Tensor, dim: int) -> torch.Tensor:
    """|x[i-1] + x[i+1] - 2 x[i]| along ``dim`` of an (h, w) tensor; border values repeat their inner
    neighbour's (a replicated border would fake a kink at the image edge); 0 below 3 samples."""
    n = x.shape[dim]
    if n < 3:
        return torch.zeros_like(x)
    inner = (x.narrow(dim, 0, n - 2) + x.narrow(dim, 2, n - 2) - 2 * x.narrow(dim, 1, n - 2)).abs()
    return torch.cat((inner.narrow(dim, 0, 1), inner, inner.narrow(dim, n - 3, 1)), dim=dim)


def window_edges(centres: torch.Tensor, half: torch.Tensor, n: int, near: float) -> torch.Tensor:
    """(N, K) window centres and (N, K) half widths -> (N, K * (n + 1)) sorted edges, n even intervals
    per window (windows may overlap; the gaps between them become single long intervals)."""
    frac = torch.linspace(-1.0, 1.0, n + 1, device=centres.device, dtype=centres.dtype)
    edges = (centres[..., None] + half[..., None] * frac).clamp_min(near)
    return torch.sort(edges.reshape(centres.shape[0], -1), dim=-1).values


def surface_windows(
    centre: torch.Tensor, dmin: torch.Tensor, dmax: torch.Tensor, error: torch.Tensor, half: float,
    tolerance: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where to put a ray's samples, from its neighbourhood depths (all (N,), see ``neighbourhood_depths``).

    Returns ``smooth`` (N,) bool (interpolation error <= ``tolerance`` x ``half``: one window around
    ``centre`` holds the surface) and, for the other rays, three windows of half width ``half``,
    centres (N, 3):
    around the front (dmin), the interpolated and the back (dmax) depth, since a ray at a depth edge
    may see either side of it.
    """
    smooth = error <= tolerance * half
    centres = torch.stack((dmin, centre, dmax), dim=-1)
    return smooth, centres, torch.full_like(centres, half)


def _render_windows(
    field, origins: torch.Tensor, directions: torch.Tensor, centres: torch.Tensor, halves: torch.Tensor,
    n: int, span_samples: int, front_samples: int, near: float, occupancy, semantics: bool, feature: bool,
) -> dict[str, torch.Tensor]:
    """Render (N, 3) rays in K windows (``centres``, ``halves`` (N, K)) of ``n`` intervals each.

    ``span_samples`` spread over [first window, last window] and ``front_samples`` over [near, first
    window] are evaluated only in occupied cells (the reference's empty-space skipping); window samples
    always. Returns ``_parts`` plus ``front`` (N,): the weight the front samples found.
    """
    windows = window_edges(centres, halves, n, near)
    lo, hi = windows[:, 0], windows[:, -1]
    edges = windows
    if span_samples > 0:
        # a ray at a depth edge may see a surface between the front and back windows (a floor
        # receding behind an object)
        span = stratified_edges(lo, torch.maximum(hi, lo + 1e-3), span_samples, False)
        edges = torch.sort(torch.cat((edges, span), dim=-1), dim=-1).values
    if front_samples > 0:
        # in front of the windows: what the depth pass could not see (an object thinner than its
        # pixels); rays where these find weight are redone by the reference
        near_t = torch.full_like(lo, near)
        front = stratified_edges(near_t, torch.maximum(lo, near_t + 1e-3), front_samples, False)
        edges = torch.sort(torch.cat((front, edges), dim=-1), dim=-1).values
    mask = None
    if span_samples > 0 or front_samples > 0 or centres.shape[1] > 1:
        # between windows only occupied cells count: one sample across a long gap must not turn an
        # unoccupied faint halo into a surface
        t_mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
        in_windows = ((t_mid[:, :, None] >= (centres - halves)[:, None]) &
                      (t_mid[:, :, None] <= (centres + halves)[:, None])).any(dim=-1)
        positions = origins[:, None] + directions[:, None] * t_mid[..., None]
        mask = in_windows | _occupied(field, occupancy, positions)
    out = render_edges(field, origins, directions, edges, lo, hi,
                       semantic_rays=origins.shape[0] if semantics else 0, sample_mask=mask, feature=feature)
    parts = _parts(out, semantics, feature)
    parts["front"] = (out.weights * (out.t_mid < lo[:, None])).sum(dim=-1)
    return parts


@dataclass(frozen=True)
class SurfaceSettings:
    """Knobs of ``render_image_surface`` (see ``QueryConfig``)."""

    downsample: int = 8          # the depth pass renders 1/downsample of each side
    window_m: float = 0.15       # half width of a sample window (metres along the optical axis)
    window_samples: int = 2      # intervals per window at a depth edge (3 windows per ray)
    smooth_samples: int = 3      # intervals of the one window of a smooth ray (10 cm apart, odd: one
    #                              sample at the interpolated surface itself)
    fallback_opacity: float = 0.5  # fine opacity below this x the neighbourhood's -> reference renderer
    front_samples: int = 0       # occupancy-skipped samples between near and the first window
    span_samples: int = 4        # occupancy-skipped samples across [first window, last window]
    fallback_front: float = 0.1  # weight found by the front samples above this -> reference renderer
    smooth_tolerance: float = 0.5  # a ray is smooth when its interpolation error bound <= this x window_m
    depth_pass_samples: int = 0  # uniform samples per ray of the low-resolution depth pass (0: the
    #                              settings' own); see QueryConfig.mask_depth_pass_samples
    min_short_side: int = 0      # the depth pass's short side is at least this (downsample shrinks);
    #                              see QueryConfig.mask_depth_min_short_side
    neighbourhood: int = 3       # low-resolution pixels per side a ray's windows come from (3: 3x3
    #                              around the nearest, 2: the bilinear cell; see neighbourhood_depths).
    #                              2 measured 18 % fewer samples, 11 % less time and -1.1 paper mIoU
    #                              on 4 held-out 160x120 room views (fallbacks doubled): not the default

    def validate(self) -> None:
        if self.neighbourhood not in (2, 3):
            raise RenderError(f"surface rendering needs neighbourhood 2 or 3, got {self.neighbourhood}")
        if self.downsample < 1 or min(self.window_samples, self.smooth_samples) < 1 or not self.window_m > 0:
            raise RenderError(f"surface rendering needs downsample >= 1, window_samples >= 1 and "
                              f"window_m > 0, got {self}")
        if self.depth_pass_samples < 0 or self.min_short_side < 0:
            raise RenderError(f"surface rendering needs depth_pass_samples >= 0 and min_short_side >= 0, "
                              f"got {self}")


def depth_pass_size(width: int, height: int, downsample: int, min_short_side: int = 0) -> tuple[int, int]:
    """(w, h) of the surface renderer's depth pass: each side divided by ``downsample`` (rounded up),
    except that the divisor shrinks (never below 1) while the short side would fall under
    ``min_short_side``: a depth-pass pixel wider than an object can step over it, and the windows of
    every pixel around it then sample only the surface behind (a 6 cm bottle at 160x120 is ~8 px wide,
    one pixel of a 1/8 pass)."""
    if min_short_side > 0:
        downsample = max(1, min(downsample, min(width, height) // min_short_side))
    return max(1, -(-width // downsample)), max(1, -(-height // downsample))


@dataclass
class _SurfaceGuess:
    """Per full-resolution pixel (flat, row-major), where ``render_image_surface`` puts its samples."""

    centre: torch.Tensor        # (N,) interpolated surface depth
    dmin: torch.Tensor          # (N,) nearest surface in the neighbourhood
    dmax: torch.Tensor          # (N,) farthest surface in the neighbourhood
    near_opacity: torch.Tensor  # (N,) max opacity of the neighbourhood
    any_valid: torch.Tensor     # (N,) bool: some surface in the neighbourhood
    error: torch.Tensor         # (N,) bound on the interpolation error (m)
    force: torch.Tensor         # (N,) bool: rendered by the reference whatever the windows find


def _surface_guess(field, intrinsics: Intrinsics, c2w, settings: SamplingSettings, surface: SurfaceSettings,
                   depth: torch.Tensor | None, occupancy, chunk: int, chunk_guard) -> _SurfaceGuess:
    """The surface of each pixel from a keyframe's measured ``depth`` (H, W) or a low-resolution pass."""
    h, w = intrinsics.height, intrinsics.width
    if depth is not None:
        # the measured depth is the depth pass at full resolution: its 3x3 neighbourhood still says
        # which pixels sit at a depth edge, where the field's blurred silhouette may be on either side
        measured = depth.reshape(h, w).to(next(field.parameters()).device).float()
        valid = torch.isfinite(measured) & (measured > settings.near)
        measured = torch.where(valid, measured, torch.zeros_like(measured))
        parts = neighbourhood_depths(measured, valid.float(), h, w, min_opacity=0.5)
        return _SurfaceGuess(*parts, force=~valid.reshape(-1))  # no measurement: the reference renders it
    lw, lh = depth_pass_size(w, h, surface.downsample, surface.min_short_side)
    pass_settings = settings if surface.depth_pass_samples <= 0 else \
        replace(settings, uniform_samples=surface.depth_pass_samples)
    coarse_depth, coarse_opacity = render_surface_depth(
        field, intrinsics.scaled(lw, lh), c2w, pass_settings, occupancy=occupancy, chunk=chunk,
        chunk_guard=chunk_guard)
    parts = neighbourhood_depths(coarse_depth, coarse_opacity, h, w, support=surface.neighbourhood)
    return _SurfaceGuess(*parts, force=torch.zeros_like(parts[4]))


def _scatter_into(flat: dict[str, torch.Tensor], n: int, idx: torch.Tensor, parts: dict[str, torch.Tensor]):
    """Write ``parts`` (rows of the rays ``idx``) into the (n, ...) outputs in place (allocated on first
    use): an out-of-place ``index_copy`` would copy every whole output once per chunk."""
    for key, value in parts.items():
        if key not in flat:
            flat[key] = value.new_zeros(n, *value.shape[1:])
        flat[key].index_copy_(0, idx, value.to(flat[key].dtype))


@torch.no_grad()
def render_image_surface(
    field,
    intrinsics: Intrinsics,
    c2w: np.ndarray | torch.Tensor,
    settings: SamplingSettings,
    surface: SurfaceSettings = SurfaceSettings(),
    occupancy=None,
    chunk: int = 8192,
    width: int | None = None,
    height: int | None = None,
    semantics: bool = True,
    feature: bool = True,
    depth: torch.Tensor | None = None,
    chunk_guard: ChunkGuard | None = None,
) -> dict[str, torch.Tensor]:
    """``render_image``'s outputs (H, W, ...) from a few samples per ray around the surface.

    The surface comes from ``depth`` (H, W) when given (a keyframe's measured depth; 0/NaN = none,
    those pixels use the reference), else from a reference render (no semantics) at
    1/``surface.downsample`` resolution. Also returns ``fallback`` (H, W) bool: the rays rendered by the
    reference ``render_rays`` because their windows found too little opacity.
    """
    from ovs3d_ros.core.camera import generate_rays

    surface.validate()
    if (width is None) != (height is None):
        raise RenderError("render_image_surface: give both width and height, or neither")
    if width is not None:
        intrinsics = intrinsics.scaled(width, height)
    h, w = intrinsics.height, intrinsics.width
    device = next(field.parameters()).device
    guess = _surface_guess(field, intrinsics, c2w, settings, surface, depth, occupancy, chunk, chunk_guard)
    origins, directions = generate_rays(intrinsics, c2w, device=device)
    smooth, centres, halves = surface_windows(guess.centre, guess.dmin, guess.dmax, guess.error,
                                              surface.window_m, surface.smooth_tolerance)
    # rays with no surface in their neighbourhood: windows at the far plane (the reference sees
    # nothing before it either, or it falls back below)
    centres = torch.where(guess.any_valid[:, None], centres, torch.full_like(centres, settings.far))
    # smooth rays (most of an image): one window around the interpolated depth; rays at a depth edge:
    # three windows plus span samples. Grouping costs one host sync per group and image.
    groups = (
        (smooth.nonzero().squeeze(1), centres[:, 1:2], torch.full_like(centres[:, 1:2], surface.window_m),
         surface.smooth_samples, 0),
        ((~smooth).nonzero().squeeze(1), centres, halves, surface.window_samples, surface.span_samples),
    )
    guard = chunk_guard or contextlib.nullcontext
    fine_chunk = max(1, chunk * 4)  # a few samples per ray instead of dozens: bigger chunks, same memory
    flat: dict[str, torch.Tensor] = {}
    for idx_all, g_centres, g_halves, n, span in groups:
        for start in range(0, idx_all.shape[0], fine_chunk):
            idx = idx_all[start:start + fine_chunk]
            with guard():
                parts = _render_windows(field, origins[idx], directions[idx], g_centres[idx], g_halves[idx],
                                        n, span, surface.front_samples, settings.near, occupancy, semantics,
                                        feature)
            _scatter_into(flat, origins.shape[0], idx, parts)
    front = flat.pop("front")
    fallback = (flat["opacity"] < surface.fallback_opacity * guess.near_opacity) | guess.force | (
        front > surface.fallback_front)
    redo = fallback.nonzero().squeeze(1)  # one host sync per image, not per chunk
    for start in range(0, redo.shape[0], chunk):
        idx = redo[start:start + chunk]
        with guard():
            out = render_rays(field, origins[idx], directions[idx], settings, occupancy=occupancy,
                              semantic_rays=idx.shape[0] if semantics else 0, feature=feature)
        _scatter_into(flat, origins.shape[0], idx, _parts(out, semantics, feature))
    result = {key: value.reshape(h, w, *value.shape[1:]) for key, value in flat.items()}
    result["fallback"] = fallback.reshape(h, w)
    return result
