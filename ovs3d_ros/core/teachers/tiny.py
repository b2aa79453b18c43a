"""The project's committed tiny CLIP + tiny DINO (trained by scripts/train_tiny_models.py) as teacher
settings: the same ``teacher.clip.*`` / ``teacher.dino.*`` keys a user's real weights use.

They are small models trained on procedurally generated rooms with primitive objects: they know ~100
phrases ('<colour> <box|ball|cylinder|cone|mug|fruit|book|table>', 'floor', 'wall', in a few caption
templates) and nothing of the real world. They exist so the real teacher path runs, with meaning,
where no weights can be
downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from ovs3d_ros.core.teachers.base import TeacherLoadError
from ovs3d_ros.core.teachers.tiny_training import (
    TINY_CLIP_CONFIG,
    TINY_CLIP_NAME,
    TINY_DINO_MODEL,
    TINY_DINO_OVERRIDES,
)

CLIP_FILE = "tiny_clip.pt"
DINO_FILE = "tiny_dino.pt"


def tiny_teacher_settings(folder: str | Path) -> dict[str, object]:
    """Flat config overrides (``apply_flat`` keys) selecting the tiny models in ``folder``, with the
    field's feature head sized to their 64-d embedding."""
    folder = Path(folder)
    missing = [n for n in (f"{TINY_CLIP_NAME}.json", CLIP_FILE, DINO_FILE) if not (folder / n).is_file()]
    if missing:
        raise TeacherLoadError(f"tiny teacher models: {', '.join(missing)} missing in {folder} "
                               f"(run scripts/train_tiny_models.py --out {folder})")
    return {
        "teacher.kind": "clip",
        "teacher.clip.model": TINY_CLIP_NAME,
        "teacher.clip.model_config": str(folder / f"{TINY_CLIP_NAME}.json"),
        "teacher.clip.pretrained": str(folder / CLIP_FILE),
        "teacher.dino.model": TINY_DINO_MODEL,
        "teacher.dino.arch_overrides": json.dumps(TINY_DINO_OVERRIDES),
        "teacher.dino.checkpoint": str(folder / DINO_FILE),
        "field.clip_dim": int(TINY_CLIP_CONFIG["embed_dim"]),
    }
