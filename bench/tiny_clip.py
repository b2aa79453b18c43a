"""The project's tiny CLIP measured like a CLIP, on scenes it never saw.

1. Crops of held-out random scenes (seeds 3,000,000+; training used 1,000,000+): cosine of matched
   vs unmatched crop/caption pairs, zero-shot top-1/top-5 over the whole 106-phrase vocabulary.
2. Crops of the presets' held-out views (room, table, clutter; the generator never makes presets):
   zero-shot top-1 over each scene's own class names.
3. Dense 2D mIoU (the teacher's 3-scale patch relevancy argmax, through the real ClipTeacher) on the
   presets' held-out views, beside the synthetic benchmark teacher on the same views.
4. The tiny DINO's grouping on the same views: do its tokens separate classes (what FDA relies on)
   better than the mean colour of the same cells?

    .venv/bin/python bench/tiny_clip.py --out bench/results/tiny_clip_eval
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results_files import write_json_and_md  # noqa: E402  (bench/ is this script's folder)
from semantic_eval import BENCH_DEFAULTS  # noqa: E402  (bench/ is this script's folder)

from ovs3d_ros.config import Config, apply_flat  # noqa: E402
from ovs3d_ros.core import metrics  # noqa: E402
from ovs3d_ros.core.teachers import build_teacher, teacher_labels  # noqa: E402
from ovs3d_ros.core.teachers.tiny import tiny_teacher_settings  # noqa: E402
from ovs3d_ros.data.caption_scenes import crop_to, generate_crops, majority_class, vocabulary  # noqa: E402
from ovs3d_ros.data.synthetic import SyntheticScene  # noqa: E402

OPENAI_VIT_B16 = {"matched": [0.28, 0.33], "unmatched": [0.15, 0.22]}
"""Published crop-text cosine ranges of OpenAI CLIP ViT-B/16 quoted by the issue (not measured here)."""


def _summary(x: np.ndarray) -> dict:
    q = np.percentile(x, [5, 25, 50, 75, 95])
    return {"mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4),
            "p5_p25_p50_p75_p95": [round(float(v), 4) for v in q], "n": int(x.size)}


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(matched cosine > unmatched cosine), by ranks (Mann-Whitney)."""
    both = np.concatenate([pos, neg])
    ranks = np.empty(len(both))
    ranks[np.argsort(both, kind="stable")] = np.arange(1, len(both) + 1)
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@torch.no_grad()
def encode_crops(teacher, images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 crops at the model's size -> (N, D) unit embeddings, the teacher's normalisation."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    out = [teacher.encode_crops(teacher.normalize_pixels(x[i:i + 512])) for i in range(0, len(x), 512)]
    return F.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def crop_metrics(teacher, seed: int, scenes: int) -> dict:
    data = generate_crops(seed, scenes, views_per_scene=3, crop_size=teacher.crop_size)
    names = data.class_names
    img = encode_crops(teacher, data.images)
    result = {"held_out_scene_seeds": [seed, seed + scenes - 1], "crops": len(data.classes)}
    for template in ("{}", "a photo of a {}"):
        text = F.normalize(teacher.model.encode_text(teacher.bundle.tokenizer(
            [template.format(n) for n in names])).float(), dim=-1)
        cos = (img @ text.T).numpy()
        onehot = np.zeros_like(cos, dtype=bool)
        onehot[np.arange(len(cos)), data.classes] = True
        matched, unmatched = cos[onehot], cos[~onehot]
        top5 = np.argsort(-cos, axis=1)[:, :5]
        result[template] = {
            "matched_cosine": _summary(matched), "unmatched_cosine": _summary(unmatched),
            "auc_matched_vs_unmatched": round(_auc(matched, unmatched), 4),
            "zero_shot_top1": round(float((top5[:, 0] == data.classes).mean()), 4),
            "zero_shot_top5": round(float((top5 == data.classes[:, None]).any(1).mean()), 4),
            "chance_top1": round(1.0 / len(names), 4),
        }
    return result


def preset_views(preset: str, seed: int, n_test: int, width: int, height: int):
    dataset = SyntheticScene(preset, seed=seed).make_frames(1, n_test, width, height)
    return dataset, dataset.test_frames


@torch.no_grad()
def preset_crop_accuracy(teacher, views, class_names: list[str], rng: np.random.Generator) -> dict:
    """Zero-shot over the scene's own classes of object-centred crops of the held-out views."""
    from ovs3d_ros.data.caption_scenes import _object_boxes, _square_crops

    images, classes = [], []
    for frame in views:
        small = frame.rgb[::2, ::2].copy()  # the teacher's crops come from a downsampled image too
        labels = frame.labels[::2, ::2]
        for box in _square_crops(labels, rng, 24) + _object_boxes(labels, rng):
            c = majority_class(labels, box, 0.6)
            if c is not None:
                images.append(crop_to(small, box, teacher.crop_size))
                classes.append(c)
    img = encode_crops(teacher, np.stack(images))
    text = teacher.encode_text(class_names).float()
    pred = (img @ text.T).argmax(1).numpy()
    classes = np.asarray(classes)
    per_class = {class_names[c]: round(float((pred[classes == c] == c).mean()), 3)
                 for c in np.unique(classes)}
    return {"crops": len(classes), "top1": round(float((pred == classes).mean()), 4),
            "class_balanced_top1": round(float(np.mean(list(per_class.values()))), 4),
            "chance": round(1.0 / len(class_names), 4), "per_class_top1": per_class}


@torch.no_grad()
def dense_miou(teacher, views, class_names: list[str]) -> dict:
    text = teacher.encode_text(class_names).float()
    preds = [teacher_labels(teacher.extract(f).clip.float(), text, f.height, f.width).numpy() for f in views]
    m = metrics.paper_metrics(preds, [f.labels for f in views], len(class_names))
    return {"paper_miou": round(m.miou, 4), "paper_accuracy": round(m.accuracy, 4)}


@torch.no_grad()
def dino_affinity(dino, views) -> dict:
    """How well the tiny DINO's tokens group pixels (what FDA uses): AUC of token-pair cosines, pairs of
    one ground-truth class vs pairs of two, beside the same AUC for the mean colour of each token's
    pixels (a trivial baseline). Labels/colours are taken over each token's cell of the full image."""
    scores = {"dino": [], "colour": []}
    for frame in views:
        tokens = dino.tokens(frame.rgb).float()
        ht, wt, _ = tokens.shape
        ys = (np.arange(ht) + 0.5) * frame.height / ht
        xs = (np.arange(wt) + 0.5) * frame.width / wt
        labels = frame.labels[ys.astype(int)[:, None], xs.astype(int)[None, :]].ravel()
        colour = F.interpolate(torch.from_numpy(frame.rgb).permute(2, 0, 1)[None].float(), size=(ht, wt),
                               mode="area")[0].permute(1, 2, 0).reshape(-1, 3)
        same = labels[:, None] == labels[None, :]
        upper = np.triu(np.ones_like(same), 1)
        for name, feats in (("dino", tokens.reshape(-1, tokens.shape[-1])), ("colour", colour)):
            f = F.normalize(feats - feats.mean(0, keepdim=True), dim=-1)
            cos = (f @ f.T).numpy()
            scores[name].append(_auc(cos[same & upper], cos[~same & upper]))
    return {f"{k}_same_vs_other_class_auc": round(float(np.mean(v)), 4) for k, v in scores.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=str(Path(__file__).resolve().parents[1] / "models" / "tiny"))
    p.add_argument("--scenes", nargs="+", default=["room", "table", "clutter"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])  # seed 0 views were looked at while
    # choosing the generator's floor/wall materials: not reported
    p.add_argument("--crop-scenes", type=int, default=60)
    p.add_argument("--test", type=int, default=4)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=120)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/results/tiny_clip_eval")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    cfg = apply_flat(Config(), tiny_teacher_settings(args.models))
    tiny = build_teacher(cfg.teacher, "cpu")
    dino, tiny.dino = tiny.dino, None  # CLIP features alone for the 2D numbers
    report = {"command": "bench/tiny_clip.py " + " ".join(sys.argv[1:]), "vocabulary_size": len(vocabulary()),
              "openai_vit_b16_published": OPENAI_VIT_B16,
              "held_out_random_crops": crop_metrics(tiny, 3_000_000, args.crop_scenes), "presets": []}
    rng = np.random.default_rng(7)
    # the synthetic benchmark teacher as bench/semantic_eval.py configures it
    teacher_keys = {k: v for k, v in BENCH_DEFAULTS.items() if k.startswith("teacher.")}
    synthetic_cfg = apply_flat(Config(), teacher_keys)
    for preset in args.scenes:
        for seed in args.seeds:
            dataset, views = preset_views(preset, seed, args.test, args.width, args.height)
            synthetic = build_teacher(synthetic_cfg.teacher, "cpu", class_names=dataset.class_names)
            row = {"scene": preset, "seed": seed, "views": len(views), "size": [args.width, args.height],
                   "crop_zero_shot": preset_crop_accuracy(tiny, views, dataset.class_names, rng),
                   "tiny_clip_2d": dense_miou(tiny, views, dataset.class_names),
                   "synthetic_teacher_2d": dense_miou(synthetic, views, dataset.class_names),
                   "tiny_dino_grouping": dino_affinity(dino, views)}
            report["presets"].append(row)
            print(f"[{preset} s{seed}] crops top1 {row['crop_zero_shot']['top1']:.3f}  tiny 2D mIoU "
                  f"{row['tiny_clip_2d']['paper_miou']:.3f}  "
                  f"synthetic 2D {row['synthetic_teacher_2d']['paper_miou']:.3f}",
                  file=sys.stderr, flush=True)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    write_json_and_md(args.out, report, markdown(report))
    print(markdown(report))
    return 0


def markdown(r: dict) -> str:
    c = r["held_out_random_crops"]
    lines = [f"# Tiny CLIP measured like a CLIP\n\n    .venv/bin/python {r['command']}\n",
             f"Held-out random scenes (seeds {c['held_out_scene_seeds']}), {c['crops']} captioned crops, "
             f"{r['vocabulary_size']} phrases:\n",
             "| caption | matched cos mean (p5..p95) | unmatched cos mean (p5..p95) | AUC | top-1 | top-5 |",
             "|---|---|---|---|---|---|"]
    for t in ("{}", "a photo of a {}"):
        m = c[t]
        mq, uq = m["matched_cosine"]["p5_p25_p50_p75_p95"], m["unmatched_cosine"]["p5_p25_p50_p75_p95"]
        lines.append(f"| `{t}` | {m['matched_cosine']['mean']:.3f} ({mq[0]:.2f}..{mq[4]:.2f}) | "
                     f"{m['unmatched_cosine']['mean']:.3f} ({uq[0]:.2f}..{uq[4]:.2f}) | "
                     f"{m['auc_matched_vs_unmatched']:.3f} | {m['zero_shot_top1']:.3f} | "
                     f"{m['zero_shot_top5']:.3f} |")
    o = r["openai_vit_b16_published"]
    lines += [f"\nOpenAI CLIP ViT-B/16 (published, quoted): matched {o['matched'][0]}-{o['matched'][1]}, "
              f"unmatched {o['unmatched'][0]}-{o['unmatched'][1]}.\n",
              "Preset scenes (never generated in training), held-out views:\n",
              "| scene | seed | crop zero-shot top-1, class-balanced (chance) | tiny-CLIP 2D mIoU | "
              "synthetic teacher 2D mIoU | tiny DINO grouping AUC (colour baseline) |",
              "|---|---|---|---|---|---|"]
    for row in r["presets"]:
        z = row["crop_zero_shot"]
        lines.append(f"| {row['scene']} | {row['seed']} | {z['top1']:.3f}, {z['class_balanced_top1']:.3f} "
                     f"({z['chance']:.3f}) | "
                     f"{100 * row['tiny_clip_2d']['paper_miou']:.1f} | "
                     f"{100 * row['synthetic_teacher_2d']['paper_miou']:.1f} | "
                     f"{row['tiny_dino_grouping']['dino_same_vs_other_class_auc']:.3f} "
                     f"({row['tiny_dino_grouping']['colour_same_vs_other_class_auc']:.3f}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
