"""Nearest-stamp matching of asynchronous inputs (poses, depth and label images) to image stamps."""

from __future__ import annotations

import bisect
import threading
from collections import deque

import numpy as np

# Stamps going back by more than this are a clock jump (bag loop, sim restart), not reordering.
CLOCK_JUMP_BACK_S = 1.0
# Values kept for matching by default: a few seconds of a 100 Hz odometry stream.
DEFAULT_HISTORY = 512


class StampedBuffer:
    """Stamped values (poses, depth or label images), matched to image stamps by the nearest stamp
    within a tolerance.

    Thread-safe: subscriptions add, the frame assembler looks up. A stamp that jumps back by more than
    CLOCK_JUMP_BACK_S clears the history (values from the old timeline must not match new images).
    """

    def __init__(self, maxlen: int = DEFAULT_HISTORY):
        self._stamps: deque[float] = deque(maxlen=maxlen)
        self._values: deque = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.clock_jumps = 0

    def add(self, stamp: float, value) -> None:
        with self._lock:
            if self._stamps and stamp < self._stamps[-1] - CLOCK_JUMP_BACK_S:
                self._stamps.clear()
                self._values.clear()
                self.clock_jumps += 1
            if self._stamps and stamp < self._stamps[-1]:
                # mild reordering: keep the deque sorted (a full deque cannot insert: drop the oldest
                # first, or the newcomer itself when it is older than everything kept)
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
        with self._lock:
            if not self._stamps:
                return None
            stamps = list(self._stamps)
            i = bisect.bisect_left(stamps, stamp)
            best = None
            for j in (i - 1, i):
                if 0 <= j < len(stamps) and abs(stamps[j] - stamp) <= tolerance_s:
                    if best is None or abs(stamps[j] - stamp) < abs(stamps[best] - stamp):
                        best = j
            if best is None:
                return None
            value = self._values[best]
            # arrays are handed out as copies: the caller may keep or modify them
            return value.copy() if isinstance(value, np.ndarray) else value

    def clear(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._values.clear()
