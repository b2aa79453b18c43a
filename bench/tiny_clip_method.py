"""The method on the project's tiny CLIP + DINO (the real teacher path), on preset scenes the tiny
models never saw: tiny-CLIP 2D, the class-agnostic field (the node's mode) answered zero-shot and after
a refine burst, the field trained with RDA + FDA for the scene's vocabulary (the paper's offline mode)
and its no-FDA / no-RDA ablations, all on the same held-out views (bench/semantic_eval.py's runner, the
node's shipped defaults, the teacher swapped). ``--diagnose`` also evaluates every field on some of its
own training views and with the other decision rule, and writes per-class tables (why 3D loses).

    .venv/bin/python bench/tiny_clip_method.py --scenes room table clutter --seed 3 --diagnose \\
        --out bench/results/tiny_clip_method
    .venv/bin/python bench/tiny_clip_method.py --from-json bench/results/tiny_clip_method.json \\
        --notes bench/results/tiny_clip_method_notes.md --out bench/results/tiny_clip_method
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results_files import write_json_and_md  # noqa: E402  (bench/ is this script's folder)
from semantic_eval import BENCH_DEFAULTS, run_variant  # noqa: E402  (bench/ is this script's folder)

from ovs3d_ros.config import apply_flat, build_config  # noqa: E402
from ovs3d_ros.core.evaluation import evaluate  # noqa: E402
from ovs3d_ros.core.teachers.tiny import tiny_teacher_settings  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402

COLUMNS = (("tiny-CLIP 2D", "feature_only", "2d_teacher"),
           ("3D zero-shot (class-agnostic)", "feature_only", "3d"),
           ("3D + refine (class-agnostic)", "feature_only", "refined_3d"),
           ("3D full (RDA+FDA)", "full", "3d"), ("3D full + refine", "full", "refined_3d"),
           ("no FDA", "no_fda", "3d"), ("no RDA", "no_rda", "3d"))
"""(column, variant, report key). class-agnostic = feature distillation only, no vocabulary at training
(what the node trains), answered by the node's decision rule; + refine = the node's query-time RDA burst
on that field. full = feature + RDA + FDA trained for the scene's vocabulary (the paper's offline mode,
answered the same way); no FDA / no RDA = full minus one term. Every column: the same held-out views."""

RULES = {"relevancy": "cosine", "cosine": "relevancy"}


def diagnose(trainer, teacher, dataset, train_views: int = 4) -> dict:
    """The same field on ``train_views`` of its own training views (3D and 2D teacher against the ground
    truth there) and on the held-out views with the other decision rule."""
    idx = dataset.train_indices
    pick = [idx[round(k * (len(idx) - 1) / max(train_views - 1, 1))] for k in range(train_views)]
    on_train = dataclasses.replace(dataset, test_indices=pick, test_held_out=False)
    rep_train = evaluate(trainer, teacher, trainer.cfg, on_train, progress=False)
    other = RULES[trainer.cfg.query.decision_rule]
    rep_rule = evaluate(trainer, teacher, apply_flat(trainer.cfg, {"query.decision_rule": other}), dataset,
                        progress=False)
    return {"train_views": pick, "train_3d": rep_train["3d"], "train_2d": rep_train["2d_teacher"],
            "other_rule": other, "other_rule_3d": rep_rule["3d"]}


def run_scene(scene: str, args, base) -> dict:
    dataset = open_scene(f"synthetic:{scene},train={args.train},test={args.test},width={args.width},"
                         f"height={args.height},seed={args.seed}")
    reports = {}
    for variant in args.variants:
        hook = diagnose if args.diagnose else None
        reports[variant] = run_variant(dataset, base, variant, args.steps, None,
                                       refine=variant in ("feature_only", "full"), diagnose=hook)
        print(f"[{scene}/{variant}] 3D {100 * reports[variant]['3d']['paper_miou']:.1f} vs tiny 2D "
              f"{100 * reports[variant]['2d_teacher']['paper_miou']:.1f}", file=sys.stderr, flush=True)
    row = {"scene": scene, "seed": args.seed, "classes": list(dataset.class_names)}
    for column, variant, key in COLUMNS:
        if variant in reports and key in reports[variant]:
            row[column] = round(100 * reports[variant][key]["paper_miou"], 1)
    row["train_s"] = {v: round(r["train_s"], 1) for v, r in reports.items()}
    row["reports"] = {v: {k: r[k] for k in ("3d", "2d_teacher", "refined_3d", "diagnosis") if k in r}
                      for v, r in reports.items()}
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=str(Path(__file__).resolve().parents[1] / "models" / "tiny"))
    p.add_argument("--scenes", nargs="+", default=["room", "table", "clutter"])
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--height", type=int, default=72)
    p.add_argument("--train", type=int, default=16)
    p.add_argument("--test", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=["feature_only", "full", "no_fda", "no_rda"])
    p.add_argument("--diagnose", action="store_true", help="also the training-view / decision-rule runs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--notes", help="markdown file embedded after the tables (the written findings)")
    p.add_argument("--from-json", nargs="+", metavar="JSON",
                   help="train nothing: rewrite <out>.md (and with several files, <out>.json) from these "
                        "result files, rows in the order given (runs of the same steps, size and views)")
    p.add_argument("--out", default="bench/results/tiny_clip_method")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.from_json:
        result = merge_results([json.loads(Path(f).read_text()) for f in args.from_json])
    else:
        start = time.perf_counter()
        settings = {**BENCH_DEFAULTS, **tiny_teacher_settings(args.models)}
        base = build_config(None, [f"{k}={v}" for k, v in settings.items()] + args.set)
        result = {"command": "bench/tiny_clip_method.py " + " ".join(sys.argv[1:]), "rows": [],
                  "steps": args.steps, "size": [args.width, args.height], "views": [args.train, args.test]}
        for scene in args.scenes:  # written after every scene: a long run loses nothing to an interruption
            result["rows"].append(run_scene(scene, args, base))
            result["wall_s"] = round(time.perf_counter() - start, 1)
            write_json_and_md(args.out, result, markdown(result) + diagnosis_markdown(result))
    notes = Path(args.notes).read_text() if args.notes else ""
    write_json_and_md(args.out, result, markdown(result) + diagnosis_markdown(result) + notes)
    print(markdown(result))
    return 0


def merge_results(results: list[dict]) -> dict:
    """One result of several runs' results (rows concatenated; each run's command kept)."""
    setting = {(tuple(r["size"]), r["steps"], tuple(r["views"])) for r in results}
    if len(setting) != 1:
        raise SystemExit(f"--from-json: the runs differ in size/steps/views: {sorted(setting)}")
    if len(results) == 1:
        return results[0]
    merged = {k: v for k, v in results[0].items() if k not in ("command", "commands", "rows", "wall_s")}
    merged["commands"] = [c for r in results for c in r.get("commands", [r["command"]])]
    merged["rows"] = [row for r in results for row in r["rows"]]
    merged["wall_s"] = round(sum(r.get("wall_s", 0.0) for r in results), 1)
    return merged


def markdown(r: dict) -> str:
    cols = [c for c, _, _ in COLUMNS if any(c in row for row in r["rows"])]
    lines = ["# The method on the tiny CLIP + DINO (paper mIoU, %, held-out views)\n",
             "".join(f"    .venv/bin/python {c}\n" for c in r.get("commands", [r.get("command")])),
             f"{r['views'][0]} training + {r['views'][1]} held-out views per scene at "
             f"{r['size'][0]}x{r['size'][1]}, {r['steps']} steps, CPU; scenes the tiny models never saw "
             "(presets; their training used random scenes). " + " ".join(COLUMNS_DOC.split()) + "\n",
             "| scene | seed | " + " | ".join(cols) + " | best 3D - 2D |", "|---" * (len(cols) + 3) + "|"]
    for row in r["rows"]:
        cells = " | ".join(str(row.get(c, "-")) for c in cols)
        best = max(row[c] for c in cols if c in row and c != "tiny-CLIP 2D")
        lines.append(f"| {row['scene']} | {row['seed']} | {cells} | {best - row['tiny-CLIP 2D']:+.1f} |")
    return "\n".join(lines) + "\n"


COLUMNS_DOC = """Columns: *class-agnostic* = the field trained with feature distillation only (no
vocabulary at training, what the node trains), answered by the node's decision rule (zero-shot) or after
the node's query-time refine burst; *full* = feature + RDA + FDA trained for the scene's vocabulary (the
paper's offline mode); *no FDA* / *no RDA* = full minus that term, zero-shot."""


def _iou(scores: dict, name: str) -> str:
    return f"{100 * scores['per_class_iou'][name]:.1f}"


def diagnosis_markdown(r: dict) -> str:
    """Per scene: per-class IoU of every predictor, held-out and on training views, and the other rule."""
    out = []
    for row in r["rows"]:
        reps = row.get("reports", {})
        if not reps:
            continue
        base = reps.get("feature_only") or next(iter(reps.values()))
        heads, cols = ["2D held-out"], [base["2d_teacher"]]
        for v, rep in reps.items():
            heads.append(f"{v} held-out"), cols.append(rep["3d"])
            if "refined_3d" in rep:
                heads.append(f"{v}+refine"), cols.append(rep["refined_3d"])
        for v, rep in reps.items():
            d = rep.get("diagnosis")
            if d:
                heads.append(f"{v} {d['other_rule']} rule"), cols.append(d["other_rule_3d"])
        d = base.get("diagnosis")
        if d:
            heads += ["2D train views"] + [f"{v} train views" for v in reps if reps[v].get("diagnosis")]
            cols += [d["train_2d"]] + [rep["diagnosis"]["train_3d"] for rep in reps.values()
                                       if rep.get("diagnosis")]
        out += ["", f"### {row['scene']}, seed {row['seed']}: per-class IoU (paper metric, %)", "",
                "| class | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for name in row["classes"]:
            out.append(f"| {name} | " + " | ".join(_iou(s, name) for s in cols) + " |")
        out.append("| **mIoU** | " + " | ".join(f"**{100 * s['paper_miou']:.1f}**" for s in cols) + " |")
    if out:
        out = summary_markdown(r) + out
        out = ["", "## Diagnosis: per class, held-out vs training views, decision rule", "",
               "Training views: 4 of the field's own training views (evenly spaced), 3D and the 2D teacher "
               "against the ground truth there. *rule*: the same field answered with the other "
               "`query.decision_rule` (held-out views)."] + out
    return "\n".join(out) + "\n"


def summary_markdown(r: dict) -> list[str]:
    """One row per scene: the teacher and the class-agnostic field on held-out and on training views,
    the other decision rule, and what FDA and RDA change (full minus the ablation), mIoU points."""
    out = ["", "| scene | 2D held-out | 2D train views | 3D held-out | 3D train views | 3D other rule | "
           "FDA effect (full - no FDA) | RDA effect (full - no RDA) |", "|---" * 8 + "|"]
    for row in r["rows"]:
        reps = row.get("reports", {})
        fo = reps.get("feature_only", {})
        d = fo.get("diagnosis")
        if not d:
            continue
        m = lambda s: 100 * s["paper_miou"]  # noqa: E731
        fda = (f"{m(reps['full']['3d']) - m(reps['no_fda']['3d']):+.1f}" if {"full", "no_fda"} <= set(reps)
               else "-")
        rda = (f"{m(reps['full']['3d']) - m(reps['no_rda']['3d']):+.1f}" if {"full", "no_rda"} <= set(reps)
               else "-")
        out.append(f"| {row['scene']} | {m(fo['2d_teacher']):.1f} | {m(d['train_2d']):.1f} "
                   f"| {m(fo['3d']):.1f} | {m(d['train_3d']):.1f} "
                   f"| {m(d['other_rule_3d']):.1f} ({d['other_rule']}) | {fda} | {rda} |")
    return out + ["", "3D = the class-agnostic field (the node's mode), answered zero-shot."]


if __name__ == "__main__":
    sys.exit(main())
