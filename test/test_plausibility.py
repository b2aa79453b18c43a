"""Plausibility bounds (core/plausibility.py): every finite-but-absurd value the issue found poisoning
the map (cx = 1e30, all-3e38 depth, a pose 1e8 m away, a scaled quaternion) is refused with a reason
that names it, and normal frames pass unchanged."""

import numpy as np
import pytest

from ovs3d_ros.config import InputConfig
from ovs3d_ros.core.frame import Frame, Intrinsics
from ovs3d_ros.core.plausibility import (
    FrameGate,
    ImplausibleInput,
    check_intrinsics,
    check_quaternion,
    clean_depth,
)

W, H = 40, 30


def _frame(x: float = 0.0, stamp: float = 0.0, depth=None, **intr) -> Frame:
    k = dict(fx=35.0, fy=35.0, cx=20.0, cy=15.0, width=W, height=H) | intr
    pose = np.eye(4)
    pose[0, 3] = x
    return Frame(rgb=np.zeros((H, W, 3), np.uint8), intrinsics=Intrinsics(**k), pose=pose, stamp=stamp,
                 depth=depth).validate()


@pytest.mark.parametrize(
    "intr, reason",
    [
        (dict(cx=1e30), "principal_point"),
        (dict(cy=-3.0), "principal_point"),
        (dict(cx=41.0), "principal_point"),
        (dict(fx=1e30), "focal_length"),
        (dict(fy=1e-3), "focal_length"),
        (dict(fx=3.0), "focal_length"),  # 0.075 x the longer side
        (dict(fy=900.0), "focal_length"),  # 22.5 x
    ],
)
def test_absurd_intrinsics_are_refused_with_a_reason_naming_the_value(intr, reason):
    with pytest.raises(ImplausibleInput) as exc:
        FrameGate(InputConfig()).check(_frame(**intr))
    assert exc.value.reason == reason
    name, value = next(iter(intr.items()))
    assert name in str(exc.value) and f"{value:.6g}" in str(exc.value)


def test_plausible_intrinsics_pass_including_the_image_edges():
    for intr in (dict(cx=0.0, cy=30.0), dict(fx=4.0, fy=800.0), dict(cx=40.0, cy=0.0)):
        check_intrinsics(_frame(**intr).intrinsics, InputConfig())
    check_intrinsics(_frame(cx=44.0).intrinsics, InputConfig(principal_point_margin=0.1))


def test_depth_out_of_range_pixels_become_invalid_and_all_bad_depth_drops_the_frame():
    cfg = InputConfig()
    depth = np.full((H, W), 2.0, np.float32)
    depth[0, :4] = [3e38, 1e30, 0.01, 150.0]
    depth[1, 0] = np.nan  # already "no measurement": not counted
    depth[1, 1] = 0.0
    clean, bad = clean_depth(depth, cfg)
    assert bad == 4 and clean.dtype == np.float32
    assert np.all(clean[0, :4] == 0) and np.all(clean[2:] == 2.0) and clean[1, 1] == 0
    gate = FrameGate(cfg)
    out = gate.check(_frame(depth=depth))
    assert gate.depth_pixels_invalidated == 4 and float(np.nanmax(out.depth)) == 2.0
    for value in (3e38, 1e30, -5.0):
        with pytest.raises(ImplausibleInput) as exc:
            gate.check(_frame(depth=np.full((H, W), value, np.float32)))
        assert exc.value.reason == "depth_range" and f"{value:.6g}" in str(exc.value)
    # no measurement at all (0 everywhere) is not implausible: the frame keeps training RGB
    assert gate.check(_frame(depth=np.zeros((H, W), np.float32))).depth is not None


def test_pose_position_distance_and_speed_bounds():
    cfg = InputConfig()
    gate = FrameGate(cfg)
    with pytest.raises(ImplausibleInput) as exc:
        gate.check(_frame(x=1e8))  # even as the very first pose
    assert exc.value.reason == "pose_position" and "1e+08" in str(exc.value)
    gate.check(_frame(x=0.0, stamp=10.0))
    gate.check(_frame(x=0.3, stamp=10.1))  # 3 m/s
    with pytest.raises(ImplausibleInput) as exc:
        gate.check(_frame(x=50.0, stamp=10.2))  # 500 m/s
    assert exc.value.reason == "pose_speed"
    with pytest.raises(ImplausibleInput) as exc:
        gate.check(_frame(x=5e3, stamp=1e6))  # slow enough over 1e6 s, but far from the first pose
    assert exc.value.reason == "pose_distance"
    # a rejected frame does not move the reference: a frame consistent with the last good one passes
    gate.check(_frame(x=0.35, stamp=10.3))
    # a real relocalisation (5 m) is accepted once enough time passed for the speed bound
    with pytest.raises(ImplausibleInput):
        gate.check(_frame(x=5.35, stamp=10.4))
    gate.check(_frame(x=5.35, stamp=10.6))


def test_reanchor_forgets_the_old_map():
    gate = FrameGate(InputConfig(max_distance_m=10.0))
    gate.check(_frame(x=0.0))
    with pytest.raises(ImplausibleInput):
        gate.check(_frame(x=50.0, stamp=100.0))
    gate.reanchor(None)
    gate.check(_frame(x=50.0, stamp=100.0))
    assert gate.anchor[0] == 50.0


@pytest.mark.parametrize("q", [(0, 0, 0, 2.0), (0, 0, 0, 0.5), (0.1, 0, 0, 1.0), (0, 0, 0, np.nan)])
def test_unnormalised_quaternions_are_refused(q):
    with pytest.raises(ImplausibleInput) as exc:
        check_quaternion(q, InputConfig())
    assert exc.value.reason == "quaternion_norm"


def test_nearly_unit_quaternions_pass():
    for q in ((0, 0, 0, 1.0), (0, 0, 0, 1.004), (0.5, 0.5, 0.5, 0.5), (0, 0.7071, 0, 0.7071)):
        check_quaternion(q, InputConfig())
