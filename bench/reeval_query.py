"""Re-evaluate a checkpoint written by ``bench/semantic_eval.py --save`` under other query settings
(the field unchanged): held-out paper mIoU, per-class IoU and mask latency per ``--set`` group.

    .venv/bin/python bench/reeval_query.py CKPT synthetic:desk,train=16,test=4,width=160,height=120,seed=3 \\
        "" "query.mask_depth_pass_samples=128" --json out.json

Each positional group is comma-separated ``key=value`` pairs ("" = the settings the field was trained
with). Query settings only: anything else would not describe the trained field.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from saved_field import parse_and_load  # noqa: E402  (bench/ is this script's folder)

from ovs3d_ros.config import apply_flat, parse_assignments  # noqa: E402
from ovs3d_ros.core.evaluation import evaluate  # noqa: E402


def main() -> int:
    args, dataset, trainer, teacher, cfg = parse_and_load(
        __doc__.split("\n\n")[0],
        lambda parser: parser.add_argument("groups", nargs="*", default=[""]))
    out = []
    for group in args.groups or [""]:
        sets = parse_assignments([kv for kv in group.split(",") if kv])
        if any(not k.startswith("query.") for k in sets):
            raise SystemExit(f"query settings only, got {group!r}")
        rep = evaluate(trainer, teacher, apply_flat(cfg, sets), dataset, progress=False)
        row = {"ckpt": args.ckpt, "scene": args.scene, "sets": group,
               "3d_paper_miou": rep["3d"]["paper_miou"], "2d_paper_miou": rep["2d_teacher"]["paper_miou"],
               "mask_latency_s": rep["mask_latency_s"], "3d_per_class_iou": rep["3d"]["per_class_iou"],
               "2d_per_class_iou": rep["2d_teacher"]["per_class_iou"]}
        out.append(row)
        classes = " ".join(f"{k.split()[-1][:6]} {100 * v:.1f}" for k, v in row["3d_per_class_iou"].items())
        print(f"{group or 'as trained':<64} 3D {100 * row['3d_paper_miou']:.1f} "
              f"(2D {100 * row['2d_paper_miou']:.1f}) {row['mask_latency_s']:.2f} s  {classes}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
