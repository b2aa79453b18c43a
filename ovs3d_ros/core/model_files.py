"""A trained model on disk: the checkpoint ``X.ckpt`` and its sidecar ``X.ckpt.json`` (the scene's
class names, where it came from, the training stats), which is what rebuilding the teacher needs."""

from __future__ import annotations

import json
from pathlib import Path

from ovs3d_ros.config import resolve_device


def meta_path_of(ckpt: str | Path) -> Path:
    return Path(str(ckpt) + ".json")


def write_meta(ckpt: Path, dataset, data_spec: str, vocabulary: list[str] | None, stats: dict) -> Path:
    meta = {"class_names": list(dataset.class_names), "data": data_spec, "scene": dataset.name,
            "vocabulary_trained": vocabulary, "stats": stats}
    path = meta_path_of(ckpt)
    path.write_text(json.dumps(meta, indent=2, default=str))
    return path


def load_model(ckpt: str | Path, device: str | None = None):
    """(trainer, teacher, cfg, meta) from a checkpoint written by ``ovs3d train`` (or a benchmark)."""
    from ovs3d_ros.core.teachers import build_teacher
    from ovs3d_ros.core.trainer import Trainer

    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    meta_path = meta_path_of(path)
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    probe = Trainer.load(path, "cpu")
    cfg = probe.cfg
    dev = device or resolve_device(cfg)
    names = meta.get("class_names")
    if cfg.teacher.kind == "synthetic" and not names:
        raise ValueError(f"{path}: the synthetic teacher needs the scene's class names ({meta_path} missing)")
    teacher = build_teacher(cfg.teacher, dev, class_names=names)
    trainer = probe if dev == "cpu" else Trainer.load(path, dev, teacher)
    trainer.teacher = teacher
    return trainer, teacher, cfg, meta
