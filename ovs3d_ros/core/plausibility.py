"""Plausibility bounds on everything that enters the model (``input.*`` in the config).

``Frame.validate`` checks that a frame is well formed (shapes, types, finite numbers, a rotation).
That is not enough: one finite but absurd value (a principal point at 1e30 px, a depth of 3e38 m, a
camera 1e8 m away) trains NaN losses and puts points so far away that every later query fails. The
checks here reject such inputs before they reach a keyframe; each failure carries a short ``reason``
(the node counts drops per reason) and a message that names the value.

Depth policy: out-of-range pixels become 0 (no measurement) and the rest of the image is kept; a depth
image that has measurements but none in range drops the whole frame (wrong units or a broken sensor:
nothing of that frame is trustworthy enough to train on).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ovs3d_ros.config import InputConfig
from ovs3d_ros.core.frame import Frame, FrameError, Intrinsics


class ImplausibleInput(FrameError):
    """A well-formed input with a value outside its plausibility bounds; ``reason`` names the check."""

    def __init__(self, reason: str, message: str):
        super().__init__(message, reason)


def check_intrinsics(intr: Intrinsics, cfg: InputConfig) -> None:
    """Principal point within the image (plus the margin), focal lengths within a range of its size."""
    side = max(intr.width, intr.height)
    lo, hi = cfg.min_focal_factor * side, cfg.max_focal_factor * side
    for name, f in (("fx", intr.fx), ("fy", intr.fy)):
        if not lo <= f <= hi:
            raise ImplausibleInput(
                "focal_length",
                f"{name}={f:.6g} px is outside [{lo:.6g}, {hi:.6g}] (input.min/max_focal_factor x "
                f"the {intr.width}x{intr.height} image's longer side)",
            )
    for name, c, size in (("cx", intr.cx, intr.width), ("cy", intr.cy, intr.height)):
        margin = cfg.principal_point_margin * size
        if not -margin <= c <= size + margin:
            raise ImplausibleInput(
                "principal_point",
                f"{name}={c:.6g} px is outside the {intr.width}x{intr.height} image "
                f"([{-margin:.6g}, {size + margin:.6g}])",
            )


def check_quaternion(q_xyzw, cfg: InputConfig) -> None:
    """A pose quaternion must be unit length within the tolerance (a scaled one hides a bug upstream)."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    err = abs(float(np.dot(q, q)) - 1.0)
    if not err <= cfg.quaternion_tolerance:  # also catches NaN
        raise ImplausibleInput(
            "quaternion_norm",
            f"pose quaternion (x y z w) {q.tolist()} has squared norm {float(np.dot(q, q)):.6g}, "
            f"more than input.quaternion_tolerance={cfg.quaternion_tolerance} from 1",
        )


def clean_depth(depth: np.ndarray, cfg: InputConfig) -> tuple[np.ndarray, int]:
    """(depth with out-of-range pixels set to 0, how many were set); raises when none is in range."""
    measured = np.isfinite(depth) & (depth != 0)
    ok = measured & (depth >= cfg.depth_min_m) & (depth <= cfg.depth_max_m)
    bad = int(np.count_nonzero(measured & ~ok))
    if bad and not ok.any():
        sample = float(depth[measured & ~ok].flat[0])
        raise ImplausibleInput(
            "depth_range",
            f"no depth value within [{cfg.depth_min_m}, {cfg.depth_max_m}] m "
            f"(input.depth_min_m/max_m): {bad} measurements such as {sample:.6g} m",
        )
    if not bad:
        return depth, 0
    return np.where(ok, depth, np.float32(0)).astype(np.float32), bad


class FrameGate:
    """The stateful part: camera positions against the first accepted one and the last one's speed.

    One gate per map (the node makes a new one on reset and checkpoint load). Only accepted frames
    move the reference, so a stream of absurd poses never drags it away; a real, persistent jump
    (a relocalisation) is accepted once enough time passed for ``max_speed_m_s`` to allow it.
    """

    def __init__(self, cfg: InputConfig):
        self.cfg = cfg
        self.anchor: np.ndarray | None = None  # position of the first accepted frame
        self._last: tuple[float, np.ndarray] | None = None  # (stamp, position) of the last accepted
        self.depth_pixels_invalidated = 0

    def check(self, frame: Frame) -> Frame:
        """The frame (depth cleaned) or ImplausibleInput; call after ``frame.validate()``."""
        check_intrinsics(frame.intrinsics, self.cfg)
        position = np.asarray(frame.pose, dtype=np.float64)[:3, 3]
        self._check_position(position, frame.stamp)
        if frame.depth is not None:
            depth, bad = clean_depth(frame.depth, self.cfg)
            if bad:
                self.depth_pixels_invalidated += bad
                frame = replace(frame, depth=depth)
        if self.anchor is None:
            self.anchor = position.copy()
        self._last = (float(frame.stamp), position.copy())
        return frame

    def _check_position(self, position: np.ndarray, stamp: float) -> None:
        cfg = self.cfg
        norm = float(np.linalg.norm(position))
        if norm > cfg.max_position_m:
            raise ImplausibleInput(
                "pose_position",
                f"camera position {position.tolist()} is {norm:.6g} m from the world origin "
                f"(input.max_position_m={cfg.max_position_m:g})",
            )
        if self.anchor is not None:
            dist = float(np.linalg.norm(position - self.anchor))
            if dist > cfg.max_distance_m:
                raise ImplausibleInput(
                    "pose_distance",
                    f"camera position {position.tolist()} is {dist:.6g} m from the first pose "
                    f"{self.anchor.tolist()} (input.max_distance_m={cfg.max_distance_m:g})",
                )
        if self._last is not None and cfg.max_speed_m_s > 0:
            last_stamp, last_pos = self._last
            jump = float(np.linalg.norm(position - last_pos))
            allowed = cfg.max_speed_m_s * abs(stamp - last_stamp) + cfg.speed_slack_m
            if jump > allowed:
                raise ImplausibleInput(
                    "pose_speed",
                    f"camera moved {jump:.6g} m in {abs(stamp - last_stamp):.3f} s since the last "
                    f"accepted frame (at most {allowed:.6g} m: input.max_speed_m_s="
                    f"{cfg.max_speed_m_s:g} plus input.speed_slack_m={cfg.speed_slack_m:g})",
                )

    def reanchor(self, position: np.ndarray | None) -> None:
        """Forget the speed reference and take ``position`` (e.g. a loaded scene's centre) as anchor."""
        self.anchor = None if position is None else np.asarray(position, dtype=np.float64).copy()
        self._last = None
