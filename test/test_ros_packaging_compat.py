"""Packaging details the real ROS 2 tools tripped on (issue 18): the installed executables' exit
status, the rosdep keys, colcon with testing on, RViz2 config keys, the installed params file."""

import runpy
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script, module", [("ovs3d", "ovs3d_ros.cli"), ("ovs3d_demo", "ovs3d_ros.ros.demo"),
                       ("ovs3d_node", "ovs3d_ros.ros.node")]
)
def test_installed_executables_exit_with_mains_status(monkeypatch, script, module):
    """`lib/ovs3d_ros/ovs3d query missing.ckpt` printed an error and exited 0: the scripts dropped
    main()'s return value. A stand-in main returning 3 must make the script exit 3."""
    import importlib

    importlib.import_module(module.rsplit(".", 1)[0])  # the real parent package
    fake = types.ModuleType(module)
    fake.main = lambda *a, **k: 3
    monkeypatch.setitem(sys.modules, module, fake)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "scripts" / script), run_name="__main__")
    assert exit_info.value.code == 3
