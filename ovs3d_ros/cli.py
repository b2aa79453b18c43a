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
import sys
from pathlib import Path

import numpy as np

from ovs3d_ros.config import Config, ConfigError, apply_flat, build_config, parse_assignments
from ovs3d_ros.core.evaluation import evaluate, format_report
from ovs3d_ros.core.model_files import load_model, write_meta
from ovs3d_ros.core.scene_training import TrainPlan, train_scene
from ovs3d_ros.data.scene_spec import open_scene


class CliError(ValueError):
    """A command-line input that cannot be used (the message says which and why)."""



def config_of(args) -> Config:
    """The run's configuration: defaults <- ``--config`` <- ``--teacher`` <- ``--set``. ``--teacher
    tiny-clip`` is teacher.kind clip with the committed tiny CLIP + DINO (models/tiny, no download); the
    ``--set`` assignments still override any of its keys."""
    if args.teacher != "tiny-clip":
        return build_config(args.config, args.set, args.teacher)
    from ovs3d_ros.core.teachers.tiny import tiny_teacher_settings
    from ovs3d_ros.ros.paths import tiny_models_dir

    cfg = apply_flat(build_config(args.config), tiny_teacher_settings(tiny_models_dir()))
    return apply_flat(cfg, parse_assignments(args.set)) if args.set else cfg

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
# Commands


def cmd_train(args) -> int:
    cfg = config_of(args)
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
        cfg = config_of(args)
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

    trainer, teacher, cfg, _ = load_model(args.ckpt)
    keyframes = trainer.keyframes.snapshot()
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
