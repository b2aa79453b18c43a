"""Small file helpers shared by the readers and writers (errors name the file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ovs3d_ros.core.image_codec import depth_to_mm
from ovs3d_ros.data.dataset import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def read_image(path: Path, mode: str) -> np.ndarray:
    """Read an image file converted to PIL ``mode`` ('RGB', 'L' or 'I;16'); DatasetError if unreadable."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with Image.open(path) as img:
            img.load()
            if mode == "I;16":
                if img.mode not in ("I;16", "I;16B", "I", "L"):
                    raise DatasetError(
                        f"{path}: expected a 16-bit depth PNG (millimetres), got mode {img.mode}"
                    )
                return np.asarray(img).astype(np.uint16)
            return np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{path}: cannot read image: {exc}") from None


def resize(array: np.ndarray, width: int, height: int, resample: int) -> np.ndarray:
    """Resize a uint8/uint16 image with PIL (LANCZOS for colour, NEAREST for labels/masks/depth)."""
    if array.shape[1] == width and array.shape[0] == height:
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), resample))


def read_beside(path: Path, mode: str, size: tuple[int, int], what: str) -> np.ndarray:
    """An image that must have the colour image's (height, width) ``size`` (labels, depth, masks):
    ``what`` names it in the error ('labels are', 'depth is', 'mask is')."""
    array = read_image(path, mode)
    if array.shape[:2] != tuple(size):
        raise DatasetError(f"{path}: {what} {array.shape[1]}x{array.shape[0]}, image {size[1]}x{size[0]}")
    return array


def downsampled_size(width: int, height: int, downsample: float) -> tuple[int, int]:
    """(width, height) divided by ``downsample`` (at least 1 pixel); DatasetError on a bad factor."""
    if downsample <= 0 or not np.isfinite(downsample):
        raise DatasetError(f"downsample must be a positive number, got {downsample}")
    return max(1, round(width / downsample)), max(1, round(height / downsample))


def read_depth_png(path: Path) -> np.ndarray:
    """uint16 millimetre PNG -> float32 metres (0 = no measurement)."""
    return (read_image(path, "I;16").astype(np.float32) / 1000.0).astype(np.float32)


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)


def write_depth_png(path: Path, depth_m: np.ndarray) -> None:
    """float metres -> uint16 millimetre PNG (values beyond 65.535 m or invalid become 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(depth_to_mm(depth_m)).save(path)


def view_name(index: int, count: int) -> str:
    """Zero-padded view number, so that sorted file names are view order."""
    return f"{index:0{max(3, len(str(max(count - 1, 0))))}d}"
