"""Session 13: the same saved tuning field answered from its averaged semantic weights (the shipped
``semantic.average_decay`` 0.995 / ``average_power`` 3: ``Trainer.query_field``) and from the live
weights of its last step (what ``average_decay`` 0 would answer from; training is the same either way:
the average never feeds back). Held-out views, paper mIoU and per-class IoU, shipped query settings.

    .venv/bin/python bench/results/issue14/tuning_s13/live_vs_average.py OUT.json \\
        CKPT:synthetic:desk,train=16,test=4,width=160,height=120,seed=16 ...
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from ovs3d_ros.core.evaluation import evaluate  # noqa: E402
from ovs3d_ros.core.model_files import load_model  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402

torch.set_num_threads(1)
out = []
for arg in sys.argv[2:]:
    ckpt, scene = arg.split(":", 1)
    dataset = open_scene(scene)
    trainer, teacher, cfg, _ = load_model(ckpt, device="cpu")
    row = {"ckpt": ckpt, "scene": scene}
    averaged = evaluate(trainer, teacher, cfg, dataset, progress=False)
    shipped = type(trainer).query_field
    type(trainer).query_field = property(lambda self: self.field)  # the live weights (this script only)
    try:
        live = evaluate(trainer, teacher, cfg, dataset, progress=False)
    finally:
        type(trainer).query_field = shipped
    for name, rep in (("averaged", averaged), ("live", live)):
        row[name] = {"paper_miou": rep["3d"]["paper_miou"], "per_class_iou": rep["3d"]["per_class_iou"],
                     "teacher_per_class_iou": rep["2d_teacher"]["per_class_iou"],
                     "teacher_miou": rep["2d_teacher"]["paper_miou"]}
    out.append(row)
    ball = {k: v for k, v in averaged["3d"]["per_class_iou"].items() if "ball" in k}
    name = next(iter(ball), None)
    miou = f"averaged {100 * averaged['3d']['paper_miou']:.1f} live {100 * live['3d']['paper_miou']:.1f}"
    print(f"{scene}: {miou}"
          + (f"  {name} {100 * ball[name]:.1f} / {100 * live['3d']['per_class_iou'][name]:.1f} (teacher "
             f"{100 * averaged['2d_teacher']['per_class_iou'][name]:.1f})" if name else ""), flush=True)
    Path(sys.argv[1]).write_text(json.dumps(out, indent=2))
