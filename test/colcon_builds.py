"""colcon builds for the tests that check the package against real ROS 2 tools (issue 18).

Two builds, each cached under build/colcon/<name>-<hash of its inputs> so a re-run costs seconds:
- `upstream`: tf2, tf2_msgs, tf2_py, tf2_ros_py and composition_interfaces from
  ../shared/vendor/ros2-source/src (unmodified upstream, see its README), which a normal ROS 2 install
  has and the PyPI wheels lack;
- `ovs3d_ros`: this package, built by `colcon build` from a copy of its sources in a workspace's src/,
  as a user builds it.
The project venv plays the role of /opt/ros/<distro> (the underlay). `sourced_env` then gives the
environment a user has after `source <install>/setup.bash`, with the vendored pure-Python upstream
packages (launch, launch_ros, sensor_msgs_py) appended to PYTHONPATH *after* everything else, so a real
ROS 2 install's own copies always win.

The vendored trees live next to the checkout (CI clones into /work/<name>, so ../shared exists there):
without ../shared the tests skip with a loud reason; with it, anything missing is a failure.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OVS3D_SHARED_DIR", ROOT.parent / "shared"))
VENDORED_SOURCE = SHARED / "vendor" / "ros2-source" / "src"
VENDORED_PYTHON = SHARED / "vendor" / "ros2-python" / "src"
CACHE = ROOT / "build" / "colcon"
UPSTREAM_PACKAGES = ("tf2", "tf2_msgs", "tf2_py", "tf2_ros_py", "composition_interfaces")
# what `colcon build` of this package reads (a workspace's src/ovs3d_ros holds these)
PACKAGE_INPUTS = ("CMakeLists.txt", "package.xml", "msg", "srv", "ovs3d_ros", "scripts", "launch", "config",
                  "models")
# copied too (a clone has it; CMake registers it with ament_cmake_pytest) but not hashed: what is built
# depends only on its path, so editing a test does not rebuild the package
PACKAGE_COPIED_ONLY = ("test",)
BUILD_TIMEOUT_S = 900  # safety net only: the upstream build takes ~50 s on 2 idle cores
COMPLETE = ".complete"


def require_vendored() -> None:
    """Skip (loudly) only where ../shared is absent, i.e. a clone outside the project's CI layout."""
    if not SHARED.is_dir():
        pytest.skip(
            f"NOT TESTED: {SHARED} is missing (no vendored upstream ROS 2 sources); these checks run in CI, "
            "which clones next to shared/"
        )
    missing = [
        p for p in [*(VENDORED_SOURCE / n for n in UPSTREAM_PACKAGES), VENDORED_PYTHON] if not p.is_dir()
    ]
    assert not missing, f"vendored upstream ROS 2 sources missing: {missing}"
    try:
        import colcon_core  # noqa: F401
    except ImportError:
        pytest.fail(
            "colcon is not installed in this venv: run scripts/setup.sh (scripts/requirements-ros.txt)"
        )


def _files(path: Path):
    if path.is_file():
        yield path
        return
    for p in sorted(path.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            yield p


def underlay_identity() -> str:
    """The venv as an underlay: its interpreter and every ROS wheel and colcon version in it."""
    from importlib import metadata

    names = sorted(
        f"{d.metadata['Name']}=={d.version}"
        for d in metadata.distributions()
        if d.metadata["Name"] and d.metadata["Name"].lower().startswith(("ros-", "ros_", "colcon"))
    )
    return "\n".join([sys.executable, sys.version, *names])


def input_hash(paths: list[Path], recipe: tuple[str, ...]) -> str:
    """Hash of every input file (name and bytes), the build's arguments and the underlay."""
    h = hashlib.sha256()
    h.update(f"{underlay_identity()}\n{recipe}\n".encode())
    for root in paths:
        for f in _files(root):
            h.update(str(f.relative_to(root.parent)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def underlay_env() -> dict[str, str]:
    """The venv as the ROS underlay: its prefix on the ament and CMake paths, its python3 first on PATH."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    for var in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
        env[var] = os.pathsep.join(p for p in [sys.prefix, os.environ.get(var, "")] if p)
    return env


def colcon_build(
    name: str, sources: dict[str, Path], underlays: tuple[Path, ...] = (), cmake_args=(), copied_only=None
) -> Path:
    """`colcon build` of `sources` ({name in src/: path}) on the venv (+ `underlays`); returns the
    install prefix. Cached per input hash; a concurrent run waits on a lock instead of building twice."""
    key = f"{name}-{input_hash(list(sources.values()), (*sources, *map(str, underlays), *cmake_args))}"
    ws = CACHE / key
    install = ws / "install"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (ws / COMPLETE).exists():
            return install
        for old in CACHE.glob(f"{name}-*"):  # stale builds of older inputs, or a half-finished one
            shutil.rmtree(old, ignore_errors=True)
        for dest, src in {**sources, **(copied_only or {})}.items():
            target = ws / "src" / dest
            if src.is_dir():
                shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
        env = underlay_env() if not underlays else sourced_env(*underlays, with_vendored_python=False)
        cmd = [
            sys.executable,
            "-c",
            "import sys; from colcon_core.command import main; sys.exit(main())",
            "--log-base",
            "log",
            "build",
            "--base-paths",
            "src",
            "--build-base",
            "build",
            "--install-base",
            "install",
            "--event-handlers",
            "console_cohesion+",
            "--cmake-args",
            f"-DPython3_EXECUTABLE={sys.executable}",
            *cmake_args,
        ]
        with open(ws / "colcon_build.log", "w") as log:
            done = subprocess.run(
                cmd, cwd=ws, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S
            )
        if done.returncode != 0:
            tail = (ws / "colcon_build.log").read_text()[-6000:]
            raise AssertionError(f"colcon build of {name} failed ({ws / 'colcon_build.log'}):\n{tail}")
        (ws / COMPLETE).write_text(key)
    return install


def upstream_install() -> Path:
    """tf2 (C++ core, tf2_py, tf2_ros Python), tf2_msgs and composition_interfaces, colcon-built."""
    require_vendored()
    return colcon_build(
        "upstream", {n: VENDORED_SOURCE / n for n in UPSTREAM_PACKAGES}, cmake_args=("-DBUILD_TESTING=OFF",)
    )


def package_install() -> Path:
    """This package, `colcon build` with its defaults (testing on), in a workspace of its own."""
    require_vendored()
    return colcon_build(
        "ovs3d_ros",
        {f"ovs3d_ros/{n}": ROOT / n for n in PACKAGE_INPUTS},
        copied_only={f"ovs3d_ros/{n}": ROOT / n for n in PACKAGE_COPIED_ONLY},
    )


def sourced_env(*installs: Path, with_vendored_python: bool = True) -> dict[str, str]:
    """The environment after `source <install>/setup.bash` of each install, in order, on the venv;
    the vendored pure-Python upstream packages go last on PYTHONPATH (a real install's own win)."""
    script = "".join(f'source "{i}/setup.bash" && ' for i in installs) + "env -0"
    out = subprocess.run(
        ["bash", "-c", script], env=underlay_env(), capture_output=True, check=True, timeout=60
    ).stdout
    env = dict(kv.split("=", 1) for kv in out.decode().split("\0") if "=" in kv)
    if with_vendored_python:
        env["PYTHONPATH"] = os.pathsep.join(p for p in [env.get("PYTHONPATH", ""), str(VENDORED_PYTHON)] if p)
    for var in ("ROS_DOMAIN_ID", "OMP_NUM_THREADS"):  # this test run's private DDS domain
        if var in os.environ:
            env[var] = os.environ[var]
    return env


def run_in(env: dict[str, str], cwd: Path, *cmd) -> subprocess.CompletedProcess:
    """Run `cmd` in a sourced environment (text output captured; a generous safety-net timeout)."""
    return subprocess.run(
        [str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
