"""3D-OVS / LLFF scene folder -> SceneDataset (notes §1.1, §1.5).

Layout: ``images/`` (sorted file order = view index), ``poses_bounds.npy`` (N x 17),
``segmentations/classes.txt`` and ``segmentations/<view number>/<class>.png`` (255 = in class) for
the annotated views; optionally ``labels/<view>.png`` (uint8 index, 255 unlabelled) and
``depths/<view>.png`` (uint16 mm) named like the images. Poses stay metric (no NDC, no
re-centring), converted to optical camera axes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ovs3d_ros.core.camera import PoseError, llff_to_optical
from ovs3d_ros.core.frame import Frame, FrameError, Intrinsics
from ovs3d_ros.data._io import (
    IMAGE_SUFFIXES,
    downsampled_size,
    read_beside,
    read_image,
    resize,
)
from ovs3d_ros.data.dataset import DatasetError, SceneDataset, labels_from_multi_hot
from ovs3d_ros.data.writers import SPLIT_FILE


def read_class_names(path: Path) -> list[str]:
    """classes.txt: one prompt per line, stripped, empty lines dropped, then sorted (as the original)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (one class name per line)")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{path}: no class names")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DatasetError(f"{path}: duplicate class names {dup}")
    return sorted(names)


def _sibling(folder: Path, stem: str) -> Path | None:
    for suffix in (".png", ".PNG"):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _image_paths(root: Path) -> list[Path]:
    img_dir = root / "images"
    if not img_dir.is_dir():
        raise DatasetError(f"{img_dir}: folder not found")
    images = sorted(p for p in img_dir.iterdir() if p.suffix in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{img_dir}: no images (.png/.jpg)")
    return images


def _read_poses(root: Path, num_images: int):
    """(c2w optical poses, hwf, near/far bounds) from poses_bounds.npy, one row per image."""
    pb_path = root / "poses_bounds.npy"
    if not pb_path.is_file():
        raise DatasetError(f"{pb_path}: file not found")
    try:
        c2w, hwf, bounds = llff_to_optical(np.load(pb_path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{pb_path}: cannot read: {exc}") from None
    except PoseError as exc:
        raise DatasetError(f"{pb_path}: {exc}") from None
    if len(c2w) != num_images:
        raise DatasetError(f"{pb_path}: {len(c2w)} poses but {num_images} images in {root / 'images'}")
    for i, pose in enumerate(c2w):
        rot = pose[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) or np.linalg.det(rot) < 0:
            raise DatasetError(f"{pb_path}: row {i}: rotation is not orthonormal and right-handed")
    return c2w, hwf, bounds


def _read_annotations(root: Path, num_images: int) -> tuple[list[str], dict[int, Path]]:
    """The class names and, per annotated view index, its folder of per-class masks."""
    seg_dir = root / "segmentations"
    if not seg_dir.is_dir():
        return [], {}
    class_names = read_class_names(seg_dir / "classes.txt")
    annotated: dict[int, Path] = {}
    for folder in sorted(p for p in seg_dir.iterdir() if p.is_dir()):
        try:
            view = int(folder.name)
        except ValueError:
            raise DatasetError(f"{folder}: segmentation folders must be named by view number") from None
        if not 0 <= view < num_images:
            raise DatasetError(f"{folder}: view {view} but there are only {num_images} images")
        annotated[view] = folder
    return class_names, annotated


def _intrinsics(img_path: Path, size: tuple[int, int], hwf: np.ndarray) -> Intrinsics:
    """The view's camera at the image's own size: images may be a downscaled copy of the size in
    poses_bounds (LLFF images_4 etc.), with the same aspect ratio."""
    h0, w0 = size
    H, W, f = hwf
    if abs(W / H - w0 / h0) > 0.01:
        raise DatasetError(f"{img_path}: image is {w0}x{h0} but poses_bounds says {W:.0f}x{H:.0f} "
                           f"(different aspect ratio)")
    return Intrinsics(fx=f * w0 / W, fy=f * h0 / H, cx=w0 / 2, cy=h0 / 2, width=w0, height=h0)


def _read_multi_hot(folder: Path, view: int, class_names: list[str], size, out_size) -> np.ndarray:
    """(H, W, C) bool: one mask PNG per class; only exactly 255 counts (anti-aliased edges are not in
    the class), as the original."""
    masks = []
    for cls in class_names:
        mask_path = folder / f"{cls}.png"
        if not mask_path.is_file():
            raise DatasetError(f"{mask_path}: mask of class '{cls}' missing for view {view}")
        mask = read_beside(mask_path, "L", size, "mask is")
        masks.append(resize(mask, *out_size, Image.NEAREST) == 255)
    return np.stack(masks, axis=-1)


def _read_view(root: Path, i: int, img_path: Path, pose: np.ndarray, hwf: np.ndarray, downsample: float,
               class_names: list[str], mask_folder: Path | None) -> Frame:
    """One view: the image (LANCZOS), its labels/depth beside it and its masks (NEAREST)."""
    rgb = read_image(img_path, "RGB")
    size = rgb.shape[:2]
    out_size = downsampled_size(size[1], size[0], downsample)
    frame = Frame(rgb=resize(rgb, *out_size, Image.LANCZOS),
                  intrinsics=_intrinsics(img_path, size, hwf).scaled(*out_size), pose=pose,
                  stamp=float(i), frame_id="camera", source_id=str(img_path))
    label_path = _sibling(root / "labels", img_path.stem)
    if label_path is not None:
        frame.labels = resize(read_beside(label_path, "L", size, "labels are"), *out_size, Image.NEAREST)
    depth_path = _sibling(root / "depths", img_path.stem)
    if depth_path is not None:
        depth = read_beside(depth_path, "I;16", size, "depth is").astype(np.float32) / 1000.0
        frame.depth = resize(depth.astype(np.float32), *out_size, Image.NEAREST).astype(np.float32)
    if mask_folder is not None:
        frame.extras["gt_multi_hot"] = _read_multi_hot(mask_folder, i, class_names, size, out_size)
        if frame.labels is None:
            frame.labels = labels_from_multi_hot(frame.extras["gt_multi_hot"])
    try:
        return frame.validate()
    except FrameError as exc:
        raise DatasetError(f"{img_path}: {exc}") from None


def _read_split(root: Path) -> dict:
    split_path = root / SPLIT_FILE
    if not split_path.is_file():
        return {}
    try:
        return json.loads(split_path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{split_path}: invalid JSON: {exc}") from None


def read_llff(
    path: str | Path, downsample: float = 1.0, name: str | None = None, test_held_out: bool | None = None
) -> SceneDataset:
    """Read a 3D-OVS scene. ``downsample`` divides the image size (LANCZOS for images, NEAREST for
    masks, labels and depth); ``test_held_out`` defaults to ovs3d_split.json when present, else False
    (the 3D-OVS protocol trains on the annotated views too)."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: scene folder not found")
    downsampled_size(1, 1, downsample)  # a bad factor fails before any file is read
    images = _image_paths(root)
    c2w, hwf, bounds = _read_poses(root, len(images))
    class_names, annotated = _read_annotations(root, len(images))
    frames = []
    for i, img_path in enumerate(images):
        frame = _read_view(root, i, img_path, c2w[i], hwf[i], downsample, class_names, annotated.get(i))
        frame.extras["near_far"] = tuple(bounds[i])
        frames.append(frame)
    split = _read_split(root)
    held_out = test_held_out if test_held_out is not None else bool(split.get("test_held_out", False))
    dataset = SceneDataset(
        name=name or split.get("name") or root.name,
        frames=frames,
        class_names=class_names,
        test_indices=sorted(annotated),
        test_held_out=held_out,
        metadata={"format": "3dovs", "path": str(root), "downsample": downsample},
    )
    return dataset.validate()
