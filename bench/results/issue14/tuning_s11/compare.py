"""The tuning table of session 11 from the JSON reports (tuning scenes only: desk seeds 1 and 3 with
trainer seeds 0-2, table seed 2 with trainer seeds 0 and 2; 600 steps, 160x120, shipped defaults but for
the named setting). Writes summary.md beside this file:

    python bench/results/issue14/tuning_s11/compare.py
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tuning_s10"))
sys.path.insert(0, str(HERE.parents[2]))  # bench/

from compare import table  # noqa: E402  (tuning_s10/compare.py)

SETTINGS = {  # label: (files, what ran)
    "POLY3": (sorted((HERE.parent / "tuning_s10").glob("POLY3_*.json")),
              "the shipped defaults (session 10's runs, `../tuning_s10/POLY3_*`)"),
    **{f"RES{w}": (sorted(HERE.glob(f"RES{w}_*.json")),
                   f"+ residual feature loss, weight {w} (`RES{w}_*`; 1.0 by `adhoc/residual_loss.py`, "
                   f"3.0 by `--set semantic.feature_residual_weight=3.0`: the same term)")
       for w in sorted({p.name.split("_")[0][3:] for p in HERE.glob("RES*_*.json")})},
}


def main() -> None:
    lines = table(SETTINGS, "bench/results/issue14/tuning_s11/compare.py")
    (HERE / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
