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


# rosdep keys of package.xml that are not ROS packages, as checked against rosdistro's
# rosdep/python.yaml for issue 18. A key rosdistro lacks makes `rosdep install` fail for the user.
ROSDEP_KEYS_IN_ROSDISTRO = {
    "python3-numpy", "python3-scipy", "python3-yaml", "python3-pil", "python3-tqdm", "python3-pytest",
    "python3-sklearn", "python3-torch", "python3-open3d-pip", "python3-timm-pip", "python3-rosbags-pip",
}


def _system_keys():
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(ROOT / "package.xml"))
    deps = pkg.build_depends + pkg.exec_depends + pkg.buildtool_depends + pkg.test_depends
    return {d.name for d in deps if d.name.startswith("python3-")}


def test_every_system_rosdep_key_exists_in_rosdistro():
    unknown = _system_keys() - ROSDEP_KEYS_IN_ROSDISTRO
    assert not unknown, f"rosdep keys rosdistro does not have (pip-install them instead): {unknown}"


def test_readme_skips_exactly_the_pip_installed_keys_and_requirements_have_open_clip():
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if "rosdep install" in x)
    skipped = set(line.split("--skip-keys", 1)[1].split('"')[1].split())
    pip_keys = {k for k in _system_keys() if k.endswith("-pip") or k == "python3-torch"}
    assert skipped == pip_keys
    # open_clip has no rosdep key at all: it comes from requirements.txt
    assert "open_clip_torch" in (ROOT / "scripts" / "requirements.txt").read_text()


def test_rviz_config_has_only_rviz2_keys():
    """`Queue Size` is RViz 1's; RViz2 reads a display's queue from Topic/Depth."""
    import yaml

    rviz = yaml.safe_load((ROOT / "config" / "ovs3d.rviz").read_text())
    for display in rviz["Visualization Manager"]["Displays"]:
        assert "Queue Size" not in display, display["Name"]
        if "Topic" in display:
            assert {"Value", "Depth", "Durability Policy", "Reliability Policy"} <= set(display["Topic"])


def _fake_install(prefix: Path) -> Path:
    """An install prefix as colcon lays it out: the ament index marker and share/ovs3d_ros/config."""
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "ovs3d_ros").write_text("")
    params = prefix / "share" / "ovs3d_ros" / "config" / "ovs3d.yaml"
    params.parent.mkdir(parents=True)
    params.write_text("ovs3d: {ros__parameters: {}}\n")
    return params


def test_params_file_is_found_in_an_install_and_in_a_checkout(tmp_path, monkeypatch):
    """Installed, ovs3d_demo found no config/ovs3d.yaml next to the Python package (parents[2] is
    lib/, not the repository): it must come from the ament index's share/ovs3d_ros."""
    from ovs3d_ros.ros import paths

    assert paths.params_file() == ROOT / "config" / "ovs3d.yaml"  # from the checkout
    installed = _fake_install(tmp_path / "install")
    monkeypatch.setattr(paths, "CHECKOUT", tmp_path / "install" / "lib")  # no config/ there
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "install"))
    assert paths.params_file() == installed
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="config/ovs3d.yaml"):
        paths.params_file()


def test_demo_takes_its_params_file_from_the_lookup():
    import inspect

    from ovs3d_ros.ros import demo

    src = inspect.getsource(demo)
    assert "params_file()" in src and "parents[2]" not in src


def _configure(build: Path, *extra: str):
    import shutil
    import subprocess

    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    prefix = sys.prefix  # the venv: the ROS wheels' CMake packages and this package's interfaces
    env = {**__import__("os").environ, "CMAKE_PREFIX_PATH": prefix, "AMENT_PREFIX_PATH": prefix}
    # the package's sources alone, as in a workspace's src/: configured in place, a checkout that holds
    # its venv (.venv, as on CI) is refused by CMake for include dirs "prefixed in the source directory"
    source = build.parent / "src" / "ovs3d_ros"
    for name in ("CMakeLists.txt", "package.xml"):
        source.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    for name in ("msg", "srv", "ovs3d_ros", "scripts", "launch", "config"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    cmd = ["cmake", "-S", str(source), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={build / 'install'}",
           f"-DPython3_EXECUTABLE={sys.executable}", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_cmake_configures_with_testing_on_without_ament_cmake_pytest(tmp_path):
    """`colcon build` configures with BUILD_TESTING on; ament_cmake_pytest is only a test dependency,
    so where it is missing the build must go on (without the ctest entry), not fail."""
    done = _configure(tmp_path / "build", "-DBUILD_TESTING=ON",
                      "-DCMAKE_DISABLE_FIND_PACKAGE_ament_cmake_pytest=TRUE")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "ament_cmake_pytest not found" in done.stdout + done.stderr
