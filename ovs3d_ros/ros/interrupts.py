"""What a ROS process does with Ctrl-C once it is already stopping.

Ctrl-C in a terminal signals the whole foreground process group. Under `ros2 launch` a node therefore
gets one SIGINT from the terminal and another one that launch forwards to it, often microseconds
apart: the first shuts rclpy's context down and the node starts its clean-up, the second would land in
that clean-up as a KeyboardInterrupt (a traceback, exit code -2, "process has died" in launch's log).
Ignoring SIGINT only once the clean-up begins (``ignore_further_interrupts``) leaves a window between
the first interrupt and that call (a CI run hit it); ``interrupt_once``, installed before
``rclpy.init``, closes it: the handler that raises the first KeyboardInterrupt ignores SIGINT first."""

import signal
import threading


def _first_interrupt(_signum, _frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # before raising: a second SIGINT is dropped by the OS
    raise KeyboardInterrupt


def interrupt_once() -> None:
    """The first SIGINT raises KeyboardInterrupt, as Python's default handler does; every later one is
    ignored. Call before ``rclpy.init``: rclpy's own handler (which shuts the context down) keeps
    calling the handler it found installed, this one. Main thread only (elsewhere it cannot be set)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _first_interrupt)


def ignore_further_interrupts() -> None:
    """From here on SIGINT does nothing in this process (main thread only; elsewhere it cannot be set).
    A clean-up that hangs is still ended the way launch ends one: SIGTERM, then SIGKILL."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
