"""`colcon build` of the package into a fresh install prefix, used the way a ROS 2 user uses it after
`source install/setup.bash` (issue 18): imports come from the install, not the checkout; the ament
index knows the package; share/ovs3d_ros holds the launch file and config; the installed executables
run and exit with their command's status; the installed demo finds its params file."""

import filecmp
import json
import sys
from pathlib import Path

import pytest
from colcon_builds import ROOT, package_install, run_in, sourced_env

pytestmark = pytest.mark.ros

PROBE = r"""
import json, sys
import ovs3d_ros, ovs3d_ros.ros.node, ovs3d_ros.core.trainer
from ovs3d_ros.srv import Query
from ovs3d_ros.msg import TrainingStatus
from ament_index_python.packages import get_package_prefix, get_package_share_directory
from ovs3d_ros.ros.paths import params_file
mods = {n: getattr(m, "__file__", None) for n, m in sys.modules.items() if n.split(".")[0] == "ovs3d_ros"}
print(json.dumps({"modules": mods, "prefix": get_package_prefix("ovs3d_ros"),
                  "share": get_package_share_directory("ovs3d_ros"), "params": str(params_file()),
                  "query": sys.modules[Query.__module__].__file__}))
"""


@pytest.fixture(scope="module")
def installed():
    install = package_install()
    return install, sourced_env(install, with_vendored_python=False)


def test_imports_come_from_the_install_not_the_checkout(installed, tmp_path):
    install, env = installed
    done = run_in(env, tmp_path, sys.executable, "-c", PROBE)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    prefix = install / "ovs3d_ros"
    assert found["prefix"] == str(prefix) and found["share"] == str(prefix / "share" / "ovs3d_ros")
    outside = {n: f for n, f in found["modules"].items() if f and not f.startswith(str(prefix))}
    assert not outside, f"ovs3d_ros modules imported from outside the install: {outside}"
    assert len(found["modules"]) > 10 and found["query"].startswith(str(prefix))
    # the installed demo's params file comes through the ament index, not from next to the code
    assert found["params"] == str(prefix / "share" / "ovs3d_ros" / "config" / "ovs3d.yaml")


def test_install_layout_ament_index_and_share(installed):
    install, _ = installed
    prefix = install / "ovs3d_ros"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "ovs3d_ros").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "rosidl_interfaces" / "ovs3d_ros").is_file()
    share = prefix / "share" / "ovs3d_ros"
    for rel in (
        "launch/ovs3d.launch.py",
        "config/ovs3d.yaml",
        "config/ovs3d.rviz",
        "package.xml",
        "msg/TrainingStatus.msg",
        "srv/Query.srv",
    ):
        assert (share / rel).is_file(), rel
    for rel in ("launch/ovs3d.launch.py", "config/ovs3d.yaml", "config/ovs3d.rviz"):
        assert filecmp.cmp(share / rel, ROOT / rel, shallow=False), (
            f"installed {rel} differs from the checkout"
        )
    for exe in ("ovs3d_node", "ovs3d", "ovs3d_demo"):
        path = prefix / "lib" / "ovs3d_ros" / exe
        assert path.is_file() and path.stat().st_mode & 0o111, exe


def test_installed_executables_exit_with_their_commands_status(installed, tmp_path):
    """`lib/ovs3d_ros/ovs3d query missing.ckpt` printed an error and exited 0 (issue 18)."""
    install, env = installed
    exe = install / "ovs3d_ros" / "lib" / "ovs3d_ros"
    ok = run_in(env, tmp_path, str(exe / "ovs3d"), "--help")
    assert ok.returncode == 0 and "query" in ok.stdout, ok.stderr[-2000:]
    bad = run_in(
        env,
        tmp_path,
        str(exe / "ovs3d"),
        "query",
        str(tmp_path / "missing.ckpt"),
        "--classes",
        "a",
        "--out",
        str(tmp_path / "q"),
    )
    assert bad.returncode != 0, bad.stdout + bad.stderr
    assert "missing.ckpt" in bad.stdout + bad.stderr
    demo = run_in(env, tmp_path, str(exe / "ovs3d_demo"), "--help")
    assert demo.returncode == 0, demo.stderr[-2000:]


def test_readme_describes_these_builds_and_tests():
    """The README's "On a normal ROS 2 install" section names the colcon steps these tests run and
    the test files that run them (no vendored trees needed for this check)."""
    import re

    import colcon_builds

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## On a normal ROS 2 install", 1)[1].split("\n## ", 1)[0]
    for name in ("test_ros_colcon_install.py", "test_ros_launch_upstream.py", "test_ros_tf_upstream.py",
                 "test_cloud_layout.py", "colcon_builds.py"):  # fmt: skip
        assert f"test/{name}" in section, name
        assert (ROOT / "test" / name).is_file(), name
    recipe = Path(colcon_builds.__file__).read_text()
    for flag in (
        "--base-paths",
        "--build-base",
        "--install-base",
        "-DPython3_EXECUTABLE",
        "-DBUILD_TESTING=OFF",
    ):
        assert flag in recipe and flag in section, flag
    assert set(re.findall(r"\b(tf2\w*|composition_interfaces)\b", section)) >= set(
        colcon_builds.UPSTREAM_PACKAGES
    )
