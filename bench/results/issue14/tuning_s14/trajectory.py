"""Session 14: how much a small class's held-out IoU moves between nearby training steps, on a tuning
field. Trains as ``bench/semantic_eval.py`` does (full variant, 600-step stream plan, shipped defaults),
evaluates the answer every ``--every`` steps from ``--first`` on, then keeps training (all frames in) to
``--last`` steps, evaluating as it goes. Prints one line per evaluation and writes them as JSON.

    .venv/bin/python bench/results/issue14/tuning_s14/trajectory.py --seed 36 --trainer-seed 0 \
        --out trajectory_desk36_t0.json

``train_with_answers`` is the loop ``trajectory_detail.py`` shares.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # bench/

from semantic_eval import classes_lost  # noqa: E402

from ovs3d_ros.config import build_config  # noqa: E402
from ovs3d_ros.core.evaluation import evaluate  # noqa: E402
from ovs3d_ros.core.scene_training import TrainPlan, build_trainer  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402


def arguments(every: int, last: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--trainer-seed", type=int, default=0)
    parser.add_argument("--first", type=int, default=300)
    parser.add_argument("--every", type=int, default=every)
    parser.add_argument("--last", type=int, default=last)
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")  # as semantic_eval.py
    return parser.parse_args()


def train_with_answers(args: argparse.Namespace, answer) -> None:
    """Train desk ``args.seed``; at each evaluated step add ``answer(trainer, teacher, dataset, cfg,
    top)`` (a dict; it may fill ``top``, the JSON's top level) as a row, print it and rewrite the JSON."""
    torch.set_num_threads(1)
    cfg = build_config(None, ["teacher.kind=synthetic", f"trainer.seed={args.trainer_seed}", *args.set])
    ds = open_scene(f"synthetic:desk,train=16,test=4,width=160,height=120,seed={args.seed}")
    trainer, teacher = build_trainer(ds, cfg, list(ds.class_names), "cpu")
    plan = TrainPlan(steps=600)  # the bench's stream: frames arrive over the first 300 steps
    frames = list(ds.train_frames)
    trainer.add_frame(frames[0])
    added, rows, top = 1, [], {"command": " ".join(sys.argv)}
    while trainer.step_count < args.last:
        due = plan.frames_due(min(trainer.step_count, 600), 0.0, len(frames))
        for frame in frames[added:due]:
            trainer.add_frame(frame)
        added = max(added, due)
        trainer.step()
        n = trainer.step_count
        if n >= args.first and (n - args.first) % args.every == 0:
            rows.append({"step": n, **answer(trainer, teacher, ds, cfg, top)})
            print(json.dumps(rows[-1]), flush=True)
            Path(args.out).write_text(json.dumps({**top, "rows": rows}, indent=1))


def held_out_scores(trainer, teacher, ds, cfg, top: dict) -> dict:
    names = list(ds.class_names)
    rep = evaluate(trainer, teacher, trainer.cfg, ds, progress=False)
    iou3, iou2 = rep["3d"]["per_class_iou"], rep["2d_teacher"]["per_class_iou"]
    top["teacher"] = {c: round(100 * iou2[c], 1) for c in names}
    small = {c: round(100 * iou3[c], 1) for c in names if "ball" in c or "apple" in c}
    below = [c.name for c in classes_lost(rep)]
    return {"miou": round(100 * rep["3d"]["paper_miou"], 1), **small, "below": below}


if __name__ == "__main__":
    train_with_answers(arguments(every=50, last=1200), held_out_scores)
