"""Synthetic benchmark: 3D mIoU on HELD-OUT views vs the 2D teacher's own mIoU, with the ablations.

For each generated 360-degree scene and seed, trains one field per variant (the same seed, frames and
steps): ``full`` (feature + RDA + FDA), ``no_fda``, ``no_rda`` and ``feature_only`` (class-agnostic
distillation alone), then evaluates the zero-shot labels rendered at held-out poses (the query's
``decision_rule``, pixels without surface unknown) with the paper's metric (sklearn semantics) and the
conventional one, beside the synthetic benchmark teacher's labels on the same views.

Settings: the node's shipped defaults (``config/ovs3d.yaml``, i.e. ``Config()``) and the synthetic
benchmark teacher, nothing else, so the table describes the node users run (``--set`` for experiments).

    .venv/bin/python bench/semantic_eval.py --scenes room table clutter desk --seeds 0 1 --refine \
        --json bench/results/semantic_eval_cpu.json --md bench/results/semantic_eval_cpu.md

``--save DIR`` keeps the trained fields; ``--load DIR`` (the same scenes, seeds and variants) evaluates
them again with today's query settings instead of training, refusing a field whose training settings
are not today's.

Prints the summary and per-class tables (markdown, classes below the teacher flagged); ``--json``
writes everything (per class and per view), rewritten after every run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ovs3d_ros.config import apply_flat, build_config, to_flat_dict  # noqa: E402
from ovs3d_ros.core.evaluation import evaluate  # noqa: E402
from ovs3d_ros.core.metrics import compare_per_class  # noqa: E402
from ovs3d_ros.core.model_files import load_model, write_meta  # noqa: E402
from ovs3d_ros.core.scene_training import TrainPlan, train_scene  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402

VARIANTS = {
    "full": {},
    "no_fda": {"semantic.fda_pos_weight": 0.0, "semantic.fda_neg_weight": 0.0},
    "no_rda": {"semantic.rda_weight": 0.0},
    "feature_only": "zero_shot",
}

BENCH_DEFAULTS = {
    # the node's shipped defaults (config/ovs3d.yaml = ovs3d_ros.config.Config()), nothing else but the
    # clearly named synthetic *benchmark* teacher: the table describes the node users run
    "teacher.kind": "synthetic",
}


def run_variant(dataset, base_cfg, variant: str, steps: int, out: Path | None, refine: bool = False,
                save: Path | None = None, renderers: list[str] | None = None, diagnose=None) -> dict:
    """Train one variant on ``dataset`` and evaluate it; ``diagnose(trainer, teacher, dataset)``, when
    given, adds its dict as ``report["diagnosis"]`` (extra evaluations of the same field)."""
    cfg = variant_config(base_cfg, variant)
    vocabulary = None if VARIANTS[variant] == "zero_shot" else list(dataset.class_names)
    start = time.perf_counter()
    trainer, teacher, stats = train_scene(dataset, cfg, TrainPlan(steps=steps), vocabulary,
                                          progress=False, device="cpu")
    train_s = time.perf_counter() - start
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        ckpt = trainer.save(save / f"{dataset.name}_{variant}.ckpt")
        write_meta(ckpt, dataset, dataset.name, vocabulary, {"steps": steps})
    report = evaluate(trainer, teacher, trainer.cfg, dataset, figures_dir=out, progress=False)
    for renderer in renderers or ():
        # the same field, masks by another query.mask_renderer: mIoU and latency side by side
        other = evaluate(trainer, teacher, apply_flat(trainer.cfg, {"query.mask_renderer": renderer}),
                             dataset, progress=False)
        report.setdefault("renderers", {})[renderer] = {
            "paper_miou": other["3d"]["paper_miou"], "conventional_miou": other["3d"]["conventional_miou"],
            "mask_latency_s": other["mask_latency_s"]}
    report["train_s"] = train_s
    report["variant"] = variant
    if diagnose is not None:
        report["diagnosis"] = diagnose(trainer, teacher, dataset)
    if refine:
        start = time.perf_counter()
        refined = evaluate(trainer, teacher, trainer.cfg, dataset, refine=True,
                               figures_dir=None if out is None else out / "refined", progress=False)
        report["refined_3d"] = refined["3d"]
        report["refine_eval_s"] = time.perf_counter() - start
    return report


def variant_config(base_cfg, variant: str):
    spec = VARIANTS[variant]
    return base_cfg if spec == "zero_shot" else apply_flat(base_cfg, spec)


def load_variant(dataset, base_cfg, variant: str, folder: Path) -> dict:
    """Evaluate the field an earlier ``--save folder`` run trained for ``variant`` on ``dataset``, with
    today's query settings (``base_cfg``'s): the answer the shipped defaults give on that field. Every
    setting other than the query's must be today's, or the field would not describe the node's training."""
    ckpt = folder / f"{dataset.name}_{variant}.ckpt"
    trainer, teacher, saved_cfg, _ = load_model(ckpt, device="cpu")
    cfg = variant_config(base_cfg, variant)
    saved, today = to_flat_dict(saved_cfg), to_flat_dict(cfg)
    other = sorted(k for k in today if not k.startswith("query.") and saved.get(k) != today[k])
    if other:
        raise SystemExit(f"{ckpt} was trained with settings other than today's: "
                         + ", ".join(f"{k}={saved.get(k)!r} (today {today[k]!r})" for k in other))
    report = evaluate(trainer, teacher, cfg, dataset, progress=False)
    report.update(train_s=None, variant=variant, loaded_from=str(ckpt),
                  query_changed={k: [saved.get(k), today[k]] for k in today
                                 if k.startswith("query.") and saved.get(k) != today[k]})
    return report


def summary_rows(reports: list[dict]) -> list[dict]:
    """One row per (scene, seed): paper mIoU (%) of the teacher, each variant and the refined full model,
    and whether the target holds (full 3D >= 2D + 3 points, no class with teacher IoU >= 20 below it)."""
    rows: dict[tuple, dict] = {}
    for rep in reports:
        row = rows.setdefault((rep["preset"], rep["seed"]), {"scene": rep["preset"], "seed": rep["seed"],
                                                             "tuning": rep["tuning"]})
        row["2d"] = 100 * rep["2d_teacher"]["paper_miou"]
        row[rep["variant"]] = 100 * rep["3d"]["paper_miou"]
        if rep["variant"] == "full":
            if "refined_3d" in rep:
                row["full_refine"] = 100 * rep["refined_3d"]["paper_miou"]
            lost = [c.name for c in classes_lost(rep)]
            row["classes_lost"] = lost
            row["target_met"] = bool(row["full"] >= row["2d"] + TARGET_MARGIN and not lost)
    return list(rows.values())


TARGET_MARGIN = 3.0
"""mIoU points the 3D answer must beat the 2D teacher by on every scene (DESIGN.md section 5)."""
TARGET_CLASS_IOU = 0.20
"""Classes whose teacher IoU is at least this must not end below the teacher in 3D."""


def per_class(rep: dict) -> list:
    names = rep["classes"]
    return compare_per_class(names, [rep["3d"]["per_class_iou"][n] for n in names],
                             [rep["2d_teacher"]["per_class_iou"][n] for n in names])


def classes_lost(rep: dict) -> list:
    """The target's class rule: the classes the teacher finds (IoU >= ``TARGET_CLASS_IOU``) that end
    below it in 3D (``per_class`` comparisons)."""
    return [c for c in per_class(rep) if c.below_teacher and c.iou_2d >= TARGET_CLASS_IOU]


def compare_answers(answers: dict[str, str], folders: list[Path], base: str) -> list[str]:
    """One line per answer of the same saved fields: ``answers`` maps a label to the file prefix of its
    ``--json`` reports (``PREFIXtseedT_*.json`` in ``folders``, fields keyed by scene, seed and trainer
    seed T); each line gives, over the fields every answer has, the mean 3D mIoU, the classes below
    their teacher (``classes_lost``) and the largest single-class drop against the answer ``base``."""
    fields: dict[str, dict] = {label: {} for label in answers}
    for label, prefix in answers.items():
        for path in sorted(p for folder in folders for p in folder.glob(f"{prefix}tseed*.json")):
            tseed = path.name[len(prefix):].split("_")[0]
            for rep in json.loads(path.read_text()):
                fields[label][(rep["preset"], rep["seed"], tseed)] = rep
    common = sorted(set.intersection(*(set(f) for f in fields.values())))
    lines = []
    for label in answers:
        mious, below, drops = [], [], []
        for key in common:
            rep, ref = fields[label][key], fields[base][key]
            iou3 = rep["3d"]["per_class_iou"]
            mious.append(100 * rep["3d"]["paper_miou"])
            below += [f"{key[0]} {key[1]} {key[2]} {c.name} {100 * c.iou_3d:.1f} < {100 * c.iou_2d:.1f}"
                      for c in classes_lost(rep)]
            drops += [(100 * (ref["3d"]["per_class_iou"][n] - iou3[n]), f"{key} {n}") for n in rep["classes"]]
        worst = max(drops)
        lines.append(f"{label}: {len(common)} fields, mean mIoU {sum(mious) / len(mious):.1f}, classes below "
                     f"their teacher {len(below)} ({'; '.join(below) or 'none'}); largest class drop vs "
                     f"{base} {worst[0]:.1f} ({worst[1]})")
    return lines


def markdown(reports: list[dict], command: str, header: str) -> str:
    """The summary table, then per (scene, seed) the per-class IoU of the teacher and every variant."""
    cols = [("2d", "2D teacher"), ("full", "3D zero-shot"), ("full_refine", "3D + refine"),
            ("no_fda", "no FDA"), ("no_rda", "no RDA"), ("feature_only", "feature only")]
    rows = summary_rows(reports)
    cols = [c for c in cols if any(c[0] in r for r in rows)]
    out = [header, "", "    " + command, "",
           "| scene | seed | used for tuning | " + " | ".join(t for _, t in cols) + " | 3D - 2D | target |",
           "|---|---|---|" + "---|" * (len(cols) + 2)]
    for r in rows:
        cells = " | ".join(f"{r[k]:.1f}" if k in r else "-" for k, _ in cols)
        delta = f"{r['full'] - r['2d']:+.1f}" if "full" in r else "-"
        verdict = ("met" if r.get("target_met") else "NOT met" + (
            f" (below teacher: {', '.join(r['classes_lost'])})" if r.get("classes_lost") else ""))
        out.append(f"| {r['scene']} | {r['seed']} | {'yes' if r['tuning'] else 'no'} | {cells} | {delta} | "
                   f"{verdict} |")
    for (scene, seed), reps in _by_scene(reports).items():
        variants = [v for v in VARIANTS if v in reps]
        out += ["", f"### {scene}, seed {seed}: per-class IoU (paper metric, %)", "",
                "| class | 2D teacher | " + " | ".join(variants) + " | full below teacher |",
                "|---|---|" + "---|" * (len(variants) + 1)]
        base = reps.get("full") or next(iter(reps.values()))
        for c in per_class(base):
            vals = " | ".join(f"{100 * reps[v]['3d']['per_class_iou'][c.name]:.1f}" for v in variants)
            flag = "**yes**" if c.below_teacher else ""
            out.append(f"| {c.name} | {100 * c.iou_2d:.1f} | {vals} | {flag} |")
    return "\n".join(out) + "\n"


def _by_scene(reports: list[dict]) -> dict:
    grouped: dict[tuple, dict] = {}
    for rep in reports:
        grouped.setdefault((rep["preset"], rep["seed"]), {})[rep["variant"]] = rep
    return grouped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", nargs="+", default=["room", "table", "clutter", "desk"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--tuning", nargs="*", default=[], metavar="SCENE:SEED",
                        help="(scene, seed) pairs looked at while choosing settings, marked so in the table")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", help="write all reports here")
    parser.add_argument("--md", help="write the summary and per-class tables (markdown) here")
    parser.add_argument("--figures", help="folder for prediction figures")
    parser.add_argument("--refine", action="store_true",
                        help="also evaluate after a query-time refine burst (3D+refine column)")
    parser.add_argument("--save", help="folder for the trained checkpoints")
    parser.add_argument("--renderers", nargs="+", choices=["reference", "surface"],
                        help="also evaluate each field with these query.mask_renderer values (same field)")
    parser.add_argument("--load", metavar="DIR",
                        help="train nothing: evaluate the checkpoints an earlier --save DIR run wrote (the "
                             "same --scenes/--seeds/--variants/sizes) with today's query settings")
    parser.add_argument("--from-json", nargs="+", metavar="JSON",
                        help="train nothing: write the tables from reports that --json runs wrote")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.from_json:
        reports = [r for path in args.from_json for r in json.loads(Path(path).read_text())]
        if args.json:  # the merged reports in one file
            Path(args.json).write_text(json.dumps(reports, indent=2))
        return write_tables(reports, "python " + " ".join(sys.argv), f"{len(reports)} runs merged from "
                            + ", ".join(args.from_json) + "; each run's command is in its JSON", args)

    base = build_config(None, [f"{k}={v}" for k, v in BENCH_DEFAULTS.items()] + args.set)
    reports = []
    for scene in args.scenes:
        for seed in args.seeds:
            spec = (f"synthetic:{scene},train={args.train},test={args.test},width={args.width},"
                    f"height={args.height},seed={seed}")
            dataset = open_scene(spec)
            for variant in args.variants:
                figs = Path(args.figures) / f"{scene}_s{seed}" / variant if args.figures else None
                if args.load:
                    rep = load_variant(dataset, base, variant, Path(args.load))
                else:
                    save = Path(args.save) if args.save else None
                    rep = run_variant(dataset, base, variant, args.steps, figs,
                                      args.refine and variant == "full", save, args.renderers)
                rep.update(preset=scene, seed=seed, tuning=f"{scene}:{seed}" in args.tuning,
                           command="python " + " ".join(sys.argv), steps=args.steps,
                           resolution=[args.width, args.height], sets=args.set)
                reports.append(rep)
                trained = "loaded" if rep["train_s"] is None else f"train {rep['train_s']:.0f} s"
                print(f"[{scene} s{seed}/{variant}] 3D {100 * rep['3d']['paper_miou']:.1f} vs 2D "
                      f"{100 * rep['2d_teacher']['paper_miou']:.1f} mIoU ({trained})",
                      file=sys.stderr, flush=True)
                if args.json:  # after every run: a long table loses nothing to an interruption
                    Path(args.json).write_text(json.dumps(reports, indent=2))
    fields = f"fields saved in {args.load}, " if args.load else ""
    header = (f"held-out views: {args.test} per scene, {args.width}x{args.height}, {fields}{args.steps} "
              f"steps, "
              f"{args.train} training views, node defaults (config/ovs3d.yaml) + the synthetic benchmark "
              f"teacher{' + ' + ' '.join(args.set) if args.set else ''}; paper mIoU, %")
    return write_tables(reports, "python " + " ".join(sys.argv), header, args)


def write_tables(reports: list[dict], command: str, header: str, args) -> int:
    text = markdown(reports, command, header)
    print(text)
    if args.md:
        Path(args.md).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
