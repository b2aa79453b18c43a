"""Ball pixels on training views: rendered feature vs the field's feature AT the measured surface point
(depth), vs the target. Tells compositing/geometry loss from field-fit loss."""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from saved_field import parse_and_load

from ovs3d_ros.config import apply_flat
from ovs3d_ros.core.camera import generate_rays
from ovs3d_ros.core.query import Segmenter
from ovs3d_ros.core.semantic_targets import feature_target_weights

args, dataset, trainer, teacher, cfg = parse_and_load(__doc__)
names = list(dataset.class_names)
text = teacher.encode_text(names).float()
seg = Segmenter(trainer, teacher, apply_flat(cfg, {"query.mask_max_side": 640}))
field = trainer.field
acc = {}
for frame in dataset.train_frames[::3]:
    with torch.no_grad():
        img = seg.render_mask_view(frame.intrinsics, frame.pose)
        lat = img["latent"].reshape(-1, img["latent"].shape[-1])
        op = img["opacity"].reshape(-1)
        rend = F.normalize(field.expand_feature(lat, op), dim=-1)
        v, u = np.mgrid[0 : frame.height, 0 : frame.width]
        pix = torch.from_numpy(np.stack([u.reshape(-1), v.reshape(-1)], 1)).float()
        o, d = generate_rays(frame.intrinsics, frame.pose, pix)
        depth = torch.from_numpy(frame.depth.reshape(-1)).float()
        pts = o + d * depth[:, None]
        at = F.normalize(field.expand_feature(field.semantic_at(pts), torch.ones(len(pts))), dim=-1)
        rdepth = img["depth"].reshape(-1) if "depth" in img else None
        clip = teacher.extract(frame).clip.float()
        s, dd, h, w = clip.shape
        i = torch.from_numpy(((v.reshape(-1) + 0.5) * h / frame.height).astype(np.int64)).clamp(0, h - 1)
        j = torch.from_numpy(((u.reshape(-1) + 0.5) * w / frame.width).astype(np.int64)).clamp(0, w - 1)
        targets = clip[:, :, i, j].permute(2, 0, 1)
        sel = img["selection"].reshape(len(lat), -1)
        tw = feature_target_weights(cfg, sel, targets)
        target = F.normalize(torch.bmm(tw.unsqueeze(1), targets).squeeze(1), dim=-1)
    lab = frame.labels.reshape(-1)
    for c, n in enumerate(names):
        m = torch.from_numpy(lab == c)
        if m.sum() == 0:
            continue
        row = np.array(
            [
                float((target[m] @ text[c]).mean()),
                float((rend[m] @ text[c]).mean()),
                float((at[m] @ text[c]).mean()),
                float((rdepth[m] - depth[m]).abs().median()) if rdepth is not None else -1,
                float(m.sum()),
            ]
        )
        acc.setdefault(n, []).append(row)
print(f"{'class':<15} target  render  at_surface  |depth err| px")
for n, rows in acc.items():
    r = np.array(rows)
    wts = r[:, 4] / r[:, 4].sum()
    print(
        f"{n:<15} {np.dot(wts, r[:, 0]):.3f}  {np.dot(wts, r[:, 1]):.3f}   "
        f"{np.dot(wts, r[:, 2]):.3f}      {np.dot(wts, r[:, 3]):.3f}  {r[:, 4].sum():.0f}"
    )
