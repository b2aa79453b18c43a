"""Session 16, tuning scenes only: the 2D synthetic teacher alone (no field) on all 20 views of the
seven tuning scenes, with its CLIP maps raw and filtered as ``semantic.target_colour_filter_radius``
would store them (``semantic_targets.colour_guided_maps``; radius in cells of the 53x40 maps).

    .venv/bin/python bench/results/issue14/tuning_s16/teacher_filter.py > teacher_filter.txt
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from ovs3d_ros.config import build_config  # noqa: E402
from ovs3d_ros.core import metrics  # noqa: E402
from ovs3d_ros.core.semantic_targets import colour_guided_maps  # noqa: E402
from ovs3d_ros.core.teachers import build_teacher, teacher_labels  # noqa: E402
from ovs3d_ros.data.scene_spec import open_scene  # noqa: E402

TUNING = [("desk", 1), ("desk", 3), ("desk", 16), ("desk", 27), ("desk", 35), ("desk", 36), ("table", 2)]
SETTINGS = [(0, 0.0), (1, 1e-4), (2, 1e-4), (2, 1e-3), (3, 1e-4)]  # (cells, eps); 0 = raw
SMALL = ("orange ball", "red apple", "white mug")

torch.set_num_threads(1)
cfg = build_config(None, ["teacher.kind=synthetic"])
totals = {s: [] for s in SETTINGS}
for preset, seed in TUNING:
    data = open_scene(f"synthetic:{preset},train=16,test=4,width=160,height=120,seed={seed}")
    names = list(data.class_names)
    teacher = build_teacher(cfg.teacher, "cpu", names)
    text = teacher.encode_text(names).float()
    preds = {s: [] for s in SETTINGS}
    for frame in data.frames:
        clip = teacher.extract(frame).clip
        for cells, eps in SETTINGS:
            maps = colour_guided_maps(clip, frame.rgb, cells / min(clip.shape[-2:]), eps).float()
            preds[(cells, eps)].append(teacher_labels(maps, text, frame.height, frame.width).numpy())
    gts = [frame.labels for frame in data.frames]
    line = f"{preset} {seed}:"
    for s in SETTINGS:
        score = metrics.paper_metrics([p.astype(np.int64) for p in preds[s]], gts, len(names))
        totals[s].append(score.miou)
        small = ", ".join(f"{n} {100 * v:.1f}" for n, v in zip(names, score.per_class_iou, strict=True)
                          if n in SMALL)
        line += f"\n  cells {s[0]} eps {s[1]:g}: mIoU {100 * score.miou:.1f} ({small})"
    print(line, flush=True)
print("mean over the seven scenes: " + "; ".join(
    f"cells {s[0]} eps {s[1]:g} {100 * np.mean(v):.1f}" for s, v in totals.items()))
