"""DINO token grids (3D-OVS `models/DINO_extractor.py`), once per keyframe and cached in fp16.

As the original: tokens of the last transformer block *before* the final norm, prefix tokens (CLS,
registers) dropped, ImageNet mean/std, the image at 1/5 resolution. Unlike the original, the whole
frame goes through once on insertion (no 256x256 crops recomputed every iteration).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ovs3d_ros.config import DinoConfig
from ovs3d_ros.core.teachers.base import TeacherError


def dino_image_size(width: int, height: int, downsample: int, min_short_side: int,
                    patch: int) -> tuple[int, int]:
    """(w, h) DINO sees: the image / ``downsample``, short side at least ``min_short_side`` (never
    above the image's own), each side rounded to the nearest multiple of ``patch`` (at least one)."""
    if downsample < 1:
        raise TeacherError(f"teacher.dino.image_downsample must be >= 1, got {downsample}")
    scale = 1.0 / downsample
    short = min(width, height)
    if short * scale < min_short_side:
        scale = min(min_short_side, short) / short
    return (max(patch, round(width * scale / patch) * patch),
            max(patch, round(height * scale / patch) * patch))


class DinoTeacher:
    """timm ViT token grid of a frame: (Ht, Wt, C) fp16, token (i, j) centred on full-res pixel
    ((j + .5) W / Wt, (i + .5) H / Ht) because the whole frame is resized (no crop)."""

    def __init__(self, cfg: DinoConfig, device: torch.device | str = "cpu", model=None):
        from ovs3d_ros.core.teachers.loading import load_dino

        self.cfg = cfg
        self.device = torch.device(device)
        self.model = model if model is not None else load_dino(cfg, self.device)
        patch = self.model.patch_embed.patch_size
        self.patch = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        data_cfg = getattr(self.model, "pretrained_cfg", {}) or {}
        mean = data_cfg.get("mean", (0.485, 0.456, 0.406))
        std = data_cfg.get("std", (0.229, 0.224, 0.225))
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.dtype = next(self.model.parameters()).dtype

    @property
    def dim(self) -> int:
        return int(self.model.embed_dim)

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return dino_image_size(width, height, self.cfg.image_downsample, self.cfg.min_short_side,
                               self.patch)

    @torch.no_grad()
    def tokens(self, rgb: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 -> (Ht, Wt, C) fp16 token grid."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise TeacherError(f"DINO input must be HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
        w, h = self.input_size(rgb.shape[1], rgb.shape[0])
        x = torch.tensor(rgb, device=self.device).permute(2, 0, 1)[None].float()
        x = F.interpolate(x / 255.0, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        x = ((x - self._mean) / self._std).to(self.dtype)
        (last,) = self.model.forward_intermediates(x, indices=1, norm=False, output_fmt="NCHW",
                                                   intermediates_only=True)
        return last[0].permute(1, 2, 0).half().contiguous()
