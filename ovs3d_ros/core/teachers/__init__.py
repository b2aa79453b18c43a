"""Teachers: multi-scale CLIP patch features, DINO tokens, text features and relevancy maps.

``build_teacher(cfg.teacher, device, class_names)`` gives a ``Teacher`` (see ``base.py``):
``kind='clip'`` is open_clip + timm DINO; ``kind='synthetic'`` is a benchmark stand-in built from
ground-truth labels (NOT CLIP).
"""

from __future__ import annotations

import torch

from ovs3d_ros.config import TeacherConfig, TeacherKind, choices
from ovs3d_ros.core.teachers.base import Teacher, TeacherError, TeacherFeatures, TeacherLoadError, stable_hash
from ovs3d_ros.core.teachers.relevancy import relevancy_maps, teacher_labels, unknown_mask

__all__ = ["Teacher", "TeacherError", "TeacherFeatures", "TeacherLoadError", "build_teacher",
           "relevancy_maps", "stable_hash", "teacher_labels", "unknown_mask"]


def build_teacher(teacher_cfg: TeacherConfig, device: torch.device | str = "cpu",
                  class_names: list[str] | None = None) -> Teacher:
    """The teacher ``teacher_cfg.kind`` names; ``class_names`` (sorted) is needed by 'synthetic'."""
    if teacher_cfg.kind == "clip":
        from ovs3d_ros.core.teachers.clip import ClipTeacher
        from ovs3d_ros.core.teachers.dino import DinoTeacher

        dino = DinoTeacher(teacher_cfg.dino, device) if teacher_cfg.dino.enabled else None
        return ClipTeacher(teacher_cfg.clip, device, seed=teacher_cfg.seed, dino=dino)
    if teacher_cfg.kind == "synthetic":
        from ovs3d_ros.core.teachers.synthetic import SyntheticTeacher

        if not class_names:
            raise TeacherError("teacher.kind 'synthetic' needs the scene's class_names")
        return SyntheticTeacher(class_names, teacher_cfg, device)
    raise TeacherError(f"teacher.kind must be one of {', '.join(choices(TeacherKind))}, "
                       f"got {teacher_cfg.kind!r}")
