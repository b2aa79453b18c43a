"""Trainer checkpoints: one ``torch.save`` dict, written atomically, read with ``weights_only=True``.

Contents: format tag and version, the full config (nested dict), step, field and occupancy state
dicts (the scene centre/radius are field buffers, and are also stored in clear under ``scene``),
the keyframe buffer with its teacher features, optimizer and scheduler states and the RNG states.
A write goes to a temporary file in the target directory, is fsync'ed, then ``os.replace``d over
the target, so a crash never leaves a half-written checkpoint under the real name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT_TAG = "ovs3d_ros.trainer"
FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "format",
    "version",
    "config",
    "step",
    "field",
    "occupancy",
    "keyframes",
    "optimizer",
    "scheduler",
    "rng",
    "scene",
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be written, read, or used (corrupt, truncated, incompatible)."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same directory, fsync, os.replace)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"checkpoint path {path} is a directory")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        try:  # make the rename itself durable; not every filesystem allows opening a directory
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass
    except Exception as exc:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise CheckpointError(f"cannot write checkpoint {path}: {exc}") from exc
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and sanity-check a checkpoint dict; any problem raises CheckpointError naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt zip archives
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT_TAG:
        raise CheckpointError(f"{path} is not an ovs3d_ros trainer checkpoint")
    if state.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state.get('version')!r}; this build reads "
            f"version {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return state
