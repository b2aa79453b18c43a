"""Segmentation and image metrics.

Two mIoU flavours, clearly named:
- ``paper_metrics``: exactly the 3D-OVS evaluation (sklearn ``jaccard_score(average=None)`` and
  ``accuracy_score`` on one-hot predictions vs multi-hot GT, per view): a class absent from both GT
  and prediction in a view scores 0 and still counts; mIoU is the mean over all (view, class)
  entries; accuracy is exact-row-match, so unlabelled or multi-label GT pixels are always wrong.
- ``conventional_miou``: one confusion matrix over all views, unlabelled pixels ignored, classes
  absent from both GT and prediction skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

UNLABELLED = 255


class MetricError(ValueError):
    """Inputs to a metric with mismatched shapes or out-of-range values."""


def _as_multi_hot(gt: np.ndarray, num_classes: int, shape: tuple[int, ...]) -> np.ndarray:
    """(H,W,C) multi-hot or (H,W) index labels (255 = unlabelled) -> (H*W, C) bool."""
    gt = np.asarray(gt)
    if gt.ndim == len(shape) + 1:
        if gt.shape != (*shape, num_classes):
            raise MetricError(f"multi-hot GT has shape {gt.shape}, expected {(*shape, num_classes)}")
        return gt.reshape(-1, num_classes).astype(bool)
    if gt.shape != shape:
        raise MetricError(f"GT labels have shape {gt.shape}, prediction {shape}")
    flat = gt.reshape(-1).astype(np.int64)
    bad = (flat >= num_classes) & (flat != UNLABELLED)
    if bad.any():
        raise MetricError(f"GT label {int(flat[bad][0])} outside 0..{num_classes - 1} (255 = unlabelled)")
    return flat[:, None] == np.arange(num_classes)


def _pred_one_hot(pred: np.ndarray, num_classes: int) -> np.ndarray:
    flat = np.asarray(pred).reshape(-1).astype(np.int64)
    bad = (flat < 0) | ((flat >= num_classes) & (flat != UNLABELLED))
    if bad.any():
        raise MetricError(f"predicted label {int(flat[bad][0])} outside 0..{num_classes - 1} (255 = none)")
    # 255 ('unknown') predicts no class: an all-zero row
    return flat[:, None] == np.arange(num_classes)


def view_iou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) per-class IoU of one view, paper semantics (0 where a class is absent from both)."""
    pred = np.asarray(pred)
    p = _pred_one_hot(pred, num_classes)
    g = _as_multi_hot(gt, num_classes, pred.shape)
    tp = np.count_nonzero(p & g, axis=0)
    union = np.count_nonzero(p | g, axis=0)
    return np.where(union > 0, tp / np.maximum(union, 1), 0.0)


def view_accuracy(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    """Exact-row-match accuracy of one view (unlabelled and multi-label GT pixels count as wrong)."""
    pred = np.asarray(pred)
    p = _pred_one_hot(pred, num_classes)
    g = _as_multi_hot(gt, num_classes, pred.shape)
    return float(np.mean(np.all(p == g, axis=1))) if len(p) else 0.0


@dataclass
class PaperMetrics:
    miou: float
    """Mean over all (view, class) IoU entries (the 3D-OVS number)."""
    accuracy: float
    """Mean over views of exact-row-match accuracy."""
    per_view_iou: np.ndarray
    """(V, C) IoU per view and class."""
    per_view_accuracy: np.ndarray
    """(V,) accuracy per view."""

    @property
    def per_class_iou(self) -> np.ndarray:
        return self.per_view_iou.mean(axis=0)


def paper_metrics(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], num_classes: int) -> PaperMetrics:
    """The 3D-OVS metric over views: ``preds`` (H,W) class indices, ``gts`` (H,W,C) multi-hot or
    (H,W) uint8 labels (255 = unlabelled)."""
    if len(preds) != len(gts):
        raise MetricError(f"{len(preds)} predictions for {len(gts)} ground-truth views")
    if not preds:
        raise MetricError("no views to evaluate")
    ious = np.stack([view_iou(p, g, num_classes) for p, g in zip(preds, gts, strict=True)])
    accs = np.array([view_accuracy(p, g, num_classes) for p, g in zip(preds, gts, strict=True)])
    return PaperMetrics(
        miou=float(ious.mean()), accuracy=float(accs.mean()), per_view_iou=ious, per_view_accuracy=accs
    )


@dataclass
class ConventionalMetrics:
    miou: float
    """Mean IoU over classes present in GT or prediction (dataset-level confusion matrix)."""
    accuracy: float
    """Pixel accuracy over labelled pixels."""
    per_class_iou: np.ndarray
    """(C,) IoU, NaN for classes absent from both GT and prediction."""
    confusion: np.ndarray
    """(C, C) counts, rows = GT, columns = prediction ('unknown' predictions are not counted)."""


def confusion_matrix(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """(C, C) counts over pixels with exactly one GT class; rows GT, columns prediction."""
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    for pred, gt in zip(preds, gts, strict=True):
        pred = np.asarray(pred)
        g = _as_multi_hot(gt, num_classes, pred.shape)
        _pred_one_hot(pred, num_classes)  # range check
        single = g.sum(axis=1) == 1
        g_idx = np.argmax(g, axis=1)
        p_idx = pred.reshape(-1).astype(np.int64)
        keep = single & (p_idx < num_classes)
        conf += np.bincount(
            g_idx[keep] * num_classes + p_idx[keep], minlength=num_classes * num_classes
        ).reshape(num_classes, num_classes)
    return conf


def conventional_miou(
    preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], num_classes: int
) -> ConventionalMetrics:
    """Standard semantic-segmentation mIoU: unlabelled pixels ignored, absent classes skipped."""
    if len(preds) != len(gts):
        raise MetricError(f"{len(preds)} predictions for {len(gts)} ground-truth views")
    conf = confusion_matrix(preds, gts, num_classes)
    # 'unknown' (255) predictions on labelled pixels are false negatives of their GT class
    labelled_per_class = np.zeros(num_classes, dtype=np.int64)
    for pred, gt in zip(preds, gts, strict=True):
        pred = np.asarray(pred)
        g = _as_multi_hot(gt, num_classes, pred.shape)
        single = g.sum(axis=1) == 1
        labelled_per_class += np.bincount(np.argmax(g[single], axis=1), minlength=num_classes)
    tp = np.diag(conf)
    union = labelled_per_class + conf.sum(axis=0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    total = labelled_per_class.sum()
    return ConventionalMetrics(
        miou=float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
        accuracy=float(tp.sum() / total) if total else float("nan"),
        per_class_iou=iou,
        confusion=conf,
    )


@dataclass(frozen=True)
class ClassComparison:
    """One class's IoU in 3D and from the 2D teacher on the same views."""

    name: str
    iou_3d: float
    iou_2d: float
    below_teacher: bool
    """3D IoU below the teacher's: the class the distillation lost (small objects, typically)."""


def compare_per_class(names: Sequence[str], iou_3d: Sequence[float], iou_2d: Sequence[float],
                      tolerance: float = 0.0) -> list[ClassComparison]:
    """Per-class 3D vs 2D-teacher IoU, flagging classes whose 3D IoU is below the teacher's by more
    than ``tolerance`` (IoU units, 0..1). NaN (class absent from GT and both predictions under the
    conventional metric) is never flagged."""
    if not len(names) == len(iou_3d) == len(iou_2d):
        raise MetricError(f"{len(names)} names for {len(iou_3d)} 3D and {len(iou_2d)} 2D IoUs")
    rows = []
    for name, a, b in zip(names, iou_3d, iou_2d, strict=True):
        a, b = float(a), float(b)
        below = bool(np.isfinite(a) and np.isfinite(b) and a < b - tolerance)
        rows.append(ClassComparison(str(name), a, b, below))
    return rows


def format_class_comparison(rows: Sequence[ClassComparison], min_width: int = 5) -> str:
    """A plain-text table, IoU in %, classes the teacher beats marked ``< 2D``."""
    width = max([len(r.name) for r in rows] + [min_width])
    lines = [f"{'class':<{width}}  {'3D IoU':>7}  {'2D IoU':>7}"]
    lines += [f"{r.name:<{width}}  {100 * r.iou_3d:7.1f}  {100 * r.iou_2d:7.1f}"
              + ("  < 2D" if r.below_teacher else "") for r in rows]
    return "\n".join(lines)


def psnr(pred, target, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of images with values in [0, max_value] (numpy or torch)."""
    try:
        import torch

        if torch.is_tensor(pred):
            pred = pred.detach().double().cpu().numpy()
        if torch.is_tensor(target):
            target = target.detach().double().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency, but metrics need not be
        pass
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise MetricError(f"psnr: shapes differ, {pred.shape} vs {target.shape}")
    mse = float(np.mean((pred - target) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(max_value**2 / mse))
