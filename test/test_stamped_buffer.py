"""StampedBuffer: nearest-stamp matching, reordering, clock jumps, and a full history (a late pose into a
full buffer once raised IndexError inside a subscription callback and stopped the node)."""

import numpy as np

from ovs3d_ros.ros.stamped_buffer import StampedBuffer


def _pose(x: float) -> np.ndarray:
    m = np.eye(4)
    m[0, 3] = x
    return m


def test_nearest_within_tolerance_and_reordering():
    buf = StampedBuffer(maxlen=8)
    for t in (1.0, 2.0, 3.0):
        buf.add(t, _pose(t))
    buf.add(2.5, _pose(2.5))  # arrives late
    assert buf.lookup(2.45, 0.1)[0, 3] == 2.5
    assert buf.lookup(2.2, 0.1) is None
    assert buf.lookup(3.04, 0.05)[0, 3] == 3.0


def test_late_pose_into_a_full_buffer_keeps_it_sorted_and_bounded():
    buf = StampedBuffer(maxlen=4)
    for t in (1.0, 1.1, 1.2, 1.3):
        buf.add(t, _pose(t))
    buf.add(1.25, _pose(1.25))  # full: the oldest (1.0) goes
    assert buf.lookup(1.0, 0.01) is None and buf.lookup(1.25, 0.01)[0, 3] == 1.25
    buf.add(1.05, _pose(1.05))  # older than everything kept in a full buffer: ignored
    assert buf.lookup(1.05, 0.01) is None
    stamps = list(buf._stamps)
    assert stamps == sorted(stamps) and len(stamps) == 4


def test_clock_jump_back_clears_history():
    buf = StampedBuffer(maxlen=8)
    buf.add(100.0, _pose(1))
    buf.add(10.0, _pose(2))  # a bag looped
    assert buf.clock_jumps == 1 and buf.lookup(100.0, 0.1) is None and buf.lookup(10.0, 0.1)[0, 3] == 2


def test_non_array_values_match_too():
    buf = StampedBuffer(maxlen=4)
    buf.add(5.0, "depth@5.0")
    buf.add(5.1, "depth@5.1")
    assert buf.lookup(5.08, 0.05) == "depth@5.1" and buf.lookup(5.5, 0.05) is None
