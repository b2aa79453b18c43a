"""Session 16: the three training-side candidates against the shipped defaults on the same 21 tuning
scenes x trainer seeds (the shipped answers: session 15's saved fields answered with exactly today's
query, ``../tuning_s15/colour_filter/GFCAP_1.5_*``).

    cd bench/results/issue14/tuning_s16 && ../../../../.venv/bin/python compare.py > compare.txt
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # bench/

from semantic_eval import compare_answers  # noqa: E402

HERE = Path(__file__).resolve().parent
answers = {"shipped": "GFCAP_1.5_", "DINO128": "DINO128_", "SIGMA005": "SIGMA005_", "TGF1": "TGF1_"}
folders = [HERE, HERE.parent / "tuning_s15" / "colour_filter"]
# each candidate against the shipped answers over the fields it has (SIGMA005 was stopped after trainer
# seed 0: it already had a class below its teacher, which the rule does not allow)
for label in ("DINO128", "SIGMA005", "TGF1"):
    pair = {"shipped": answers["shipped"], label: answers[label]}
    print("\n".join(compare_answers(pair, folders, "shipped")))
