"""The README's measured figures, written from the JSON files the benchmarks and the demo wrote.

    .venv/bin/python scripts/readme_numbers.py          # rewrite the marked README blocks
    .venv/bin/python scripts/readme_numbers.py --check  # exit 1 when the README differs (a test runs this)

Every figure the README states about the demo or a benchmark lives between ``<!-- numbers:NAME -->`` and
``<!-- /numbers:NAME -->`` and is rendered here from ``bench/results/``; nobody types them. Regenerate the
JSON with the command each block names, then run this script.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- numbers:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /numbers:(?P=name) -->)", re.S)


def _load(name: str):
    path = RESULTS / name
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}"


def demo() -> str:
    d = _load("demo_cpu.json")
    w, h = d["resolution"]
    minutes, seconds = divmod(round(d["total_s"]), 60)
    return (
        "One run from a fresh clone on the 2-core CPU (`bash scripts/demo.sh --record "
        f"bench/results/demo_cpu.json`, 1-minute load average {d['loadavg_1min'][0]:.1f} at the start; "
        "above 1 means other work shared the two cores): "
        f"{d['frames_sent']} "
        f"frames at {w}×{h} streamed at 3 Hz, {d['keyframes']} keyframes, {d['iterations']} training "
        f"iterations ({d['semantic_iterations']} with the feature distillation), held-out PSNR "
        f"{d['psnr_db']:.1f} dB. The returned mask scores **{_pct(d['mask_miou_paper'])} mIoU "
        f"(paper metric), {_pct(d['mask_accuracy'])} % accuracy** on the held-out view; the synthetic "
        f"2D teacher that trained it scores {_pct(d['teacher_miou_paper'])} mIoU on the same view "
        f"({d['margin_points']:+.1f} points for 3D). The query took {d['query_latency_s']:.1f} s on the CPU "
        f"(cloud of {d['points'] // 1000}k "
        f"points + the {w}×{h} mask); {minutes} min {seconds:02d} s end to end.\n"
    )


def demo_runs() -> str:
    d = _load("demo_cpu_runs.json")
    rows = [
        f"| {r['run']} | {_pct(r['mask_miou_paper'])} | {_pct(r['teacher_miou_paper'])} | "
        f"{r['margin_points']:+.1f} | {r['iterations']} ({r['semantic_iterations']}) | {r['keyframes']} | "
        f"{r['query_latency_s']:.2f} s | {r['total_s']:.0f} s | {r['loadavg_1min'][0]:.1f} |"
        for r in d["runs"]
    ]
    return (
        "| demo run | 3D mask mIoU | 2D teacher mIoU | 3D − 2D | iterations (semantic) | keyframes | "
        "query (cloud + mask) | end to end | load at the start |\n|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n"
    )


def step_cost() -> str:
    d = _load("step_cost_cpu.json")
    rows = []
    for tree, s in d["summary"].items():
        ratios = "/".join(f"{r:.2f}" for r in s["semantic_over_geometry"])
        geometry = "/".join(f"{1000 * g:.0f}" for g in s["geometry_s_per_step"])
        semantic = "/".join(f"{1000 * g:.0f}" for g in s["semantic_s_per_step"])
        rows.append(f"| {tree} | {geometry} ms | {semantic} ms | **{ratios}×** |")
    return (
        f"Semantic vs geometry-only training step at the default config (`{d['command']}`, "
        f"{d['threads']} thread, one value per alternating process; 1-minute load average "
        f"{d['loadavg_1min_at_end']:.1f} of {d['cpu_count']} cores at the end, so compare the ratios, not "
        "the milliseconds, across runs):\n\n"
        "| code | geometry step | semantic step | semantic / geometry |\n|---|---|---|---|\n"
        + "\n".join(rows) + "\n"
    )


def stream() -> str:
    parts = []
    for preset in ("room", "table"):
        s = _load(f"stream_{preset}_160x120_120s.jsonl")[-1]["summary"]
        r = s["results"]["rgbd"]
        parts.append((preset, r["test_psnr"], 100.0 * r["test_depth_mae_m"], s["seconds"]))
    return (
        "streaming field quality (`stream.md`, `python bench/stream.py`): "
        + " / ".join(f"{p:.1f}" for _, p, _, _ in parts) + " dB and "
        + " / ".join(f"{m:.1f}" for _, _, m, _ in parts)
        + f" cm on held-out views of {' / '.join(n for n, *_ in parts)} after {parts[0][3]:.0f} s "
        "at 160×120\n"
    )


def tiny_clip_method() -> str:
    d = _load("tiny_clip_method_node_setting.json")
    cols = ("tiny-CLIP 2D", "3D zero-shot (class-agnostic)", "3D + refine (class-agnostic)", "no FDA",
            "no RDA")
    rows = [f"| {r['scene']} (seed {r['seed']}) | " + " | ".join(f"{r[c]:.1f}" for c in cols) + " |"
            for r in d["rows"]]
    w, h = d["size"]
    return (
        f"The method on the tiny models at the node's setting ({w}×{h}, {d['steps']} steps, "
        f"{d['views'][1]} held-out views; `bench/results/tiny_clip_method_node_setting.md`), paper mIoU:\n\n"
        "| scene | tiny-CLIP 2D | 3D zero-shot | 3D + refine | full, no FDA | full, no RDA |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


HELDOUT = "issue14/heldout_s16_cap15/heldout_summary.json"


def heldout() -> str:
    """Issue 14's held-out table: per scene and seed, the 2D teacher, the three variants, and the
    classes the teacher finds that the full 3D answer leaves below it (``bench/semantic_eval.py``'s own
    ``summary_rows`` and ``per_class``, so the README applies the bench's target rule, not a copy)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from semantic_eval import per_class, summary_rows  # torch and the package: only this block needs them

    reports = _load(HELDOUT)
    full = {(r["preset"], r["seed"]): r for r in reports if r["variant"] == "full"}
    rows = []
    for row in summary_rows(reports):
        iou = {c.name: c for c in per_class(full[(row["scene"], row["seed"])])}
        cells = [f"{row[v]:.1f}" if v in row else "-" for v in ("full", "no_fda", "no_rda")]
        below_text = ", ".join(f"{c} {_pct(iou[c].iou_3d)} vs {_pct(iou[c].iou_2d)}"
                               for c in row["classes_lost"]) or "none"
        rows.append(f"| {row['scene']} | {row['seed']} | {'yes' if row['tuning'] else 'no'} | "
                    f"{row['2d']:.1f} | " + " | ".join(cells) + f" | {below_text} |")
    steps, (w, h) = reports[0]["steps"], reports[0]["resolution"]
    return (
        f"Held-out views at the shipped defaults ({w}×{h}, {steps} steps, synthetic benchmark teacher; "
        f"`bench/results/{HELDOUT.replace('.json', '.md')}`, per-class tables there), paper mIoU:\n\n"
        "| scene | seed | used for tuning | 2D teacher | 3D zero-shot | no FDA | no RDA | "
        "classes the teacher finds (IoU >= 20) below it in 3D |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def query_depthless() -> str:
    d = _load("query_cpu_issue15.json")[0]
    q, s = d["depthless"], d["setup"]
    rows = [f"| none | {q['all_depth_points']} | | {q['all_depth_after_a_step_s']:.2f} | |"]
    for key in ("one_without_depth", "none_with_depth"):
        e = q[key]
        rows.append(f"| {e['keyframes_without_depth']} of {s['frames']} | {e['points']} | "
                    f"{e['first_query_s']:.2f} | **{e['after_a_step_kept_s']:.2f}** | "
                    f"{e['after_a_step_rendered_again_s']:.2f} |")
    return (
        "`python bench/query.py --steps 300 --points 300000 --threads 1 --test 1 --refine-time 0 --out "
        f"bench/results/query_cpu_issue15` ({d['device']}, {d['threads']} thread, {s['frames']} keyframes "
        f"{s['width']}x{s['height']}, "
        f"{s['steps']} training steps; `query_cpu_issue15.md`), the labeled cloud's query:\n\n"
        "| keyframes without depth | points | first query s | next query after a training step s "
        "| the same, rendered again at every query as before (then by the full render, slower still) s |\n"
        "|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n"
    )


RENDERERS = {"demo": demo, "demo_runs": demo_runs, "heldout": heldout, "query_depthless": query_depthless,
             "step_cost": step_cost, "stream": stream, "tiny_clip_method": tiny_clip_method}


def render(text: str) -> str:
    def fill(m: re.Match) -> str:
        name = m.group("name")
        if name not in RENDERERS:
            raise KeyError(f"README block '{name}' has no renderer in scripts/readme_numbers.py")
        return m.group(1) + RENDERERS[name]() + m.group(4)

    return BLOCK.sub(fill, text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="exit 1 if the README is not what the JSON says")
    args = p.parse_args(argv)
    text = README.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("README.md figures differ from bench/results: run scripts/readme_numbers.py",
                  file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
