"""Field/trainer throughput and memory for a fixed batch.

    .venv/bin/python bench/field.py                      # CPU, 1024-ray steps
    .venv/bin/python bench/field.py --device cuda --rays 12288   # the 3D-OVS reference batch size

Prints JSON lines: per mode (depth-guided, RGB-only, depth + semantic distillation) the iterations/s,
rays/s and peak memory of a training step; then keyframe-buffer memory against keyframe count
(bytes per keyframe with fp16 teacher features at the configured teacher resolution).
The 3D-OVS reference spends ~0.36 s and ~14 GB per 12,288-ray iteration (notes §7).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ovs3d_ros.config import Config  # noqa: E402
from ovs3d_ros.core.teachers.base import TeacherFeatures  # noqa: E402
from ovs3d_ros.core.trainer import Trainer  # noqa: E402
from ovs3d_ros.data.synthetic import SyntheticScene  # noqa: E402


class RandomFeatureTeacher:
    """Benchmark stand-in with the teacher interface: random unit CLIP maps at the configured size."""

    def __init__(self, cfg: Config):
        self.embed_dim = cfg.field.clip_dim
        self.downsample = cfg.teacher.clip.image_downsample * cfg.teacher.clip.feature_downsample
        self.scales = len(cfg.teacher.clip.scale_divisors)

    def extract(self, frame) -> TeacherFeatures:
        h, w = max(1, frame.height // self.downsample), max(1, frame.width // self.downsample)
        clip = F.normalize(torch.randn(self.scales, self.embed_dim, h, w), dim=1).half()
        return TeacherFeatures(clip=clip, dino=None)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_steps(trainer: Trainer, steps: int, device: str) -> dict:
    trainer.step()  # warm-up (allocator, first occupancy update paths)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = (time.perf_counter() - start) / steps
    out = {
        "s_per_iteration": round(dt, 4),
        "iterations_per_s": round(1 / dt, 2),
        "rays_per_s": round(trainer.cfg.trainer.rays_per_step / dt),
    }
    if device.startswith("cuda"):
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        out["peak_rss_mb"] = round(rss_mb(), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rays", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 beats 2 on this shared 2-core machine)"
    )
    parser.add_argument("--keyframes", type=int, default=8)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--memory-keyframes", type=int, nargs="*", default=[1, 8, 32, 64])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = {
        "device": args.device,
        "rays": args.rays,
        "threads": args.threads,
        "loadavg_1min": os.getloadavg()[0],
    }
    dataset = SyntheticScene("room", seed=0).make_frames(args.keyframes, 0, args.width, args.height)

    for mode in ("depth", "rgb_only", "depth+semantic"):
        cfg = Config()
        cfg.trainer.rays_per_step = args.rays
        cfg.trainer.semantic_start_step = 0
        cfg.semantic.rays_per_step = args.rays // 3  # 3D-OVS: 4096 of its 12,288 rays carry features
        teacher = RandomFeatureTeacher(cfg) if mode == "depth+semantic" else None
        trainer = Trainer(cfg, args.device, teacher=teacher)
        for frame in dataset.frames:
            if mode == "rgb_only":
                frame = type(frame)(**{**frame.__dict__, "depth": None})
            trainer.add_frame(frame)
        print(json.dumps({**base, "mode": mode, **time_steps(trainer, args.steps, args.device)}), flush=True)

    # keyframe memory vs count, at this size and at 640x480, with fp16 teacher features
    for width, height in ((args.width, args.height), (640, 480)):
        cfg = Config()
        cfg.keyframes.capacity = max(args.memory_keyframes) + 1
        cfg.keyframes.min_translation_m = 0.0
        scene = SyntheticScene("room", seed=0)
        frames = scene.make_frames(1, 0, width, height).frames
        trainer = Trainer(cfg, args.device, teacher=RandomFeatureTeacher(cfg))
        rows = []
        count = 0
        for target in sorted(args.memory_keyframes):
            while count < target:
                f = frames[0]
                pose = f.pose.copy()
                pose[0, 3] += 0.01 * count
                trainer.add_frame(type(f)(**{**f.__dict__, "pose": pose, "stamp": float(count)}))
                count += 1
            rows.append({"keyframes": count, "buffer_mb": round(trainer.keyframes.nbytes() / 2**20, 2)})
        per_kf = trainer.keyframes.keyframes[0].nbytes()
        print(
            json.dumps(
                {
                    **base,
                    "memory": f"{width}x{height}",
                    "bytes_per_keyframe": per_kf,
                    "clip_feature_shape": list(trainer.keyframes.keyframes[0].clip.shape),
                    "growth": rows,
                }
            ),
            flush=True,
        )

    # capacity: streaming 3x capacity keyframes keeps the buffer at capacity x bytes_per_keyframe
    cfg = Config()
    cfg.keyframes.capacity = 8
    cfg.keyframes.min_translation_m = 0.0
    frame = SyntheticScene("room", seed=0).make_frames(1, 0, args.width, args.height).frames[0]
    trainer = Trainer(cfg, args.device, teacher=RandomFeatureTeacher(cfg))
    sizes = []
    for i in range(3 * cfg.keyframes.capacity):
        pose = frame.pose.copy()
        pose[0, 3] += 0.05 * i
        trainer.add_frame(type(frame)(**{**frame.__dict__, "pose": pose, "stamp": float(i)}))
        sizes.append(len(trainer.keyframes))
    print(
        json.dumps(
            {
                "capacity": cfg.keyframes.capacity,
                "inserted": 3 * cfg.keyframes.capacity,
                "max_len": max(sizes),
                "final_buffer_mb": round(trainer.keyframes.nbytes() / 2**20, 3),
                "evicted": trainer.keyframes.evicted,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
