"""What every helper process of the ROS tests does once its node is set up: tell the test it is ready,
then serve until the test closes its stdin (the test's way of ending the process cleanly)."""

import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException


def serve_until_stdin_closes(node) -> None:
    threading.Thread(target=lambda: (sys.stdin.read(), rclpy.try_shutdown()), daemon=True).start()
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
