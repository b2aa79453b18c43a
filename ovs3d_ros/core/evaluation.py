"""Evaluation on a scene's annotated / held-out views: the 3D field's masks against the 2D teacher's,
both scored against the ground truth with the paper's metric and the conventional one, per class and
per view. ``ovs3d eval`` and ``bench/semantic_eval.py`` both call :func:`evaluate`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ovs3d_ros.config import Config, apply_flat
from ovs3d_ros.core.progress import progress_bar


class EvaluationError(ValueError):
    """A scene that cannot be evaluated (no test views, a view without ground truth)."""


def ground_truth_of(frame) -> np.ndarray:
    """The view's ground truth: the (H, W, C) multi-hot annotation when the scene has one (3D-OVS
    masks may overlap), else the (H, W) label image."""
    if "gt_multi_hot" in frame.extras:
        return frame.extras["gt_multi_hot"]
    if frame.labels is None:
        raise EvaluationError(f"test view {frame.source_id or frame.frame_id} has no ground-truth labels")
    return frame.labels


def _teacher_prediction(teacher, frame, text) -> np.ndarray:
    import torch

    from ovs3d_ros.core.teachers import teacher_labels

    with torch.no_grad():
        clip = teacher.extract(frame).clip
        return teacher_labels(clip.to(text.device), text, frame.height, frame.width).cpu().numpy()


def _write_figure(path: Path, frame, gt, pred3d, pred2d, colors) -> None:
    """One strip per view: RGB | ground truth | 3D prediction | 2D teacher prediction."""
    from ovs3d_ros.core import outputs

    c = len(colors)
    gt_labels = frame.labels if frame.labels is not None else np.argmax(gt, axis=-1).astype(np.uint8)
    panels = [frame.rgb, outputs.overlay(frame.rgb, gt_labels.astype(np.uint8), colors),
              outputs.overlay(frame.rgb, outputs.label_image(pred3d, c), colors),
              outputs.overlay(frame.rgb, outputs.label_image(pred2d, c), colors)]
    outputs.write_png(path, np.concatenate(panels, axis=1))


def _scores(preds, gts, names) -> dict:
    """Both metrics of one predictor over all views."""
    from ovs3d_ros.core import metrics

    c = len(names)
    paper, conv = metrics.paper_metrics(preds, gts, c), metrics.conventional_miou(preds, gts, c)
    return {"paper_miou": paper.miou, "paper_accuracy": paper.accuracy,
            "conventional_miou": conv.miou, "conventional_accuracy": conv.accuracy,
            "per_class_iou": dict(zip(names, paper.per_class_iou.tolist(), strict=True)),
            "per_view_miou": paper.per_view_iou.mean(axis=1).tolist()}


def evaluate(trainer, teacher, cfg: Config, dataset, refine: bool = False, figures_dir: Path | None = None,
             progress: bool = True) -> dict:
    """3D predictions vs the 2D teacher on ``dataset.test_frames``: both metrics, per class and view."""
    from ovs3d_ros.core.query import Segmenter
    from ovs3d_ros.core.vocabulary import class_colors

    names = list(dataset.class_names)
    views = dataset.test_frames
    if not views:
        raise EvaluationError(f"{dataset.name}: no annotated / held-out views to evaluate")
    side = max(max(f.width, f.height) for f in views)  # masks at the views' full size
    segmenter = Segmenter(trainer, teacher,
                          apply_flat(cfg, {"query.mask_max_side": max(side, cfg.query.mask_max_side)}))
    text = teacher.encode_text(names).float()
    preds3d, preds2d, gts, latencies = [], [], [], []
    colors = class_colors(names)
    for k, frame in enumerate(progress_bar(views, enabled=progress, desc="eval", unit="view")):
        t = time.perf_counter()
        res = segmenter.segment(names, refine=refine, camera=(frame.intrinsics, frame.pose), cloud=False)
        latencies.append(time.perf_counter() - t)
        preds3d.append(res.label_image.astype(np.int64))
        preds2d.append(_teacher_prediction(teacher, frame, text))
        gts.append(ground_truth_of(frame))
        if figures_dir is not None:
            _write_figure(figures_dir / f"view{k:02d}_rgb_gt_3d_2d.png", frame, gts[-1], preds3d[-1],
                          preds2d[-1], colors)
    return {
        "scene": dataset.name, "classes": names, "views": [f.source_id for f in views],
        "held_out": bool(getattr(dataset, "test_held_out", True)), "refined": refine,
        "3d": _scores(preds3d, gts, names), "2d_teacher": _scores(preds2d, gts, names),
        "mask_latency_s": float(np.mean(latencies)),
    }


def format_report(report: dict) -> str:
    """A plain-text table: per class (classes below the 2D teacher flagged) then per view, 3D vs the 2D
    teacher, then the summary rows."""
    from ovs3d_ros.core.metrics import compare_per_class, format_class_comparison

    a, b = report["3d"], report["2d_teacher"]
    names = report["classes"]
    width = max([len(n) for n in names] + [18])
    per_class = compare_per_class(names, [a["per_class_iou"][n] for n in names],
                                  [b["per_class_iou"][n] for n in names])
    lines = [f"scene {report['scene']} ({len(report['views'])} "
             f"{'held-out' if report['held_out'] else 'annotated'} views)",
             format_class_comparison(per_class, width)]
    for k, (x, y) in enumerate(zip(a["per_view_miou"], b["per_view_miou"], strict=True)):
        lines.append(f"{'view ' + str(k):<{width}}  {100 * x:7.1f}  {100 * y:7.1f}")
    for key, label in (("paper_miou", "mIoU (paper)"), ("paper_accuracy", "accuracy (paper)"),
                       ("conventional_miou", "mIoU (conventional)")):
        lines.append(f"{label:<{width}}  {100 * a[key]:7.1f}  {100 * b[key]:7.1f}")
    return "\n".join(lines)
