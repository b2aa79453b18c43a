"""What every helper process of the ROS tests does once its node is set up: tell the test it is ready,
then serve until the test closes its stdin (the test's way of ending the process cleanly)."""

import os
import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException


def serve_until_stdin_closes(node, teardown: bool = True) -> None:
    """``teardown=False``: when stdin closes, exit at once (status 0) instead of shutting rclpy down."""

    def wait_for_stdin() -> None:
        sys.stdin.read()
        if not teardown:
            sys.stdout.flush()
            os._exit(0)
        rclpy.try_shutdown()

    threading.Thread(target=wait_for_stdin, daemon=True).start()
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
