"""Session 13: the shipped defaults against two ways of distilling a small object more often, on the
tuning scenes, each scene / trainer-seed pair trained once per setting (600 steps, same command):
``semantic.rare_ray_fraction`` 0.5 (shipped 0.25) and ``semantic.rays_per_step`` 1024 (shipped 512).
Per setting: mean mIoU, each pair's ball IoU, mean apple IoU, classes the teacher finds (IoU >= 20)
below it, mean training seconds.

    python bench/results/issue14/tuning_s13/rare_compare.py > rare_compare.txt
"""

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # bench/

from semantic_eval import classes_lost  # noqa: E402

HERE = Path(__file__).resolve().parent
SETTINGS = {"shipped": "shipped", "semantic.rare_ray_fraction=0.5": "RARE05",
            "semantic.rays_per_step=1024": "RAYS1024"}


def runs(tag: str) -> list[tuple[int, dict]]:
    """(trainer seed, report) of every run of ``tag``: desk 16 + 27 files and one file per other pair."""
    out = []
    for path in sorted(HERE.glob(f"{tag}_tseed*.json")):
        tseed = int(path.stem.split("_tseed")[1][0])
        out += [(tseed, rep) for rep in json.loads(path.read_text())]
    return out


def table(title: str, keep) -> None:
    print(f"\n{title}\n\n| setting | fields | mean mIoU | orange ball per field (teacher) | mean red apple | "
          "classes the teacher finds below it | train s |\n|---|---|---|---|---|---|---|")
    for label, tag in SETTINGS.items():
        reps = [(t, r) for t, r in runs(tag) if keep(r)]
        if not reps:
            continue
        balls = [f"{r['preset']} {r['seed']} t{t} {100 * r['3d']['per_class_iou']['orange ball']:.1f} "
                 f"({100 * r['2d_teacher']['per_class_iou']['orange ball']:.1f})"
                 for t, r in reps if "orange ball" in r["classes"]]
        apples = [100 * r["3d"]["per_class_iou"]["red apple"] for _, r in reps if "red apple" in r["classes"]]
        below = [f"{r['preset']} {r['seed']} t{t} {c.name}" for t, r in reps for c in classes_lost(r)]
        miou = statistics.mean(100 * r["3d"]["paper_miou"] for _, r in reps)
        apple = statistics.mean(apples)
        print(f"| `{label}` | {len(reps)} | {miou:.1f} | {'; '.join(balls)} | {apple:.1f} | "
              f"{len(below)}: {', '.join(below)} | {statistics.mean(r['train_s'] for _, r in reps):.0f} |")


def main() -> None:
    table("Desks 16 and 27 (the ball's teacher IoU >= 20), trainer seeds 0-2:",
          lambda r: r["preset"] == "desk" and r["seed"] in (16, 27))
    table("Desks 1 and 3 (trainer seeds 0-2 / 0-1) and table 2 (seed 0), the earlier tuning scenes:",
          lambda r: (r["preset"], r["seed"]) in (("desk", 1), ("desk", 3), ("table", 2)))


if __name__ == "__main__":
    main()
