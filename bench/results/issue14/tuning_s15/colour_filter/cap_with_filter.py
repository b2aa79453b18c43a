"""Session 15, after adopting the colour filter: the floors' cap again, with the filter on (the adopted
0.03 / 1e-5 at cap 1.0 against ``GFCAP_*``: the same 21 saved tuning fields at cap 2.0 and 1.5).

    bash run_filter.sh GFCAP_C T query.relevancy_area_cap=C   # C = 2.0, 1.5; T = 0, 1, 2
    .venv/bin/python bench/results/issue14/tuning_s15/colour_filter/cap_with_filter.py > cap_with_filter.txt
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # bench/

from semantic_eval import compare_answers  # noqa: E402

HERE = Path(__file__).resolve().parent
answers = {"filter, cap 1.0": "GF_r0.03_e1e-5_", "filter, cap 1.5": "GFCAP_1.5_",
           "filter, cap 2.0": "GFCAP_2.0_"}
print("\n".join(compare_answers(answers, [HERE], "filter, cap 1.0")))
