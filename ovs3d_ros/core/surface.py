"""Points on the observed surface, from the keyframe cameras.

``surface_points`` (the query's cloud): each keyframe's sensor depth back-projected through its
pixels, or the field's depth rendered at low resolution where a keyframe has none.
``extract_surface``: render depth from the keyframe cameras at reduced resolution, back-project
opaque pixels, fuse, voxel-downsample (open3d, imported here only) and cap.

Keyframes with a depth image are rendered with depth-guided sampling around it (a few samples per
ray instead of a full march; the rendered depth is still the field's). The semantics side labels
these points with ``field.semantic_at(xyz)`` and ``field.expand_feature``.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ovs3d_ros.core.camera import camera_directions, generate_rays, pixel_grid
from ovs3d_ros.core.field_guard import exclusive
from ovs3d_ros.core.rendering import ChunkGuard, SamplingSettings, render_surface_depth
from ovs3d_ros.core.request_budget import chunk_rays


def plausible_point_mask(xyz: np.ndarray, center: np.ndarray, max_distance_m: float) -> np.ndarray:
    """(N,) bool: finite points within ``max_distance_m`` of ``center``.

    The query path applies it before the voxel downsample: one poisoned keyframe (a 1e8 m pose, a
    3e38 m depth) otherwise puts points so far apart that their voxel indices overflow (open3d refused
    such a grid: "voxel_size is too small") and every later query fails.
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    with np.errstate(over="ignore", invalid="ignore"):
        dist = np.linalg.norm(xyz - np.asarray(center, dtype=np.float64), axis=1)
    return np.isfinite(dist) & (dist <= max_distance_m)


class SurfaceError(ValueError):
    """Surface extraction was asked for something impossible (no keyframes, bad sizes)."""


@dataclass
class SurfaceCloud:
    xyz: np.ndarray  # (N, 3) float32 world metres
    rgb: np.ndarray  # (N, 3) uint8 rendered colour

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


def extract_surface(
    trainer,
    max_points: int,
    voxel_size_m: float,
    downsample: int | None = None,
    min_opacity: float | None = None,
    seed: int = 0,
) -> SurfaceCloud:
    """Fuse rendered depth from every keyframe into a voxel-downsampled cloud of at most ``max_points``."""
    fcfg = trainer.cfg.field
    downsample = fcfg.surface_image_downsample if downsample is None else downsample
    min_opacity = fcfg.surface_min_opacity if min_opacity is None else min_opacity
    if downsample < 1 or max_points < 1 or voxel_size_m < 0:
        raise SurfaceError(
            f"surface extraction needs downsample >= 1, max_points >= 1 and voxel_size_m >= 0, "
            f"got {downsample}, {max_points}, {voxel_size_m}"
        )
    keyframes = trainer.keyframes.snapshot()
    if not keyframes:
        raise SurfaceError("no keyframes to extract a surface from")
    points, colours = [], []
    for kf in keyframes:
        w = max(1, kf.intrinsics.width // downsample)
        h = max(1, kf.intrinsics.height // downsample)
        depth = None
        if kf.depth is not None:  # nearest-neighbour reduction keeps invalid (0) pixels invalid
            depth = F.interpolate(kf.depth[None, None].float(), size=(h, w), mode="nearest")[0, 0]
        out = trainer.render(kf.intrinsics, kf.pose, width=w, height=h, semantics=False, depth=depth)
        keep = (out["opacity"] >= min_opacity).reshape(-1)
        origins, directions = generate_rays(kf.intrinsics.scaled(w, h), kf.pose, device=out["depth"].device)
        xyz = origins + directions * out["depth"].reshape(-1, 1)
        points.append(xyz[keep].cpu().numpy())
        colours.append(out["rgb"].reshape(-1, 3)[keep].cpu().numpy())
    import open3d as o3d  # here, not at module level: the query path imports this module, and open3d
    #                       takes seconds to import (its visualisation pulls in dash)

    xyz = np.concatenate(points).astype(np.float64)
    rgb = np.concatenate(colours).astype(np.float64)
    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(xyz)
    cloud.colors = o3d.utility.Vector3dVector(np.clip(rgb, 0.0, 1.0))
    if voxel_size_m > 0 and len(xyz):
        cloud = cloud.voxel_down_sample(voxel_size_m)
    xyz = np.asarray(cloud.points, dtype=np.float32)
    rgb = np.asarray(cloud.colors)
    if len(xyz) > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(len(xyz), max_points, replace=False))
        xyz, rgb = xyz[pick], rgb[pick]
    return SurfaceCloud(xyz=xyz, rgb=np.round(rgb * 255.0).astype(np.uint8))


def field_version(trainer) -> tuple:
    """What a keyframe render depends on besides the field's weights and object (a weak reference): its
    bounds."""
    field_ = trainer.field
    return (tuple(field_.scene_center.tolist()), float(field_.scene_radius), bool(field_.bounds_set))


RENDERED_POINTS_AGE_FRACTION = 0.5
"""Rendered points of a field trained for s steps are also reused for up to this times s more steps:
a surface moves less the longer it has trained, and a camera without depth (every keyframe rendered:
33 s for 35 keyframes on the CPU) would otherwise pay that again every ``max_age_steps``."""


def still_young(step: int, rendered_step: int, max_age_steps: int) -> bool:
    """Whether a keyframe render made at training step ``rendered_step`` may still serve at ``step``:
    at most max(``max_age_steps``, RENDERED_POINTS_AGE_FRACTION x ``rendered_step``) steps later
    (``query.rendered_points_max_age_steps``)."""
    return 0 <= step - rendered_step <= max(max_age_steps, int(RENDERED_POINTS_AGE_FRACTION * rendered_step))


class RenderedSurfaceCache:
    """The field's surface points of keyframes without a sensor depth (``surface_points``), kept per
    keyframe while the field (same object and bounds) is at most ``max_age_steps`` training steps
    (``query.rendered_points_max_age_steps``), or RENDERED_POINTS_AGE_FRACTION of its age then, older
    than when they were rendered. Rendering them was most of a query's time (room, 35 keyframes, one
    without depth: ~1 of 2 s on the CPU), paid again after every training step."""

    def __init__(self, max_age_steps: int = 0):
        self.max_age_steps = max(0, int(max_age_steps))
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, int], tuple] = {}  # (uid, side) -> (field ref, version, step, pts)

    def _young(self, entry: tuple, trainer, version: tuple, step: int) -> bool:
        if entry[0]() is not trainer.field or entry[1] != version:
            return False
        return still_young(step, entry[2], self.max_age_steps)

    def get(self, trainer, uid: int, side: int) -> tuple[np.ndarray, np.ndarray] | None:
        with self._lock:
            entry = self._entries.get((uid, side))
        step = int(getattr(trainer, "step_count", 0))
        if entry is None or not self._young(entry, trainer, field_version(trainer), step):
            return None
        return entry[3]

    def put(self, trainer, uid: int, side: int, step: int, points: tuple[np.ndarray, np.ndarray]) -> None:
        with self._lock:
            self._entries[(uid, side)] = (weakref.ref(trainer.field), field_version(trainer), int(step),
                                          points)

    def keep_only(self, uids: set[int]) -> None:
        """Forget keyframes no longer in the buffer."""
        with self._lock:
            for key in [k for k in self._entries if k[0] not in uids]:
                del self._entries[key]


def sensor_points(kf) -> tuple[np.ndarray, np.ndarray]:
    """A keyframe's measured pixels back-projected: (xyz (N,3) float64 world, rgb (N,3) uint8)."""
    intr = kf.intrinsics
    depth = kf.depth.cpu().numpy().reshape(-1).astype(np.float64)
    ok = np.flatnonzero(np.isfinite(depth) & (depth > 0))
    cam = camera_directions(intr, pixel_grid(intr.width, intr.height)[ok]) * depth[ok, None]
    return cam @ kf.pose[:3, :3].T + kf.pose[:3, 3], kf.rgb.cpu().numpy().reshape(-1, 3)[ok]


def rendered_points(trainer, kf, side: int, settings: SamplingSettings, chunk: int,
                    guard: ChunkGuard) -> tuple[np.ndarray, np.ndarray]:
    """The field's surface seen from a keyframe: median depth rendered at ``side`` pixels (long side)
    by the masks' depth pass (early ray termination, checked against the full render), opaque pixels
    back-projected, colours from the keyframe image."""
    intr = kf.intrinsics
    scale = min(1.0, side / max(intr.width, intr.height))
    small = intr.scaled(max(1, round(intr.width * scale)), max(1, round(intr.height * scale)))
    depth, opacity = render_surface_depth(trainer.field, small, kf.pose, settings,
                                          occupancy=getattr(trainer, "occupancy", None), chunk=chunk,
                                          chunk_guard=guard)
    depth = depth.cpu().numpy().reshape(-1).astype(np.float64)
    ok = np.flatnonzero(opacity.cpu().numpy().reshape(-1) > 0.5)
    pix = pixel_grid(small.width, small.height)[ok]
    cam = camera_directions(small, pix) * depth[ok, None]
    u = np.clip(((pix[:, 0] + 0.5) / scale).astype(np.int64), 0, intr.width - 1)
    v = np.clip(((pix[:, 1] + 0.5) / scale).astype(np.int64), 0, intr.height - 1)
    return cam @ kf.pose[:3, :3].T + kf.pose[:3, 3], kf.rgb.cpu().numpy()[v, u]


class _Renderer:
    """The render settings, chunk and guard of one ``surface_points`` call."""

    def __init__(self, trainer, side: int, chunk_guard: ChunkGuard | None):
        self.trainer, self.side = trainer, side
        self.guard = chunk_guard or (lambda: exclusive(trainer))
        self.settings = trainer.current_render_settings()  # the far plane hugs the depth seen, as for masks
        self.chunk = chunk_rays(trainer.cfg, self.settings.uniform_samples + self.settings.importance_samples,
                                getattr(trainer, "device", "cpu"), trainer.render_chunk())

    def points(self, kf, cache: RenderedSurfaceCache) -> tuple[np.ndarray, np.ndarray]:
        """``kf``'s rendered points from ``cache``, or rendered now and put there."""
        cached = cache.get(self.trainer, kf.uid, self.side)
        if cached is not None:
            return cached
        step = int(getattr(self.trainer, "step_count", 0))  # before: a step during the render ages it
        points = rendered_points(self.trainer, kf, self.side, self.settings, self.chunk, self.guard)
        cache.put(self.trainer, kf.uid, self.side, step, points)
        return points


@torch.no_grad()
def surface_points(trainer, max_points: int, render_side: int = 64, chunk_guard: ChunkGuard | None = None,
                   cache: RenderedSurfaceCache | None = None,
                   keyframes: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World points on the observed surface with colours: (xyz (N,3) float32, rgb (N,3) uint8).

    Back-projects each keyframe's depth through its pixels: the sensor depth where the keyframe has
    one (free, and exactly the surface the robot saw), else depth rendered at ``render_side`` pixels
    keeping opaque pixels (``rendered_points``, reused from ``cache`` while young enough). Colours come
    from the keyframe images; at most ``max_points`` points, spread over keyframes. ``chunk_guard`` is
    entered per chunk of a render (default: the trainer's lock for each chunk). ``keyframes``: those of
    the trainer's buffer by default.
    """
    keyframes = trainer.keyframes.snapshot() if keyframes is None else keyframes
    cache = RenderedSurfaceCache(0) if cache is None else cache
    cache.keep_only({kf.uid for kf in keyframes})
    renderer = _Renderer(trainer, render_side, chunk_guard)
    per_kf = max(1, max_points // max(1, len(keyframes)))
    xyz_all, rgb_all = [], []
    for kf in keyframes:
        pts, colours = sensor_points(kf) if kf.has_depth() else renderer.points(kf, cache)
        idx = np.arange(len(pts))
        if len(idx) > per_kf:
            idx = idx[np.linspace(0, len(idx) - 1, per_kf).astype(np.int64)]
        xyz_all.append(pts[idx].astype(np.float32))
        rgb_all.append(colours[idx].astype(np.uint8))
    if not xyz_all:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    return np.concatenate(xyz_all), np.concatenate(rgb_all)
