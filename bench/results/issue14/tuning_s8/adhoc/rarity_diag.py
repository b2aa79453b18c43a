"""Share of rare-ray mass on each class for desk seed 3 (tuning) training views
(run from the repository root with .venv/bin/python)."""

import numpy as np
import torch
import torch.nn.functional as F

from ovs3d_ros.config import build_config
from ovs3d_ros.core.teachers.synthetic import SyntheticTeacher
from ovs3d_ros.data.scene_spec import open_scene


def token_rarity(dino, similarity, chunk=1024):
    """The DINO-token rarity tried first (replaced by colour bins): weight 1 / #alike tokens."""
    tokens = F.normalize(dino.reshape(-1, dino.shape[-1]).float(), dim=-1)
    counts = torch.empty(len(tokens))
    for start in range(0, len(tokens), chunk):
        counts[start : start + chunk] = (
            ((tokens[start : start + chunk] @ tokens.T) >= similarity).sum(1).float()
        )
    w = 1.0 / counts.clamp_min(1.0)
    return w / w.sum()


torch.set_num_threads(1)
cfg = build_config(None, ["teacher.kind=synthetic"])
d = open_scene("synthetic:desk,train=16,test=4,width=160,height=120,seed=3")
t = SyntheticTeacher(d.class_names, cfg.teacher)
for sim in (0.8, 0.9, 0.95):
    acc = np.zeros(len(d.class_names))
    area = np.zeros(len(d.class_names))
    for f in d.train_frames[:8]:
        dino = t.extract(f).dino
        w = token_rarity(dino, sim).reshape(dino.shape[:2]).numpy()
        ht, wt = w.shape
        lab = f.labels
        # per-pixel weight = token weight / pixels per token
        H, W = lab.shape
        ii = np.arange(H) * ht // H
        jj = np.arange(W) * wt // W
        cnt = np.zeros_like(w)
        np.add.at(cnt, (ii[:, None].repeat(W, 1), jj[None, :].repeat(H, 0)), 1)
        wp = (w / cnt)[ii][:, jj]
        wp = wp / wp.sum()
        for c in range(len(d.class_names)):
            acc[c] += wp[lab == c].sum()
            area[c] += (lab == c).mean()
    share = zip(d.class_names, acc, area, strict=True)
    print(sim, dino.shape, {n: f"{a / 8:.3f}/{b / 8:.4f}" for n, a, b in share})
