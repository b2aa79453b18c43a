"""Keyframes: selection by pose novelty and sharpness, bounded capacity, coverage-keeping replacement,
and ray sampling for the trainer (recent keyframes favoured, the whole buffer always in play).

Teacher features are computed once, by the caller, when a keyframe is inserted, and stored with it in
fp16. Every keyframe holds out a regular pixel lattice (every ``holdout_every``-th row and column) that
is never trained on; ``holdout_batch`` samples it for an honest running PSNR.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ovs3d_ros.config import KeyframeConfig
from ovs3d_ros.core.camera import generate_rays
from ovs3d_ros.core.frame import Frame, Intrinsics
from ovs3d_ros.core.rare_rays import ColourBins, colour_bins, sample_rare_pixels


class KeyframeError(ValueError):
    """Bad keyframe input or state (the message names the field)."""


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (0-255 scale); low = blurry."""
    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return float(ndimage.laplace(grey).var())


def rotation_angle_deg(r_a: np.ndarray, r_b: np.ndarray) -> float:
    """Angle of the relative rotation between two 3x3 rotation matrices, degrees."""
    cos = (np.trace(r_a.T @ r_b) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))


@dataclass
class Keyframe:
    uid: int  # insertion number, monotonic over the buffer's life
    rgb: torch.Tensor  # (H, W, 3) uint8
    depth: torch.Tensor | None  # (H, W) float32 metres, 0 = none
    pose: np.ndarray  # (4, 4) float64 camera-to-world (optical)
    intrinsics: Intrinsics
    clip: torch.Tensor | None = None  # (S, D, h, w) fp16 unit teacher features
    dino: torch.Tensor | None = None  # (Ht, Wt, Cd) fp16
    sharpness: float = 0.0
    stamp: float = 0.0
    colour_groups: tuple[int, ColourBins] | None = None  # (bins, its pixels by colour), made when first drawn

    def colour_bins(self, bins: int) -> ColourBins:
        """This keyframe's pixels grouped by colour (``rare_rays.colour_bins``), for rare-colour rays."""
        if self.colour_groups is None or self.colour_groups[0] != bins:
            self.colour_groups = (bins, colour_bins(self.rgb.cpu(), bins))
        return self.colour_groups[1]

    def has_depth(self) -> bool:
        """A sensor depth image that measured at least one pixel (0 = no measurement)."""
        return self.depth is not None and bool((self.depth > 0).any())

    def nbytes(self) -> int:
        tensors = [self.rgb, self.depth, self.clip, self.dino]
        groups = self.colour_groups[1].nbytes() if self.colour_groups is not None else 0
        return int(sum(t.numel() * t.element_size() for t in tensors if t is not None)) + groups


@dataclass
class RayBatch:
    origins: torch.Tensor  # (n, 3)
    directions: torch.Tensor  # (n, 3), camera z = 1
    rgb: torch.Tensor  # (n, 3) float in [0, 1]
    depth: torch.Tensor  # (n,) metres, 0 = no measurement
    keyframe_uids: torch.Tensor  # (n,) long, Keyframe.uid of each ray
    pixels: torch.Tensor  # (n, 2) long (u, v)
    clip_targets: torch.Tensor | None = None  # (k, S, D) float32 for the FIRST k rays (k = feature_rays)

    def __len__(self) -> int:
        return int(self.origins.shape[0])


class KeyframeBuffer:
    """Thread-safe keyframe store. ``should_insert`` then ``insert`` (teacher features in between)."""

    def __init__(self, cfg: KeyframeConfig, device: str | torch.device = "cpu"):
        if cfg.capacity < 2:
            raise KeyframeError(f"keyframes.capacity must be >= 2, got {cfg.capacity}")
        if not 0.0 <= cfg.recent_ray_fraction <= 1.0:
            raise KeyframeError(
                f"keyframes.recent_ray_fraction must be in [0, 1], got {cfg.recent_ray_fraction}"
            )
        if cfg.holdout_every < 0 or cfg.holdout_every == 1:
            raise KeyframeError(f"keyframes.holdout_every must be 0 (off) or >= 2, got {cfg.holdout_every}")
        self.cfg = cfg
        self.device = torch.device(device)
        self.keyframes: list[Keyframe] = []  # oldest first
        self.next_uid = 0
        self.evicted = 0
        self._lock = threading.RLock()

    def __len__(self) -> int:
        with self._lock:  # insert appends then evicts: never show the transient capacity + 1
            return len(self.keyframes)

    def snapshot(self) -> list[Keyframe]:
        """The keyframes now in the buffer, oldest first: a list copy taken under the buffer's lock,
        so a reader can iterate it while the training thread inserts and evicts."""
        with self._lock:
            return list(self.keyframes)

    # ------------------------------------------------------------------ selection
    def should_insert(self, frame: Frame) -> tuple[bool, str]:
        """(decision, reason). Novel when, against every kept keyframe, it moved or turned enough."""
        if self.cfg.min_sharpness > 0:
            s = sharpness(frame.rgb)
            if s < self.cfg.min_sharpness:
                return False, f"blurry (sharpness {s:.1f} < {self.cfg.min_sharpness})"
        pose = np.asarray(frame.pose, dtype=np.float64)
        with self._lock:
            for kf in self.keyframes:
                moved = float(np.linalg.norm(pose[:3, 3] - kf.pose[:3, 3]))
                turned = rotation_angle_deg(pose[:3, :3], kf.pose[:3, :3])
                if moved < self.cfg.min_translation_m and turned < self.cfg.min_rotation_deg:
                    return False, f"too close to keyframe {kf.uid} ({moved:.2f} m, {turned:.1f} deg)"
        return True, "novel"

    def _pose_distance(self, a: Keyframe, b: Keyframe) -> float:
        """Translation plus rotation, the rotation in metres via the two selection thresholds' ratio."""
        metres_per_deg = self.cfg.min_translation_m / max(self.cfg.min_rotation_deg, 1e-6)
        return float(np.linalg.norm(a.pose[:3, 3] - b.pose[:3, 3])) + metres_per_deg * rotation_angle_deg(
            a.pose[:3, :3], b.pose[:3, :3]
        )

    def _most_redundant(self) -> int:
        """Index of the keyframe closest to its nearest neighbour in pose space, never the newest."""
        best, best_dist = 0, math.inf
        for i, kf in enumerate(self.keyframes[:-1]):
            nearest = min(self._pose_distance(kf, other) for j, other in enumerate(self.keyframes) if j != i)
            if nearest < best_dist:
                best, best_dist = i, nearest
        return best

    def insert(
        self, frame: Frame, clip: torch.Tensor | None = None, dino: torch.Tensor | None = None
    ) -> Keyframe:
        """Store ``frame`` (validated by the caller) with its teacher features; evict if over capacity."""
        depth = None
        if frame.depth is not None:
            d = np.nan_to_num(frame.depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            depth = torch.from_numpy(np.clip(d, 0.0, None)).to(self.device)
        if clip is not None and clip.ndim != 4:
            raise KeyframeError(f"teacher clip features must be (S, D, h, w), got {tuple(clip.shape)}")
        with self._lock:
            kf = Keyframe(
                uid=self.next_uid,
                rgb=torch.from_numpy(np.ascontiguousarray(frame.rgb)).to(self.device),
                depth=depth,
                pose=np.asarray(frame.pose, dtype=np.float64).copy(),
                intrinsics=frame.intrinsics,
                clip=_stored_clip(clip, self.device),
                dino=None if dino is None else dino.to(self.device, torch.float16),
                sharpness=sharpness(frame.rgb) if self.cfg.min_sharpness > 0 else 0.0,
                stamp=float(frame.stamp),
            )
            self.next_uid += 1
            self.keyframes.append(kf)
            if len(self.keyframes) > self.cfg.capacity:
                self.keyframes.pop(self._most_redundant())
                self.evicted += 1
            return kf

    def remove(self, uids) -> int:
        """Drop the keyframes with these uids (a quarantine); how many were removed."""
        uids = {int(u) for u in uids}
        with self._lock:
            before = len(self.keyframes)
            self.keyframes = [kf for kf in self.keyframes if kf.uid not in uids]
            return before - len(self.keyframes)

    # ------------------------------------------------------------------ memory
    def nbytes(self) -> int:
        with self._lock:
            return sum(kf.nbytes() for kf in self.keyframes)

    def has_features(self) -> bool:
        with self._lock:
            return any(kf.clip is not None for kf in self.keyframes)

    # ------------------------------------------------------------------ ray sampling
    def _is_holdout(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        h = self.cfg.holdout_every
        if h == 0:
            return torch.zeros_like(u, dtype=torch.bool)
        return (u % h == 0) & (v % h == 0)

    def _choose_keyframes(self, n: int, generator: torch.Generator) -> torch.Tensor:
        count = len(self.keyframes)
        n_recent = int(round(n * self.cfg.recent_ray_fraction)) if count > self.cfg.recent_count else 0
        recent = (
            torch.randint(count - self.cfg.recent_count, count, (n_recent,), generator=generator)
            if n_recent
            else torch.zeros(0, dtype=torch.long)
        )
        anywhere = torch.randint(0, count, (n - n_recent,), generator=generator)
        chosen = torch.cat((recent, anywhere))
        return chosen[torch.randperm(n, generator=generator)]

    def sample(self, n: int, generator: torch.Generator, feature_rays: int = 0, rare_rays: int = 0,
               rare_colour_bins: int = 8) -> RayBatch:
        """``n`` training rays (never held-out pixels); CLIP targets for the first ``feature_rays`` rays
        when every keyframe drawn for them has teacher features. The first ``rare_rays`` rays fall on
        pixels drawn by colour rarity (``rare_rays.sample_rare_pixels`` over ``rare_colour_bins`` bins)."""
        return self._sample(n, generator, feature_rays, holdout=False, rare_rays=rare_rays,
                            rare_colour_bins=rare_colour_bins)

    def holdout_batch(self, n: int, generator: torch.Generator) -> RayBatch:
        """``n`` rays on held-out pixels of random keyframes (for the running PSNR)."""
        if self.cfg.holdout_every == 0:
            raise KeyframeError("keyframes.holdout_every is 0: no held-out pixels")
        return self._sample(n, generator, 0, holdout=True)

    def _sample(self, n: int, generator: torch.Generator, feature_rays: int, holdout: bool,
                rare_rays: int = 0, rare_colour_bins: int = 8) -> RayBatch:
        if n <= 0:
            raise KeyframeError(f"ray count must be positive, got {n}")
        with self._lock:
            if not self.keyframes:
                raise KeyframeError("the keyframe buffer is empty")
            slots = self._choose_keyframes(n, generator)
            pixels = torch.zeros(n, 2, dtype=torch.long)
            rgb = torch.zeros(n, 3, device=self.device)
            depth = torch.zeros(n, device=self.device)
            uids = torch.zeros(n, dtype=torch.long)
            k = min(feature_rays, n)
            want_features = k > 0 and all(self.keyframes[int(s)].clip is not None for s in slots[:k].unique())
            clip_targets = None
            used = slots.unique()
            for slot in used.tolist():
                kf = self.keyframes[slot]
                rows = (slots == slot).nonzero().squeeze(1)
                m = rows.numel()
                w, h = kf.intrinsics.width, kf.intrinsics.height
                if holdout:
                    step = self.cfg.holdout_every
                    u = torch.randint(0, (w + step - 1) // step, (m,), generator=generator) * step
                    v = torch.randint(0, (h + step - 1) // step, (m,), generator=generator) * step
                else:
                    u = torch.randint(0, w, (m,), generator=generator)
                    v = torch.randint(0, h, (m,), generator=generator)
                    rare = (rows < rare_rays).nonzero().squeeze(1)
                    if rare.numel():
                        u[rare], v[rare] = sample_rare_pixels(kf.colour_bins(rare_colour_bins), w,
                                                              rare.numel(), generator)
                    # a held-out pixel moves to its right neighbour (left at the image edge)
                    shift = torch.where(u + 1 < w, 1, -1)
                    u = torch.where(self._is_holdout(u, v), u + shift, u)
                pixels[rows, 0], pixels[rows, 1] = u, v
                uids[rows] = kf.uid
                dev_u, dev_v, dev_rows = u.to(self.device), v.to(self.device), rows.to(self.device)
                rgb[dev_rows] = kf.rgb[dev_v, dev_u].float() / 255.0
                if kf.depth is not None:
                    depth[dev_rows] = kf.depth[dev_v, dev_u]
            if want_features:
                clip_targets = _batched_features(self.keyframes, slots[:k], pixels[:k], self.device)
            poses = torch.as_tensor(
                np.stack([self.keyframes[s].pose for s in used.tolist()]), dtype=torch.float32
            )
            intr = [self.keyframes[s].intrinsics for s in used.tolist()]
            camera_index = torch.searchsorted(used, slots)
        origins, directions = generate_rays(
            intr, poses, pixels, camera_indices=camera_index, device=self.device
        )
        return RayBatch(
            origins=origins,
            directions=directions,
            rgb=rgb,
            depth=depth,
            keyframe_uids=uids,
            pixels=pixels,
            clip_targets=clip_targets,
        )

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            frames = []
            for kf in self.keyframes:
                frames.append(
                    {
                        "uid": kf.uid,
                        "rgb": kf.rgb.cpu(),
                        "depth": None if kf.depth is None else kf.depth.cpu(),
                        "pose": torch.from_numpy(kf.pose.copy()),
                        "intrinsics": {
                            k: (list(v) if isinstance(v, tuple) else v)
                            for k, v in dataclasses.asdict(kf.intrinsics).items()
                        },
                        "clip": None if kf.clip is None else kf.clip.cpu(),
                        "dino": None if kf.dino is None else kf.dino.cpu(),
                        "sharpness": float(kf.sharpness),  # plain floats: weights_only loading
                        "stamp": float(kf.stamp),
                    }
                )
            return {"keyframes": frames, "next_uid": self.next_uid, "evicted": self.evicted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            frames = []
            for d in state["keyframes"]:
                intr = dict(d["intrinsics"])
                intr["distortion"] = tuple(intr.get("distortion", ()))
                frames.append(
                    Keyframe(
                        uid=int(d["uid"]),
                        rgb=d["rgb"].to(self.device, torch.uint8),
                        depth=None if d["depth"] is None else d["depth"].to(self.device, torch.float32),
                        pose=d["pose"].numpy().astype(np.float64),
                        intrinsics=Intrinsics(**intr),
                        clip=_stored_clip(d["clip"], self.device),
                        dino=None if d["dino"] is None else d["dino"].to(self.device, torch.float16),
                        sharpness=float(d["sharpness"]),
                        stamp=float(d["stamp"]),
                    )
                )
            next_uid, evicted = int(state["next_uid"]), int(state["evicted"])
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise KeyframeError(f"keyframe state is malformed: {exc!r}") from exc
        with self._lock:
            self.keyframes, self.next_uid, self.evicted = frames, next_uid, evicted


def _stored_clip(clip: torch.Tensor | None, device) -> torch.Tensor | None:
    """CLIP maps as the buffer keeps them: fp16, pixel-major, on the buffer's device."""
    return None if clip is None else pixel_major(clip.to(device, torch.float16))


def pixel_major(clip: torch.Tensor) -> torch.Tensor:
    """The (S, D, h, w) feature map stored pixel-major ((h, w, S, D) in memory), same shape and values.

    A training ray reads all S x D values of a few pixels: pixel-major, each is one contiguous row.
    Channel-major, each value of a pixel sits h*w elements from the next, and the gathers were 40% of
    a semantic training step (measured, 160x120 demo scene, one CPU thread).
    """
    return clip.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)


def bilinear_corners(
    u: torch.Tensor, v: torch.Tensor, width, height, map_w, map_h
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-res pixel indices (m,) -> the 4 map cells around each pixel centre and their weights.

    Returns row-major cell indices (m, 4) long and bilinear weights (m, 4): the rule of
    ``grid_sample(align_corners=False, padding_mode='border')``. Sizes may be numbers or per-pixel (m,)
    tensors, so rays of many keyframes are handled in one pass.
    """
    x = ((u.float() + 0.5) * map_w / width - 0.5).clamp(min=0.0).minimum(torch.as_tensor(map_w - 1.0))
    y = ((v.float() + 0.5) * map_h / height - 0.5).clamp(min=0.0).minimum(torch.as_tensor(map_h - 1.0))
    x0, y0 = x.floor().long(), y.floor().long()
    x1 = (x0 + 1).minimum(torch.as_tensor(map_w - 1))
    y1 = (y0 + 1).minimum(torch.as_tensor(map_h - 1))
    wx, wy = x - x0, y - y0
    index = torch.stack((y0 * map_w + x0, y0 * map_w + x1, y1 * map_w + x0, y1 * map_w + x1), dim=1)
    weight = torch.stack(((1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy), dim=1)
    return index, weight


def _feature_rows(clip: torch.Tensor) -> torch.Tensor:
    """(S, D, h, w) map -> (h * w, S * D) rows: a view of a ``pixel_major`` map (a copy otherwise)."""
    s, d, fh, fw = clip.shape
    return clip.permute(2, 3, 0, 1).reshape(fh * fw, s * d)


def _blend_corners(corners: torch.Tensor, weight: torch.Tensor, scales: int) -> torch.Tensor:
    """(m * 4, S * D) fp16 corner rows and (m, 4) weights -> (m, S, D) float32."""
    m = weight.shape[0]
    # blended in the maps' own precision, then converted: converting the 4x larger corner rows to
    # float32 first was the largest single cost of a semantic step's sampling (memory bound)
    out = torch.bmm(weight[:, None, :].to(corners.dtype), corners.reshape(m, 4, -1)).float()
    return out.reshape(m, scales, -1)


def _bilinear_features(
    clip: torch.Tensor, u: torch.Tensor, v: torch.Tensor, width: int, height: int
) -> torch.Tensor:
    """(S, D, h, w) feature map sampled bilinearly at full-res pixel centres -> (m, S, D) float32.

    Same as ``grid_sample(align_corners=False, padding_mode='border')`` but gathers only the 4
    neighbouring fp16 pixels per ray instead of converting the whole map to float32.
    """
    s, _, fh, fw = clip.shape
    index, weight = bilinear_corners(u.to(clip.device), v.to(clip.device), width, height, fw, fh)
    return _blend_corners(_feature_rows(clip).index_select(0, index.reshape(-1)), weight, s)


def _batched_features(keyframes: list, slots: torch.Tensor, pixels: torch.Tensor, device) -> torch.Tensor:
    """Bilinear CLIP targets (k, S, D) for rays of many keyframes: corner indices and weights in one
    vectorised pass, one gather per keyframe, one blend. (Per-keyframe arithmetic was most of a
    semantic step's sampling cost: ~10 small ops x 36 keyframes.)"""
    used, inverse = slots.unique(return_inverse=True)
    kfs = [keyframes[int(s)] for s in used.tolist()]
    table = torch.tensor(
        [[kf.intrinsics.width, kf.intrinsics.height, kf.clip.shape[3], kf.clip.shape[2]] for kf in kfs]
    )[inverse]
    index, weight = bilinear_corners(pixels[:, 0], pixels[:, 1], *table.unbind(1))
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse, minlength=len(kfs)).tolist()
    index_sorted = index[order].reshape(-1).to(device)
    first = kfs[0].clip
    corners = torch.empty(index_sorted.shape[0], first.shape[0] * first.shape[1], dtype=first.dtype,
                          device=device)
    start = 0
    for kf, count in zip(kfs, counts, strict=True):  # each keyframe's corner rows straight into their place
        part = slice(4 * start, 4 * (start + count))
        torch.index_select(_feature_rows(kf.clip), 0, index_sorted[part], out=corners[part])
        start += count
    blended = _blend_corners(corners, weight[order].to(device), first.shape[0])
    out = torch.empty_like(blended)
    out[order.to(device)] = blended
    return out
