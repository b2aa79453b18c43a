"""Slow, obviously-faithful references and tiny random-weight models for the teacher tests and bench.

``reference_boxes`` and ``reference_patch_features`` follow 3D-OVS ``extract_clip_feature.py`` line
by line: one PIL crop at a time through open_clip's own preprocessing, batches of 8, sum and count
buffers. They live here only, never in the package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ovs3d_ros.config import ClipConfig, DinoConfig

TINY_CLIP_NAME = "ovs3d-tiny-clip"
TINY_DINO_OVERRIDES = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def reference_boxes(width: int, height: int, patch_size: int,
                    randint: Callable[[int, int], int]) -> list[tuple[int, int, int, int]]:
    """The original's nested loop (x = rows, y = columns), ``randint(0, patch_size // 4)`` per side."""
    stride = patch_size // 4
    boxes = []
    for x_idx in range((height - patch_size) // stride + 1 + int((height - patch_size) % stride > 0)):
        start_x = x_idx * stride
        for y_idx in range((width - patch_size) // stride + 1 + int((width - patch_size) % stride > 0)):
            start_y = y_idx * stride
            boxes.append((max(start_y - randint(0, patch_size // 4), 0),
                          max(start_x - randint(0, patch_size // 4), 0),
                          min(start_y + patch_size + randint(0, patch_size // 4), width),
                          min(start_x + patch_size + randint(0, patch_size // 4), height)))
    return boxes


def jitter_feeder(jitter: np.ndarray) -> Callable[[int, int], int]:
    """A randint stand-in that hands out pre-drawn jitter (left, upper, right, lower per box)."""
    it = iter(jitter.reshape(-1).tolist())
    return lambda lo, hi: next(it)


def open_clip_preprocess(model):
    """open_clip's inference transform for a loaded model (PIL in, normalised tensor out)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    return image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)


@torch.no_grad()
def reference_patch_features(model, preprocess, image: Image.Image, boxes_per_scale: list,
                             device: str = "cpu", chunk_size: int = 8) -> torch.Tensor:
    """(S, D, h, w) float32, unit per pixel: the original loop, normalised as the original's loader."""
    dtype = next(model.parameters()).dtype
    out = []
    for boxes in boxes_per_scale:
        patches = [preprocess(image.crop(tuple(int(v) for v in box))) for box in boxes]
        idxes = [tuple(int(v) for v in box) for box in boxes]
        count = torch.zeros((1, 1, image.height, image.width), device=device)
        sum_feature = None
        for chunk_idx in range(len(patches) // chunk_size + int(len(patches) % chunk_size > 0)):
            batch = patches[chunk_idx * chunk_size:(chunk_idx + 1) * chunk_size]
            chunk = torch.stack(batch).to(device, dtype)
            feats = model.encode_image(chunk).float()
            if sum_feature is None:
                sum_feature = torch.zeros((1, feats.shape[1], image.height, image.width), device=device)
            for i in range(len(chunk)):
                left, upper, right, lower = idxes[chunk_idx * chunk_size + i]
                sum_feature[:, :, upper:lower, left:right] += feats[i:i + 1, :, None, None]
                count[:, :, upper:lower, left:right] += 1
        out.append(sum_feature / count)
    return F.normalize(torch.cat(out), dim=1)


def per_pixel_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(S, D, h, w) x2 -> (S, h, w) cosine."""
    return F.cosine_similarity(a.float(), b.float(), dim=1)


# ----------------------------------------------------------------------------------------------
# Tiny random-weight models saved to files (loaded back through the real loaders)


def tiny_clip_config(image_size: int = 32, embed_dim: int = 32) -> dict:
    return {"embed_dim": embed_dim,
            "vision_cfg": {"image_size": image_size, "layers": 1, "width": 32, "patch_size": 16,
                           "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def save_tiny_clip(folder: str | Path, image_size: int = 32, seed: int = 0, wrap: bool = False,
                   name: str = TINY_CLIP_NAME) -> ClipConfig:
    """Write an open_clip model config + random weights; return a ClipConfig pointing at both."""
    import open_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_file = folder / f"{name}.json"
    cfg_file.write_text(json.dumps(tiny_clip_config(image_size)))
    open_clip.add_model_config(cfg_file)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    weights = folder / f"{name}-{seed}.pt"
    state = model.state_dict()
    torch.save({"state_dict": state, "epoch": 1} if wrap else state, weights)
    return ClipConfig(model=name, pretrained=str(weights), model_config=str(cfg_file))


def save_tiny_dino(folder: str | Path, seed: int = 0) -> DinoConfig:
    """Random-weight tiny ViT/8 (the DINO ViT-B/8 name with overrides) saved to a file."""
    import timm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = timm.create_model("vit_base_patch8_224.dino", pretrained=False, dynamic_img_size=True,
                              num_classes=0, **TINY_DINO_OVERRIDES)
    weights = folder / f"tiny-dino-{seed}.pth"
    torch.save(model.state_dict(), weights)
    return DinoConfig(checkpoint=str(weights), arch_overrides=json.dumps(TINY_DINO_OVERRIDES))


def random_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour image with some edges (HxWx3 uint8)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR)).copy()
    img[height // 3: 2 * height // 3, width // 4: width // 2] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img
