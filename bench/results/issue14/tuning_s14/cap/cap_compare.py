"""Session 14: the floors' cap (``query.relevancy_area_cap``) 2.0 (shipped) / 1.5 / 1.0 on the same saved
tuning fields (``shipped_*`` trained with ``--save``; ``CAP*`` the same fields answered by ``--load``).

    .venv/bin/python bench/results/issue14/tuning_s14/cap/cap_compare.py > cap_compare.txt

Further folders of the same files may be named on the command line (session 15: ``../../tuning_s15/cap``);
their fields are pooled with this folder's.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # bench/

from semantic_eval import classes_lost  # noqa: E402

HERE = Path(__file__).resolve().parent
FOLDERS = [HERE] + [Path(arg) for arg in sys.argv[1:]]
answers = {"2.0": "shipped_", "1.5": "CAP1.5_", "1.0": "CAP1.0_"}
fields: dict[str, dict] = {cap: {} for cap in answers}
for cap, prefix in answers.items():
    for path in sorted(p for folder in FOLDERS for p in folder.glob(f"{prefix}tseed*.json")):
        tseed = path.name[len(prefix):].split("_")[0]
        for rep in json.loads(path.read_text()):
            fields[cap][(rep["preset"], rep["seed"], tseed)] = rep
common = sorted(set.intersection(*(set(f) for f in fields.values())))
for cap in answers:
    mious, below, drops = [], [], []
    for key in common:
        rep, base = fields[cap][key], fields["2.0"][key]
        iou3, iou2 = rep["3d"]["per_class_iou"], rep["2d_teacher"]["per_class_iou"]
        mious.append(100 * rep["3d"]["paper_miou"])
        below += [f"{key[0]} {key[1]} {key[2]} {c.name} {100 * c.iou_3d:.1f} < {100 * c.iou_2d:.1f}"
                  for c in classes_lost(rep)]
        drops += [(100 * (base["3d"]["per_class_iou"][n] - iou3[n]), f"{key} {n}") for n in rep["classes"]]
    worst = max(drops)
    print(f"cap {cap}: {len(common)} fields, mean mIoU {sum(mious) / len(mious):.1f}, classes below their "
          f"teacher {len(below)} ({'; '.join(below) or 'none'}); largest class drop vs 2.0 {worst[0]:.1f} "
          f"({worst[1]})")
