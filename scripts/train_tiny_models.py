#!/usr/bin/env python3
"""Train the project's tiny CLIP and tiny DINO (see ovs3d_ros/core/teachers/tiny_training.py) into
models/tiny/, with a training log and manifest beside the checkpoints. Deterministic for a seed.

    python scripts/train_tiny_models.py                      # the committed models (seed 0)
    python scripts/train_tiny_models.py --out /tmp/m --clip-steps 5 --dino-steps 2 --clip-scenes 4
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ovs3d_ros.core.teachers.tiny_training import TinyTrainingConfig, train_all  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models" / "tiny"))
    for f in dataclasses.fields(TinyTrainingConfig):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    args = p.parse_args(argv)
    names = [f.name for f in dataclasses.fields(TinyTrainingConfig)]
    cfg = TinyTrainingConfig(**{name: getattr(args, name) for name in names})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "training_log.txt", "w") as log_file:
        def log(line: str) -> None:
            print(line, flush=True)
            log_file.write(line + "\n")
            log_file.flush()

        log(f"config: {dataclasses.asdict(cfg)}")
        train_all(cfg, out, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
