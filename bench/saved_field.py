"""The command line of the benches that re-examine a field saved by ``bench/semantic_eval.py --save``
(``small_objects.py``, ``small_object_trace.py``, ``reeval_query.py``): the checkpoint, the scene spec
it was trained on, an optional JSON output, one torch thread; returns them loaded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ovs3d_ros.core.model_files import load_model  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402


def parse_and_load(description: str, add_arguments=None):
    """-> (args, dataset, trainer, teacher, cfg). ``add_arguments(parser)`` adds a bench's own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("ckpt")
    parser.add_argument("scene")
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = open_scene(args.scene)
    trainer, teacher, cfg, _ = load_model(args.ckpt, device="cpu")
    return args, dataset, trainer, teacher, cfg
