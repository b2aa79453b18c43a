"""Training a field on a whole recorded scene: the dataset's frames stream into a fresh Trainer the
way a robot's stream would (spread over part of the run), then it trains on. Used by ``ovs3d
train``/``ovs3d eval`` and by the benchmarks; the ROS node feeds its Trainer live instead."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ovs3d_ros.config import Config, apply_flat, resolve_device
from ovs3d_ros.core.progress import progress_bar


@dataclass
class TrainPlan:
    steps: int | None = None
    time_s: float | None = None
    stream_fraction: float = 0.5
    """Frames arrive spread over this fraction of the run (like a robot's stream), then it trains on."""

    def finished(self, steps_done: int, elapsed_s: float) -> bool:
        return (self.steps is not None and steps_done >= self.steps) or \
            (self.time_s is not None and elapsed_s >= self.time_s)

    def frames_due(self, steps_done: int, elapsed_s: float, num_frames: int) -> int:
        """How many of the scene's frames have 'arrived' by now (at least the first)."""
        fraction = steps_done / self.steps if self.steps is not None else elapsed_s / self.time_s
        return min(num_frames, 1 + int(fraction / max(self.stream_fraction, 1e-9) * num_frames))


def build_trainer(dataset, cfg: Config, vocabulary: list[str] | None, device: str):
    """(trainer, teacher) for the scene: the teacher knows its class names, the field's feature width
    follows the teacher's, and ``vocabulary`` adds the RDA+FDA alignment losses for those names."""
    from ovs3d_ros.core.semantic_alignment import SemanticAlignment
    from ovs3d_ros.core.teachers import build_teacher
    from ovs3d_ros.core.trainer import Trainer

    teacher = build_teacher(cfg.teacher, device, class_names=list(dataset.class_names))
    if getattr(teacher, "embed_dim", cfg.field.clip_dim) != cfg.field.clip_dim:
        cfg = apply_flat(cfg, {"field.clip_dim": int(teacher.embed_dim)})
    trainer = Trainer(cfg, device, teacher)
    if vocabulary:
        text = teacher.encode_text(list(vocabulary)).float()
        trainer.extra_losses.append(SemanticAlignment(text, cfg.semantic, seed=cfg.seed))
    return trainer, teacher


def train_scene(dataset, cfg: Config, plan: TrainPlan, vocabulary: list[str] | None = None,
                progress: bool = True, device: str | None = None):
    """Stream the dataset's training frames into a fresh Trainer and optimise.

    With ``vocabulary`` (the paper's offline mode) RDA and FDA for those names run as extra losses
    (weights in ``cfg.semantic``; 0 switches a term off). Returns (trainer, teacher, stats dict).
    """
    if plan.steps is None and plan.time_s is None:
        raise ValueError("a training plan needs a step count or a time budget")
    frames = list(dataset.train_frames)
    if not frames:
        raise ValueError(f"{dataset.name}: no training frames")
    trainer, teacher = build_trainer(dataset, cfg, vocabulary, device or resolve_device(cfg))
    start = time.perf_counter()
    bar = progress_bar(total=plan.steps, desc="train", unit="step", enabled=progress)
    trainer.add_frame(frames[0])
    next_frame, last = 1, {}
    while not plan.finished(trainer.step_count, time.perf_counter() - start):
        due = plan.frames_due(trainer.step_count, time.perf_counter() - start, len(frames))
        for frame in frames[next_frame:due]:
            trainer.add_frame(frame)
        next_frame = max(next_frame, due)
        last = trainer.step()
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in last.items() if k in ("loss", "psnr_batch", "rda", "fda")})
    for frame in frames[next_frame:]:  # a time budget can end before the stream did
        trainer.add_frame(frame)
    bar.close()
    return trainer, teacher, {"steps": trainer.step_count, "time_s": time.perf_counter() - start,
                              "keyframes": len(trainer.keyframes), "last": last}
