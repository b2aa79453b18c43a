"""Session 14: the tuning desks 16 and 27 (trainer seeds 0-2) at 600 steps (the bench's budget,
``../tuning_s13/RARE05_*``, trained with ``--set semantic.rare_ray_fraction=0.5``, today's default) and at
2000 (`ovs3d eval`'s default step count, ``STEPS2000_*``): mIoU, the two small classes and the classes the
teacher finds (IoU >= 20) that end below it.

    .venv/bin/python bench/results/issue14/tuning_s14/steps_compare.py > steps_compare.txt
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # bench/

from semantic_eval import classes_lost  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = {600: HERE.parent / "tuning_s13" / "RARE05_tseed{t}_desk16_27.json",
        2000: HERE / "STEPS2000_tseed{t}_desk16_27.json"}

for steps, pattern in RUNS.items():
    mious, lost = [], []
    print(f"## {steps} steps")
    for t in range(3):
        for rep in json.loads(Path(str(pattern).format(t=t)).read_text()):
            iou3, iou2 = rep["3d"]["per_class_iou"], rep["2d_teacher"]["per_class_iou"]
            ball = next(n for n in rep["classes"] if "ball" in n)
            apple = next(n for n in rep["classes"] if "apple" in n)
            below = [f"{c.name} {100 * c.iou_3d:.1f} < {100 * c.iou_2d:.1f}" for c in classes_lost(rep)]
            mious.append(100 * rep["3d"]["paper_miou"])
            lost += below
            print(f"desk {rep['seed']} trainer seed {t}: mIoU {mious[-1]:.1f} (teacher "
                  f"{100 * rep['2d_teacher']['paper_miou']:.1f}), ball {100 * iou3[ball]:.1f} "
                  f"(teacher {100 * iou2[ball]:.1f}), apple {100 * iou3[apple]:.1f} (teacher "
                  f"{100 * iou2[apple]:.1f}); below teacher: {', '.join(below) or 'none'}")
    print(f"mean mIoU {sum(mious) / len(mious):.1f}; classes below their teacher: {len(lost)}\n")
