"""Session 14: the floors' cap (``query.relevancy_area_cap``) 2.0 (shipped) / 1.5 / 1.0 on the same saved
tuning fields (``shipped_*`` trained with ``--save``; ``CAP*`` the same fields answered by ``--load``).

    .venv/bin/python bench/results/issue14/tuning_s14/cap/cap_compare.py > cap_compare.txt

Further folders of the same files may be named on the command line (session 15: ``../../tuning_s15/cap``);
their fields are pooled with this folder's.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # bench/

from semantic_eval import compare_answers  # noqa: E402

HERE = Path(__file__).resolve().parent
answers = {"cap 2.0": "shipped_", "cap 1.5": "CAP1.5_", "cap 1.0": "CAP1.0_"}
print("\n".join(compare_answers(answers, [HERE] + [Path(arg) for arg in sys.argv[1:]], "cap 2.0")))
