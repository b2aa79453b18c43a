"""Scene sources: 3D-OVS/LLFF folders, nerfstudio transforms.json, rosbag2, synthetic scenes."""

from __future__ import annotations

from pathlib import Path

from ovs3d_ros.data.dataset import DatasetError, SceneDataset
from ovs3d_ros.data.llff import read_llff
from ovs3d_ros.data.nerfstudio import read_nerfstudio
from ovs3d_ros.data.rosbag import BagStats, read_rosbag
from ovs3d_ros.data.synthetic import SyntheticScene, generate, intrinsics_for
from ovs3d_ros.data.writers import write_3dovs, write_nerfstudio, write_rosbag

__all__ = [
    "BagStats",
    "DatasetError",
    "SceneDataset",
    "SyntheticScene",
    "detect_format",
    "generate",
    "intrinsics_for",
    "load_dataset",
    "read_llff",
    "read_nerfstudio",
    "read_rosbag",
    "write_3dovs",
    "write_nerfstudio",
    "write_rosbag",
]


def detect_format(path: str | Path) -> str:
    """'3dovs' (folder with poses_bounds.npy), 'nerfstudio' (transforms.json) or 'rosbag2'."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: not found")
    if path.is_file():
        if path.name.endswith(".json"):
            return "nerfstudio"
        if path.suffix in (".mcap", ".db3"):
            return "rosbag2"
        raise DatasetError(f"{path}: unknown scene file (expected transforms.json, .mcap or .db3)")
    if (path / "poses_bounds.npy").is_file():
        return "3dovs"
    if (path / "transforms.json").is_file():
        return "nerfstudio"
    if (path / "metadata.yaml").is_file() or any(path.glob("*.mcap")) or any(path.glob("*.db3")):
        return "rosbag2"
    raise DatasetError(f"{path}: not a scene (no poses_bounds.npy, transforms.json or rosbag2 metadata.yaml)")


def load_dataset(path: str | Path, **options) -> SceneDataset:
    """Read a scene in any supported format; ``options`` go to the format's reader
    (``read_llff``, ``read_nerfstudio`` or ``read_rosbag``)."""
    fmt = detect_format(path)
    reader = {"3dovs": read_llff, "nerfstudio": read_nerfstudio, "rosbag2": read_rosbag}[fmt]
    try:
        return reader(path, **options)
    except TypeError as exc:  # an option the reader does not take
        if "unexpected keyword" in str(exc):
            raise DatasetError(f"{path}: option not understood by the {fmt} reader: {exc}") from None
        raise
