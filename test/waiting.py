"""Waiting on a condition in tests: the loop ends when the condition holds; the timeout is a safety net."""

import time


def wait_until(predicate, timeout_s: float = 30.0, poll_s: float = 0.005) -> bool:
    """True as soon as ``predicate()`` holds, False if it still does not after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False
