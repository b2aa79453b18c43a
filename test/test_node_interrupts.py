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


@pytest.mark.parametrize("interrupts", [1, 2])
def test_node_exits_cleanly_on_one_or_two_sigints(interrupts, tmp_path):
    log_path = tmp_path / "node.log"
    params = {"device": "cpu", "teacher": {"kind": "synthetic", "synthetic": {"class_names": ["a", "b"]}}}
    proc = start_node_process(params, log_path=log_path)
    context, node, executor = init_context()
    try:
        Ovs3dClient(node).wait_ready(executor, timeout_s=120.0, proc=proc)
        proc.send_signal(signal.SIGINT)
        if interrupts == 2:  # the second once the node says it is cleaning up, as launch's would land
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
