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
from ovs3d_ros.data._io import IMAGE_SUFFIXES, read_depth_png, read_image, resize
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


def read_llff(
    path: str | Path, downsample: float = 1.0, name: str | None = None, test_held_out: bool | None = None
) -> SceneDataset:
    """Read a 3D-OVS scene. ``downsample`` divides the image size (LANCZOS for images, NEAREST for
    masks, labels and depth); ``test_held_out`` defaults to ovs3d_split.json when present, else False
    (the 3D-OVS protocol trains on the annotated views too)."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: scene folder not found")
    if downsample <= 0 or not np.isfinite(downsample):
        raise DatasetError(f"downsample must be a positive number, got {downsample}")
    img_dir = root / "images"
    if not img_dir.is_dir():
        raise DatasetError(f"{img_dir}: folder not found")
    images = sorted(p for p in img_dir.iterdir() if p.suffix in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{img_dir}: no images (.png/.jpg)")
    pb_path = root / "poses_bounds.npy"
    if not pb_path.is_file():
        raise DatasetError(f"{pb_path}: file not found")
    try:
        pb = np.load(pb_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{pb_path}: cannot read: {exc}") from None
    try:
        c2w, hwf, bounds = llff_to_optical(pb)
    except PoseError as exc:
        raise DatasetError(f"{pb_path}: {exc}") from None
    if len(c2w) != len(images):
        raise DatasetError(f"{pb_path}: {len(c2w)} poses but {len(images)} images in {img_dir}")
    for i, pose in enumerate(c2w):
        rot = pose[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) or np.linalg.det(rot) < 0:
            raise DatasetError(f"{pb_path}: row {i}: rotation is not orthonormal and right-handed")

    seg_dir = root / "segmentations"
    class_names: list[str] = []
    annotated: dict[int, Path] = {}
    if seg_dir.is_dir():
        class_names = read_class_names(seg_dir / "classes.txt")
        for folder in sorted(p for p in seg_dir.iterdir() if p.is_dir()):
            try:
                view = int(folder.name)
            except ValueError:
                raise DatasetError(f"{folder}: segmentation folders must be named by view number") from None
            if not 0 <= view < len(images):
                raise DatasetError(f"{folder}: view {view} but there are only {len(images)} images")
            annotated[view] = folder

    frames = []
    for i, img_path in enumerate(images):
        rgb = read_image(img_path, "RGB")
        h0, w0 = rgb.shape[:2]
        H, W, f = hwf[i]
        if abs(W / H - w0 / h0) > 0.01:
            raise DatasetError(
                f"{img_path}: image is {w0}x{h0} but poses_bounds says {W:.0f}x{H:.0f} "
                f"(different aspect ratio)"
            )
        # images may be a downscaled copy of the size in poses_bounds (LLFF images_4 etc.)
        fx = f * w0 / W
        fy = f * h0 / H
        width, height = max(1, round(w0 / downsample)), max(1, round(h0 / downsample))
        intr = Intrinsics(fx=fx, fy=fy, cx=w0 / 2, cy=h0 / 2, width=w0, height=h0).scaled(width, height)
        rgb = resize(rgb, width, height, Image.LANCZOS)
        frame = Frame(
            rgb=rgb, intrinsics=intr, pose=c2w[i], stamp=float(i), frame_id="camera", source_id=str(img_path)
        )
        frame.extras["near_far"] = tuple(bounds[i])
        label_path = _sibling(root / "labels", img_path.stem)
        if label_path is not None:
            labels = read_image(label_path, "L")
            if labels.shape != (h0, w0):
                raise DatasetError(
                    f"{label_path}: labels are {labels.shape[1]}x{labels.shape[0]}, image {w0}x{h0}"
                )
            frame.labels = resize(labels, width, height, Image.NEAREST)
        depth_path = _sibling(root / "depths", img_path.stem)
        if depth_path is not None:
            depth = read_depth_png(depth_path)
            if depth.shape != (h0, w0):
                raise DatasetError(
                    f"{depth_path}: depth is {depth.shape[1]}x{depth.shape[0]}, image {w0}x{h0}"
                )
            frame.depth = resize(depth, width, height, Image.NEAREST).astype(np.float32)
        if i in annotated:
            masks = []
            for cls in class_names:
                mask_path = annotated[i] / f"{cls}.png"
                if not mask_path.is_file():
                    raise DatasetError(f"{mask_path}: mask of class '{cls}' missing for view {i}")
                mask = read_image(mask_path, "L")
                if mask.shape != (h0, w0):
                    raise DatasetError(
                        f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]}, image {w0}x{h0}"
                    )
                # only exactly 255 counts (anti-aliased edges are not in the class), as the original
                masks.append(resize(mask, width, height, Image.NEAREST) == 255)
            multi_hot = np.stack(masks, axis=-1)
            frame.extras["gt_multi_hot"] = multi_hot
            if frame.labels is None:
                frame.labels = labels_from_multi_hot(multi_hot)
        try:
            frame.validate()
        except FrameError as exc:
            raise DatasetError(f"{img_path}: {exc}") from None
        frames.append(frame)

    split = {}
    split_path = root / SPLIT_FILE
    if split_path.is_file():
        try:
            split = json.loads(split_path.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{split_path}: invalid JSON: {exc}") from None
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
