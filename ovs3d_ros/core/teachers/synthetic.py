"""A SYNTHETIC teacher for benchmarks on scenes with ground truth. It is NOT CLIP and NOT DINO.

It reads a frame's ground-truth label map and produces CLIP-like and DINO-like features that carry
the real teachers' failure modes, each a seeded knob of ``SyntheticTeacherConfig``:

1. patch-scale blur: each crop's embedding is the area-weighted mean of the text embeddings of the
   classes inside it, over the SAME boxes (3 scales, stride, jitter) and the same per-pixel
   averaging (``BoxAverager``) as the real CLIP path, so boundaries are smeared exactly as CLIP's;
2. crop-level confusion: crops lean (``confusion_strength``) toward a wrong class where a per-view
   random field of cells (one largest-patch side each, confused with ``confusion_prob``) says so:
   independent per-crop errors would average away over the ~40 crops covering a pixel, CLIP's
   errors are regional; drawn per view (seeded by the frame), so views disagree;
3. noise: Gaussian noise of norm ``noise_std`` on each unit crop embedding.

Its "text encoder" maps any string to a deterministic unit vector (a stable hash of the string and
the seed), so the scene's classes and any other query live in one space; unknown strings are
near-orthogonal to every class. DINO-like tokens are sharp: per token, the pixel-fraction-weighted
per-class random vectors plus a random projection of the token's mean colour, normalised.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ovs3d_ros.config import TeacherConfig
from ovs3d_ros.core.frame import UNLABELLED, Frame
from ovs3d_ros.core.lru import LruCache
from ovs3d_ros.core.teachers.base import (
    Teacher,
    TeacherError,
    TeacherFeatures,
    frame_seed,
    stable_hash,
    validate_classes,
)
from ovs3d_ros.core.teachers.clip import BoxAverager, multiscale_boxes, normalize_features, teacher_image_size
from ovs3d_ros.core.teachers.dino import dino_image_size

UNLABELLED_TEXT = "<unlabelled>"


def hashed_unit_vector(text: str, dim: int, seed: int, space: str = "text") -> torch.Tensor:
    """A deterministic unit vector for ``text``: the same in every process and on every machine."""
    rng = np.random.default_rng(stable_hash(space, seed, text))
    v = rng.standard_normal(dim)
    return torch.from_numpy(v / np.linalg.norm(v)).float()


def box_class_fractions(onehot: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(K, h, w) per-pixel class fractions and (N, 4) boxes -> (N, K) area fractions per box."""
    k, h, w = onehot.shape
    integral = F.pad(onehot.double().cumsum(1).cumsum(2), (1, 0, 1, 0))  # (K, h+1, w+1)
    left, top, right, bottom = boxes.unbind(1)
    sums = integral[:, bottom, right] - integral[:, top, right] - integral[:, bottom, left] \
        + integral[:, top, left]
    area = ((right - left) * (bottom - top)).double()
    return (sums / area).T.float()


def label_fractions(labels: np.ndarray, num_classes: int, size: tuple[int, int],
                    device: torch.device) -> torch.Tensor:
    """(H, W) uint8 labels -> (num_classes + 1, h, w) area fractions at size=(w, h); the last
    channel is 'unlabelled' (255) and any out-of-range label."""
    lab = torch.from_numpy(labels.astype(np.int64)).to(device)
    lab = torch.where((lab >= num_classes) | (lab < 0), torch.full_like(lab, num_classes), lab)
    onehot = F.one_hot(lab, num_classes + 1).permute(2, 0, 1)[None].float()
    return F.interpolate(onehot, size=(size[1], size[0]), mode="area")[0]


class SyntheticTeacher(Teacher):
    """Benchmark teacher built from ground-truth labels (NOT CLIP); see the module docstring."""

    def __init__(self, class_names: list[str], cfg: TeacherConfig, device: torch.device | str = "cpu"):
        self.class_names = list(validate_classes(class_names))
        self.cfg = cfg
        self.syn = cfg.synthetic
        self.device = torch.device(device)
        if not 0.0 <= self.syn.confusion_prob <= 1.0:
            raise TeacherError("teacher.synthetic.confusion_prob must be in [0, 1], "
                               f"got {self.syn.confusion_prob}")
        if not 0.0 <= self.syn.confusion_strength <= 1.0:
            raise TeacherError("teacher.synthetic.confusion_strength must be in [0, 1], "
                               f"got {self.syn.confusion_strength}")
        if self.syn.embed_dim < 2 or self.syn.dino_dim < 2:
            raise TeacherError("teacher.synthetic.embed_dim and dino_dim must be >= 2")
        self._text_cache: LruCache[tuple[str, ...], torch.Tensor] = LruCache(
            max(1, self.cfg.clip.text_cache_size))
        # Row K (after the classes) stands for unlabelled pixels.
        self._class_text = self.encode_text(self.class_names + [UNLABELLED_TEXT]).to(self.device)
        self._class_dino = torch.stack([hashed_unit_vector(n, self.syn.dino_dim, self.syn.seed, "dino")
                                        for n in self.class_names + [UNLABELLED_TEXT]]).to(self.device)
        proj_rng = np.random.default_rng(stable_hash("dino-colour", self.syn.seed))
        proj = proj_rng.standard_normal((3, self.syn.dino_dim)) / np.sqrt(self.syn.dino_dim)
        self._colour_proj = torch.from_numpy(proj).float().to(self.device)

    @property
    def embed_dim(self) -> int:
        return self.syn.embed_dim

    def encode_text(self, classes: list[str]) -> torch.Tensor:
        key = validate_classes(classes)
        return self._text_cache.get_or_create(key, lambda: torch.stack(
            [hashed_unit_vector(c, self.syn.embed_dim, self.syn.seed) for c in key]).to(self.device))

    # CLIP-like ------------------------------------------------------------------------------------
    def crop_embeddings(self, fractions: torch.Tensor, boxes: torch.Tensor, confusion: tuple) -> torch.Tensor:
        """(N, K+1) class fractions and (N, 4) boxes of one scale -> (N, D) crop embeddings with
        confusion and noise. ``confusion`` = (cell side, (gh, gw) bool confused cells, (gh, gw) class
        offsets, rng): a crop whose centre lies in a confused cell leans toward its dominant class
        shifted by the cell's offset, so confusions are regionally coherent (as CLIP mistaking a
        surface for something else) and differ between views."""
        cell, confused_cells, offsets, rng = confusion
        n, k1 = fractions.shape
        emb = F.normalize(fractions @ self._class_text, dim=1)
        num_classes = k1 - 1
        if num_classes > 1 and self.syn.confusion_prob > 0:
            cx = torch.div(boxes[:, 0] + boxes[:, 2], 2 * cell, rounding_mode="floor")
            cy = torch.div(boxes[:, 1] + boxes[:, 3], 2 * cell, rounding_mode="floor")
            confused = confused_cells[cy, cx]
            dominant = fractions[:, :num_classes].argmax(dim=1)
            wrong = (dominant + offsets[cy, cx]) % num_classes
            s = self.syn.confusion_strength
            leaned = F.normalize((1.0 - s) * emb + s * self._class_text[wrong], dim=1)
            emb = torch.where(confused[:, None], leaned, emb)
        if self.syn.noise_std > 0:
            noise = torch.from_numpy(rng.standard_normal((n, self.embed_dim))).float().to(self.device)
            emb = emb + noise * (self.syn.noise_std / np.sqrt(self.embed_dim))
        return emb

    def clip_features(self, labels: np.ndarray, frame_rng_seed: int) -> torch.Tensor:
        """(H, W) labels -> (S, D, h, w) fp16 CLIP-like features (unit per pixel and scale)."""
        ccfg = self.cfg.clip
        w, h = teacher_image_size(labels.shape[1], labels.shape[0], ccfg.image_downsample,
                                  ccfg.min_teacher_short_side)
        fractions = label_fractions(labels, len(self.class_names), (w, h), self.device)
        jitter_rng = np.random.default_rng(frame_rng_seed) if ccfg.jitter else None
        boxes = multiscale_boxes(w, h, ccfg, jitter_rng)
        acc = BoxAverager(len(boxes), self.embed_dim, h, w, self.device)
        rng = np.random.default_rng(stable_hash("confusion", self.syn.seed, frame_rng_seed))
        cell = max(1, int(max(b[0, 2] - b[0, 0] for b in boxes)))  # the largest patch side
        grid = (-(-h // cell), -(-w // cell))
        confused_cells = torch.from_numpy(rng.random(grid) < self.syn.confusion_prob).to(self.device)
        offsets = torch.from_numpy(rng.integers(1, max(2, len(self.class_names)), size=grid)).to(self.device)
        confusion = (cell, confused_cells, offsets, rng)
        for s, b in enumerate(boxes):
            bt = torch.from_numpy(b).to(self.device)
            emb = self.crop_embeddings(box_class_fractions(fractions, bt), bt, confusion)
            acc.add(torch.full((len(b),), s, dtype=torch.int64, device=self.device), bt, emb)
        return normalize_features(normalize_features(acc.mean()), ccfg.feature_downsample).half()

    # DINO-like ------------------------------------------------------------------------------------
    def dino_tokens(self, rgb: np.ndarray, labels: np.ndarray) -> torch.Tensor:
        """(Ht, Wt, dino_dim) fp16 sharp per-object, colour-aware token grid at the DINO resolution."""
        dcfg, p = self.cfg.dino, self.syn.dino_patch
        w, h = dino_image_size(rgb.shape[1], rgb.shape[0], dcfg.image_downsample, dcfg.min_short_side, p)
        grid = (w // p, h // p)
        fractions = label_fractions(labels, len(self.class_names), grid, self.device)  # (K+1, Ht, Wt)
        colour = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None].float()
        colour = F.interpolate(colour / 255.0, size=(grid[1], grid[0]), mode="area")[0]  # (3, Ht, Wt)
        tokens = torch.einsum("khw,kc->hwc", fractions, self._class_dino) \
            + self.syn.dino_color_weight * torch.einsum("ghw,gc->hwc", 2.0 * colour - 1.0, self._colour_proj)
        return F.normalize(tokens, dim=-1).half()

    def extract(self, frame: Frame) -> TeacherFeatures:
        if frame.labels is None:
            raise TeacherError(f"SyntheticTeacher needs ground-truth labels, frame "
                               f"'{frame.source_id or frame.frame_id}' has none (use teacher.kind 'clip')")
        if frame.labels.shape != frame.rgb.shape[:2]:
            raise TeacherError(f"labels {frame.labels.shape} do not match the image {frame.rgb.shape[:2]}")
        seed = frame_seed(self.cfg.seed, frame)
        clip = self.clip_features(frame.labels, seed)
        dino = self.dino_tokens(frame.rgb, frame.labels) if self.cfg.dino.enabled else None
        return TeacherFeatures(clip=clip, dino=dino)


__all__ = ["SyntheticTeacher", "UNLABELLED", "hashed_unit_vector"]
