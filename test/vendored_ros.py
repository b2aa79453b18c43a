"""Upstream ROS 2 Python packages for tests: a real ROS 2 install's own copies win; otherwise the
unmodified vendored ones in ../shared/vendor/ros2-python/src (see its README) are appended to
sys.path, after everything else, so they never shadow an installed package."""

import importlib
import os
import sys
from pathlib import Path

import pytest

VENDORED_PYTHON = Path(
    os.environ.get(
        "OVS3D_VENDORED_ROS2_PYTHON",
        Path(__file__).resolve().parents[1].parent / "shared" / "vendor" / "ros2-python" / "src",
    )
)


def import_upstream(module: str):
    """Import `module` from the real install, else from the vendored copies; skip when neither has it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    if VENDORED_PYTHON.is_dir() and str(VENDORED_PYTHON) not in sys.path:
        sys.path.append(str(VENDORED_PYTHON))
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"upstream {module} is neither installed nor vendored at {VENDORED_PYTHON}: {exc}")
