"""Where small objects are lost: per-class measurements along the chain teacher -> field -> decision.

For a checkpoint written by ``bench/semantic_eval.py --save`` and its synthetic scene, on the held-out
views, per class (IoU in %, over the views together):
- the synthetic benchmark teacher per patch scale alone and all scales (its own rule: min-max relevancy
  summed over scales) -- what the targets at the rays hitting the class say;
- the 3D answer from the same rendered features under each decision rule (``RULES``);
- the mean rendered selection weight per scale on the class's pixels (does the field pick the fine
  scale where the object is small?);
- the mean rendered opacity on the class's pixels.

    .venv/bin/python bench/small_objects.py CKPT synthetic:desk,train=16,test=4,width=160,height=120,seed=1
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from saved_field import parse_and_load  # noqa: E402  (bench/ is this script's folder)

from ovs3d_ros.config import apply_flat  # noqa: E402
from ovs3d_ros.core import metrics  # noqa: E402
from ovs3d_ros.core.query import Segmenter, classify  # noqa: E402
from ovs3d_ros.core.teachers.relevancy import relevancy_maps  # noqa: E402

RULES = {"cosine": ("cosine", 0.0), "minmax": ("relevancy", 0.0), "q01": ("relevancy", 0.01),
         "q05": ("relevancy", 0.05)}
"""Decision rules compared on the same rendered features: plain cosine, the relevancy rule with exact
min-max (the 2D teacher's), and with 1 % / 5 % quantiles (``query.relevancy_quantile``)."""


def class_iou(preds: list[np.ndarray], gts: list[np.ndarray], c: int) -> np.ndarray:
    return metrics.paper_metrics(preds, gts, c).per_class_iou


def teacher_by_scale(teacher, frame, text: torch.Tensor) -> list[np.ndarray]:
    """(H, W) labels of the teacher from each scale alone, then from all scales (its own rule)."""
    clip = teacher.extract(frame).clip.float()
    rel = relevancy_maps(clip, text)  # (S, C, h, w)
    out = []
    for score in [*rel.split(1, dim=0), rel.sum(dim=0, keepdim=True)]:
        up = F.interpolate(score, size=(frame.height, frame.width), mode="bilinear", align_corners=False)
        out.append(up[0].argmax(dim=0).numpy())
    return out


def main() -> int:
    args, dataset, trainer, teacher, cfg = parse_and_load(__doc__.split("\n\n")[0])
    names = list(dataset.class_names)
    c = len(names)
    text = teacher.encode_text(names).float()
    eval_cfg = apply_flat(cfg, {"query.mask_max_side": max(dataset.test_frames[0].width, 640)})
    segmenter = Segmenter(trainer, teacher, eval_cfg)
    gts, by_rule, by_scale, sel_sum, opa_sum, count = [], {r: [] for r in RULES}, [], 0, 0, 0
    for frame in dataset.test_frames:
        with torch.no_grad():
            img = segmenter.render_mask_view(frame.intrinsics, frame.pose)
        feats = img["feature"].reshape(-1, img["feature"].shape[-1])
        for rule, (name, quantile) in RULES.items():
            lab = classify(feats, text, cfg.query.score_temperature, rule=name, quantile=quantile).labels
            by_rule[rule].append(lab.reshape(frame.height, frame.width).numpy())
        by_scale.append(teacher_by_scale(teacher, frame, text))
        onehot = np.eye(c)[frame.labels.reshape(-1)]  # (HW, C)
        sel_sum = sel_sum + onehot.T @ img["selection"].reshape(len(onehot), -1).numpy()
        opa_sum = opa_sum + onehot.T @ img["opacity"].reshape(-1).numpy()
        count = count + onehot.sum(axis=0)
        gts.append(frame.labels)
    scales = len(by_scale[0]) - 1
    report = {"classes": names, "pixels_per_view": (count / len(gts)).tolist()}
    for k in range(scales + 1):
        key = f"teacher_scale{k}" if k < scales else "teacher_all_scales"
        report[key] = class_iou([v[k] for v in by_scale], gts, c).tolist()
    for rule, preds in by_rule.items():
        report[f"3d_{rule}"] = class_iou(preds, gts, c).tolist()
    report["selection"] = (sel_sum / np.maximum(count, 1)[:, None]).tolist()
    report["opacity"] = (opa_sum / np.maximum(count, 1)).tolist()
    cols = [f"teacher_scale{k}" for k in range(scales)] + ["teacher_all_scales"] + \
        [f"3d_{r}" for r in RULES]
    print(f"{'class':<16} {'px/view':>7} " + " ".join(f"{h.replace('teacher_', 'T:')[:12]:>12}" for h in cols)
          + "  selection per scale   opacity")
    for i, n in enumerate(names):
        print(f"{n:<16} {report['pixels_per_view'][i]:7.0f} "
              + " ".join(f"{100 * report[h][i]:12.1f}" for h in cols)
              + "  " + " ".join(f"{s:.2f}" for s in report["selection"][i])
              + f"   {report['opacity'][i]:.3f}")
    print(f"{'mean':<16} {'':>7} " + " ".join(f"{100 * np.mean(report[h]):12.1f}" for h in cols))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
