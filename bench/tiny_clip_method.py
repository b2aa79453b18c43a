"""The method on the project's tiny CLIP + DINO (the real teacher path), on preset scenes the tiny
models never saw: tiny-CLIP 2D, 3D zero-shot, 3D + refine, and the no-FDA / no-RDA ablations, all on the
same held-out views (bench/semantic_eval.py's runner and CPU settings, the teacher swapped).

    .venv/bin/python bench/tiny_clip_method.py --scenes room table clutter --seed 3 \\
        --out bench/results/tiny_clip_method
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results_files import write_json_and_md  # noqa: E402  (bench/ is this script's folder)
from semantic_eval import BENCH_DEFAULTS, run_variant  # noqa: E402  (bench/ is this script's folder)

from ovs3d_ros.config import build_config  # noqa: E402
from ovs3d_ros.core.teachers.tiny import tiny_teacher_settings  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402

COLUMNS = (("tiny-CLIP 2D", "feature_only", "2d_teacher"), ("3D zero-shot", "feature_only", "3d"),
           ("3D + refine", "feature_only", "refined_3d"), ("3D full", "full", "3d"),
           ("no FDA", "no_fda", "3d"), ("no RDA", "no_rda", "3d"))
"""(column, variant, report key): zero-shot = class-agnostic distillation only, answered by argmax of
cosine; + refine = the query-time RDA burst on it; full / no FDA / no RDA train RDA+FDA for the scene's
vocabulary (the paper's offline mode), minus one term."""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=str(Path(__file__).resolve().parents[1] / "models" / "tiny"))
    p.add_argument("--scenes", nargs="+", default=["room", "table", "clutter"])
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--height", type=int, default=72)
    p.add_argument("--train", type=int, default=16)
    p.add_argument("--test", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=["feature_only", "full", "no_fda", "no_rda"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="bench/results/tiny_clip_method")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    settings = {**BENCH_DEFAULTS, **tiny_teacher_settings(args.models)}
    base = build_config(None, [f"{k}={v}" for k, v in settings.items()] + args.set)
    rows = []
    for scene in args.scenes:
        dataset = open_scene(f"synthetic:{scene},train={args.train},test={args.test},width={args.width},"
                             f"height={args.height},seed={args.seed}")
        reports = {}
        for variant in args.variants:
            reports[variant] = run_variant(dataset, base, variant, args.steps, None,
                                           refine=variant == "feature_only")
            print(f"[{scene}/{variant}] 3D {100 * reports[variant]['3d']['paper_miou']:.1f} vs tiny 2D "
                  f"{100 * reports[variant]['2d_teacher']['paper_miou']:.1f}", file=sys.stderr, flush=True)
        row = {"scene": scene, "seed": args.seed}
        for column, variant, key in COLUMNS:
            if variant in reports and key in reports[variant]:
                row[column] = round(100 * reports[variant][key]["paper_miou"], 1)
        row["train_s"] = {v: round(r["train_s"], 1) for v, r in reports.items()}
        rows.append(row)
    result = {"command": "bench/tiny_clip_method.py " + " ".join(sys.argv[1:]), "rows": rows,
              "steps": args.steps, "size": [args.width, args.height], "views": [args.train, args.test],
              "wall_s": round(time.perf_counter() - start, 1)}
    write_json_and_md(args.out, result, markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    cols = [c for c, _, _ in COLUMNS]
    lines = ["# The method on the tiny CLIP + DINO (paper mIoU, %, held-out views)\n",
             f"    .venv/bin/python {r['command']}\n",
             f"{r['views'][0]} training + {r['views'][1]} held-out views per scene at "
             f"{r['size'][0]}x{r['size'][1]}, {r['steps']} steps, CPU; scenes the tiny models never saw "
             "(presets; their training used random scenes).\n",
             "| scene | seed | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for row in r["rows"]:
        cells = " | ".join(str(row.get(c, "-")) for c in cols)
        lines.append(f"| {row['scene']} | {row['seed']} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
