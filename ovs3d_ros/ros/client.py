"""Run the ovs3d node in its own process and talk to it from another: used by the demo, the tests and
the benchmarks (the same way a user's launch file and `ros2 service call` would)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rclpy
import yaml
from rclpy.node import Node

from ovs3d_ros.msg import TrainingStatus
from ovs3d_ros.ros.qos import STATUS_QOS
from ovs3d_ros.srv import Checkpoint, Query

NODE_NAME = "ovs3d"
RESEND_AFTER_S = 15.0
"""An idempotent control request without an answer this long is sent again (``Ovs3dClient.call``):
the node answers them within a second or two even while it trains or answers a query."""


def start_node_process(
    params: dict,
    remaps: dict[str, str] | None = None,
    log_path: str | Path | None = None,
    env: dict | None = None,
    extra_params_file: str | Path | None = None,
) -> subprocess.Popen:
    """`python -m ovs3d_ros.ros.node` with a params file (nested dicts or dotted keys) and remaps."""
    fd, params_path = tempfile.mkstemp(prefix="ovs3d_params_", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump({"/**": {"ros__parameters": params}}, f)  # any node name (remapped __node too)
    cmd = [sys.executable, "-m", "ovs3d_ros.ros.node", "--ros-args"]
    if extra_params_file:
        cmd += ["--params-file", str(extra_params_file)]
    cmd += ["--params-file", params_path]
    for src, dst in (remaps or {}).items():
        cmd += ["-r", f"{src}:={dst}"]
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
    # glibc gives each thread its own malloc arena and keeps freed blocks there: with the training,
    # frame and executor threads that alone was ~600 MB of resident growth under load (bench/load.py)
    env = {"MALLOC_ARENA_MAX": "2", **os.environ, **(env or {})}
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop_node_process(proc: subprocess.Popen, timeout_s: float = 20.0) -> int:
    """SIGINT (a clean shutdown, autosave included), then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Ovs3dClient:
    """Service clients and a status subscription to the node, spun by the caller's executor."""

    def __init__(self, node: Node, node_name: str = NODE_NAME):
        self.node = node
        self.query_client = node.create_client(Query, f"/{node_name}/query")
        self.save_client = node.create_client(Checkpoint, f"/{node_name}/save")
        self.load_client = node.create_client(Checkpoint, f"/{node_name}/load")
        from std_srvs.srv import SetBool, Trigger

        self.reset_client = node.create_client(Trigger, f"/{node_name}/reset")
        self.pause_client = node.create_client(SetBool, f"/{node_name}/pause")
        self.status: TrainingStatus | None = None
        node.create_subscription(TrainingStatus, f"/{node_name}/status", self._on_status, STATUS_QOS)

    def _on_status(self, msg: TrainingStatus) -> None:
        self.status = msg

    def wait_ready(self, executor, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
        """Wait for the query service; fail at once if the node process `proc` exits meanwhile."""
        deadline = time.monotonic() + timeout_s
        while not self.query_client.wait_for_service(timeout_sec=0.5):
            executor.spin_once(timeout_sec=0.1)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the ovs3d node exited with code {proc.returncode} during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("the ovs3d node did not come up")

    def call(self, client, request, executor, timeout_s: float = 120.0):
        """Send once this very service is discovered, then wait for its answer (`timeout_s` for both).

        A request sent before the server's request reader has matched this client's writer is lost
        (service QoS is reliable but volatile: nothing is kept for a reader that matches later), and
        the call then waits out its whole timeout. Each of the node's services is discovered on its
        own, so `wait_ready` (the query service) says nothing about, say, pause a moment later.
        The answer can be lost the same way from the other side: a server that has not yet matched this
        client's response reader gives up after its writer's blocking time ("client will not receive
        response"). Requests that are safe to repeat (pause, save, load: the same request twice leaves
        the same state) are therefore sent again every RESEND_AFTER_S without an answer."""
        deadline = time.monotonic() + timeout_s
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{client.srv_name} was not discovered within {timeout_s} s")
            executor.spin_once(timeout_sec=0.05)
        resend = client in (self.pause_client, self.save_client, self.load_client)
        while True:
            future = client.call_async(request)
            wait_s = deadline - time.monotonic()
            executor.spin_until_future_complete(
                future, timeout_sec=max(0.0, min(wait_s, RESEND_AFTER_S) if resend else wait_s)
            )
            if future.done():
                return future.result()
            client.remove_pending_request(future)
            if not resend or time.monotonic() >= deadline:
                raise TimeoutError(f"no answer from {client.srv_name} within {timeout_s} s")

    def query(self, executor, classes, timeout_s: float = 120.0, **fields) -> Query.Response:
        return self.call(
            self.query_client, Query.Request(classes=list(classes), **fields), executor, timeout_s
        )

    def wait_status(self, executor, predicate, timeout_s: float) -> TrainingStatus | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if self.status is not None and predicate(self.status):
                return self.status
        return self.status


def spin_for(executor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=min(0.05, max(0.0, deadline - time.monotonic())))


def init_context() -> tuple[rclpy.Context, Node, rclpy.executors.SingleThreadedExecutor]:
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"ovs3d_client_{os.getpid()}", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    return context, node, executor
