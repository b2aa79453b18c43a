"""Session 14: where the apple goes as training continues (``trajectory.py`` showed its held-out IoU
halving between 400 and 1200 steps on tuning desks 27 and 36). Same training; every ``--every`` steps,
for the ball and the apple on the held-out views: ground-truth pixels, pixels labelled as the class,
true positives, and what the ground-truth pixels were labelled instead, answered from the averaged
semantic weights (``Trainer.query_field``, shipped) and from the live ones (this script only).

    .venv/bin/python bench/results/issue14/tuning_s14/trajectory_detail.py --seed 36 --trainer-seed 0 \
        --out trajectory_detail_desk36_t0.json
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from ovs3d_ros.config import build_config  # noqa: E402
from ovs3d_ros.core.evaluation import ground_truth_of  # noqa: E402
from ovs3d_ros.core.query import Segmenter  # noqa: E402
from ovs3d_ros.core.scene_training import TrainPlan, build_trainer  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--trainer-seed", type=int, default=0)
parser.add_argument("--first", type=int, default=300)
parser.add_argument("--every", type=int, default=100)
parser.add_argument("--last", type=int, default=1000)
parser.add_argument("--out", required=True)
args = parser.parse_args()

torch.set_num_threads(1)
cfg = build_config(None, ["teacher.kind=synthetic", f"trainer.seed={args.trainer_seed}"])
ds = open_scene(f"synthetic:desk,train=16,test=4,width=160,height=120,seed={args.seed}")
names = list(ds.class_names)
small = [k for k, n in enumerate(names) if "ball" in n or "apple" in n]
trainer, teacher = build_trainer(ds, cfg, names, "cpu")
gts = [ground_truth_of(f) for f in ds.test_frames]


def answer() -> dict:
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


plan = TrainPlan(steps=600)  # the bench's stream: frames arrive over the first 300 steps
frames = list(ds.train_frames)
trainer.add_frame(frames[0])
added, rows = 1, []
while trainer.step_count < args.last:
    due = plan.frames_due(min(trainer.step_count, 600), 0.0, len(frames))
    for frame in frames[added:due]:
        trainer.add_frame(frame)
    added = max(added, due)
    trainer.step()
    n = trainer.step_count
    if n >= args.first and (n - args.first) % args.every == 0:
        row = {"step": n, "averaged": answer()}
        shipped = type(trainer).query_field
        type(trainer).query_field = property(lambda self: self.field)  # the live weights (this script only)
        try:
            row["live"] = answer()
        finally:
            type(trainer).query_field = shipped
        rows.append(row)
        print(json.dumps(row), flush=True)
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
