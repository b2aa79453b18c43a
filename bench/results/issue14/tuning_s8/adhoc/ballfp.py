"""Where do a class's predicted pixels go? held-out views of a saved field: confusion row/col of CLASS."""

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from saved_field import parse_and_load

from ovs3d_ros.config import apply_flat
from ovs3d_ros.core.query import Segmenter

args, dataset, trainer, teacher, cfg = parse_and_load(__doc__)
names = list(dataset.class_names)
seg = Segmenter(trainer, teacher, apply_flat(cfg, {"query.mask_max_side": 640}))
for cname in ("orange ball", "red apple"):
    c = names.index(cname)
    fp_where = np.zeros(len(names) + 1)
    fn_to = np.zeros(len(names) + 1)
    dist = []
    tp = 0
    for f in dataset.test_frames:
        res = seg.segment(names, camera=(f.intrinsics, f.pose), cloud=False)
        lab = res.label_image.astype(np.int64)
        gt = f.labels.astype(np.int64)
        pred = lab == c
        pos = gt == c
        tp += int((pred & pos).sum())
        g = np.where(gt >= len(names), len(names), gt)
        lab_k = np.where(lab >= len(names), len(names), lab)
        np.add.at(fp_where, g[pred & ~pos], 1)
        np.add.at(fn_to, lab_k[pos & ~pred], 1)
        if pos.any() and (pred & ~pos).any():
            d = ndimage.distance_transform_edt(~pos)
            dist.extend(d[pred & ~pos].tolist())
    dist = np.array(dist)
    print(
        cname,
        "TP",
        tp,
        "FP on:",
        {(names + ["unl"])[i]: int(v) for i, v in enumerate(fp_where) if v},
        "FN went to:",
        {(names + ["unl"])[i]: int(v) for i, v in enumerate(fn_to) if v},
        "FP dist px: <=3 %d, 3-10 %d, >10 %d"
        % ((dist <= 3).sum(), ((dist > 3) & (dist <= 10)).sum(), (dist > 10).sum()),
    )
