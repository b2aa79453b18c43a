"""Session 14: where the apple goes as training continues (``trajectory.py`` showed its held-out IoU
halving between 400 and 1200 steps on tuning desks 27 and 36). Same training; every ``--every`` steps,
for the ball and the apple on the held-out views: ground-truth pixels, pixels labelled as the class,
true positives, and what the ground-truth pixels were labelled instead, answered from the averaged
semantic weights (``Trainer.query_field``, shipped) and from the live ones (this script only).

    .venv/bin/python bench/results/issue14/tuning_s14/trajectory_detail.py --seed 36 --trainer-seed 0 \
        --out trajectory_detail_desk36_t0.json
"""

import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trajectory import arguments, train_with_answers  # noqa: E402

from ovs3d_ros.core.evaluation import ground_truth_of  # noqa: E402
from ovs3d_ros.core.query import Segmenter  # noqa: E402


def small_class_pixels(trainer, teacher, ds, cfg) -> dict:
    """Per small class: ground-truth pixels, pixels labelled as it, true positives, IoU over the views
    pooled, and what its missed pixels were labelled instead."""
    names = list(ds.class_names)
    small = [k for k, n in enumerate(names) if "ball" in n or "apple" in n]
    gts = [ground_truth_of(f) for f in ds.test_frames]
    seg = Segmenter(trainer, teacher, cfg)
    preds = [seg.segment(names, camera=(f.intrinsics, f.pose), cloud=False).label_image.astype(np.int64)
             for f in ds.test_frames]
    out = {}
    for k in small:
        # synthetic views carry (H, W, C) multi-hot ground truth (``ground_truth_of``)
        gt = np.concatenate([(g[..., k] > 0 if g.ndim == 3 else g == k).ravel() for g in gts])
        pred = np.concatenate([(p == k).ravel() for p in preds])
        instead = Counter(names[v] if v < len(names) else "unknown"
                          for v in np.concatenate([p.ravel() for p in preds])[gt & ~pred].tolist())
        tp = int((gt & pred).sum())
        out[names[k]] = {"gt": int(gt.sum()), "labelled": int(pred.sum()), "tp": tp,
                         "iou": round(100 * tp / max(1, int((gt | pred).sum())), 1),
                         "missed_as": dict(instead.most_common(3))}
    return out


def averaged_and_live(trainer, teacher, ds, cfg, top: dict) -> dict:
    row = {"averaged": small_class_pixels(trainer, teacher, ds, cfg)}
    shipped = type(trainer).query_field
    type(trainer).query_field = property(lambda self: self.field)  # the live weights (this script only)
    try:
        row["live"] = small_class_pixels(trainer, teacher, ds, cfg)
    finally:
        type(trainer).query_field = shipped
    return row


if __name__ == "__main__":
    train_with_answers(arguments(every=100, last=1000), averaged_and_live)
