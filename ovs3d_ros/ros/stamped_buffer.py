"""History of asynchronous inputs (poses, depth and label images) for matching to image stamps.

The matching rule itself (interpolated poses, nearest depth/labels) is ``core/frame_assembly.py``'s,
shared with the rosbag reader; this module adds what a live stream needs: thread safety, bounded
history, out-of-order arrivals and clock jumps (Timeline).
"""

from __future__ import annotations

import bisect
import threading
from collections import deque

import numpy as np

from ovs3d_ros.core.frame_assembly import NS_PER_S, nearest_index, pose_at, pose_is_final

# Stamps going back by more than this are a clock jump (bag loop, sim restart), not reordering.
CLOCK_JUMP_BACK_S = 1.0
CLOCK_JUMP_BACK_NS = int(CLOCK_JUMP_BACK_S * NS_PER_S)
# ... once this many consecutive messages agree on the new time line: one message with an outlier stamp
# (a far-future stamp, then normal ones; or one very late message) must not wipe the history.
JUMP_CONFIRM = 3
# Values kept for matching by default: a few seconds of a 100 Hz odometry stream.
DEFAULT_HISTORY = 512


class Timeline:
    """Follows a stream's stamps and says when they really jumped back.

    ``head`` is the newest stamp of the confirmed time line. A stamp more than ``jump_s`` behind it
    (or ahead of it) is a candidate for a new time line; ``confirm`` consecutive candidates within
    ``jump_s`` of each other make it real. Any stamp near the head in between cancels the candidates,
    so a single outlier moves nothing.
    """

    def __init__(self, jump_s: float = CLOCK_JUMP_BACK_S, confirm: int = JUMP_CONFIRM):
        self.jump_s = jump_s
        self.confirm = max(1, confirm)
        self.head: float | None = None
        self._behind: list[float] = []
        self._ahead: list[float] = []

    def observe(self, stamp: float) -> bool:
        """Take one stamp; True exactly when it confirms a jump back (the caller drops its history)."""
        if self.head is None:
            self.head = stamp
            return False
        if stamp < self.head - self.jump_s:
            self._ahead.clear()
            if self._grow(self._behind, stamp):
                self.head = max(self._behind)
                self._behind.clear()
                return True
            return False
        if stamp > self.head + self.jump_s:  # a forward gap is legal, an outlier must not become head
            self._behind.clear()
            if self._grow(self._ahead, stamp):
                self.head = max(self._ahead)
                self._ahead.clear()
            return False
        self._behind.clear()
        self._ahead.clear()
        self.head = max(self.head, stamp)
        return False

    @property
    def pending(self) -> int:
        """Stamps seen behind the head that may still become a new time line."""
        return len(self._behind)

    def _grow(self, run: list[float], stamp: float) -> bool:
        if run and abs(stamp - run[-1]) > self.jump_s:
            run.clear()  # not the same new time line as the previous candidates
        run.append(stamp)
        return len(run) >= self.confirm

    def reset(self) -> None:
        self.head = None
        self._behind.clear()
        self._ahead.clear()


class StampedBuffer:
    """Stamped values (poses, depth or label images), matched to image stamps by the rules of
    core/frame_assembly.py: ``lookup`` the nearest within a tolerance, ``pose_at`` interpolated.
    Stamps are in one unit per buffer; ``jump`` (default: CLOCK_JUMP_BACK_S) is in that unit.

    Thread-safe: subscriptions add, the frame assembler looks up. Values are kept sorted by stamp, so
    out-of-order arrivals match like any other. A confirmed jump back of the stamps (see Timeline)
    clears the history and keeps only the new time line's values (values from the old time line must
    not match new images); a lone outlier stamp clears nothing.
    """

    def __init__(self, maxlen: int = DEFAULT_HISTORY, jump: float = CLOCK_JUMP_BACK_S):
        self._stamps: deque[float] = deque(maxlen=maxlen)
        self._values: deque = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._timeline = Timeline(jump_s=jump)
        self._candidates: list[tuple[float, object]] = []  # values that may start a new time line
        self.clock_jumps = 0

    def add(self, stamp: float, value) -> None:
        with self._lock:
            jumped = self._timeline.observe(stamp)
            if jumped:
                keep = self._candidates + [(stamp, value)]
                self._candidates = []
                self._stamps.clear()
                self._values.clear()
                self.clock_jumps += 1
                for t, v in keep:
                    self._insert(t, v)
                return
            pending = self._timeline.pending  # this value and the candidates of the same run before it
            kept = self._candidates[len(self._candidates) - pending + 1:] if pending else []
            self._candidates = kept + [(stamp, value)] if pending else []
            self._insert(stamp, value)

    def _insert(self, stamp: float, value) -> None:
        if self._stamps and stamp < self._stamps[-1]:
            # reordering: keep the deque sorted (a full deque cannot insert: drop the oldest first, or
            # the newcomer itself when it is older than everything kept)
            i = bisect.bisect(list(self._stamps), stamp)
            if len(self._stamps) == self._stamps.maxlen:
                if i == 0:
                    return
                self._stamps.popleft()
                self._values.popleft()
                i -= 1
            self._stamps.insert(i, stamp)
            self._values.insert(i, value)
            return
        self._stamps.append(stamp)
        self._values.append(value)

    def latest_stamp(self) -> float | None:
        with self._lock:
            return self._stamps[-1] if self._stamps else None

    def lookup(self, stamp: float, tolerance_s: float):
        """The value stamped nearest ``stamp`` within the tolerance (core nearest_index), or None."""
        with self._lock:
            best = nearest_index(self._stamps, stamp, tolerance_s)
            if best is None:
                return None
            value = self._values[best]
            # arrays are handed out as copies: the caller may keep or modify them
            return value.copy() if isinstance(value, np.ndarray) else value

    def pose_at(self, stamp, tolerance, max_gap=None) -> tuple[np.ndarray | None, bool]:
        """(pose by core pose_at, final): ``final`` is False while a later pose could still change
        the answer (none is stamped at or after ``stamp`` yet)."""
        with self._lock:
            stamps, poses = list(self._stamps), list(self._values)
        return pose_at(stamps, poses, stamp, tolerance, max_gap), pose_is_final(stamps, stamp)

    def discard_after(self, stamp: float) -> int:
        """Forget values stamped after ``stamp`` (an old time line ahead of a new one); how many."""
        with self._lock:
            stamps = list(self._stamps)
            n = len(stamps) - bisect.bisect_right(stamps, stamp)
            for _ in range(n):
                self._stamps.pop()
                self._values.pop()
            return n

    def clear(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._values.clear()
            self._candidates = []
            self._timeline.reset()
