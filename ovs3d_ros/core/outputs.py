"""Segmentation outputs: labeled clouds (downsampled, capped), label/score images, overlays, writers.

Label conventions: label images are uint8 with 255 = unknown when the vocabulary has at most 255
classes, else uint16 with 65535 = unknown; cloud labels are always uint16 with 65535 = unknown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ovs3d_ros.core.vocabulary import UNKNOWN_U8, UNKNOWN_U16


class OutputError(ValueError):
    """Bad data handed to an output writer/reader (the message names the file or field)."""


@dataclass
class LabeledCloud:
    """World-frame points with colour, label (uint16, 65535 = unknown) and score."""

    xyz: np.ndarray      # (N, 3) float32
    rgb: np.ndarray      # (N, 3) uint8
    labels: np.ndarray   # (N,) uint16
    scores: np.ndarray   # (N,) float32

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    def validate(self) -> LabeledCloud:
        n = self.xyz.shape[0] if self.xyz.ndim == 2 else -1
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3:
            raise OutputError(f"cloud xyz must be (N, 3), got {self.xyz.shape}")
        for name, arr, shape in (("rgb", self.rgb, (n, 3)), ("labels", self.labels, (n,)),
                                 ("scores", self.scores, (n,))):
            if arr.shape != shape:
                raise OutputError(f"cloud {name} must be {shape}, got {arr.shape}")
        return self


def label_dtype(num_classes: int) -> np.dtype:
    """uint8 for at most 255 classes (255 = unknown), else uint16 (65535 = unknown)."""
    return np.dtype(np.uint8) if num_classes <= UNKNOWN_U8 else np.dtype(np.uint16)


def unknown_label(num_classes: int) -> int:
    return UNKNOWN_U8 if num_classes <= UNKNOWN_U8 else UNKNOWN_U16


def label_image(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Label indices (any int array, negative or >= C = unknown) -> uint8/uint16 label image."""
    labels = np.asarray(labels)
    out = labels.astype(label_dtype(num_classes))
    out[(labels < 0) | (labels >= num_classes)] = unknown_label(num_classes)
    return out


def colorize(labels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8 class colours (unknown = black)."""
    palette = np.concatenate([colors.astype(np.uint8), np.zeros((1, 3), np.uint8)])
    idx = np.where(labels.astype(np.int64) < len(colors), labels.astype(np.int64), len(colors))
    return palette[idx]


def label_boundaries(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def overlay(image: np.ndarray, labels: np.ndarray, colors: np.ndarray, alpha: float = 0.65,
            boundaries: bool = True) -> np.ndarray:
    """Class colours at ``alpha`` over the image, unknown pixels left as the image, black
    boundaries between labels (the style of the paper's figures)."""
    if image.shape[:2] != labels.shape:
        raise OutputError(f"overlay: image {image.shape[:2]} and labels {labels.shape} differ in size")
    base = image.astype(np.float32)
    known = labels.astype(np.int64) < len(colors)
    tint = colorize(labels, colors).astype(np.float32)
    out = np.where(known[..., None], alpha * tint + (1.0 - alpha) * base, base)
    if boundaries:
        out[label_boundaries(labels)] = 0.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Clouds


def voxel_first_indices(xyz: np.ndarray, voxel_size: float) -> np.ndarray:
    """Sorted indices of the first point of each occupied voxel of side ``voxel_size``.

    The voxels are open3d's (``voxel_down_sample_and_trace`` with the cloud's min bound: index
    ``floor((p - min) / size)`` in float64), so the kept points are the ones ``[t[0] for t in traces]``
    picked, in input order; a sort of one int64 key per point instead of open3d's hash map and a
    Python loop over its traces (2.8 s for 700k points on this CPU, plus 3.4 s to import open3d).
    """
    pts = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    if len(pts) == 0:
        return np.zeros(0, np.int64)
    cells = np.floor((pts - pts.min(axis=0)) / voxel_size).astype(np.int64)
    extent = cells.max(axis=0) + 1
    if float(extent[0]) * float(extent[1]) * float(extent[2]) < 2.0**62:
        key = cells[:, 0] + extent[0] * (cells[:, 1] + extent[1] * cells[:, 2])
        _, first = np.unique(key, return_index=True)
    else:  # a grid too large for one int64 key: rows compared lexicographically (slower, same result)
        _, first = np.unique(cells, axis=0, return_index=True)
    return np.sort(first)


def downsample_cloud(cloud: LabeledCloud, max_points: int, voxel_size: float,
                     seed: int = 0) -> LabeledCloud:
    """Voxel-downsample (one point per voxel, the first: ``voxel_first_indices``) and cap at ``max_points``.

    When the voxel grid still leaves too many points the voxel grows (x1.5 per try, at most 8 tries)
    and a seeded random subset takes the rest, so the cap always holds.
    """
    cloud.validate()
    if max_points <= 0:
        raise OutputError(f"max_points must be positive, got {max_points}")
    if len(cloud) == 0:
        return cloud
    keep = np.arange(len(cloud))
    if voxel_size > 0:
        size = voxel_size
        for _ in range(8):
            keep = voxel_first_indices(cloud.xyz, size)
            if len(keep) <= max_points:
                break
            size *= 1.5
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_points, replace=False))
    return LabeledCloud(cloud.xyz[keep], cloud.rgb[keep], cloud.labels[keep], cloud.scores[keep])


def write_ply(path: str | Path, cloud: LabeledCloud) -> Path:
    """Binary PLY via open3d's tensor cloud: positions, colors, and custom ``label``/``score``."""
    import open3d as o3d

    cloud.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcd = o3d.t.geometry.PointCloud()
    pcd.point.positions = o3d.core.Tensor(np.ascontiguousarray(cloud.xyz, dtype=np.float32))
    # uint8 colours are written as uchar red/green/blue (what most viewers expect) and the uint16
    # label as a uint16 property; open3d reads both back with their dtypes.
    pcd.point.colors = o3d.core.Tensor(np.ascontiguousarray(cloud.rgb, dtype=np.uint8))
    pcd.point.label = o3d.core.Tensor(cloud.labels.astype(np.uint16).reshape(-1, 1))
    pcd.point.score = o3d.core.Tensor(cloud.scores.astype(np.float32).reshape(-1, 1))
    if not o3d.t.io.write_point_cloud(str(path), pcd, write_ascii=False):
        raise OutputError(f"open3d could not write {path}")
    return path


def read_ply(path: str | Path) -> LabeledCloud:
    """Read a cloud written by write_ply back (OutputError when the file lacks label/score)."""
    import open3d as o3d

    path = Path(path)
    if not path.is_file():
        raise OutputError(f"{path}: no such file")
    pcd = o3d.t.io.read_point_cloud(str(path))
    for attr in ("positions", "label", "score"):
        if attr not in pcd.point:
            raise OutputError(f"{path}: point attribute '{attr}' missing")
    xyz = pcd.point.positions.numpy().astype(np.float32)
    if "colors" in pcd.point:
        col = pcd.point.colors.numpy()
        rgb = np.clip(np.round(col * 255.0 if col.dtype.kind == "f" else col), 0, 255).astype(np.uint8)
    else:
        rgb = np.zeros((len(xyz), 3), np.uint8)
    labels = pcd.point.label.numpy().reshape(-1).astype(np.uint16)
    scores = pcd.point.score.numpy().reshape(-1).astype(np.float32)
    return LabeledCloud(xyz, rgb, labels, scores).validate()


# ----------------------------------------------------------------------------------------------
# Images and summaries


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """uint8 (H,W) / (H,W,3) or uint16 (H,W) PNG via PIL (uint16 as 16-bit greyscale)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.dtype == np.uint16 and image.ndim == 2 or image.dtype == np.uint8 and image.ndim in (2, 3):
        Image.fromarray(image).save(path)
    elif image.dtype == np.float32 and image.ndim == 2:
        # score images: scaled to 16 bits over [0, 1] so they stay viewable and lossless enough
        Image.fromarray(np.round(np.clip(image, 0, 1) * 65535).astype(np.uint16)).save(path)
    else:
        raise OutputError(f"{path}: cannot write a {image.dtype} image of shape {image.shape}")
    return path


def read_png(path: str | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        arr = np.array(img)
    return arr.astype(np.uint16) if arr.dtype == np.int32 else arr


@dataclass
class Summary:
    """What a query produced, as written to summary.json."""

    class_names: list[str]
    colors: list[list[int]]
    num_points: int
    points_per_class: dict[str, int]
    unknown_label: int
    timing_s: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def write_json(path: str | Path, data: dict | Summary) -> Path:
    import dataclasses

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dataclasses.asdict(data) if dataclasses.is_dataclass(data) else data
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=_json_default))
    tmp.replace(path)
    return path


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
