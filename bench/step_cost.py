"""Cost of a semantic training step against a geometry-only one, at the node's default config.

    .venv/bin/python bench/step_cost.py                      # this tree only
    .venv/bin/python bench/step_cost.py --against 5a18c3d    # and an older commit, side by side

The scene and teacher are the demo's (room, 36 views at 160x120, the synthetic benchmark teacher,
keyframe thresholds of ``ovs3d_ros.ros.demo``); every other setting is ``Config()``'s default. Each tree
runs in its own process (``--against`` checks the commit out into a temporary folder) and the processes
alternate, so both see the same machine load. Inside a process, blocks of geometry-only steps (the
keyframes' teacher features hidden from the sampler) alternate with blocks of semantic steps (feature
distillation on) on the same trainer; the ratio of their median block times is the semantic overhead.
Writes ``bench/results/step_cost_cpu.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(rounds: int, block: int, threads: int) -> dict:
    """Runs inside the tree under test (its ``ovs3d_ros`` first on sys.path)."""
    import numpy as np
    import torch

    from ovs3d_ros.config import Config
    from ovs3d_ros.core.teachers import build_teacher
    from ovs3d_ros.core.trainer import Trainer
    from ovs3d_ros.data.synthetic import SyntheticScene

    torch.set_num_threads(threads)
    data = SyntheticScene("room", seed=0).make_frames(36, 1, 160, 120)
    cfg = Config()
    cfg.device = "cpu"
    cfg.teacher.kind = "synthetic"
    cfg.teacher.synthetic.class_names = list(data.class_names)
    cfg.keyframes.min_translation_m, cfg.keyframes.min_rotation_deg = 0.05, 5.0  # the demo's
    cfg.trainer.semantic_start_step = 0
    teacher = build_teacher(cfg.teacher, "cpu", class_names=list(data.class_names))
    trainer = Trainer(cfg, "cpu", teacher)
    for i in data.train_indices:
        trainer.add_frame(data.frames[i])
    buffer = trainer.keyframes
    with_features = buffer.has_features

    def block_time(semantic: bool) -> float:
        buffer.has_features = with_features if semantic else (lambda: False)
        start = time.perf_counter()
        for _ in range(block):
            result = trainer.step()
        assert ("feature" in result) == semantic, result
        return (time.perf_counter() - start) / block

    block_time(False), block_time(True)  # warm-up: allocator, occupancy, first-use paths
    geometry, semantic = [], []
    for _ in range(rounds):
        geometry.append(block_time(False))
        semantic.append(block_time(True))
    g, s = float(np.median(geometry)), float(np.median(semantic))
    return {
        "keyframes": len(buffer),
        "geometry_s_per_step": round(g, 4),
        "semantic_s_per_step": round(s, 4),
        "semantic_over_geometry": round(s / g, 3),
        "steps_per_block": block,
        "rounds": rounds,
    }


def run_tree(tree: Path, args) -> dict:
    code = (
        f"import json, sys; sys.path.insert(0, {str(tree)!r}); sys.path.insert(0, {str(ROOT / 'bench')!r}); "
        f"import step_cost; print(json.dumps(step_cost.measure({args.rounds}, {args.block}, {args.threads})))"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"measurement in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def git(*argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", default="", help="an older commit to measure side by side")
    p.add_argument("--repeats", type=int, default=2, help="processes per tree, alternating")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the node's default)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "step_cost_cpu.json"))
    args = p.parse_args()
    trees = {"this tree": ROOT}
    with tempfile.TemporaryDirectory(prefix="ovs3d_step_cost_") as tmp:
        if args.against:
            old = Path(tmp) / "old"
            old.mkdir()
            tar = subprocess.run(["git", "archive", args.against], cwd=ROOT, check=True, capture_output=True)
            subprocess.run(["tar", "-x", "-C", str(old)], input=tar.stdout, check=True)
            trees[f"commit {git('rev-parse', '--short', args.against)}"] = old
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for repeat in range(args.repeats):
            for name, tree in trees.items():
                row = run_tree(tree, args)
                runs[name].append(row)
                print(json.dumps({"tree": name, "repeat": repeat, **row}), flush=True)
    summary = {
        name: {
            "semantic_over_geometry": [r["semantic_over_geometry"] for r in rows],
            "geometry_s_per_step": [r["geometry_s_per_step"] for r in rows],
            "semantic_s_per_step": [r["semantic_s_per_step"] for r in rows],
        }
        for name, rows in runs.items()
    }
    result = {
        "command": "python bench/step_cost.py" + (f" --against {args.against}" if args.against else ""),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "threads": args.threads,
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "summary": summary,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"written": args.out, "summary": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
