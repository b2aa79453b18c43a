"""Streaming benchmark: frames arrive one by one (as from a robot), the trainer trains a time slice
after each, and held-out views are scored (PSNR, depth MAE) at a few points of the stream.

    .venv/bin/python bench/stream.py --preset room --seconds 120
    .venv/bin/python bench/stream.py --preset table --compare-rgb-only   # depth vs RGB-only, same budget

Timing covers add_frame + training only (evaluation renders pause the clock). Prints one JSON line
per evaluation and a summary line; the machine load (``os.getloadavg``) is recorded with each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ovs3d_ros.config import Config, apply_flat  # noqa: E402
from ovs3d_ros.core import metrics  # noqa: E402
from ovs3d_ros.core.trainer import Trainer  # noqa: E402
from ovs3d_ros.data.synthetic import SyntheticScene  # noqa: E402


def evaluate(trainer: Trainer, frames) -> dict[str, float]:
    psnrs, maes = [], []
    for frame in frames:
        out = trainer.render(frame.intrinsics, frame.pose, semantics=False)
        psnrs.append(metrics.psnr(out["rgb"], frame.rgb.astype(np.float32) / 255.0))
        if frame.depth is not None:
            valid = np.isfinite(frame.depth) & (frame.depth > 0)
            maes.append(float(np.abs(out["depth"].cpu().numpy()[valid] - frame.depth[valid]).mean()))
    return {"psnr": float(np.mean(psnrs)), "depth_mae_m": float(np.mean(maes)) if maes else float("nan")}


def stream(
    cfg: Config,
    dataset,
    seconds: float,
    use_depth: bool,
    evals: int,
    device: str,
    label: str,
    save_to: str = "",
) -> dict:
    trainer = Trainer(cfg, device)
    train_frames = dataset.train_frames
    test_frames = [dataset.frames[i] for i in dataset.test_indices]
    slice_s = seconds / len(train_frames)
    eval_at = {int(round(len(train_frames) * (k + 1) / evals)) - 1 for k in range(evals)}
    clock = 0.0
    last = {}
    for i, frame in enumerate(train_frames):
        if not use_depth:
            frame = type(frame)(**{**frame.__dict__, "depth": None})
        start = time.perf_counter()
        trainer.add_frame(frame)
        while time.perf_counter() - start < slice_s:
            trainer.step()
        clock += time.perf_counter() - start
        if i in eval_at:
            scores = evaluate(trainer, test_frames)
            stats = trainer.stats()
            last = {
                "run": label,
                "frames": i + 1,
                "keyframes": stats["keyframes"],
                "wall_s": round(clock, 1),
                "steps": stats["iterations"],
                "holdout_pixel_psnr": round(stats["psnr"], 2),
                "test_psnr": round(scores["psnr"], 2),
                "test_depth_mae_m": round(scores["depth_mae_m"], 4),
                "occupied_fraction": round(stats["occupied_fraction"], 3),
                "nonfinite_steps": stats["nonfinite_steps"],
                "loadavg_1min": round(os.getloadavg()[0], 2),
            }
            print(json.dumps(last), flush=True)
    if save_to:
        trainer.save(save_to)
    return last


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="room", choices=["room", "table", "clutter"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=40, help="training frames streamed")
    parser.add_argument("--test", type=int, default=4, help="held-out test views")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=120.0, help="add_frame + training budget")
    parser.add_argument("--evals", type=int, default=3, help="evaluations along the stream")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 beats 2 on this shared 2-core machine)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-depth", action="store_true", help="stream RGB only")
    parser.add_argument(
        "--compare-rgb-only", action="store_true", help="also run RGB-only with the same budget"
    )
    parser.add_argument(
        "--save-checkpoint", default="", help="save the streamed trainer here (the last run's, e.g. rgbd)"
    )
    parser.add_argument("--set", nargs="*", default=[], help="config overrides key=value (YAML values)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import yaml

    cfg = apply_flat(Config(), {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
    dataset = SyntheticScene(preset=args.preset, seed=args.seed).make_frames(
        args.frames, args.test, args.width, args.height
    )
    runs = [("rgbd", True)] if not args.no_depth else [("rgb", False)]
    if args.compare_rgb_only and not args.no_depth:
        runs.append(("rgb", False))
    results = {}
    for label, use_depth in runs:
        results[label] = stream(
            cfg, dataset, args.seconds, use_depth, args.evals, args.device, label, args.save_checkpoint
        )
    print(
        json.dumps(
            {
                "summary": {
                    "preset": args.preset,
                    "seed": args.seed,
                    "size": f"{args.width}x{args.height}",
                    "seconds": args.seconds,
                    "threads": args.threads,
                    "results": results,
                }
            }
        )
    )


if __name__ == "__main__":
    main()
