"""All benchmarks side by side in one process, one run, as ratios (absolute numbers on CUDA too):

1. field feature render, ours (latent composited, expanded per ray) vs the original's dense
   [rays, samples, 512] buffer (bench/original_render.py): forward+backward time, buffer memory, equality;
2. query latency: zero-shot labeled cloud + one mask from a small trained field;
3. memory per keyframe (rgb, depth, CLIP/DINO features as stored) at 640x480;
4. teachers: batched multi-scale CLIP vs the original one-crop loop (bench/teachers.py, a subprocess);
5. the built-in demo end to end (`python -m ovs3d_ros.ros.demo`, its summary line parsed).

    .venv/bin/python bench/run_all.py                 # default: < ~10 min on the 2-core CPU
    .venv/bin/python bench/run_all.py --rays 4096 --samples 482 --mask-size 640x480   # the original's sizes

Writes bench/results/run_all.json and run_all.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from ovs3d_ros.config import Config  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_of(fn, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_field(device: str, rays: int, samples: int, repeats: int) -> dict:
    from original_render import original_feature_render, ours_feature_render, random_samples

    from ovs3d_ros.core.field import SemanticField

    field = SemanticField(Config().field).to(device)
    contracted, valid, weights = random_samples(field, rays, samples, valid_fraction=0.5, device=device)
    target = torch.nn.functional.normalize(torch.randn(rays, field.cfg.clip_dim, device=device), dim=-1)

    def step(render):
        field.zero_grad(set_to_none=True)
        feat = render(field, contracted, valid, weights)
        loss = (1 - torch.nn.functional.cosine_similarity(feat, target, dim=-1)).mean()
        loss.backward()
        return feat.detach()

    a, b = step(ours_feature_render), step(original_feature_render)
    max_err = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
    t_ours = best_of(lambda: step(ours_feature_render), repeats, device)
    t_orig = best_of(lambda: step(original_feature_render), repeats, device)
    dense_bytes = min(rays, 4096) * samples * field.cfg.clip_dim * 4
    out = {"rays": rays, "samples": samples, "ours_s": t_ours, "original_s": t_orig,
           "speedup": t_orig / t_ours,
           "max_rel_diff": max_err, "original_dense_buffer_mb": dense_bytes / 2**20,
           "ours_latent_buffer_mb": rays * samples * field.cfg.semantic_latent_dim * 4 / 2**20}
    if device.startswith("cuda"):
        peaks = {}
        for name, fn in (("ours", ours_feature_render), ("original", original_feature_render)):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            step(fn)
            peaks[name] = torch.cuda.max_memory_allocated() / 2**20
        out.update(ours_peak_cuda_mb=peaks["ours"], original_peak_cuda_mb=peaks["original"])
    return out


def bench_query(device: str, mask_w: int, mask_h: int, train_steps: int) -> dict:
    from ovs3d_ros.core.query import Segmenter
    from ovs3d_ros.core.teachers import build_teacher
    from ovs3d_ros.core.trainer import Trainer
    from ovs3d_ros.data.synthetic import SyntheticScene

    data = SyntheticScene("room", seed=0).make_frames(6, 1, 160, 120)
    cfg = Config(device=device)
    cfg.teacher.kind = "synthetic"
    cfg.keyframes.min_translation_m = cfg.keyframes.min_rotation_deg = 0.0
    teacher = build_teacher(cfg.teacher, device, data.class_names)
    trainer = Trainer(cfg, device, teacher)
    for f in data.train_frames:
        trainer.add_frame(f)
    trainer.train(train_steps)
    seg = Segmenter(trainer, teacher, cfg)
    held = data.frames[data.test_indices[0]]
    camera = (held.intrinsics.scaled(mask_w, mask_h), held.pose)
    seg.segment(data.class_names, camera=camera)  # warm-up (text features, allocator)
    sync(device)
    t0 = time.perf_counter()
    res = seg.segment(data.class_names, camera=camera)
    sync(device)
    return {"total_s": time.perf_counter() - t0, "points": int(len(res.labels)), "mask": f"{mask_w}x{mask_h}",
            "timing_s": {k: round(v, 4) for k, v in res.timing_s.items()}}


def bench_keyframe_memory() -> dict:
    from load import keyframe_bytes

    from ovs3d_ros.data.synthetic import SyntheticScene

    data = SyntheticScene("room", seed=0).make_frames(1, 0, 640, 480)
    per = keyframe_bytes(data.frames, data.class_names)
    # the original keeps [h*w, 3, 512] fp32 CLIP features per 1/8-resolution view plus relevancies (§7.5)
    original = (640 // 8) * (480 // 8) * 3 * 512 * 4
    return {"ours_mb": per / 2**20, "original_clip_only_mb": original / 2**20, "ratio": original / per,
            "keyframes_200_gb": 200 * per / 2**30}


def bench_teachers(timeout_s: float) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "teachers.py"), "--repeats", "1", "--skip-vitb"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    return {"returncode": proc.returncode, "wall_s": time.perf_counter() - t0,
            "output": proc.stdout[-4000:] + (proc.stderr[-1500:] if proc.returncode else "")}


def bench_demo(timeout_s: float) -> dict:
    cmd = [sys.executable, "-m", "ovs3d_ros.ros.demo", "--out", str(ROOT / "bench" / "results" / "demo")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    wall = time.perf_counter() - t0
    summary = None
    for line in proc.stdout.splitlines():
        m = re.match(r"\[demo\] (\{.*\})\s*$", line)
        if m:
            summary = json.loads(m.group(1))
    return {"returncode": proc.returncode, "wall_s": wall, "summary": summary,
            "tail": proc.stdout[-1500:] if summary is None else ""}


def markdown(r: dict) -> str:
    head = f"device: {r['device']}, threads: {r['threads']}, total {r['total_s']:.0f} s"
    lines = ["# run_all", "", head, "",
             "| what | ours | original | ratio |", "|---|---|---|---|"]
    f = r.get("field")
    if f:
        lines.append(f"| feature render fwd+bwd, {f['rays']} rays x {f['samples']} samples | "
                     f"{f['ours_s'] * 1e3:.0f} ms "
                     f"| {f['original_s'] * 1e3:.0f} ms | {f['speedup']:.1f}x faster (max rel diff "
                     f"{f['max_rel_diff']:.1e}) |")
        lines.append(f"| per-sample feature buffer | {f['ours_latent_buffer_mb']:.0f} MB (32-d latent) | "
                     f"{f['original_dense_buffer_mb']:.0f} MB (512-d, per 4096-ray chunk) | "
                     f"{f['original_dense_buffer_mb'] / f['ours_latent_buffer_mb']:.0f}x |")
        if "ours_peak_cuda_mb" in f:
            lines.append(f"| peak CUDA memory of the step | {f['ours_peak_cuda_mb']:.0f} MB | "
                         f"{f['original_peak_cuda_mb']:.0f} MB | "
                         f"{f['original_peak_cuda_mb'] / f['ours_peak_cuda_mb']:.1f}x |")
    k = r.get("keyframe_memory")
    if k:
        lines.append(f"| memory per 640x480 keyframe | {k['ours_mb']:.1f} MB | "
                     f"{k['original_clip_only_mb']:.1f} MB "
                     f"(CLIP fp32 only) | {k['ratio']:.1f}x; 200 keyframes: {k['keyframes_200_gb']:.2f} GB |")
    q = r.get("query")
    if q:
        lines.append(f"| zero-shot query: cloud ({q['points']} pts) + {q['mask']} mask | "
                     f"{q['total_s'] * 1e3:.0f} ms "
                     f"| - | target <= 150 ms on GPU |")
    d = r.get("demo")
    if d:
        s = d.get("summary") or {}
        lines.append(f"| built-in demo end to end | {d['wall_s']:.0f} s (rc {d['returncode']}, mIoU "
                     f"{s.get('mask_miou_paper', 'n/a')}) | - | target <= 180 s |")
    t = r.get("teachers")
    if t:
        lines += ["", "## teachers (bench/teachers.py --repeats 1 --skip-vitb)", "", "```",
                  t["output"].strip(),
                  "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--rays", type=int, default=1024, help="rays of the feature-render comparison")
    p.add_argument("--samples", type=int, default=96, help="samples per ray of the comparison")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mask-size", default="160x120", help="query mask size WxH (the target: 640x480)")
    p.add_argument("--train-steps", type=int, default=60, help="training steps before the query")
    p.add_argument("--skip-teachers", action="store_true")
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    r: dict = {"device": device, "threads": args.threads}
    r["field"] = bench_field(device, args.rays, args.samples, args.repeats)
    print("field", json.dumps(r["field"]), flush=True)
    r["keyframe_memory"] = bench_keyframe_memory()
    print("keyframe memory", json.dumps(r["keyframe_memory"]), flush=True)
    w, h = (int(v) for v in args.mask_size.lower().split("x"))
    r["query"] = bench_query(device, w, h, args.train_steps)
    print("query", json.dumps(r["query"]), flush=True)
    if not args.skip_teachers:
        r["teachers"] = bench_teachers(timeout_s=600)
        print("teachers rc", r["teachers"]["returncode"], flush=True)
    if not args.skip_demo:
        r["demo"] = bench_demo(timeout_s=900)
        print("demo", json.dumps({k: v for k, v in r["demo"].items() if k != "tail"}), flush=True)
    r["total_s"] = time.perf_counter() - t0
    (out / "run_all.json").write_text(json.dumps(r, indent=1))
    (out / "run_all.md").write_text(markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
