"""Teacher benchmark: batched multi-scale CLIP vs the original one-crop-at-a-time loop, per-keyframe
cost and storage; ViT-B/16 per-crop CPU cost; on CUDA, ViT-B/16 + DINO ViT-B/8 fp16 per keyframe.

    .venv/bin/python bench/teachers.py [--threads 1] [--repeats 3] [--cuda-only] [--skip-vitb]

Random weights throughout (no downloads); the ratios and timings do not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from teacher_reference import (  # noqa: E402
    open_clip_preprocess,
    per_pixel_cosine,
    random_image,
    reference_patch_features,
    save_tiny_clip,
)

from ovs3d_ros.config import ClipConfig, DinoConfig, TeacherConfig  # noqa: E402
from ovs3d_ros.core.teachers.base import TeacherFeatures  # noqa: E402
from ovs3d_ros.core.teachers.clip import ClipTeacher, multiscale_boxes, teacher_image_size  # noqa: E402
from ovs3d_ros.core.teachers.dino import DinoTeacher, dino_image_size  # noqa: E402
from ovs3d_ros.core.teachers.loading import ClipBundle, load_clip, model_dtype  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str = "cpu"):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def crop_count(width: int, height: int, cfg: ClipConfig) -> int:
    w, h = teacher_image_size(width, height, cfg.image_downsample, cfg.min_teacher_short_side)
    return sum(len(b) for b in multiscale_boxes(w, h, cfg, None))


def random_vitb16(device: str) -> ClipBundle:
    import open_clip

    model = open_clip.create_model("ViT-B-16", pretrained=None)
    dtype = model_dtype(device)
    model = model.to(device=device, dtype=dtype).eval()
    pre = model.visual.preprocess_cfg
    return ClipBundle(model=model, tokenizer=open_clip.get_tokenizer("ViT-B-16"), mean=tuple(pre["mean"]),
                      std=tuple(pre["std"]), image_size=224, embed_dim=512, dtype=dtype)


def bench_batched_vs_reference(bundle: ClipBundle, repeats: int, rows: list) -> None:
    cfg = replace(ClipConfig(), jitter=False)
    teacher = ClipTeacher(cfg, "cpu", bundle=bundle)
    image = teacher.teacher_image(random_image(320, 240, 0))
    boxes = multiscale_boxes(image.shape[1], image.shape[0], cfg, None)
    preprocess = open_clip_preprocess(bundle.model)
    pil = Image.fromarray(image)
    t_fast, t_ref = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        dt, fast = timed(lambda: teacher.patch_features(image, boxes))
        t_fast.append(dt)
        dt, ref = timed(lambda: reference_patch_features(bundle.model, preprocess, pil, boxes))
        t_ref.append(dt)
    cos = per_pixel_cosine(fast, ref)
    exact = ClipTeacher(replace(cfg, pil_rounding=True), "cpu", bundle=bundle).patch_features(image, boxes)
    cos_exact = per_pixel_cosine(exact, ref)
    n = sum(len(b) for b in boxes)
    tag = f"tiny CLIP, {bundle.image_size}px crops"
    rows.append((f"320x240 batched vs reference loop ({tag}, {n} crops)",
                 f"{statistics.median(t_ref) / statistics.median(t_fast):.1f}x faster "
                 f"({statistics.median(t_fast) * 1e3:.0f} ms vs {statistics.median(t_ref) * 1e3:.0f} ms)"))
    rows.append((f"  per-pixel cosine batched vs PIL reference ({tag})",
                 f"min {cos.min():.6f}, mean {cos.mean():.7f}, max |diff| "
                 f"{(fast - ref).abs().max():.1e}; with pil_rounding: min {cos_exact.min():.7f}"))


def bench_keyframe_cpu(bundle: ClipBundle, repeats: int, rows: list) -> None:
    teacher = ClipTeacher(ClipConfig(), "cpu", bundle=bundle)
    for w, h in ((320, 240), (640, 480)):
        rgb = random_image(w, h, 1)

        def run(rgb=rgb):
            return teacher.clip_features(rgb, np.random.default_rng(0))

        times = [timed(run)[0] for _ in range(repeats)]
        rows.append((f"CPU ms per keyframe {w}x{h} (tiny CLIP {bundle.image_size}px, "
                     f"{crop_count(w, h, ClipConfig())} crops, jitter on)",
                     f"{statistics.median(times) * 1e3:.0f} ms"))


def storage_rows(rows: list) -> None:
    cfg = TeacherConfig()
    w, h = teacher_image_size(640, 480, cfg.clip.image_downsample, cfg.clip.min_teacher_short_side)
    k = cfg.clip.feature_downsample
    clip = torch.zeros(3, 512, h // k, w // k, dtype=torch.float16)
    dw, dh = dino_image_size(640, 480, cfg.dino.image_downsample, cfg.dino.min_short_side, 8)
    dino = torch.zeros(dh // 8, dw // 8, 768, dtype=torch.float16)
    feats = TeacherFeatures(clip, dino)
    rows.append(("bytes per 640x480 keyframe (default: CLIP ViT-B/16 D=512, DINO ViT-B/8 C=768, fp16)",
                 f"{feats.nbytes() / 1e6:.2f} MB = CLIP {tuple(clip.shape)} {clip.numel() * 2 / 1e6:.2f} MB"
                 f" + DINO {tuple(dino.shape)} {dino.numel() * 2 / 1e6:.2f} MB"))
    n = crop_count(640, 480, cfg.clip)
    rows.append(("crops per 640x480 keyframe (default config)", f"{n}"))


def bench_vitb16_cpu(rows: list, batch: int = 8) -> None:
    bundle = random_vitb16("cpu")
    teacher = ClipTeacher(ClipConfig(), "cpu", bundle=bundle)
    crops = torch.rand(batch, 3, 224, 224) * 255
    teacher.encode_crops(crops[:2])
    dt = statistics.median(timed(lambda: teacher.encode_crops(crops))[0] for _ in range(2)) / batch
    n = crop_count(640, 480, ClipConfig())
    rows.append((f"CPU ViT-B/16 fp32 per crop (batch {batch}, {torch.get_num_threads()} threads)",
                 f"{dt * 1e3:.0f} ms -> projected {dt * n:.0f} s per 640x480 keyframe ({n} crops)"))


def bench_cuda(rows: list, repeats: int) -> None:
    device = "cuda"
    bundle = random_vitb16(device)
    import timm

    dino_model = timm.create_model("vit_base_patch8_224.dino", pretrained=False, dynamic_img_size=True,
                                   num_classes=0).to(device=device, dtype=torch.float16).eval()
    dino = DinoTeacher(DinoConfig(), device, model=dino_model)
    rgb = random_image(640, 480, 2)
    name = torch.cuda.get_device_name()
    for bs in (256, 1024):
        teacher = ClipTeacher(replace(ClipConfig(), batch_size=bs), device, bundle=bundle, dino=dino)
        teacher.clip_features(rgb, np.random.default_rng(0))  # warm-up (kernels, allocator)
        dino.tokens(rgb)

        def run(teacher=teacher):
            return teacher.clip_features(rgb, np.random.default_rng(0))

        t_clip = statistics.median(timed(run, device)[0] for _ in range(repeats))
        t_dino = statistics.median(timed(lambda: dino.tokens(rgb), device)[0] for _ in range(repeats))
        rows.append((f"{name}: ViT-B/16 fp16 multi-scale CLIP, 640x480 "
                     f"({crop_count(640, 480, ClipConfig())} crops, batch {bs})", f"{t_clip * 1e3:.0f} ms"))
        rows.append((f"{name}: + DINO ViT-B/8 fp16 tokens {tuple(dino.tokens(rgb).shape)}",
                     f"{t_dino * 1e3:.0f} ms -> keyframe total {(t_clip + t_dino) * 1e3:.0f} ms"))
    torch.cuda.reset_peak_memory_stats()
    teacher.clip_features(rgb, np.random.default_rng(0))
    rows.append((f"{name}: peak CUDA memory of one keyframe (batch 1024)",
                 f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"))


def synthetic_rows(rows: list, width: int = 160, height: int = 120, views: int = 8) -> None:
    """The synthetic teacher's own 2D mIoU (paper metric) per preset: the baseline 3D must beat."""
    from ovs3d_ros.core.metrics import paper_metrics
    from ovs3d_ros.core.teachers import build_teacher, teacher_labels
    from ovs3d_ros.data.synthetic import SyntheticScene

    for preset in ("room", "table", "clutter"):
        ds = SyntheticScene(preset, 0).make_frames(0, views, width, height)
        teacher = build_teacher(TeacherConfig(kind="synthetic"), "cpu", ds.class_names)
        text = teacher.encode_text(ds.class_names)
        frames = [ds.frames[i] for i in ds.test_indices]
        preds = [teacher_labels(teacher.extract(f).clip, text, f.height, f.width).numpy() for f in frames]
        m = paper_metrics(preds, [f.labels for f in frames], len(ds.class_names))
        rows.append((f"synthetic teacher 2D mIoU / accuracy, preset {preset} (seed 0, {views} views "
                     f"{width}x{height}, default knobs)", f"{m.miou:.3f} / {m.accuracy:.3f}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cuda-only", action="store_true")
    ap.add_argument("--skip-vitb", action="store_true", help="skip the slow CPU ViT-B/16 timing")
    ap.add_argument("--tiny-sizes", default="32,224", help="crop sizes of the tiny CLIP models compared")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[tuple[str, str]] = []
    if not args.cuda_only:
        with tempfile.TemporaryDirectory() as tmp:
            for size in (int(v) for v in args.tiny_sizes.split(",")):
                cfg = save_tiny_clip(Path(tmp) / str(size), image_size=size, name=f"ovs3d-tiny-clip-{size}")
                bundle = load_clip(cfg, "cpu")
                bench_batched_vs_reference(bundle, args.repeats, rows)
                if size == 224:
                    bench_keyframe_cpu(bundle, args.repeats, rows)
        storage_rows(rows)
        synthetic_rows(rows)
        if not args.skip_vitb:
            bench_vitb16_cpu(rows)
    if torch.cuda.is_available():
        bench_cuda(rows, args.repeats)
    else:
        rows.append(("CUDA", "not available on this machine"))
    width = max(len(r[0]) for r in rows)
    print(f"| {'what'.ljust(width)} | result |\n|{'-' * (width + 2)}|--------|")
    for what, result in rows:
        print(f"| {what.ljust(width)} | {result} |")


if __name__ == "__main__":
    main()
