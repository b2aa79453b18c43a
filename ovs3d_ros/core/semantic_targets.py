"""Where RDA and FDA read their targets from the keyframe buffer: relevancy maps at each ray's pixel
(the RDA target), rays through the token centres of a DINO window (the FDA target), and the pixel
geometry that ties feature maps to rays. Shared by the training-time alignment losses
(``semantic_alignment``) and a query's refine burst (``refine_data``).

Relevancy maps are computed lazily per keyframe for the current text features and cached (they are
an einsum and a min-max: cheap, but not free at 3 scales x C classes per keyframe).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ovs3d_ros.config import Config
from ovs3d_ros.core import losses
from ovs3d_ros.core.camera import generate_rays
from ovs3d_ros.core.guided_filter import guided_filter
from ovs3d_ros.core.teachers.relevancy import relevancy_maps


def colour_guided_maps(clip: torch.Tensor, rgb: np.ndarray, radius_fraction: float, eps: float
                       ) -> torch.Tensor:
    """(S, D, h, w) unit CLIP maps guided-filtered under the frame's colours ``rgb`` (H, W, 3 uint8)
    area-resized to (h, w), one scale at a time, renormalised; the same maps when off
    (``semantic.target_colour_filter_radius``). Window radius ``radius_fraction`` x min(h, w) cells,
    at least one."""
    if radius_fraction <= 0:
        return clip
    s, d, h, w = clip.shape
    radius = max(1, round(radius_fraction * min(h, w)))
    colours = torch.from_numpy(np.ascontiguousarray(rgb)).to(clip.device).permute(2, 0, 1).float() / 255.0
    guide = F.interpolate(colours[None], size=(h, w), mode="area")[0]
    out = torch.stack([guided_filter(guide, clip[k].float(), radius, eps) for k in range(s)])
    return F.normalize(out, dim=1).to(clip.dtype)


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


def window_rays(kf, window: int, generator: torch.Generator | None, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rays through the token centres of a random DINO window of keyframe ``kf``: (origins (T,3),
    directions (T,3), depth (T,) from the keyframe's depth or 0, dino (T, Cd), colour (T, 3) in [0, 1]
    of the keyframe pixel each ray passes through)."""
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


def scale_extremes(divisors) -> tuple[int, int]:
    """(finest, coarsest) indices of the CLIP patch scales: the largest image divisor gives the smallest
    patch, the smallest divisor the largest, in whatever order ``teacher.clip.scale_divisors`` lists them."""
    order = sorted(range(len(divisors)), key=lambda k: divisors[k])
    return order[-1], order[0]


def target_scale_weights(cfg: Config, selection: torch.Tensor, clip_targets: torch.Tensor) -> torch.Tensor:
    """(N, S) scale weights of the feature rays' targets (``semantic.fine_scale_agreement``)."""
    finest, coarsest = scale_extremes(cfg.teacher.clip.scale_divisors)
    return losses.scale_mix_weights(selection, clip_targets[:len(selection)],
                                    cfg.semantic.fine_scale_agreement, finest, coarsest)


def feature_target_weights(cfg: Config, selection: torch.Tensor, clip_targets: torch.Tensor) -> torch.Tensor:
    """(N, S) weights of the feature loss's target: ``target_scale_weights`` minus
    ``semantic.target_surround_weight`` on the coarsest scale (``losses.surround_subtracted_weights``).
    RDA keeps ``target_scale_weights``: its relevancy mix must stay a convex combination."""
    _finest, coarsest = scale_extremes(cfg.teacher.clip.scale_divisors)
    return losses.surround_subtracted_weights(target_scale_weights(cfg, selection, clip_targets), coarsest,
                                              cfg.semantic.target_surround_weight)
