"""Session 15: the mask's colour filter (``query.mask_colour_filter_radius`` / ``_eps``) on the 21 saved
tuning fields, against the same fields answered without it (cap 1.0: ``../../tuning_s1{4,5}/cap/CAP1.0_*``).

    .venv/bin/python bench/results/issue14/tuning_s15/colour_filter/compare.py > compare.txt
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # bench/

from semantic_eval import compare_answers  # noqa: E402

HERE = Path(__file__).resolve().parent
folders = [HERE, HERE.parents[1] / "tuning_s14" / "cap", HERE.parent / "cap"]
answers = {"off": "CAP1.0_"} | {p.name.split("_tseed")[0]: p.name.split("tseed")[0]
                               for p in sorted(HERE.glob("GF_*tseed*.json"))}
print("\n".join(compare_answers(answers, folders, "off")))
