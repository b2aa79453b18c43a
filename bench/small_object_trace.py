"""Is a small object in the field, or lost by the decision rule? Per class, on held-out views of a
checkpoint written by ``bench/semantic_eval.py --save``:

- ``auc``: how well the class's rendered cosine alone ranks its own pixels above the others (ROC AUC;
  0.5 = no signal in the field, 1 = perfectly separable by some threshold);
- ``best_thr_iou``: IoU of the best single threshold on that cosine (what a perfect per-class
  calibration could reach, ignoring the other classes);
- ``q_iou``: IoU of the shipped decision rule (``query.decision_rule`` / ``relevancy_quantile``);
- ``cos_own`` / ``cos_best_other``: mean cosine at the class's pixels with its own text and with the
  best other class (the field's answer before any calibration);
- ``teacher_auc``: the same AUC for the synthetic benchmark teacher's finest scale on the same views.

    .venv/bin/python bench/small_object_trace.py CKPT \
        synthetic:desk,train=16,test=4,width=160,height=120,seed=3
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
from ovs3d_ros.core.query import Segmenter, classify  # noqa: E402
from ovs3d_ros.core.teachers.relevancy import cosine_maps  # noqa: E402


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of ``score`` for ``positive`` (Mann-Whitney, ties averaged)."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    _, inv, counts = np.unique(score, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_threshold_iou(score: np.ndarray, positive: np.ndarray) -> float:
    order = np.argsort(-score)
    tp = np.cumsum(positive[order])
    k = np.arange(1, len(score) + 1)
    iou = tp / (k + positive.sum() - tp)
    return float(iou.max())


def main() -> int:
    args, dataset, trainer, teacher, cfg = parse_and_load(__doc__.split("\n\n")[0])
    names = list(dataset.class_names)
    text = teacher.encode_text(names).float()
    segmenter = Segmenter(trainer, teacher, apply_flat(cfg, {"query.mask_max_side": 640}))
    cos3d, cos2d, gts, q_labels = [], [], [], []
    head = trainer.query_field.feature_head  # the head the mask latents were rendered with
    for frame in dataset.test_frames:
        with torch.no_grad():
            img = segmenter.render_mask_view(frame.intrinsics, frame.pose)
            lat = img["latent"].reshape(-1, img["latent"].shape[-1])
            op = img["opacity"].reshape(-1)
            feat = F.linear(lat, head.weight) + op[:, None] * head.bias
            cos = F.normalize(feat, dim=-1) @ text.t()
            q_labels.append(classify(feat, text, cfg.query.score_temperature, rule=cfg.query.decision_rule,
                                     quantile=cfg.query.relevancy_quantile).labels.numpy())
            clip = teacher.extract(frame).clip.float()
            finest = int(np.argmax(cfg.teacher.clip.scale_divisors))
            t_cos = cosine_maps(clip[finest:finest + 1], text)  # (1, C, h, w)
            t_cos = F.interpolate(t_cos, size=(frame.height, frame.width), mode="bilinear",
                                  align_corners=False)[0].permute(1, 2, 0).reshape(-1, len(names))
        cos3d.append(cos.numpy())
        cos2d.append(t_cos.numpy())
        gts.append(frame.labels.reshape(-1))
    cos3d, cos2d, gt, lab = (np.concatenate(cos3d), np.concatenate(cos2d), np.concatenate(gts),
                             np.concatenate(q_labels))
    report = {"classes": names, "per_class": {}}
    print(f"{'class':<16} {'px':>6} {'auc':>6} {'T auc':>6} {'bestthr':>8} {'q_iou':>6} {'cos own':>8} "
          f"{'best oth':>8} {'(which)':<14}")
    for c, n in enumerate(names):
        pos = gt == c
        if not pos.any():
            continue
        other = np.delete(cos3d[pos], c, axis=1)
        votes = np.bincount(other.argmax(1), minlength=len(names) - 1)
        which = np.delete(np.arange(len(names)), c)[votes.argmax()]
        pred = lab == c
        row = {"pixels": int(pos.sum()), "auc": auc(cos3d[:, c], pos), "teacher_auc": auc(cos2d[:, c], pos),
               "best_thr_iou": best_threshold_iou(cos3d[:, c], pos),
               "q_iou": float((pred & pos).sum() / max(1, (pred | pos).sum())),
               "cos_own": float(cos3d[pos, c].mean()), "cos_best_other": float(other.max(1).mean()),
               "best_other_class": names[which],
               "predicted_pixels": int(pred.sum())}
        report["per_class"][n] = row
        print(f"{n:<16} {row['pixels']:6d} {row['auc']:6.3f} {row['teacher_auc']:6.3f} "
              f"{100 * row['best_thr_iou']:8.1f} {100 * row['q_iou']:6.1f} {row['cos_own']:8.3f} "
              f"{row['cos_best_other']:8.3f} {row['best_other_class']:<14} pred {row['predicted_pixels']}")
    report["training_views"] = training_view_fit(trainer, teacher, cfg, segmenter, dataset, names, text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def training_view_fit(trainer, teacher, cfg, segmenter, dataset, names, text, views: int = 6) -> dict:
    """On training views (the rays the field was fitted to), per class: mean cosine with the class of the
    feature loss's target (``feature_target_weights``) and of the rendered feature, and their agreement."""
    from ovs3d_ros.core.semantic_targets import feature_target_weights

    head = trainer.query_field.feature_head  # the head the mask latents were rendered with
    sums: dict[str, np.ndarray] = {}
    frames = dataset.train_frames[:: max(1, len(dataset.train_frames) // views)]
    for frame in frames:
        with torch.no_grad():
            img = segmenter.render_mask_view(frame.intrinsics, frame.pose)
            lat = img["latent"].reshape(-1, img["latent"].shape[-1])
            op = img["opacity"].reshape(-1)
            feat = F.normalize(F.linear(lat, head.weight) + op[:, None] * head.bias, dim=-1)
            sel = img["selection"].reshape(len(lat), -1)
            clip = teacher.extract(frame).clip.float()  # (S, D, h, w)
            s, d, h, w = clip.shape
            v, u = np.mgrid[0:frame.height, 0:frame.width]
            i = torch.from_numpy(((v.reshape(-1) + 0.5) * h / frame.height).astype(np.int64)).clamp(0, h - 1)
            j = torch.from_numpy(((u.reshape(-1) + 0.5) * w / frame.width).astype(np.int64)).clamp(0, w - 1)
            targets = clip[:, :, i, j].permute(2, 0, 1)  # (N, S, D)
            weights = feature_target_weights(cfg, sel, targets)
            target = F.normalize(torch.bmm(weights.unsqueeze(1), targets).squeeze(1), dim=-1)
            row = torch.stack([target @ text.t(), feat @ text.t()], dim=1)  # (N, 2, C)
            agree = (target * feat).sum(-1)
        lab = frame.labels.reshape(-1)
        for c, n in enumerate(names):
            pos = torch.from_numpy(lab == c)
            if pos.any():
                vals = np.concatenate([row[pos][:, :, c].mean(0).numpy(), [float(agree[pos].mean()),
                                                                            float(pos.sum())]])
                sums[n] = sums.get(n, 0) + vals * np.array([pos.sum(), pos.sum(), pos.sum(), 1])
    out = {}
    print(f"training views: {'class':<16} {'px':>6} {'target.t_c':>10} {'render.t_c':>10} "
          f"{'cos(render,target)':>18}")
    for n, v in sums.items():
        px = v[3]
        out[n] = {"pixels": px, "target_cos": v[0] / px, "render_cos": v[1] / px,
                  "render_target_cos": v[2] / px}
        print(f"training views: {n:<16} {px:6.0f} {v[0] / px:10.3f} {v[1] / px:10.3f} {v[2] / px:18.3f}")
    return out


if __name__ == "__main__":
    sys.exit(main())
