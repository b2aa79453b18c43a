"""A scene named on a command line: a path in any supported format, or a generated scene
``synthetic:PRESET[,train=N,test=N,width=W,height=H,seed=S]``."""

from __future__ import annotations

from ovs3d_ros.data.dataset import DatasetError, SceneDataset

SYNTHETIC_PREFIX = "synthetic:"
SYNTHETIC_DEFAULTS = {"train": 24, "test": 4, "width": 80, "height": 60, "seed": 0}


def parse_synthetic_spec(spec: str) -> dict:
    """'synthetic:room,width=80,height=60' -> {'preset': 'room', 'width': 80, ...}."""
    parts = [p for p in spec.split(":", 1)[1].split(",") if p]
    if not parts:
        raise DatasetError(f"{spec!r}: name a preset, e.g. synthetic:room")
    opts = {"preset": parts[0], **SYNTHETIC_DEFAULTS}
    for part in parts[1:]:
        if "=" not in part:
            raise DatasetError(f"{spec!r}: option {part!r} is not key=value")
        key, value = part.split("=", 1)
        if key not in SYNTHETIC_DEFAULTS:
            raise DatasetError(f"{spec!r}: unknown option {key!r} ({', '.join(SYNTHETIC_DEFAULTS)})")
        try:
            opts[key] = int(value)
        except ValueError:
            raise DatasetError(f"{spec!r}: {key} must be an integer, got {value!r}") from None
    return opts


def open_scene(spec: str) -> SceneDataset:
    """A SceneDataset from a path or a ``synthetic:`` spec."""
    if spec.startswith(SYNTHETIC_PREFIX):
        from ovs3d_ros.data.synthetic import SyntheticScene

        o = parse_synthetic_spec(spec)
        try:
            scene = SyntheticScene(o["preset"], seed=o["seed"])
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
        return scene.make_frames(o["train"], o["test"], o["width"], o["height"])
    from ovs3d_ros.data import load_dataset

    return load_dataset(spec)
