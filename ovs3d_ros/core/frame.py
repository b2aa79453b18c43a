"""The one frame type every source produces (ROS topics, rosbag2, LLFF/3D-OVS, nerfstudio, synthetic).

Conventions (one, everywhere in the core):
- ``pose`` is camera-to-world, 4x4 float64, metric, with the camera axes of a ROS optical frame
  (REP-103 ``*_optical_frame``: x right, y down, z forward), the same as OpenCV.
- ``rgb`` is HxWx3 uint8; ``depth`` is HxW float32 metres along the optical axis (z), 0 or NaN = no
  measurement; ``labels`` (ground truth, synthetic/annotated data only) is HxW uint8 index into the
  scene's sorted class names, 255 = unlabelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

UNLABELLED = 255


class FrameError(ValueError):
    """A frame whose contents are inconsistent or invalid (the message says what and where).

    ``reason`` is an optional short code for the drop counters (drops by reason)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of a (possibly resized) image; pixel centres at integer + 0.5."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion_model: str = ""
    distortion: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # Readers hand in numpy scalars (LLFF hwf, JSON via numpy): keep plain Python numbers so every
        # consumer, checkpoints loaded with torch.load(weights_only=True) included, sees one type.
        for name in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("width", "height"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "distortion", tuple(float(k) for k in self.distortion))

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera seen at another image size."""
        sx, sy = width / self.width, height / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                       width=width, height=height)

    def has_distortion(self) -> bool:
        return any(abs(k) > 1e-9 for k in self.distortion)

    def validate(self) -> None:
        vals = (self.fx, self.fy, self.cx, self.cy)
        if not all(np.isfinite(v) for v in vals):
            raise FrameError(f"intrinsics are not finite: {vals}")
        if self.fx <= 0 or self.fy <= 0:
            raise FrameError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise FrameError(f"image size must be positive, got {self.width}x{self.height}")


@dataclass
class Frame:
    rgb: np.ndarray
    intrinsics: Intrinsics
    pose: np.ndarray
    stamp: float = 0.0
    depth: np.ndarray | None = None
    labels: np.ndarray | None = None
    frame_id: str = ""
    source_id: str = ""
    extras: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def validate(self) -> "Frame":
        """Raise FrameError naming the first problem; return self so calls can chain."""
        where = f" ({self.source_id})" if self.source_id else ""
        if not isinstance(self.rgb, np.ndarray) or self.rgb.dtype != np.uint8 or self.rgb.ndim != 3 \
                or self.rgb.shape[2] != 3:
            raise FrameError(f"rgb must be HxWx3 uint8{where}, got "
                             f"{getattr(self.rgb, 'shape', None)} {getattr(self.rgb, 'dtype', None)}")
        if self.rgb.shape[0] == 0 or self.rgb.shape[1] == 0:
            raise FrameError(f"rgb is empty{where}")
        try:
            self.intrinsics.validate()
        except FrameError as exc:
            raise FrameError(f"{exc}{where}") from None
        if (self.intrinsics.width, self.intrinsics.height) != (self.width, self.height):
            raise FrameError(f"camera info is {self.intrinsics.width}x{self.intrinsics.height} but the "
                             f"image is {self.width}x{self.height}{where}")
        pose = np.asarray(self.pose)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise FrameError(f"pose must be a finite 4x4 matrix{where}")
        rot = pose[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) or np.linalg.det(rot) < 0:
            raise FrameError(f"pose rotation is not a rotation matrix{where}")
        if not np.allclose(pose[3], [0, 0, 0, 1]):
            raise FrameError(f"pose last row must be [0 0 0 1]{where}")
        if self.depth is not None:
            if self.depth.shape != self.rgb.shape[:2]:
                raise FrameError(f"depth is {self.depth.shape[::-1]} but the image is "
                                 f"{self.width}x{self.height}{where}")
            if self.depth.dtype != np.float32:
                raise FrameError(f"depth must be float32 metres{where}, got {self.depth.dtype}")
        if self.labels is not None and self.labels.shape != self.rgb.shape[:2]:
            raise FrameError(f"labels are {self.labels.shape[::-1]} but the image is "
                             f"{self.width}x{self.height}{where}")
        return self
