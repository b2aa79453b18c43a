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
present = {k: v for k, v in answers.items() if any(list(f.glob(f"{v}tseed*.json")) for f in folders)}
print("\n".join(compare_answers(present, folders, "shipped")))
