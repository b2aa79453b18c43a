"""Diagnostic (tuning scenes only): held-out IoU of one run's field at steps 450 / 500 / 550 / 600, and at
600 with its semantic weights (semantic grid, MLP, feature head) replaced by exponential averages (decay
0.98 / 0.995, started at step 300) or the plain mean of steps 300-600. Written before
``core/field/semantic_average.py`` existed, with the averaging done here; ``semantic.average_decay`` 0
keeps the trainer as it was then:

    python bench/results/issue14/tuning_s10/adhoc/last_steps.py desk 1 0 OUT.json   # scene seed trainer-seed
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[5]))  # the repository

from ovs3d_ros.config import build_config  # noqa: E402
from ovs3d_ros.core.evaluation import evaluate  # noqa: E402
from ovs3d_ros.core.scene_training import TrainPlan, train_scene  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402

SHOWN = ("orange ball", "red apple", "white mug", "yellow bottle")


def main() -> None:
    torch.set_num_threads(1)
    scene, seed, trainer_seed, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    cfg = build_config(None, ["teacher.kind=synthetic", f"trainer.seed={trainer_seed}",
                              "semantic.average_decay=0"])
    dataset = open_scene(f"synthetic:{scene},train=16,test=4,width=160,height=120,seed={seed}")
    trainer, teacher, _ = train_scene(dataset, cfg, TrainPlan(steps=300), list(dataset.class_names),
                                      progress=False, device="cpu")
    field = trainer.field
    params = [p for module in field.semantic_modules().values() for p in module.parameters()]
    emas = {d: [p.detach().clone() for p in params] for d in (0.98, 0.995)}
    mean, count = [p.detach().clone() for p in params], 1
    rows = []

    def evaluate_now(tag: str) -> None:
        rep = evaluate(trainer, teacher, trainer.cfg, dataset, progress=False)
        row = {"tag": tag, "step": trainer.step_count, "miou": 100 * rep["3d"]["paper_miou"],
               "cls": {k: round(100 * v, 1) for k, v in rep["3d"]["per_class_iou"].items()},
               "t2d": {k: round(100 * v, 1) for k, v in rep["2d_teacher"]["per_class_iou"].items()}}
        rows.append(row)
        print(tag, trainer.step_count, round(row["miou"], 1), {k: row["cls"][k] for k in SHOWN}, flush=True)

    def swap(values: list[torch.Tensor]) -> list[torch.Tensor]:
        old = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, v in zip(params, values, strict=True):
                p.copy_(v)
        return old

    while trainer.step_count < 600:
        trainer.step()
        count += 1
        with torch.no_grad():
            for decay, values in emas.items():
                for e, p in zip(values, params, strict=True):
                    e.lerp_(p.detach(), 1 - decay)
            for m, p in zip(mean, params, strict=True):
                m.add_(p.detach() - m, alpha=1.0 / count)
        if trainer.step_count in (450, 500, 550, 600):
            evaluate_now("raw")
    for decay, values in emas.items():
        old = swap(values)
        evaluate_now(f"ema{decay}")
        swap(old)
    old = swap(mean)
    evaluate_now("avg300-600")
    swap(old)
    Path(out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
