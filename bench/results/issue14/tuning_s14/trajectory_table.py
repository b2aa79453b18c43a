"""Side by side: the trajectory runs' (``trajectory.py``) mIoU / ball / apple per evaluated step.

    .venv/bin/python bench/results/issue14/tuning_s14/trajectory_table.py > trajectory_table.md
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
for seed in (27, 36):
    runs = {name: json.loads((HERE / f"trajectory_desk{seed}_t0{suffix}.json").read_text())
            for name, suffix in (("full", ""), ("no FDA", "_no_fda"))}
    teacher = runs["full"]["teacher"]
    print(f"### desk {seed}, trainer seed 0 (teacher: ball {teacher['orange ball']}, apple "
          f"{teacher['red apple']})\n")
    print("| step | " + " | ".join(f"{n}: mIoU / ball / apple" for n in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for i, row in enumerate(runs["full"]["rows"]):
        cells = [f"{r['rows'][i]['miou']} / {r['rows'][i]['orange ball']} / {r['rows'][i]['red apple']}"
                 for r in runs.values()]
        print(f"| {row['step']} | " + " | ".join(cells) + " |")
    print()
