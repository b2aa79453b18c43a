"""A PNG contact sheet of a scene: RGB, coloured labels and depth of a few views (for eyeballing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ovs3d_ros.data.dataset import SceneDataset


def label_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 distinct colours (golden-ratio hue walk); 255 (unlabelled) is drawn black."""
    import colorsys

    hues = (np.arange(num_classes) * 0.618034) % 1.0
    return np.array(
        [[int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.75, 0.95)] for h in hues], dtype=np.uint8
    )


def colour_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    palette = np.concatenate([label_palette(num_classes), np.zeros((256 - num_classes, 3), np.uint8)])
    return palette[labels]


def colour_depth(depth: np.ndarray, max_depth: float | None = None) -> np.ndarray:
    """Grey-scale depth, near = bright; 0/NaN (no measurement) = black."""
    valid = np.isfinite(depth) & (depth > 0)
    top = max_depth if max_depth else (float(depth[valid].max()) if valid.any() else 1.0)
    grey = np.where(valid, 1.0 - np.clip(depth / top, 0, 1) * 0.85, 0.0)
    return (np.repeat(grey[..., None], 3, axis=2) * 255).astype(np.uint8)


def preview_grid(dataset: SceneDataset, indices: list[int] | None = None, max_views: int = 6) -> Image.Image:
    """One row per view: RGB | labels | depth, with a legend of class colours at the bottom."""
    if indices is None:
        step = max(1, len(dataset.frames) // max_views)
        indices = list(range(0, len(dataset.frames), step))[:max_views]
    frames = [dataset.frames[i] for i in indices]
    h, w = frames[0].height, frames[0].width
    n_cls = len(dataset.class_names)
    legend_h = 14 * ((n_cls + 2) // 3) + 6
    sheet = Image.new("RGB", (3 * w, len(frames) * h + legend_h), (30, 30, 30))
    for row, f in enumerate(frames):
        tiles = [
            f.rgb,
            colour_labels(f.labels, n_cls) if f.labels is not None else np.zeros_like(f.rgb),
            colour_depth(f.depth) if f.depth is not None else np.zeros_like(f.rgb),
        ]
        for col, tile in enumerate(tiles):
            sheet.paste(
                Image.fromarray(np.asarray(tile, dtype=np.uint8)).resize((w, h), Image.NEAREST),
                (col * w, row * h),
            )
    draw = ImageDraw.Draw(sheet)
    palette = label_palette(n_cls)
    for k, name in enumerate(dataset.class_names):
        x, y = (k % 3) * w + 4, len(frames) * h + 4 + 14 * (k // 3)
        draw.rectangle([x, y, x + 10, y + 10], fill=tuple(int(c) for c in palette[k]))
        draw.text((x + 14, y - 1), name, fill=(230, 230, 230))
    return sheet


def preview(
    preset: str = "room",
    out: str | Path = "outputs/preview.png",
    seed: int = 0,
    n_views: int = 6,
    width: int = 160,
    height: int = 120,
) -> Path:
    """Render ``n_views`` views all around a synthetic scene and write the contact sheet PNG."""
    from ovs3d_ros.data.synthetic import SyntheticScene

    dataset = SyntheticScene(preset, seed=seed).make_frames(n_views, 0, width, height)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    preview_grid(dataset, max_views=n_views).save(out)
    return out
