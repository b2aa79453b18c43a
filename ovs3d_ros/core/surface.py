"""Surface point cloud of the field: render depth from the keyframe cameras at reduced resolution,
back-project opaque pixels, fuse, voxel-downsample (open3d) and cap.

Keyframes with a depth image are rendered with depth-guided sampling around it (a few samples per
ray instead of a full march; the rendered depth is still the field's). The semantics side labels
these points with ``field.semantic_at(xyz)`` and ``field.expand_feature``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import torch.nn.functional as F

from ovs3d_ros.core.camera import generate_rays


def plausible_point_mask(xyz: np.ndarray, center: np.ndarray, max_distance_m: float) -> np.ndarray:
    """(N,) bool: finite points within ``max_distance_m`` of ``center``.

    The query path applies it before the voxel downsample: one poisoned keyframe (a 1e8 m pose, a
    3e38 m depth) otherwise puts points so far apart that open3d refuses the voxel grid ("voxel_size
    is too small") and every later query fails.
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
    with trainer.keyframes._lock:
        keyframes = list(trainer.keyframes.keyframes)
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
