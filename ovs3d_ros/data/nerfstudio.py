"""nerfstudio ``transforms.json`` -> SceneDataset.

Intrinsics ``fl_x fl_y cx cy w h`` at the top level or per frame (per-frame wins); OpenGL
camera-to-world ``transform_matrix``; optional ``depth_file_path`` (uint16 PNG, scaled by
``depth_unit_scale_factor``, default 0.001 = millimetres); optional ``label_file_path`` (uint8
index, 255 unlabelled) with top-level ``class_names``; the split from ``test_filenames``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ovs3d_ros.core.camera import PoseError, opengl_to_optical
from ovs3d_ros.core.frame import Frame, FrameError, Intrinsics
from ovs3d_ros.data._io import downsampled_size, read_beside, read_image, resize
from ovs3d_ros.data.dataset import DatasetError, SceneDataset

_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_DISTORTION_KEYS = ("k1", "k2", "p1", "p2", "k3")


def _read_document(path: Path) -> tuple[Path, dict]:
    """(the transforms.json path, its parsed content) for the file or its folder."""
    json_path = path / "transforms.json" if path.is_dir() else path
    if not json_path.is_file():
        raise DatasetError(f"{json_path}: file not found")
    try:
        doc = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{json_path}: invalid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list) or not doc["frames"]:
        raise DatasetError(f"{json_path}: needs a non-empty 'frames' list")
    return json_path, doc


def _intrinsics(entry: dict, doc: dict, where: str) -> Intrinsics:
    """The frame's camera: each key per frame, else at the top level (per-frame wins)."""
    values = {}
    for key in _INTRINSIC_KEYS:
        value = entry.get(key, doc.get(key))
        if value is None:
            raise DatasetError(f"{where}: intrinsic '{key}' missing (per frame or at the top level)")
        values[key] = value
    try:
        fx, fy, cx, cy = (float(values[k]) for k in _INTRINSIC_KEYS[:4])
        w, h = int(values["w"]), int(values["h"])
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: intrinsics must be numbers, got {values}") from None
    distortion = tuple(float(entry.get(k, doc.get(k, 0.0))) for k in _DISTORTION_KEYS)
    if not any(distortion):
        return Intrinsics(fx, fy, cx, cy, w, h)
    return Intrinsics(fx, fy, cx, cy, w, h, "plumb_bob", distortion)


def _pose(entry: dict, where: str) -> np.ndarray:
    try:
        matrix = np.asarray(entry["transform_matrix"], dtype=np.float64)
        if matrix.shape == (3, 4):
            matrix = np.vstack([matrix, [0, 0, 0, 1]])
        return opengl_to_optical(matrix)
    except (ValueError, TypeError, PoseError) as exc:
        raise DatasetError(f"{where}: bad transform_matrix: {exc}") from None


def _read_frame(root: Path, i: int, entry: dict, doc: dict, where: str, downsample: float) -> Frame:
    """One entry of 'frames': the image (LANCZOS) and its optional depth and labels (NEAREST)."""
    if not isinstance(entry, dict) or "file_path" not in entry or "transform_matrix" not in entry:
        raise DatasetError(f"{where}: needs 'file_path' and 'transform_matrix'")
    intr = _intrinsics(entry, doc, where)
    pose = _pose(entry, where)
    img_path = root / entry["file_path"]
    rgb = read_image(img_path, "RGB")
    w, h = intr.width, intr.height
    if rgb.shape[:2] != (h, w):
        raise DatasetError(f"{img_path}: image is {rgb.shape[1]}x{rgb.shape[0]} but {where} says {w}x{h}")
    out_size = downsampled_size(w, h, downsample)
    frame = Frame(rgb=resize(rgb, *out_size, Image.LANCZOS), intrinsics=intr.scaled(*out_size), pose=pose,
                  stamp=float(entry.get("stamp", i)), frame_id="camera", source_id=str(img_path))
    if entry.get("depth_file_path"):
        raw = read_beside(root / entry["depth_file_path"], "I;16", (h, w), "depth is")
        depth = (raw.astype(np.float64) * float(doc.get("depth_unit_scale_factor", 0.001))).astype(np.float32)
        frame.depth = resize(depth, *out_size, Image.NEAREST).astype(np.float32)
    if entry.get("label_file_path"):
        labels = read_beside(root / entry["label_file_path"], "L", (h, w), "labels are")
        frame.labels = resize(labels, *out_size, Image.NEAREST)
    try:
        return frame.validate()
    except FrameError as exc:
        raise DatasetError(f"{where}: {exc}") from None


def read_nerfstudio(path: str | Path, downsample: float = 1.0, name: str | None = None) -> SceneDataset:
    """Read ``path`` (the transforms.json file or its folder); file paths are relative to the file."""
    json_path, doc = _read_document(Path(path))
    downsampled_size(1, 1, downsample)  # a bad factor fails before any image is read
    root = json_path.parent
    test_files = set(doc.get("test_filenames", []))
    frames = [_read_frame(root, i, entry, doc, f"{json_path}: frames[{i}]", downsample)
              for i, entry in enumerate(doc["frames"])]
    dataset = SceneDataset(
        name=name or doc.get("scene_name") or root.name,
        frames=frames,
        class_names=sorted(doc.get("class_names", [])),
        test_indices=[i for i, entry in enumerate(doc["frames"]) if entry["file_path"] in test_files],
        test_held_out=bool(doc.get("test_held_out", True)),
        metadata={"format": "nerfstudio", "path": str(json_path), "downsample": downsample},
    )
    return dataset.validate()
