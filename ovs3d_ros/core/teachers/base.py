"""What every teacher returns and the interface it implements.

A teacher turns a keyframe into the 2D targets the field distils: multi-scale CLIP patch features
(unit vectors per pixel and scale) and, optionally, a DINO token grid. It runs once per keyframe, on
insertion, never in the training loop.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass

import torch

from ovs3d_ros.core.frame import Frame


class TeacherError(ValueError):
    """A bad teacher input or configuration (the message names the field or input)."""


class TeacherLoadError(TeacherError):
    """Model weights or architecture that cannot be loaded (the message says which and how to fix it)."""


@dataclass
class TeacherFeatures:
    """Per-keyframe teacher targets, stored in fp16.

    ``clip``: (S, D, h, w), one unit vector per pixel and scale; pixel (i, j) is centred on full-res
    pixel ((j + .5) W / w, (i + .5) H / h).
    ``dino``: (Ht, Wt, Cd) token grid or None; token (i, j) is centred on full-res pixel
    ((j + .5) W / Wt, (i + .5) H / Ht).
    """

    clip: torch.Tensor
    dino: torch.Tensor | None = None

    def nbytes(self) -> int:
        """Bytes held by the feature tensors."""
        total = self.clip.numel() * self.clip.element_size()
        if self.dino is not None:
            total += self.dino.numel() * self.dino.element_size()
        return int(total)

    def to(self, device: torch.device | str) -> "TeacherFeatures":
        return TeacherFeatures(self.clip.to(device),
                               None if self.dino is None else self.dino.to(device))


class Teacher(abc.ABC):
    """The interface the trainer and the query code use."""

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int:
        """Dimension D of the CLIP-like space (image and text features)."""

    @abc.abstractmethod
    def encode_text(self, classes: list[str]) -> torch.Tensor:
        """(C, D) float32 unit rows, one per class string (cached per vocabulary)."""

    @abc.abstractmethod
    def extract(self, frame: Frame) -> TeacherFeatures:
        """The teacher targets of one keyframe."""


def validate_classes(classes: list[str]) -> tuple[str, ...]:
    """The vocabulary as a tuple, or TeacherError naming the bad entry."""
    if isinstance(classes, str) or not isinstance(classes, (list, tuple)):
        raise TeacherError(f"classes must be a list of strings, got {type(classes).__name__}")
    if len(classes) == 0:
        raise TeacherError("classes is empty: give at least one class name")
    for i, name in enumerate(classes):
        if not isinstance(name, str) or not name.strip():
            raise TeacherError(f"classes[{i}] must be a non-empty string, got {name!r}")
    return tuple(classes)


def stable_hash(*parts: object) -> int:
    """A 63-bit hash that is the same in every process (Python's hash() is salted per process)."""
    digest = hashlib.sha256("\x1f".join(repr(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def frame_seed(seed: int, frame: Frame) -> int:
    """Seed of a frame's random choices: fixed per (seed, view), different between views."""
    return stable_hash(seed, frame.source_id, frame.frame_id, round(float(frame.stamp), 9))
