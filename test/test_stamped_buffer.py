"""StampedBuffer: nearest-stamp matching, reordering, clock jumps, and a full history (a late pose into a
full buffer once raised IndexError inside a subscription callback and stopped the node)."""

import numpy as np

from ovs3d_ros.ros.stamped_buffer import StampedBuffer, Timeline


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


def test_clock_jump_back_clears_history_once_it_persists():
    buf = StampedBuffer(maxlen=8)
    buf.add(100.0, _pose(1))
    buf.add(10.0, _pose(2))  # a bag looped ... or one stale message: not decided yet
    assert buf.clock_jumps == 0 and buf.lookup(100.0, 0.1)[0, 3] == 1 and buf.lookup(10.0, 0.1)[0, 3] == 2
    buf.add(10.1, _pose(3))
    buf.add(10.2, _pose(4))  # three messages agree: the time line restarted
    assert buf.clock_jumps == 1 and buf.lookup(100.0, 0.1) is None
    assert [buf.lookup(t, 0.01)[0, 3] for t in (10.0, 10.1, 10.2)] == [2, 3, 4]


def test_clock_jump_back_into_a_full_buffer_keeps_the_new_time_line():
    buf = StampedBuffer(maxlen=4)
    for t in (100.0, 100.1, 100.2, 100.3):
        buf.add(t, _pose(t))
    for t in (10.0, 10.1, 10.2):
        buf.add(t, _pose(t))
    assert buf.clock_jumps == 1 and list(buf._stamps) == [10.0, 10.1, 10.2]


def test_one_future_outlier_stamp_does_not_wipe_the_history():
    buf = StampedBuffer(maxlen=64)
    for i in range(10):
        buf.add(50.0 + 0.1 * i, _pose(i))
    buf.add(2.0**31 - 1, _pose(99))  # one message with an absurd stamp
    for i in range(10, 20):
        buf.add(50.0 + 0.1 * i, _pose(i))
    assert buf.clock_jumps == 0
    assert buf.lookup(50.0, 0.01)[0, 3] == 0 and buf.lookup(51.9, 0.01)[0, 3] == 19


def test_a_very_late_message_is_matched_and_clears_nothing():
    buf = StampedBuffer(maxlen=64)
    for i in range(30):
        buf.add(50.0 + 0.1 * i, _pose(i))
    buf.add(45.0, _pose(-1))  # 8 s late
    buf.add(53.0, _pose(30))
    assert buf.clock_jumps == 0 and buf.lookup(45.0, 0.01)[0, 3] == -1 and buf.lookup(50.0, 0.01)[0, 3] == 0


def test_scattered_past_stamps_do_not_confirm_a_jump():
    buf = StampedBuffer(maxlen=64)
    buf.add(1000.0, _pose(0))
    for t in (10.0, 500.0, 200.0, 800.0):  # all behind, but not one time line
        buf.add(t, _pose(t))
    assert buf.clock_jumps == 0 and buf.lookup(1000.0, 0.01)[0, 3] == 0


def test_a_forward_gap_becomes_the_time_line():
    tl = Timeline()
    for t in (1.0, 1.1, 9.0, 9.1, 9.2):  # the stream paused 8 s
        assert not tl.observe(t)
    assert tl.head == 9.2
    assert not tl.observe(8.5) and tl.head == 9.2  # within the jump threshold: reordering


def test_non_array_values_match_too():
    buf = StampedBuffer(maxlen=4)
    buf.add(5.0, "depth@5.0")
    buf.add(5.1, "depth@5.1")
    assert buf.lookup(5.08, 0.05) == "depth@5.1" and buf.lookup(5.5, 0.05) is None


def test_discard_after_forgets_the_old_time_line_only():
    buf = StampedBuffer(maxlen=16)
    for t in (10.0, 10.1, 500.0, 500.1):
        buf.add(t, _pose(t))
    assert buf.discard_after(11.0) == 2 and list(buf._stamps) == [10.0, 10.1]
