"""Session 13: the twelve tuning fields answered three ways: from the shipped average of the semantic
weights (decay 0.995) and from the live weights (both ``live_vs_average.json``: the same saved fields),
and from fields trained again with ``semantic.average_decay`` 0.98 (``AVG098_*.json``). Mean mIoU, mean
ball / apple IoU (desks), and the classes the teacher finds (IoU >= 20) that end below it.

    python bench/results/issue14/tuning_s13/average_compare.py > average_compare.txt
"""

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIELDS = [("desk", 16, 0), ("desk", 16, 1), ("desk", 16, 2), ("desk", 27, 0), ("desk", 27, 1),
          ("desk", 27, 2), ("desk", 1, 0), ("desk", 1, 1), ("desk", 1, 2), ("desk", 3, 0), ("desk", 3, 1),
          ("table", 2, 0)]
"""(scene, seed, trainer seed) in the order ``live_vs_average.json`` lists them."""


def main() -> None:
    saved = json.loads((HERE / "live_vs_average.json").read_text())
    answers = {"shipped average (0.995)": [], "live weights": [], "trained with decay 0.98": []}
    for (scene, seed, tseed), row in zip(FIELDS, saved, strict=True):
        assert f"seed={seed}" in row["scene"] and scene in row["scene"]
        retrained = json.loads((HERE / f"AVG098_tseed{tseed}_{scene}{seed}.json").read_text())[0]
        name = f"{scene} {seed} t{tseed}"
        answers["shipped average (0.995)"].append((name, row["averaged"]["paper_miou"],
                                                   row["averaged"]["per_class_iou"],
                                                   row["averaged"]["teacher_per_class_iou"]))
        answers["live weights"].append((name, row["live"]["paper_miou"], row["live"]["per_class_iou"],
                                        row["live"]["teacher_per_class_iou"]))
        answers["trained with decay 0.98"].append((name, retrained["3d"]["paper_miou"],
                                                   retrained["3d"]["per_class_iou"],
                                                   retrained["2d_teacher"]["per_class_iou"]))
    print("| answer | mean mIoU (12 fields) | orange ball (11 desks) | red apple (11 desks) | "
          "classes the teacher finds below it |\n|---|---|---|---|---|")
    for label, fields in answers.items():
        below = [f"{n}: {c} {100 * v:.1f} < {100 * t[c]:.1f}" for n, _, pc, t in fields
                 for c, v in pc.items() if t[c] >= 0.2 and v < t[c]]
        desks = [pc for _, _, pc, _ in fields if "orange ball" in pc]
        print(f"| {label} | {statistics.mean(100 * m for _, m, _, _ in fields):.1f} | "
              f"{statistics.mean(100 * pc['orange ball'] for pc in desks):.1f} | "
              f"{statistics.mean(100 * pc['red apple'] for pc in desks):.1f} | "
              f"{len(below)}: {'; '.join(below)} |")


if __name__ == "__main__":
    main()
