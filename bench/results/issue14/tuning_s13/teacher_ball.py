"""Session 13: pick new *tuning* desk seeds where the synthetic benchmark teacher finds the 5 cm ball
(IoU >= 20 on the held-out views), so the ball's loss in 3D can be studied without looking at the
held-out desks (0 2 4-11). Teacher only, no training: the 2D labels and the ground truth.

    .venv/bin/python bench/results/issue14/tuning_s13/teacher_ball.py 12 13 ... > teacher_ball.txt
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from ovs3d_ros.config import build_config  # noqa: E402
from ovs3d_ros.core.evaluation import _scores, _teacher_prediction, ground_truth_of  # noqa: E402
from ovs3d_ros.core.teachers import build_teacher  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402

torch.set_num_threads(1)
cfg = build_config(None, ["teacher.kind=synthetic"])
for seed in map(int, sys.argv[1:]):
    ds = open_scene(f"synthetic:desk,train=16,test=4,width=160,height=120,seed={seed}")
    names = list(ds.class_names)
    teacher = build_teacher(cfg.teacher, "cpu", class_names=names)
    text = teacher.encode_text(names).float()
    preds = [_teacher_prediction(teacher, f, text) for f in ds.test_frames]
    gts = [ground_truth_of(f) for f in ds.test_frames]
    s = _scores(preds, gts, names)
    ball = next(n for n in names if "ball" in n)
    iou = 100 * s["per_class_iou"][ball]
    print(f"desk {seed}: teacher mIoU {100 * s['paper_miou']:.1f}, {ball} {iou:.1f}", flush=True)
