"""The core and the data readers run without ROS (issue 13): importing every module of
``ovs3d_ros.core`` and ``ovs3d_ros.data`` (and the config) pulls in no ROS client library or message
package. Checked in a fresh interpreter, so nothing another test imported can hide an import."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Top-level packages of a ROS 2 installation the core must never need.
ROS_PACKAGES = ("rclpy", "rcl_interfaces", "rosidl_runtime_py", "rosidl_parser", "builtin_interfaces",
                "std_msgs", "sensor_msgs", "geometry_msgs", "nav_msgs", "tf2_ros", "ament_index_python")

PROBE = """
import importlib, json, pkgutil, sys
import ovs3d_ros.config, ovs3d_ros.core, ovs3d_ros.data
names = ["ovs3d_ros.config"]
for pkg in (ovs3d_ros.core, ovs3d_ros.data):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        names.append(info.name)
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_importing_the_core_and_data_modules_never_imports_ros():
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "ovs3d_ros.core.trainer" in report["modules"] and "ovs3d_ros.data.rosbag" in report["modules"]
    assert "ovs3d_ros.core.frame_assembly" in report["modules"]
    leaked = sorted(set(report["loaded"]) & set(ROS_PACKAGES))
    assert not leaked, f"core/data imports pulled in ROS: {leaked}"
