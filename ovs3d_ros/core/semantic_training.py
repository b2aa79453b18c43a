"""Vocabulary-specific training: RDA and FDA as trainer ``extra_losses`` and the data of a refine burst.

The trainer's own losses (RGB, depth, the class-agnostic feature distillation) never need class
names. RDA and FDA do: ``SemanticAlignment(text, ...)`` is a callable the trainer runs every step
(``trainer.extra_losses.append(...)``) for a fixed vocabulary (the paper's offline mode), and
``collect_refine_data`` renders, once and without gradient, what a query's refine burst trains on.

Relevancy maps are computed lazily per keyframe for the current text features and cached (they are
an einsum and a min-max: cheap, but not free at 3 scales x C classes per keyframe).
"""

from __future__ import annotations

import numpy as np
import torch

from ovs3d_ros.config import SemanticConfig
from ovs3d_ros.core import losses
from ovs3d_ros.core.teachers.relevancy import relevancy_maps


def gather_maps(maps: torch.Tensor, pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per-ray values of (S, C, h, w) maps at full-res pixel indices (N, 2) (u, v) -> (N, S, C).

    Nearest map cell: map pixel (i, j) covers full-res pixels [j W/w, (j+1) W/w) x [i H/h, (i+1) H/h).
    """
    s, c, h, w = maps.shape
    u = pixels[:, 0].float() + 0.5
    v = pixels[:, 1].float() + 0.5
    j = (u * w / width).long().clamp(0, w - 1)
    i = (v * h / height).long().clamp(0, h - 1)
    return maps[:, :, i, j].permute(2, 0, 1)


def token_pixels(rows: torch.Tensor, cols: torch.Tensor, grid_hw: tuple[int, int],
                 image_hw: tuple[int, int]) -> torch.Tensor:
    """Pixel 'indices' (N, 2) float (u, v) whose ray (``camera.generate_rays`` adds 0.5) passes
    through the centre of DINO token (row, col): full-res ((col + .5) W / Wt, (row + .5) H / Ht)."""
    ht, wt = grid_hw
    height, width = image_hw
    u = (cols.float() + 0.5) * width / wt - 0.5
    v = (rows.float() + 0.5) * height / ht - 0.5
    return torch.stack([u, v], dim=-1)


def sample_window(grid_hw: tuple[int, int], window: int, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token (rows, cols), flattened row-major, of a random square window of side min(window, grid)."""
    ht, wt = grid_hw
    sh, sw = min(window, ht), min(window, wt)
    top = int(torch.randint(0, ht - sh + 1, (1,), generator=generator))
    left = int(torch.randint(0, wt - sw + 1, (1,), generator=generator))
    rr, cc = torch.meshgrid(torch.arange(top, top + sh), torch.arange(left, left + sw), indexing="ij")
    return rr.reshape(-1), cc.reshape(-1)


class RelevancyCache:
    """Min-max relevancy maps (S, C, h, w) per keyframe for one set of text features."""

    def __init__(self, text: torch.Tensor):
        self.text = text
        self._maps: dict[object, torch.Tensor] = {}

    def get(self, key: object, clip: torch.Tensor) -> torch.Tensor:
        maps = self._maps.get(key)
        if maps is None or maps.device != clip.device:
            maps = relevancy_maps(clip, self.text.to(clip.device)).to(torch.float16)
            self._maps[key] = maps
        return maps

    def prune(self, live_keys) -> None:
        """Forget keyframes that left the buffer."""
        live = set(live_keys)
        for key in [k for k in self._maps if k not in live]:
            del self._maps[key]


FDA_GRADIENT_TARGETS: dict[str, tuple[str, ...] | None] = {
    "all": None,
    "semantic_grid": ("semantic_encoding.",),
}
"""``semantic.fda_gradient`` -> prefixes of the field parameters FDA trains (None: all of them)."""


class _RenderRays(torch.nn.Module):
    """``render_rays`` as a module around the field, so ``torch.func.functional_call`` can swap the
    field's parameters for detached copies during one render."""

    def __init__(self, field: torch.nn.Module):
        super().__init__()
        self.field = field

    def forward(self, *args, **kwargs):
        from ovs3d_ros.core.rendering import render_rays

        return render_rays(self.field, *args, **kwargs)


def render_rays_training_only(field: torch.nn.Module, trainable: tuple[str, ...] | None, *args, **kwargs):
    """``render_rays(field, *args, **kwargs)`` whose outputs carry gradient only into the field
    parameters whose names start with one of ``trainable`` (None: all); the others are used through
    detached copies (same values, so the forward pass is unchanged)."""
    if trainable is None:
        from ovs3d_ros.core.rendering import render_rays

        return render_rays(field, *args, **kwargs)
    frozen = {f"field.{name}": p.detach() for name, p in field.named_parameters()
              if not name.startswith(trainable)}
    return torch.func.functional_call(_RenderRays(field), frozen, args, kwargs, strict=False)


def fda_gradient_targets(sem: SemanticConfig) -> tuple[str, ...] | None:
    try:
        return FDA_GRADIENT_TARGETS[sem.fda_gradient]
    except KeyError:
        raise ValueError(f"semantic.fda_gradient must be one of {sorted(FDA_GRADIENT_TARGETS)}, "
                         f"got {sem.fda_gradient!r}") from None


def fda_from_windows(rendered: torch.Tensor, text: torch.Tensor, dino: torch.Tensor, sem: SemanticConfig,
                     generator: torch.Generator | None = None, colour: torch.Tensor | None = None
                     ) -> dict[str, torch.Tensor]:
    """FDA with the config's weights (rendered (B, T, D), dino (B, T, Cd), ray colours (B, T, 3))."""
    return losses.fda_loss(rendered, text, dino, temperature=sem.temperature, dino_shift=sem.dino_shift,
                           pos_weight=sem.fda_pos_weight, neg_weight=sem.fda_neg_weight,
                           max_pairs=sem.fda_max_pairs, generator=generator, pair_colour=colour,
                           colour_sigma=sem.fda_colour_sigma)



# ----------------------------------------------------------------------------------------------
# Reading the trainer's state (the one place that knows its attribute names)


def keyframe_snapshot(trainer) -> list:
    """The keyframes now in the buffer (a list copy, taken under the buffer's lock)."""
    buffer = trainer.keyframes
    with buffer._lock:
        return list(buffer.keyframes)


def window_rays(kf, window: int, generator: torch.Generator | None, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rays through the token centres of a random DINO window of keyframe ``kf``: (origins (T,3),
    directions (T,3), depth (T,) from the keyframe's depth or 0, dino (T, Cd), colour (T, 3) in [0, 1]
    of the keyframe pixel each ray passes through)."""
    from ovs3d_ros.core.camera import generate_rays

    ht, wt = kf.dino.shape[:2]
    rows, cols = sample_window((ht, wt), window, generator)
    height, width = kf.intrinsics.height, kf.intrinsics.width
    pix = token_pixels(rows, cols, (ht, wt), (height, width))
    origins, directions = generate_rays(kf.intrinsics, kf.pose, pix, device=device)
    u = (pix[:, 0] + 0.5).long().clamp(0, width - 1)
    v = (pix[:, 1] + 0.5).long().clamp(0, height - 1)
    if kf.depth is not None:
        depth = kf.depth[v.to(kf.depth.device), u.to(kf.depth.device)].to(device)
    else:
        depth = torch.zeros(len(rows), device=device)
    dino = kf.dino[rows.to(kf.dino.device), cols.to(kf.dino.device)].to(device)
    colour = kf.rgb[v.to(kf.rgb.device), u.to(kf.rgb.device)].to(device).float() / 255.0
    return origins, directions, depth, dino, colour


def batch_relevancy(cache: RelevancyCache, keyframes: list, uids: torch.Tensor, pixels: torch.Tensor,
                    device: torch.device) -> torch.Tensor | None:
    """(N, S, C) relevancy of each ray's pixel in its keyframe, or None when a keyframe lacks CLIP."""
    by_uid = {kf.uid: kf for kf in keyframes}
    out = None
    for uid in uids.unique().tolist():
        kf = by_uid.get(uid)
        if kf is None or kf.clip is None:
            return None
        rows = (uids == uid).nonzero().squeeze(1)
        maps = cache.get(uid, kf.clip)
        vals = gather_maps(maps, pixels[rows].to(maps.device), kf.intrinsics.height,
                           kf.intrinsics.width).float().to(device)
        if out is None:
            out = torch.zeros(len(uids), *vals.shape[1:], device=device)
        out[rows.to(device)] = vals
    return out


class SemanticAlignment:
    """RDA + FDA for one vocabulary as a trainer ``extra_losses`` callable (the paper's offline mode).

    Returns weighted terms ``{'rda': rda_weight * L_RDA, 'fda': fda_pos_weight * L_pos +
    fda_neg_weight * L_neg}``; a term is absent when its weight is 0 or its inputs are not there yet
    (no CLIP/DINO on the keyframes).
    FDA's gradient reaches only the parameters ``semantic.fda_gradient`` names (default: the semantic
    hash grid; see the config for why).
    """

    def __init__(self, text: torch.Tensor, sem: SemanticConfig, seed: int = 0):
        self.text = text
        self.sem = sem
        self.relevancy = RelevancyCache(text)
        self.generator = torch.Generator().manual_seed(seed)
        self.fda_trainable = fda_gradient_targets(sem)

    def __call__(self, trainer, batch, outputs) -> dict[str, torch.Tensor]:
        from ovs3d_ros.core.rendering import SamplingSettings

        terms: dict[str, torch.Tensor] = {}
        keyframes = keyframe_snapshot(trainer)
        self.relevancy.prune(kf.uid for kf in keyframes)
        text = self.text.to(trainer.device)
        if self.sem.rda_weight > 0 and outputs.feature is not None and outputs.selection is not None:
            k = outputs.feature.shape[0]
            rel = batch_relevancy(self.relevancy, keyframes, batch.keyframe_uids[:k].cpu(),
                                  batch.pixels[:k].cpu(), outputs.feature.device)
            if rel is not None:
                from ovs3d_ros.core.trainer import target_scale_weights

                weights = outputs.selection if batch.clip_targets is None else \
                    target_scale_weights(trainer.cfg, outputs.selection, batch.clip_targets[:k])
                terms["rda"] = self.sem.rda_weight * losses.rda_loss(outputs.feature, text, rel, weights)
        if self.sem.fda_pos_weight > 0 or self.sem.fda_neg_weight > 0:
            with_dino = [kf for kf in keyframes if kf.dino is not None]
            if with_dino:
                picks = torch.randint(0, len(with_dino), (self.sem.fda_windows_per_step,),
                                      generator=self.generator).tolist()
                windows = [window_rays(with_dino[i], self.sem.fda_window, self.generator, trainer.device)
                           for i in picks]
                size = min(w[0].shape[0] for w in windows)  # windows of one size stack
                origins = torch.cat([w[0][:size] for w in windows])
                directions = torch.cat([w[1][:size] for w in windows])
                depth = torch.cat([w[2][:size] for w in windows])
                dino = torch.stack([w[3][:size] for w in windows])
                colour = torch.stack([w[4][:size] for w in windows])
                settings = SamplingSettings.for_training(trainer.cfg)
                out = render_rays_training_only(trainer.field, self.fda_trainable, origins, directions,
                                                settings, depth=depth,
                                                occupancy=getattr(trainer, "occupancy", None),
                                                semantic_rays=origins.shape[0])
                feat = out.feature.reshape(len(windows), size, -1)
                terms["fda"] = fda_from_windows(feat, text, dino, self.sem, self.generator, colour)["fda"]
        return terms


@torch.no_grad()
def collect_refine_data(trainer, text: torch.Tensor, cfg, generator: torch.Generator, chunk: int = 8192):
    """Render, once and without gradient, the rays a refine burst trains on (None without CLIP):
    ``query.refine_rays`` keyframe rays with their relevancy and selection, and ``query.refine_windows``
    DINO windows (when the keyframes carry DINO)."""
    from ovs3d_ros.core.query import RefineData, _render_lock
    from ovs3d_ros.core.rendering import SamplingSettings, render_rays

    keyframes = [kf for kf in keyframe_snapshot(trainer) if kf.clip is not None]
    if not keyframes:
        return None
    device = trainer.device
    settings = SamplingSettings.for_rendering(cfg)
    occupancy = getattr(trainer, "occupancy", None)
    cache = RelevancyCache(text)
    q = cfg.query
    feats, sels, rels = [], [], []
    remaining = q.refine_rays
    while remaining > 0:
        n = min(chunk, remaining)
        batch = trainer.keyframes.sample(n, generator)
        rel = batch_relevancy(cache, keyframes, batch.keyframe_uids, batch.pixels, device)
        if rel is None:  # a keyframe without CLIP was drawn: keep only rays of keyframes with CLIP
            ok = torch.isin(batch.keyframe_uids, torch.tensor([kf.uid for kf in keyframes]))
            if not bool(ok.any()):
                remaining -= n
                continue
            batch = _subset(batch, ok)
            rel = batch_relevancy(cache, keyframes, batch.keyframe_uids, batch.pixels, device)
        with _render_lock(trainer):
            out = render_rays(trainer.field, batch.origins, batch.directions, settings, depth=batch.depth,
                              occupancy=occupancy, semantic_rays=len(batch))
        feats.append(out.feature)
        sels.append(out.selection)
        rels.append(rel)
        remaining -= n
    if not feats:
        return None
    data = RefineData(torch.cat(feats), torch.cat(rels), torch.cat(sels))
    sem = cfg.semantic
    with_dino = [kf for kf in keyframes if kf.dino is not None]
    if with_dino and q.refine_windows > 0 and (sem.fda_pos_weight > 0 or sem.fda_neg_weight > 0):
        wf, wd = [], []
        for i in torch.randint(0, len(with_dino), (q.refine_windows,), generator=generator).tolist():
            origins, directions, depth, dino, _ = window_rays(with_dino[i], sem.fda_window, generator, device)
            with _render_lock(trainer):
                out = render_rays(trainer.field, origins, directions, settings, depth=depth,
                                  occupancy=occupancy, semantic_rays=origins.shape[0])
            wf.append(out.feature)
            wd.append(dino.float())
        size = min(f.shape[0] for f in wf)
        data.window_features = torch.stack([f[:size] for f in wf])
        data.window_dino = torch.stack([d[:size] for d in wd])
    return data


def _subset(batch, keep: torch.Tensor):
    import dataclasses

    fields = {}
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        if f.name == "clip_targets":
            fields[f.name] = None
        elif torch.is_tensor(value) and value.shape[:1] == keep.shape:
            fields[f.name] = value[keep.to(value.device)]
        else:
            fields[f.name] = value
    return type(batch)(**fields)


@torch.no_grad()
def surface_points(trainer, max_points: int, render_side: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """World points on the observed surface with colours: (xyz (N,3) float32, rgb (N,3) uint8).

    Uses ``core/surface.py`` when it provides ``surface_points``; else back-projects each keyframe's
    depth through its pixels: the sensor depth where the keyframe has one (free, and exactly the
    surface the robot saw), else depth rendered at ``render_side`` pixels keeping opaque pixels.
    Colours come from the keyframe images; at most ``max_points`` points, spread over keyframes.
    """
    try:
        from ovs3d_ros.core import surface as surface_mod
    except ImportError:
        surface_mod = None
    if surface_mod is not None and hasattr(surface_mod, "surface_points"):
        xyz, rgb = surface_mod.surface_points(trainer, max_points)
        return np.asarray(xyz, np.float32), np.asarray(rgb, np.uint8)
    from ovs3d_ros.core.camera import camera_directions, pixel_grid
    from ovs3d_ros.core.rendering import SamplingSettings, render_image

    keyframes = keyframe_snapshot(trainer)
    per_kf = max(1, max_points // max(1, len(keyframes)))
    xyz_all, rgb_all = [], []
    for kf in keyframes:
        intr = kf.intrinsics
        full = kf.rgb.cpu().numpy()
        if kf.depth is not None and bool((kf.depth > 0).any()):
            pix = pixel_grid(intr.width, intr.height)
            depth = kf.depth.cpu().numpy().reshape(-1).astype(np.float64)
            ok = np.isfinite(depth) & (depth > 0)
            cam = camera_directions(intr, pix) * depth[:, None]
            colours = full.reshape(-1, 3)
        else:
            scale = min(1.0, render_side / max(intr.width, intr.height))
            small = intr.scaled(max(1, round(intr.width * scale)), max(1, round(intr.height * scale)))
            settings = SamplingSettings.for_rendering(trainer.cfg)
            rendered = render_image(trainer.field, small, kf.pose, settings,
                                    occupancy=getattr(trainer, "occupancy", None), semantics=False)
            depth = rendered["depth"].cpu().numpy().reshape(-1).astype(np.float64)
            ok = rendered["opacity"].cpu().numpy().reshape(-1) > 0.5
            pix = pixel_grid(small.width, small.height)
            cam = camera_directions(small, pix) * depth[:, None]
            u = np.clip(((pix[:, 0] + 0.5) / scale).astype(np.int64), 0, intr.width - 1)
            v = np.clip(((pix[:, 1] + 0.5) / scale).astype(np.int64), 0, intr.height - 1)
            colours = full[v, u]
        pts = cam @ kf.pose[:3, :3].T + kf.pose[:3, 3]
        idx = np.flatnonzero(ok)
        if len(idx) > per_kf:
            idx = idx[np.linspace(0, len(idx) - 1, per_kf).astype(np.int64)]
        xyz_all.append(pts[idx].astype(np.float32))
        rgb_all.append(colours[idx].astype(np.uint8))
    if not xyz_all:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    return np.concatenate(xyz_all), np.concatenate(rgb_all)
