"""Session 14: ``semantic.feature_residual_weight`` 3 (shipped) against 6 on the eighteen tuning fields
(desk 35 / 36 / 16 / 27 / 1 x trainer seeds 0-2, desk 3 x 0-1, table 2 x 0), at today's other defaults
(``rare_ray_fraction`` 0.5: the 3 column of desks 16 / 27 / 1 / 3 and table 2 is session 13's
``RARE05_*``, trained with that ``--set``, which is today's default).

    .venv/bin/python bench/results/issue14/tuning_s14/residual_compare.py > residual_compare.txt
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # bench/

from semantic_eval import classes_lost  # noqa: E402

HERE = Path(__file__).resolve().parent
S13 = HERE.parent / "tuning_s13"
FIELDS = ([("desk35_36", t) for t in range(3)] + [("desk16_27", t) for t in range(3)]
          + [("desk1", t) for t in range(3)] + [("desk3", t) for t in range(2)] + [("table2", 0)])


def baseline(name: str, t: int) -> Path:
    if name == "desk35_36":
        return HERE / f"shipped_tseed{t}_{name}.json"
    return S13 / f"RARE05_tseed{t}_{name}.json"


def rows(path: Path) -> dict:
    out = {}
    for rep in json.loads(path.read_text()):
        iou3 = rep["3d"]["per_class_iou"]
        below = [f"{c.name} {100 * c.iou_3d:.1f} < {100 * c.iou_2d:.1f}" for c in classes_lost(rep)]
        small = {n: 100 * iou3[n] for n in rep["classes"] if "ball" in n or "apple" in n}
        out[(rep["preset"], rep["seed"])] = (100 * rep["3d"]["paper_miou"], below, small, iou3)
    return out


totals = {"3": [], "6": []}
lost = {"3": 0, "6": 0}
worst_drop = (0.0, "")
for name, t in FIELDS:
    new = HERE / f"RES6_tseed{t}_{name}.json"
    if not new.exists():
        print(f"{name} trainer seed {t}: RES6 not run")
        continue
    a, b = rows(baseline(name, t)), rows(new)
    for key in a:
        if key not in b:
            print(f"{key[0]} {key[1]} trainer seed {t}: RES6 not run")
            continue
        (ma, la, sa, ia), (mb, lb, sb, ib) = a[key], b[key]
        totals["3"].append(ma)
        totals["6"].append(mb)
        lost["3"] += len(la)
        lost["6"] += len(lb)
        for c in ia:
            if 100 * (ia[c] - ib[c]) > worst_drop[0]:
                worst_drop = (100 * (ia[c] - ib[c]), f"{key[0]} {key[1]} t{t} {c}")
        small = ", ".join(f"{c} {sa[c]:.1f} -> {sb[c]:.1f}" for c in sa)
        print(f"{key[0]} {key[1]} trainer seed {t}: mIoU {ma:.1f} -> {mb:.1f}; {small}; below teacher: "
              f"{'; '.join(la) or 'none'} -> {'; '.join(lb) or 'none'}")
for k in totals:
    if totals[k]:
        print(f"residual weight {k}: mean mIoU {sum(totals[k]) / len(totals[k]):.1f} over {len(totals[k])} "
              f"fields, classes below their teacher {lost[k]}")
print(f"largest drop of one class from 3 to 6: {worst_drop[0]:.1f} ({worst_drop[1]})")
