"""Two processes over real Fast DDS (loopback, private ROS_DOMAIN_ID set by conftest) exchange this
package's own message and service types."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from ovs3d_ros.msg import TrainingStatus
from ovs3d_ros.srv import Query

from ovs3d_ros.ros.client import init_context

pytestmark = pytest.mark.ros


@pytest.fixture
def server():
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "ros_helpers" / "echo_query_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_service_and_topic_across_processes(server):
    context, node, executor = init_context()
    try:
        got = []
        node.create_subscription(TrainingStatus, "status", got.append, 10)
        client = node.create_client(Query, "query")
        assert client.wait_for_service(timeout_sec=20.0), "the server process was not discovered"
        future = client.call_async(Query.Request(classes=["chair", "sofa", "floor"]))
        executor.spin_until_future_complete(future, timeout_sec=20.0)
        res = future.result()
        assert res is not None and res.success and res.message == "floor|sofa|chair"
        assert list(res.scene.class_names) == ["chair", "sofa", "floor"]
        future = client.call_async(Query.Request())
        executor.spin_until_future_complete(future, timeout_sec=20.0)
        assert future.result().success is False and future.result().message == "no classes"
        deadline = time.monotonic() + 20.0
        while not got and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert got and got[0].state == "training" and got[0].iterations == 7
    finally:
        rclpy.shutdown(context=context)
