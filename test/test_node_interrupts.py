"""Ctrl-C on `ros2 launch` reaches the node twice: once from the terminal (the whole foreground process
group gets SIGINT) and once forwarded by launch. The second arrives while the node is cleaning up, and
used to end it with a KeyboardInterrupt traceback and exit code -2 ("process has died" in launch's
log). The launch-file test checks the same through upstream launch; this one needs no colcon build."""

import signal
import subprocess
import time

import pytest

from ovs3d_ros.ros.client import Ovs3dClient, init_context, start_node_process

pytestmark = pytest.mark.ros


def _wait_for_line(log_path, text: str, proc, net_s: float = 120.0) -> None:
    deadline = time.monotonic() + net_s  # a safety net; the wait ends on the line (or the exit)
    while text not in log_path.read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("interrupts", ["one", "two, the second during clean-up", "two at once"])
def test_node_exits_cleanly_on_one_or_two_sigints(interrupts, tmp_path):
    log_path = tmp_path / "node.log"
    params = {"device": "cpu", "teacher": {"kind": "synthetic", "synthetic": {"class_names": ["a", "b"]}}}
    proc = start_node_process(params, log_path=log_path)
    context, node, executor = init_context()
    try:
        Ovs3dClient(node).wait_ready(executor, timeout_s=120.0, proc=proc)
        proc.send_signal(signal.SIGINT)
        if interrupts == "two at once":  # terminal and launch microseconds apart: a CI run's failure
            proc.send_signal(signal.SIGINT)
        elif interrupts == "two, the second during clean-up":  # once the node says so
            _wait_for_line(log_path, "shutting down", proc)
            proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=120.0)  # a safety net: a clean exit comes in well under a second
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "killed after 120 s"
    finally:
        if proc.poll() is None:
            proc.kill()
        node.destroy_node()
        context.try_shutdown()
    log = log_path.read_text()
    assert rc == 0, (rc, log[-3000:])
    assert "Traceback" not in log, log[-3000:]


def test_the_first_sigint_raises_once_and_every_later_one_is_ignored_under_rclpy():
    """``interrupt_once`` (ros/interrupts.py), as the node and the bag player install it before
    ``rclpy.init``: rclpy's handler passes the first SIGINT on to it, it raises KeyboardInterrupt with
    SIGINT already ignored, so a second one (launch's, microseconds later) cannot land in the clean-up.
    In a child process, signalling itself: no timing involved."""
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os, signal
        import rclpy
        from ovs3d_ros.ros.interrupts import interrupt_once
        interrupt_once()
        rclpy.init()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10**6):  # the handler runs at the next bytecode; this never ends normally
                pass
            print("no KeyboardInterrupt")
        except KeyboardInterrupt:
            print("first raised; rclpy context ok:", rclpy.ok())
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.getsignal(signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # ignored: no exception, the process goes on
        for _ in range(1000):
            pass
        print("second ignored")
        rclpy.try_shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "first raised" in out.stdout and "second ignored" in out.stdout, out.stdout + out.stderr
