"""Where the package's data files (config/, launch/) are: in a checkout next to the Python package,
in an install (colcon, ament_cmake) under the ament index's share/ovs3d_ros/, where the Python
package itself lies in lib/pythonX.Y/site-packages with no config/ beside it."""

from __future__ import annotations

from pathlib import Path

PACKAGE = "ovs3d_ros"
CHECKOUT = Path(__file__).resolve().parents[2]
"""The repository root when running from a checkout (the dev venv's editable install)."""


def share_file(*parts: str) -> Path:
    """`config/ovs3d.yaml` etc.: the checkout's copy when running from one, else the installed one
    found through the ament index; FileNotFoundError names both places when neither has it."""
    local = CHECKOUT.joinpath(*parts)
    if local.is_file():
        return local
    installed = _installed_share()
    if installed is not None and installed.joinpath(*parts).is_file():
        return installed.joinpath(*parts)
    raise FileNotFoundError(
        f"{'/'.join(parts)} is neither in the checkout ({CHECKOUT}) nor in an installed "
        f"share/{PACKAGE} ({installed or 'ovs3d_ros not in the ament index: source install/setup.bash'})"
    )


def _installed_share() -> Path | None:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        return None


def params_file() -> Path:
    """The default ROS parameters file, config/ovs3d.yaml."""
    return share_file("config", "ovs3d.yaml")


def tiny_models_dir() -> Path:
    """models/tiny: the project's own tiny CLIP + DINO checkpoints (scripts/train_tiny_models.py)."""
    return share_file("models", "tiny", "manifest.json").parent
