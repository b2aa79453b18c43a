"""The demo's query and ``ovs3d eval`` per view, reference vs surface-guided masks on ONE trained field.

Trains a field on the demo's generated scene (``--frames`` 160x120 views of the room, synthetic teacher),
then, on that same field, with ``query.mask_renderer=reference`` (today's renderer) and ``=surface``:

- ``core.evaluation.evaluate`` (what ``ovs3d eval`` runs): the mean time per held-out view (mask render +
  labels)
  and the paper mIoU of the views;
- the demo's query through ``Segmenter.segment``: the labeled cloud and the mask of a held-out pose,
  first on a fresh segmenter, then after one training step (the field moved: the cached points stay,
  their latents are recomputed), as the node answers while it trains. No training thread runs, so
  the node's wait for the step in flight is not in these numbers.

    .venv/bin/python bench/interactive.py --steps 200 --threads 1 --out bench/results/interactive_cpu
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results_files import write_json_and_md  # noqa: E402  (bench/ is this script's folder)

from ovs3d_ros.config import apply_flat, build_config  # noqa: E402
from ovs3d_ros.core.evaluation import evaluate  # noqa: E402
from ovs3d_ros.core.query import Segmenter  # noqa: E402
from ovs3d_ros.core.scene_training import TrainPlan, train_scene  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402

RENDERERS = ("reference", "surface")


def demo_query(trainer, teacher, cfg, dataset) -> dict:
    """Cloud + held-out pose mask on a fresh segmenter, then again after one training step."""
    names = list(dataset.class_names)
    frame = dataset.test_frames[0]
    seg = Segmenter(trainer, teacher, cfg)
    t = time.perf_counter()
    first = seg.segment(names, camera=(frame.intrinsics, frame.pose))
    first_s = time.perf_counter() - t
    trainer.step()
    trainer.field.eval()
    t = time.perf_counter()
    moved = seg.segment(names, camera=(frame.intrinsics, frame.pose))
    moved_s = time.perf_counter() - t
    return {"points": len(first.points), "mask": f"{first.label_image.shape[1]}x{first.label_image.shape[0]}",
            "first_s": first_s, "first_breakdown": first.timing_s,
            "after_step_s": moved_s, "after_step_breakdown": moved.timing_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--scene", default="room")
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = build_config(None, ["teacher.kind=synthetic"] + args.set)
    dataset = open_scene(f"synthetic:{args.scene},train={args.frames},test={args.test},"
                             f"width={args.width},height={args.height}")
    t = time.perf_counter()
    trainer, teacher, _ = train_scene(dataset, cfg, TrainPlan(steps=args.steps), None, progress=False)
    # the machine is shared: the load average says how far absolute seconds are from an idle machine's
    result = {"setup": vars(args).copy(), "train_s": time.perf_counter() - t,
              "threads": torch.get_num_threads(), "load_average_start": os.getloadavg()}
    for renderer in RENDERERS:
        rcfg = apply_flat(trainer.cfg, {"query.mask_renderer": renderer})
        report = evaluate(trainer, teacher, rcfg, dataset, progress=False)
        result[renderer] = {"eval_s_per_view": report["mask_latency_s"],
                            "eval_paper_miou": report["3d"]["paper_miou"]}
        print(f"[{renderer}] ovs3d eval: {report['mask_latency_s']:.2f} s per {args.width}x{args.height} "
              f"view, paper mIoU {100 * report['3d']['paper_miou']:.1f}", flush=True)
    for renderer in RENDERERS:  # after the evals: the demo query's training step changes the field
        result[renderer]["demo_query"] = q = demo_query(
            trainer, teacher, apply_flat(trainer.cfg, {"query.mask_renderer": renderer}), dataset)
        print(f"[{renderer}] demo query ({q['points']} points + {q['mask']} mask): {q['first_s']:.2f} s "
              f"fresh, {q['after_step_s']:.2f} s after a training step", flush=True)
    result["load_average_end"] = os.getloadavg()
    if args.out:
        command = "python bench/interactive.py " + " ".join(sys.argv[1:])
        write_json_and_md(args.out, result, markdown(result, command))
    return 0


def markdown(r: dict, command: str) -> str:
    s = r["setup"]
    lines = ["# bench/interactive.py: the demo's query and `ovs3d eval` per view (issue 15)", "",
             f"    {command}", "",
             f"{s['scene']}, {s['frames']} views {s['width']}x{s['height']}, {s['steps']} training steps "
             f"({r['train_s']:.0f} s), {r['threads']} thread(s); one field, both renderers.", "",
             f"Load average (1, 5, 15 min) after training {_load(r.get('load_average_start'))}, "
             f"at the end {_load(r.get('load_average_end'))} (2 cores).", "",
             "| renderer | eval s/view | eval paper mIoU | demo query fresh s | demo query after a step s |",
             "|---|---|---|---|---|"]
    for renderer in RENDERERS:
        x = r[renderer]
        q = x["demo_query"]
        lines.append(f"| {renderer} | {x['eval_s_per_view']:.2f} | {100 * x['eval_paper_miou']:.1f} | "
                     f"{q['first_s']:.2f} | {q['after_step_s']:.2f} |")
    q = r["surface"]["demo_query"]["after_step_breakdown"]
    lines += ["", f"Surface, after a step: cloud points {q.get('surface_s', 0):.2f} s (latents recomputed), "
                  f"cloud labels {q.get('cloud_labels_s', 0):.3f} s, mask {q.get('mask_s', 0):.2f} s.", ""]
    return "\n".join(lines)


def _load(values) -> str:
    return "n/a" if values is None else "/".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
