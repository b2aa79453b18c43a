"""`ros2 launch ovs3d_ros ovs3d.launch.py ...` executed by the real upstream `launch` / `launch_ros` /
`ros2launch` (vendored in ../shared/vendor/ros2-python, appended to PYTHONPATH after any real install)
against the colcon install of the package (issue 18). A separate rclpy client then checks what a user
would: the node's topics and their QoS, its parameters (params file + launch overrides, with their
types) and the remaps; SIGINT stops everything cleanly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from colcon_builds import package_install, run_in, sourced_env, upstream_install
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from ovs3d_ros.ros.client import Ovs3dClient, init_context, spin_for

pytestmark = pytest.mark.ros

LAUNCHER = Path(__file__).parent / "ros_helpers" / "ros2_launch.py"
TOPICS = {
    "image": "/t18/cam/image",
    "camera_info": "/t18/cam/info",
    "depth": "/t18/cam/depth",
    "pose": "/t18/cam/pose",
}


@pytest.fixture(scope="module")
def launch_env():
    upstream = upstream_install()  # composition_interfaces, which launch_ros imports
    return package_install(), sourced_env(upstream, package_install())


def test_default_params_file_is_found_in_the_install(launch_env, tmp_path):
    install, env = launch_env
    done = run_in(
        env,
        tmp_path,
        sys.executable,
        str(LAUNCHER),
        "--default",
        "ovs3d_ros",
        "ovs3d.launch.py",
        "params_file",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(install / "ovs3d_ros" / "share" / "ovs3d_ros" / "config" / "ovs3d.yaml")


def _get_parameters(node, executor, names):
    client = node.create_client(GetParameters, "/ovs3d/get_parameters")
    assert client.wait_for_service(timeout_sec=120.0)
    future = client.call_async(GetParameters.Request(names=names))
    executor.spin_until_future_complete(future, timeout_sec=120.0)
    assert future.done(), "no answer from /ovs3d/get_parameters"
    return dict(zip(names, future.result().values, strict=True))


def _wait_for_endpoints(node, executor, lookup, topic, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [e for e in lookup(topic) if e.node_name == "ovs3d"]
        if found:
            return found
        spin_for(executor, 0.2)
    return []


def _processes_in_group(pgid: int) -> list[str]:
    """`pid command` of every live process in a process group (read from /proc: no ps needed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # fields after the command: state, ppid, pgrp, ...
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{stat.parent.name} {fields[0]} {cmdline[:160]}")
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    return found


def _wait_or_kill_group(launch: subprocess.Popen, timeout_s: float):
    """launch's exit status; if it has not exited by then (a safety net, not a timing requirement), what
    was still running in its session, and the whole session killed so no node outlives the test."""
    try:
        return launch.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        alive = _processes_in_group(launch.pid)  # start_new_session: the launch pid is the group id
        os.killpg(launch.pid, signal.SIGKILL)
        launch.wait()
        return f"killed after {timeout_s:.0f} s; still running then: {alive}"


def test_launch_file_through_upstream_launch_ros(launch_env, tmp_path):
    install, env = launch_env
    params_file = tmp_path / "params.yaml"
    params_file.write_text(
        yaml.safe_dump(
            {
                "ovs3d": {
                    "ros__parameters": {
                        "teacher": {"kind": "synthetic", "synthetic": {"class_names": ["table", "floor"]}},
                        "keyframes": {"capacity": 17},
                    }
                }
            }
        )
    )
    args = [f"{k}:={v}" for k, v in TOPICS.items()] + [
        f"params_file:={params_file}",
        "device:=cpu",
        "pose_source:=pose",
        "world_frame:=odom",
        "compressed:=false",
        "use_sim_time:=false",
    ]
    out_path = tmp_path / "launch.log"
    with open(out_path, "w") as out:
        launch = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "ovs3d_ros", "ovs3d.launch.py", *args],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    context, node, executor = init_context()
    try:
        Ovs3dClient(node).wait_ready(executor, timeout_s=180.0, proc=launch)
        log = lambda: out_path.read_text()[-3000:]  # noqa: E731
        assert f"launching {install / 'ovs3d_ros' / 'share' / 'ovs3d_ros' / 'launch'}" in out_path.read_text()
        for topic in ("/ovs3d/labeled_cloud", "/ovs3d/mask", "/ovs3d/class_markers"):
            pubs = _wait_for_endpoints(node, executor, node.get_publishers_info_by_topic, topic)
            assert pubs, (topic, log())
            assert pubs[0].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL, topic
        assert _wait_for_endpoints(node, executor, node.get_publishers_info_by_topic, "/ovs3d/status")
        for name, topic in TOPICS.items():  # remapped, with sensor-data QoS
            subs = _wait_for_endpoints(node, executor, node.get_subscriptions_info_by_topic, topic)
            assert subs, (name, topic, log())
            if name != "pose":
                assert subs[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT, name
        assert not [e for e in node.get_subscriptions_info_by_topic("/ovs3d/image") if e.node_name == "ovs3d"]
        values = _get_parameters(
            node,
            executor,
            [
                "device",
                "ros.pose_source",
                "ros.world_frame",
                "ros.compressed",
                "use_sim_time",
                "teacher.kind",
                "keyframes.capacity",
            ],
        )
        assert (values["device"].type, values["device"].string_value) == (
            ParameterType.PARAMETER_STRING,
            "cpu",
        )
        assert values["ros.pose_source"].string_value == "pose"
        assert values["ros.world_frame"].string_value == "odom"
        for flag in ("ros.compressed", "use_sim_time"):  # 'false' from the command line becomes a bool
            assert (values[flag].type, values[flag].bool_value) == (ParameterType.PARAMETER_BOOL, False), flag
        assert values["teacher.kind"].string_value == "synthetic"  # from params_file
        assert (values["keyframes.capacity"].type, values["keyframes.capacity"].integer_value) == (
            ParameterType.PARAMETER_INTEGER,
            17,
        )
    finally:
        if launch.poll() is None:
            # Ctrl-C in a terminal signals the whole foreground process group: launch and the node
            # both get SIGINT (and launch forwards one more to the node), so the node must stop
            # cleanly on either or both
            os.killpg(launch.pid, signal.SIGINT)
        rc = _wait_or_kill_group(launch, timeout_s=120.0)
        node.destroy_node()
        context.try_shutdown()
    text = out_path.read_text()
    events = "\n".join(line for line in text.splitlines() if "waiting_for_frames" not in line)  # not status
    assert rc == 0, (rc, events[-3000:])
    assert "process has finished cleanly" in text, text[-3000:]
