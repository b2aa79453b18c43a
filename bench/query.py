"""Query latency: zero-shot (labeled cloud + one 640x480 mask) and refine bursts, CPU and CUDA.

Trains a field briefly on a generated scene whose keyframes are 640x480 (the synthetic teacher, so
no weights are needed), then times ``Segmenter.segment`` the way the ROS node calls it. Latency does
not depend on how converged the field is, only on the sizes (points, pixels, samples per ray).

    .venv/bin/python bench/query.py --steps 60 --points 300000 --threads 1

The zero-shot query is repeated ``--repeats`` times (default: 3 on CUDA, 1 on CPU, where one
640x480 mask takes minutes); the refine burst and the repeated (cached) refined query are timed
without a mask, so they measure the burst and the cache, not another render.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ovs3d_ros import cli  # noqa: E402
from ovs3d_ros.core.query import Segmenter  # noqa: E402


def bench_device(device: str, args) -> dict:
    sets = ["teacher.kind=synthetic", "keyframes.min_translation_m=0.0", "keyframes.min_rotation_deg=0.0",
            "field.occupancy_warmup_steps=32", f"query.max_points={args.points}"] + args.set
    cfg = cli.build_config(None, sets)
    dataset = cli.open_scene(f"synthetic:room,train={args.frames},test=0,width=640,height=480")
    t = time.perf_counter()
    trainer, teacher, _ = cli.train_scene(dataset, cfg, cli.TrainPlan(steps=args.steps), None,
                                          progress=False, device=device)
    train_s = time.perf_counter() - t
    seg = Segmenter(trainer, teacher, trainer.cfg)
    names = list(dataset.class_names)
    seg.segment(names, max_points=1000)  # warm-up (allocations, kernels), without a mask
    zero = []
    last = None
    repeats = args.repeats if args.repeats is not None else (3 if device.startswith("cuda") else 1)
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        last = seg.segment(names, camera=0)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        zero.append(time.perf_counter() - t)
    t = time.perf_counter()
    refined = seg.segment(names, refine=True, max_time_s=args.refine_time, cloud=False)
    refine_s = time.perf_counter() - t
    t = time.perf_counter()
    seg.segment(names, refine=True)  # cached head: the refined answer costs a zero-shot cloud
    cached_s = time.perf_counter() - t
    return {"device": device, "zero_shot_s": statistics.median(zero), "repeats": repeats,
            "train_s": train_s, "points": len(last.points),
            "mask": last.label_image.shape, "breakdown": last.timing_s, "refine_s": refine_s,
            "refine_steps": refined.timing_s.get("refine_steps"), "refine_collect_s":
            refined.timing_s.get("refine_collect_s"), "refined_repeat_s": cached_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps before timing")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--points", type=int, default=300_000, help="cloud cap (query.max_points)")
    parser.add_argument("--repeats", type=int, default=None, help="zero-shot repeats (3 CUDA, 1 CPU)")
    parser.add_argument("--refine-time", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        r = bench_device(device, args)
        b = r["breakdown"]
        print(f"[{device}] setup: {args.frames} keyframes 640x480, {args.steps} training steps in "
              f"{r['train_s']:.0f} s, {torch.get_num_threads()} thread(s)")
        print(f"[{device}] zero-shot query: {r['zero_shot_s'] * 1e3:.0f} ms median of {r['repeats']} for "
              f"{r['points']} points "
              f"+ one {r['mask'][1]}x{r['mask'][0]} mask (surface {b.get('surface_s', 0) * 1e3:.0f} ms, "
              f"cloud labels {b.get('cloud_labels_s', 0) * 1e3:.0f} ms, mask render "
              f"{b.get('render_s', 0) * 1e3:.0f} ms)")
        print(f"[{device}] refine burst: {r['refine_s']:.2f} s ({r['refine_steps']:.0f} steps, rendering the "
              f"refine set {r['refine_collect_s']:.2f} s); repeated refined query (cached head, cloud "
              f"only) {r['refined_repeat_s'] * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
