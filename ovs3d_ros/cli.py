"""``ovs3d``: the offline commands (no ROS needed).

    ovs3d train DATA --out DIR [--teacher clip|synthetic] [--config YAML] [--set key=value ...]
                     [--steps N | --time S] [--vocabulary]
    ovs3d query CKPT --classes a b c [--refine] [--views 0 3] --out DIR
    ovs3d eval DATA [--ckpt CKPT] --out DIR           (trains first when no checkpoint is given)
    ovs3d render CKPT (--keyframe K | --pose x y z qx qy qz qw) --out DIR [--classes ...]
    ovs3d generate PRESET OUT [--train N --test N --width W --height H --seed S]

DATA is a 3D-OVS/LLFF folder, a nerfstudio transforms.json (or its folder), a rosbag2, or a generated
scene ``synthetic:PRESET[,train=N,test=N,width=W,height=H,seed=S]``. Frames stream through the same
Trainer/KeyframeBuffer the ROS node uses. A checkpoint ``X.ckpt`` has a ``X.ckpt.json`` beside it
(the scene's class names and where it came from) so ``query``/``eval`` can rebuild the teacher.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ovs3d_ros.config import Config, ConfigError, apply_flat, load_yaml, resolve_device


class CliError(ValueError):
    """A command-line input that cannot be used (the message says which and why)."""


# ----------------------------------------------------------------------------------------------
# Configuration and scenes


def build_config(config_path: str | None, sets: list[str] | None, teacher: str | None = None) -> Config:
    """Defaults <- YAML file <- ``--set key=value`` (values parsed as YAML scalars/lists)."""
    cfg = load_yaml(config_path) if config_path else Config()
    flat = {}
    for item in sets or []:
        if "=" not in item:
            raise CliError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        # no leaf of the config is a mapping: '{"depth": 2}' is a JSON string field (arch_overrides)
        flat[key.strip()] = value if isinstance(parsed, dict) else parsed
    if teacher == "tiny-clip":
        from ovs3d_ros.core.teachers.tiny import tiny_teacher_settings
        from ovs3d_ros.ros.paths import tiny_models_dir

        # the committed tiny CLIP + DINO (models/tiny); --set still overrides any of their keys
        flat = {**tiny_teacher_settings(tiny_models_dir()), **flat}
    elif teacher:
        flat["teacher.kind"] = teacher
    return apply_flat(cfg, flat) if flat else cfg


def parse_synthetic_spec(spec: str) -> dict:
    """'synthetic:room,width=80,height=60' -> {'preset': 'room', 'width': 80, ...}."""
    body = spec.split(":", 1)[1]
    parts = [p for p in body.split(",") if p]
    if not parts:
        raise CliError(f"{spec!r}: name a preset, e.g. synthetic:room")
    opts = {"preset": parts[0], "train": 24, "test": 4, "width": 80, "height": 60, "seed": 0}
    for part in parts[1:]:
        if "=" not in part:
            raise CliError(f"{spec!r}: option {part!r} is not key=value")
        key, value = part.split("=", 1)
        if key not in opts or key == "preset":
            raise CliError(f"{spec!r}: unknown option {key!r} (train, test, width, height, seed)")
        try:
            opts[key] = int(value)
        except ValueError:
            raise CliError(f"{spec!r}: {key} must be an integer, got {value!r}") from None
    return opts


def open_scene(spec: str):
    """A SceneDataset from a path or a ``synthetic:`` spec."""
    if spec.startswith("synthetic:"):
        from ovs3d_ros.data.synthetic import SyntheticScene

        o = parse_synthetic_spec(spec)
        try:
            scene = SyntheticScene(o["preset"], seed=o["seed"])
        except ValueError as exc:
            raise CliError(str(exc)) from None
        return scene.make_frames(o["train"], o["test"], o["width"], o["height"])
    from ovs3d_ros.data import load_dataset

    return load_dataset(spec)


def _progress(iterable=None, **kw):
    from tqdm import tqdm

    return tqdm(iterable, dynamic_ncols=True, file=sys.stderr, **kw)


# ----------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainPlan:
    steps: int | None = None
    time_s: float | None = None
    stream_fraction: float = 0.5
    """Frames arrive spread over this fraction of the run (like a robot's stream), then it trains on."""


def train_scene(dataset, cfg: Config, plan: TrainPlan, vocabulary: list[str] | None = None,
                progress: bool = True, device: str | None = None):
    """Stream the dataset's training frames into a fresh Trainer and optimise.

    With ``vocabulary`` (the paper's offline mode) RDA and FDA for those names run as extra losses
    (weights in ``cfg.semantic``; 0 switches a term off). Returns (trainer, teacher, stats dict).
    """
    from ovs3d_ros.core.semantic_training import SemanticAlignment
    from ovs3d_ros.core.teachers import build_teacher
    from ovs3d_ros.core.trainer import Trainer

    if plan.steps is None and plan.time_s is None:
        raise CliError("give --steps or --time")
    dev = device or resolve_device(cfg)
    teacher = build_teacher(cfg.teacher, dev, class_names=list(dataset.class_names))
    if getattr(teacher, "embed_dim", cfg.field.clip_dim) != cfg.field.clip_dim:
        cfg = apply_flat(cfg, {"field.clip_dim": int(teacher.embed_dim)})
    trainer = Trainer(cfg, dev, teacher)
    if vocabulary:
        text = teacher.encode_text(list(vocabulary)).float()
        trainer.extra_losses.append(SemanticAlignment(text, cfg.semantic, seed=cfg.seed))
    frames = list(dataset.train_frames)
    if not frames:
        raise CliError(f"{dataset.name}: no training frames")
    start = time.perf_counter()
    total = plan.steps
    bar = _progress(total=total, desc="train", unit="step", disable=not progress)
    next_frame, last = 0, {}
    trainer.add_frame(frames[0])
    next_frame = 1
    while True:
        elapsed = time.perf_counter() - start
        done = trainer.step_count
        if (plan.steps is not None and done >= plan.steps) or \
                (plan.time_s is not None and elapsed >= plan.time_s):
            break
        fraction = done / plan.steps if plan.steps is not None else elapsed / plan.time_s
        due = min(len(frames), 1 + int(fraction / max(plan.stream_fraction, 1e-9) * len(frames)))
        while next_frame < due:
            trainer.add_frame(frames[next_frame])
            next_frame += 1
        last = trainer.step()
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in last.items() if k in ("loss", "psnr_batch", "rda", "fda")})
    while next_frame < len(frames):  # a time budget can end before the stream did
        trainer.add_frame(frames[next_frame])
        next_frame += 1
    bar.close()
    return trainer, teacher, {"steps": trainer.step_count, "time_s": time.perf_counter() - start,
                              "keyframes": len(trainer.keyframes), "last": last}


def write_meta(ckpt: Path, dataset, data_spec: str, vocabulary: list[str] | None, stats: dict) -> Path:
    meta = {"class_names": list(dataset.class_names), "data": data_spec, "scene": dataset.name,
            "vocabulary_trained": vocabulary, "stats": stats}
    path = Path(str(ckpt) + ".json")
    path.write_text(json.dumps(meta, indent=2, default=str))
    return path


def load_model(ckpt: str, device: str | None = None):
    """(trainer, teacher, cfg, meta) from a checkpoint written by ``ovs3d train``."""
    from ovs3d_ros.core.teachers import build_teacher
    from ovs3d_ros.core.trainer import Trainer

    path = Path(ckpt)
    if not path.is_file():
        raise CliError(f"{path}: no such checkpoint")
    meta_path = Path(str(path) + ".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    probe = Trainer.load(path, "cpu")
    cfg = probe.cfg
    dev = device or resolve_device(cfg)
    names = meta.get("class_names")
    if cfg.teacher.kind == "synthetic" and not names:
        raise CliError(f"{path}: the synthetic teacher needs the scene's class names ({meta_path} missing)")
    teacher = build_teacher(cfg.teacher, dev, class_names=names)
    trainer = probe if dev == "cpu" else Trainer.load(path, dev, teacher)
    trainer.teacher = teacher
    return trainer, teacher, cfg, meta


# ----------------------------------------------------------------------------------------------
# Writing query results


def write_result(result, out: Path, tag: str = "") -> dict[str, str]:
    from ovs3d_ros.core import outputs

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    if len(result.points):
        cloud = outputs.LabeledCloud(result.points, result.rgb, result.labels, result.scores)
        files["cloud"] = str(outputs.write_ply(out / f"cloud{tag}.ply", cloud))
    if result.label_image is not None:
        files["labels"] = str(outputs.write_png(out / f"labels{tag}.png", result.label_image))
        files["scores"] = str(outputs.write_png(out / f"scores{tag}.png", result.score_image))
        files["overlay"] = str(outputs.write_png(out / f"overlay{tag}.png", result.overlay))
        files["rendered"] = str(outputs.write_png(out / f"rendered{tag}.png", result.rendered_rgb))
    return files


def summary_of(result, files: dict) -> dict:
    from ovs3d_ros.core.outputs import Summary

    return Summary(class_names=result.class_names, colors=result.colors.tolist(),
                   num_points=len(result.points), points_per_class=result.points_per_class(),
                   unknown_label=65535,
                   timing_s=result.timing_s, extra={"files": files, "refined": result.refined}).__dict__


# ----------------------------------------------------------------------------------------------
# Evaluation (the paper's metric and the conventional one, on the annotated / held-out views)


def _gt_of(frame, num_classes: int):
    if "gt_multi_hot" in frame.extras:
        return frame.extras["gt_multi_hot"]
    if frame.labels is None:
        raise CliError(f"test view {frame.source_id or frame.frame_id} has no ground-truth labels")
    return frame.labels


def evaluate(trainer, teacher, cfg: Config, dataset, refine: bool = False, figures_dir: Path | None = None,
             progress: bool = True) -> dict:
    """3D predictions vs the 2D teacher on ``dataset.test_frames``: both metrics, per class and view."""
    import torch

    from ovs3d_ros.core import metrics, outputs
    from ovs3d_ros.core.query import Segmenter
    from ovs3d_ros.core.teachers import teacher_labels
    from ovs3d_ros.core.vocabulary import class_colors

    names = list(dataset.class_names)
    c = len(names)
    views = dataset.test_frames
    if not views:
        raise CliError(f"{dataset.name}: no annotated / held-out views to evaluate")
    side = max(max(f.width, f.height) for f in views)
    eval_cfg = apply_flat(cfg, {"query.mask_max_side": max(side, cfg.query.mask_max_side)})
    segmenter = Segmenter(trainer, teacher, eval_cfg)
    text = teacher.encode_text(names).float()
    preds3d, preds2d, gts, latencies = [], [], [], []
    colors = class_colors(names)
    for k, frame in enumerate(_progress(views, desc="eval", unit="view", disable=not progress)):
        t = time.perf_counter()
        res = segmenter.segment(names, refine=refine, camera=(frame.intrinsics, frame.pose), cloud=False)
        latencies.append(time.perf_counter() - t)
        pred3d = res.label_image.astype(np.int64)
        with torch.no_grad():
            clip = teacher.extract(frame).clip
            pred2d = teacher_labels(clip.to(text.device), text, frame.height, frame.width).cpu().numpy()
        gt = _gt_of(frame, c)
        preds3d.append(pred3d)
        preds2d.append(pred2d)
        gts.append(gt)
        if figures_dir is not None:
            gt_lab = frame.labels if frame.labels is not None else np.argmax(gt, axis=-1).astype(np.uint8)
            panels = [frame.rgb, outputs.overlay(frame.rgb, gt_lab.astype(np.uint8), colors),
                      outputs.overlay(frame.rgb, outputs.label_image(pred3d, c), colors),
                      outputs.overlay(frame.rgb, outputs.label_image(pred2d, c), colors)]
            outputs.write_png(figures_dir / f"view{k:02d}_rgb_gt_3d_2d.png", np.concatenate(panels, axis=1))
    paper3d, paper2d = metrics.paper_metrics(preds3d, gts, c), metrics.paper_metrics(preds2d, gts, c)
    conv3d, conv2d = metrics.conventional_miou(preds3d, gts, c), metrics.conventional_miou(preds2d, gts, c)
    return {
        "scene": dataset.name, "classes": names, "views": [f.source_id for f in views],
        "held_out": bool(getattr(dataset, "test_held_out", True)), "refined": refine,
        "3d": {"paper_miou": paper3d.miou, "paper_accuracy": paper3d.accuracy,
               "conventional_miou": conv3d.miou, "conventional_accuracy": conv3d.accuracy,
               "per_class_iou": dict(zip(names, paper3d.per_class_iou.tolist(), strict=True)),
               "per_view_miou": paper3d.per_view_iou.mean(axis=1).tolist()},
        "2d_teacher": {"paper_miou": paper2d.miou, "paper_accuracy": paper2d.accuracy,
                       "conventional_miou": conv2d.miou, "conventional_accuracy": conv2d.accuracy,
                       "per_class_iou": dict(zip(names, paper2d.per_class_iou.tolist(), strict=True)),
                       "per_view_miou": paper2d.per_view_iou.mean(axis=1).tolist()},
        "mask_latency_s": float(np.mean(latencies)),
    }


def format_report(report: dict) -> str:
    """A plain-text table: per class then per view, 3D vs the 2D teacher, then the summary rows."""
    a, b = report["3d"], report["2d_teacher"]
    width = max([len(n) for n in report["classes"]] + [18])
    lines = [f"scene {report['scene']} ({len(report['views'])} "
             f"{'held-out' if report['held_out'] else 'annotated'} views)",
             f"{'class':<{width}}  {'3D IoU':>7}  {'2D IoU':>7}"]
    for name in report["classes"]:
        x, y = a["per_class_iou"][name], b["per_class_iou"][name]
        lines.append(f"{name:<{width}}  {100 * x:7.1f}  {100 * y:7.1f}")
    for k, (x, y) in enumerate(zip(a["per_view_miou"], b["per_view_miou"], strict=True)):
        lines.append(f"{'view ' + str(k):<{width}}  {100 * x:7.1f}  {100 * y:7.1f}")
    for key, label in (("paper_miou", "mIoU (paper)"), ("paper_accuracy", "accuracy (paper)"),
                       ("conventional_miou", "mIoU (conventional)")):
        lines.append(f"{label:<{width}}  {100 * a[key]:7.1f}  {100 * b[key]:7.1f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Commands


def cmd_train(args) -> int:
    cfg = build_config(args.config, args.set, args.teacher)
    dataset = open_scene(args.data)
    vocabulary = list(dataset.class_names) if args.vocabulary else None
    trainer, _, stats = train_scene(dataset, cfg, TrainPlan(args.steps, args.time), vocabulary,
                                    progress=not args.quiet)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = trainer.save(out / "model.ckpt")
    write_meta(ckpt, dataset, args.data, vocabulary, stats)
    print(f"trained {stats['steps']} steps in {stats['time_s']:.1f} s on {stats['keyframes']} keyframes "
          f"-> {ckpt}")
    return 0


def cmd_query(args) -> int:
    from ovs3d_ros.core.query import Segmenter

    trainer, teacher, cfg, _ = load_model(args.ckpt)
    segmenter = Segmenter(trainer, teacher, cfg)
    out = Path(args.out)
    views = args.views if args.views else [0]
    summaries = []
    for i, view in enumerate(views):
        result = segmenter.segment(args.classes, refine=args.refine, max_time_s=args.time,
                                   max_points=args.max_points, score_threshold=args.threshold,
                                   camera=view, unknown=args.unknown or None, cloud=(i == 0))
        files = write_result(result, out, tag="" if len(views) == 1 else f"_kf{view}")
        summaries.append(summary_of(result, files))
        print(f"view {view}: {len(result.points)} points, timing "
              + ", ".join(f"{k}={v:.3f}" for k, v in result.timing_s.items() if k.endswith("_s")))
    from ovs3d_ros.core.outputs import write_json

    write_json(out / "summary.json", {"queries": summaries})
    print(f"wrote {out}")
    return 0


def cmd_eval(args) -> int:
    from ovs3d_ros.core.outputs import write_json

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = open_scene(args.data)
    if args.ckpt:
        trainer, teacher, cfg, _ = load_model(args.ckpt)
    else:
        cfg = build_config(args.config, args.set, args.teacher)
        vocabulary = None if args.zero_shot else list(dataset.class_names)
        trainer, teacher, stats = train_scene(dataset, cfg, TrainPlan(args.steps, args.time), vocabulary,
                                              progress=not args.quiet)
        ckpt = trainer.save(out / "model.ckpt")
        write_meta(ckpt, dataset, args.data, vocabulary, stats)
    report = evaluate(trainer, teacher, cfg, dataset, refine=args.refine, figures_dir=out / "figures",
                      progress=not args.quiet)
    write_json(out / "report.json", report)
    print(format_report(report))
    print(f"report: {out / 'report.json'}, figures: {out / 'figures'}")
    return 0


def cmd_render(args) -> int:
    from ovs3d_ros.core import outputs
    from ovs3d_ros.core.camera import pose_from_xyz_quat
    from ovs3d_ros.core.query import Segmenter
    from ovs3d_ros.core.semantic_training import keyframe_snapshot

    trainer, teacher, cfg, _ = load_model(args.ckpt)
    keyframes = keyframe_snapshot(trainer)
    if not keyframes:
        raise CliError(f"{args.ckpt}: the checkpoint has no keyframes")
    if args.pose is not None:
        c2w = pose_from_xyz_quat(args.pose[:3], args.pose[3:])
        intr = keyframes[0].intrinsics
    else:
        if not 0 <= args.keyframe < len(keyframes):
            raise CliError(f"--keyframe {args.keyframe} outside 0..{len(keyframes) - 1}")
        c2w, intr = keyframes[args.keyframe].pose, keyframes[args.keyframe].intrinsics
    if args.width:
        intr = intr.scaled(args.width, args.height or round(args.width * intr.height / intr.width))
    out = Path(args.out)
    if args.classes:
        result = Segmenter(trainer, teacher, cfg).segment(args.classes, camera=(intr, c2w), cloud=False)
        write_result(result, out)
    else:
        img = trainer.render(intr, c2w, semantics=False)
        rgb = (img["rgb"].clamp(0, 1) * 255).round().byte().cpu().numpy()
        outputs.write_png(out / "rendered.png", rgb)
        depth = img["depth"].cpu().numpy().astype(np.float32)
        outputs.write_png(out / "depth_mm.png", np.clip(depth * 1000, 0, 65535).astype(np.uint16))
    print(f"wrote {out}")
    return 0


def cmd_generate(args) -> int:
    from ovs3d_ros.data.synthetic import generate

    dataset = generate(args.preset, args.out, n_train=args.train, n_test=args.test, width=args.width,
                       height=args.height, seed=args.seed)
    print(f"{dataset.name}: {len(dataset.frames)} frames, classes {dataset.class_names} -> {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovs3d", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common_train(p):
        p.add_argument("--teacher", choices=("clip", "synthetic", "tiny-clip"),
                       help="teacher.kind (default: config); tiny-clip: kind clip with the project's own "
                            "tiny CLIP + DINO checkpoints (models/tiny, no download)")
        p.add_argument("--config", help="YAML configuration file")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set trainer.rays_per_step=1024")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--steps", type=int, help="training steps")
        g.add_argument("--time", type=float, help="training time budget, seconds")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("train", help="train a field on a scene and save a checkpoint")
    p.add_argument("data")
    p.add_argument("--out", required=True)
    p.add_argument("--vocabulary", action="store_true",
                   help="also train RDA+FDA for the scene's class names (the paper's offline mode)")
    common_train(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("query", help="segment a trained scene with any class names")
    p.add_argument("ckpt")
    p.add_argument("--classes", nargs="+", required=True)
    p.add_argument("--refine", action="store_true", help="refine this vocabulary with an RDA+FDA burst")
    p.add_argument("--time", type=float, help="refine time budget, seconds")
    p.add_argument("--views", type=int, nargs="*", help="keyframe indices to render masks for (default 0)")
    p.add_argument("--max-points", type=int)
    p.add_argument("--threshold", type=float, help="score below which a label is unknown")
    p.add_argument("--unknown", action="store_true", help="use canonical negatives for 'unknown'")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("eval", help="3D mIoU vs the 2D teacher on the annotated / held-out views")
    p.add_argument("data")
    p.add_argument("--ckpt", help="evaluate this checkpoint (else train first)")
    p.add_argument("--out", required=True)
    p.add_argument("--refine", action="store_true", help="query with a refine burst")
    p.add_argument("--zero-shot", action="store_true", help="train without RDA/FDA (class-agnostic)")
    common_train(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("render", help="render a keyframe or a pose (optionally with labels)")
    p.add_argument("ckpt")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--keyframe", type=int)
    g.add_argument("--pose", type=float, nargs=7, metavar=("X", "Y", "Z", "QX", "QY", "QZ", "QW"),
                   help="camera optical frame in the world, quaternion x y z w")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--classes", nargs="*")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("generate", help="write a synthetic scene (3D-OVS, nerfstudio and rosbag2 forms)")
    p.add_argument("preset")
    p.add_argument("out")
    p.add_argument("--train", type=int, default=24)
    p.add_argument("--test", type=int, default=6)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "steps", None) is None and getattr(args, "time", None) is None \
            and args.command == "train":
        args.steps = 2000
    if args.command == "eval" and not args.ckpt and args.steps is None and args.time is None:
        args.steps = 2000
    try:
        return args.func(args)
    except (CliError, ConfigError, ValueError, OSError) as exc:
        print(f"ovs3d {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
