"""Open-vocabulary queries: any list of class names answered at once from the current field.

Zero-shot: the label of a point or pixel is the argmax over classes of the cosine between its
expanded CLIP-space feature and the text features (3D-OVS's evaluation rule). ``refine=True`` runs a
bounded RDA+FDA burst for that vocabulary that trains a small *per-vocabulary residual head* on
features rendered once from the frozen field, and caches it (LRU, key: ordered names + teacher).
The field itself is never touched by a query, so other vocabularies' answers cannot change.

Scores: the winning class's probability under ``softmax_c(cos / query.score_temperature)``. A label
becomes 'unknown' (uint16 65535 in clouds; 255/65535 in label images) when its score is below the
threshold, or, with canonical negatives on, when a negative phrase beats every class.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ovs3d_ros.config import QueryConfig, SemanticConfig
from ovs3d_ros.core import losses
from ovs3d_ros.core.vocabulary import UNKNOWN_U16, QueryError, validate_classes, vocabulary_key

# ----------------------------------------------------------------------------------------------
# Pure pieces


@dataclass
class Labels:
    labels: torch.Tensor   # (N,) int64, -1 = unknown
    scores: torch.Tensor   # (N,) float32


def classify(features: torch.Tensor, text: torch.Tensor, temperature: float,
             score_threshold: float = 0.0, negatives: torch.Tensor | None = None,
             chunk: int = 65536) -> Labels:
    """Argmax of cosine(feature, text) per row, its softmax score, and unknowns (-1).

    Args:
        features: (N, D) CLIP-space features (any norm).
        text: (C, D) unit text features of the vocabulary.
        negatives: (K, D) unit canonical-negative features; a row whose best negative cosine beats
            its best class cosine is unknown.
    Chunked so a 300k-point cloud never builds more than ``chunk`` x C logits at once.
    """
    labels, scores = [], []
    for start in range(0, features.shape[0], chunk):
        unit = F.normalize(features[start:start + chunk].float(), dim=-1)
        cos = unit @ text.t()
        prob = torch.softmax(cos / temperature, dim=-1)
        score, label = prob.max(dim=-1)
        unknown = score < score_threshold
        if negatives is not None and negatives.shape[0] > 0:
            unknown |= (unit @ negatives.t()).max(dim=-1).values > cos.max(dim=-1).values
        labels.append(torch.where(unknown, torch.full_like(label, -1), label))
        scores.append(score)
    if not labels:
        return Labels(torch.zeros(0, dtype=torch.long), torch.zeros(0))
    return Labels(torch.cat(labels), torch.cat(scores))


class RefineHead(nn.Module):
    """Per-vocabulary residual map on the expanded feature: ``F + W2 relu(W1 F)``, W2 zero-initialised
    so a fresh head is the identity (a refine starts exactly at the zero-shot answer)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.inner = nn.Linear(dim, hidden)
        self.outer = nn.Linear(hidden, dim)
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.outer(torch.relu(self.inner(features)))


@dataclass
class RefineData:
    """What a refine burst trains on, rendered once from the frozen field (no gradient)."""

    features: torch.Tensor    # (N, D) rendered features of keyframe rays
    relevancy: torch.Tensor   # (N, S, C) min-max relevancy of those rays' pixels
    selection: torch.Tensor   # (N, S) rendered selection of those rays
    window_features: torch.Tensor | None = None  # (B, T, D) rendered at DINO token centres
    window_dino: torch.Tensor | None = None      # (B, T, Cd)


def train_refine_head(head: RefineHead, data: RefineData, text: torch.Tensor, sem: SemanticConfig,
                      qcfg: QueryConfig, max_steps: int, max_time_s: float,
                      generator: torch.Generator | None = None) -> dict[str, float]:
    """RDA (+ FDA when windows are given) on the head only; stops at max_steps or max_time_s."""
    opt = torch.optim.Adam(head.parameters(), lr=qcfg.refine_lr)
    start = time.perf_counter()
    n = data.features.shape[0]
    steps, last = 0, {}
    while steps < max_steps and time.perf_counter() - start < max_time_s:
        idx = torch.randint(0, n, (min(qcfg.refine_rays_per_step, n),), generator=generator,
                            device=generator.device if generator is not None else "cpu")
        idx = idx.to(data.features.device)
        loss = sem.rda_weight * losses.rda_loss(head(data.features[idx]), text, data.relevancy[idx],
                                                data.selection[idx])
        terms = {"rda": loss.item()}
        if data.window_features is not None and data.window_dino is not None and \
                (sem.fda_pos_weight > 0 or sem.fda_neg_weight > 0):
            wsel = torch.randint(0, data.window_features.shape[0],
                                 (min(sem.fda_windows_per_step, data.window_features.shape[0]),),
                                 generator=generator,
                                 device=generator.device if generator is not None else "cpu")
            wsel = wsel.to(data.features.device)
            fda = losses.fda_loss(head(data.window_features[wsel]), text, data.window_dino[wsel],
                                  temperature=sem.temperature, dino_shift=sem.dino_shift,
                                  pos_weight=sem.fda_pos_weight, neg_weight=sem.fda_neg_weight,
                                  max_pairs=sem.fda_max_pairs, generator=generator)
            loss = loss + fda["fda"]
            terms["fda"] = fda["fda"].item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        last = terms
    return {"steps": float(steps), "time_s": time.perf_counter() - start, **last}


class RefineCache:
    """LRU of refined heads keyed by vocabulary_key; thread-safe."""

    def __init__(self, capacity: int):
        self.capacity = max(0, capacity)
        self._items: OrderedDict[str, RefineHead] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> RefineHead | None:
        with self._lock:
            head = self._items.get(key)
            if head is not None:
                self._items.move_to_end(key)
            return head

    def put(self, key: str, head: RefineHead) -> None:
        with self._lock:
            self._items[key] = head
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


# ----------------------------------------------------------------------------------------------
# The entry point the ROS node and the CLI both call


@dataclass
class SegmentationResult:
    class_names: list[str]
    colors: np.ndarray                    # (C, 3) uint8
    points: np.ndarray                    # (N, 3) float32 world
    rgb: np.ndarray                       # (N, 3) uint8
    labels: np.ndarray                    # (N,) uint16, 65535 = unknown
    scores: np.ndarray                    # (N,) float32
    label_image: np.ndarray | None = None   # (H, W) uint8 (255 unknown) / uint16 (65535 unknown)
    score_image: np.ndarray | None = None   # (H, W) float32
    overlay: np.ndarray | None = None       # (H, W, 3) uint8
    rendered_rgb: np.ndarray | None = None  # (H, W, 3) uint8
    camera: tuple | None = None             # (Intrinsics, c2w 4x4) actually rendered
    refined: bool = False
    timing_s: dict[str, float] = field(default_factory=dict)

    def points_per_class(self) -> dict[str, int]:
        counts = np.bincount(self.labels[self.labels != UNKNOWN_U16].astype(np.int64),
                             minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}


def to_cloud_labels(labels: torch.Tensor) -> np.ndarray:
    out = labels.cpu().numpy().astype(np.int64)
    out[out < 0] = UNKNOWN_U16
    return out.astype(np.uint16)


__all__ = [
    "Labels",
    "QueryError",
    "RefineCache",
    "RefineData",
    "RefineHead",
    "SegmentationResult",
    "classify",
    "to_cloud_labels",
    "train_refine_head",
    "validate_classes",
    "vocabulary_key",
]
