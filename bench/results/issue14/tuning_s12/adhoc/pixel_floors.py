"""Ad-hoc (session 12): the small classes' floors taken over rendered keyframe pixels instead of the
labeled cloud's points, as first measured. The library's first floors (``query.relevancy_area_cap``)
used the points, whose share per class is not the teacher's pixel share; on held-out desk 7 that floor
sat above every pixel of a ball. Here the floor of class c is the (1 - cap_c) quantile of its cosine
over the surface pixels (opacity >= ``query.min_surface_opacity``) of the keyframes the teacher's areas
were taken on, rendered at ``PIXEL_FLOORS_SIDE`` (env, default 40) pixels on the long side: the same
pixels, in the same domain as a mask. It wraps ``bench/reeval_query.py``; the library's
``Segmenter._class_floors`` has computed the same since (desk 1 t0 at cap 2: 74.3 both), so today it
only reproduces the ``pixel_floors*`` runs.

    .venv/bin/python bench/results/issue14/tuning_s12/adhoc/pixel_floors.py CKPT SCENE \
        "query.relevancy_area_cap=0" "query.relevancy_area_cap=2" --json OUT.json
"""

import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[5]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import reeval_query  # noqa: E402

from ovs3d_ros.core import query as query_module  # noqa: E402
from ovs3d_ros.core.query import AREA_KEYFRAMES, column_quantiles, latent_cosines  # noqa: E402

SIDE = int(os.environ.get("PIXEL_FLOORS_SIDE", "40"))
_cache: dict = {}


def pixel_floors(self, text, cap, points, timing):
    keyframes = self._keyframes()
    with_clip = [k for k, kf in enumerate(keyframes) if kf.clip is not None]
    picked = with_clip[::max(1, -(-len(with_clip) // AREA_KEYFRAMES))]
    key = (id(self.trainer.query_field), self.trainer.step_count, tuple(picked))
    if key not in _cache:
        rows = []
        head = self.trainer.query_field.feature_head
        for k in picked:
            kf = keyframes[k]
            scale = SIDE / max(kf.intrinsics.width, kf.intrinsics.height)
            w, h = max(1, round(kf.intrinsics.width * scale)), max(1, round(kf.intrinsics.height * scale))
            with torch.no_grad():
                img = self.render_mask_view(kf.intrinsics.scaled(w, h), np.asarray(kf.pose, dtype=np.float64),
                                            self._measured_depth(k, keyframes, w, h))
                latent = img["latent"].reshape(-1, img["latent"].shape[-1])
                opacity = img["opacity"].reshape(-1)
                surface = opacity >= self.cfg.query.min_surface_opacity
                latent, opacity = latent[surface], opacity[surface]
                norm = query_module.expanded_norm(latent, head.weight, head.bias, opacity)
                cosines, count = latent_cosines(latent, norm, head.weight, head.bias, text, opacity=opacity)
                rows += [cosines(i)[0] for i in range(count)]
        _cache.clear()
        _cache[key] = torch.cat(rows).float()
    return column_quantiles(_cache[key], 1.0 - cap).to(text.device)


query_module.Segmenter._class_floors = pixel_floors

if __name__ == "__main__":
    sys.argv[0] = "bench/reeval_query.py"
    sys.exit(reeval_query.main())
