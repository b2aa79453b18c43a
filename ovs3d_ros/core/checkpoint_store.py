"""Checkpoints of a long-running process kept in one directory (the ROS node's ~/save, ~/load,
autosave and resume): names from clients are sandboxed to the directory, and autosaves are periodic.
No ROS: the node only turns service requests into these calls."""

from __future__ import annotations

import time
from pathlib import Path

AUTOSAVE_NAME = "autosave.ckpt"


class CheckpointStore:
    """Checkpoint files under ``directory`` (``~`` expanded); ``every_s`` > 0 turns autosave on."""

    def __init__(self, directory: str | Path, every_s: float = 0.0):
        self.directory = Path(directory).expanduser().resolve()
        self.every_s = float(every_s)
        self._last_autosave = time.monotonic()

    def path(self, name: str) -> Path:
        """The file ``name`` (relative; '' = the autosave) inside the directory. A client's name could
        be '../../etc/x' or absolute: anything that resolves outside the directory is refused."""
        base = self.directory
        path = (base / (name or AUTOSAVE_NAME)).resolve()
        if path != base and base not in path.parents:
            raise ValueError(f"checkpoint path '{name}' is outside the allowed directory {base}")
        return path

    def save(self, trainer, name: str = "") -> Path:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save(path)
        return path

    def existing(self, name: str) -> Path:
        path = self.path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        return path

    def autosave_due(self, has_data: bool) -> bool:
        """True (and the period restarts) when autosave is on, a period passed and there is data."""
        now = time.monotonic()
        if self.every_s > 0 and has_data and now - self._last_autosave >= self.every_s:
            self._last_autosave = now
            return True
        return False

    @property
    def autosave_on(self) -> bool:
        return self.every_s > 0
