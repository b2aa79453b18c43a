"""What a ROS process does with Ctrl-C once it is already stopping.

Ctrl-C in a terminal signals the whole foreground process group. Under `ros2 launch` a node therefore
gets one SIGINT from the terminal and another one that launch forwards to it: the first shuts rclpy's
context down and the node starts its clean-up, the second would land in that clean-up as a
KeyboardInterrupt (a traceback, exit code -2, "process has died" in launch's log)."""

import signal
import threading


def ignore_further_interrupts() -> None:
    """From here on SIGINT does nothing in this process (main thread only; elsewhere it cannot be set).
    A clean-up that hangs is still ended the way launch ends one: SIGTERM, then SIGKILL."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
