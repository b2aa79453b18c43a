"""The scene container every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ovs3d_ros.core.frame import Frame, FrameError


class DatasetError(ValueError):
    """A scene on disk (or in a bag) that cannot be read; the message names the file and the problem."""


@dataclass
class SceneDataset:
    """Posed frames of one scene plus its evaluation split.

    ``test_indices`` index into ``frames`` (the annotated / evaluation views). When
    ``test_held_out`` is True they are held out (never trained on: the synthetic benchmark); when
    False they are also training views (the 3D-OVS protocol, where annotated views are trained on).
    """

    name: str
    frames: list[Frame]
    class_names: list[str]
    test_indices: list[int]
    test_held_out: bool = True
    metadata: dict = field(default_factory=dict)

    @property
    def train_indices(self) -> list[int]:
        if not self.test_held_out:
            return list(range(len(self.frames)))
        test = set(self.test_indices)
        return [i for i in range(len(self.frames)) if i not in test]

    @property
    def train_frames(self) -> list[Frame]:
        return [self.frames[i] for i in self.train_indices]

    @property
    def test_frames(self) -> list[Frame]:
        return [self.frames[i] for i in self.test_indices]

    def __len__(self) -> int:
        return len(self.frames)

    def validate(self) -> SceneDataset:
        """Raise DatasetError naming the first problem; return self."""
        if list(self.class_names) != sorted(self.class_names):
            raise DatasetError(f"{self.name}: class names must be sorted, got {self.class_names}")
        if len(set(self.class_names)) != len(self.class_names):
            raise DatasetError(f"{self.name}: duplicate class names in {self.class_names}")
        if len(self.class_names) > 255:
            raise DatasetError(f"{self.name}: at most 255 classes fit uint8 labels")
        for i in self.test_indices:
            if not 0 <= i < len(self.frames):
                raise DatasetError(f"{self.name}: test index {i} outside 0..{len(self.frames) - 1}")
        for i, frame in enumerate(self.frames):
            try:
                frame.validate()
            except FrameError as exc:
                raise DatasetError(f"{self.name}: frame {i}: {exc}") from None
            if frame.labels is not None:
                valid = frame.labels[frame.labels != 255]
                if valid.size and int(valid.max()) >= len(self.class_names):
                    raise DatasetError(
                        f"{self.name}: frame {i} ({frame.source_id}): label "
                        f"{int(valid.max())} but only {len(self.class_names)} classes"
                    )
            multi_hot = frame.extras.get("gt_multi_hot")
            if multi_hot is not None and multi_hot.shape != (*frame.rgb.shape[:2], len(self.class_names)):
                raise DatasetError(
                    f"{self.name}: frame {i}: gt_multi_hot has shape {multi_hot.shape}, "
                    f"expected {(*frame.rgb.shape[:2], len(self.class_names))}"
                )
        return self


def labels_from_multi_hot(multi_hot: np.ndarray) -> np.ndarray:
    """(H,W,C) bool -> (H,W) uint8 class index; 255 where a pixel has no class or several."""
    multi_hot = np.asarray(multi_hot, dtype=bool)
    counts = multi_hot.sum(axis=-1)
    labels = np.argmax(multi_hot, axis=-1).astype(np.uint8)
    labels[counts != 1] = 255
    return labels


def multi_hot_from_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(H,W) uint8 index (255 = none) -> (H,W,C) bool."""
    labels = np.asarray(labels)
    return labels[..., None] == np.arange(num_classes, dtype=labels.dtype)
