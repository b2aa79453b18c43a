"""Session 12's tuning table (the runs of this folder beside session 11's shipped defaults), written to
summary.md here by ``python bench/results/issue14/tuning_s12/compare.py``; runs and scenes as in
``../tuning_s10/compare.py``, whose ``table`` this uses."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tuning_s10"))
sys.path.insert(0, str(HERE.parents[2]))  # bench/

from compare import table  # noqa: E402  (tuning_s10/compare.py)

RES = "semantic.feature_residual_weight"
RDA = "semantic.rda_weight"
WHAT = {  # label: the settings that ran, besides the shipped defaults of session 11
    "RES6.0": {RES: 6.0}, "RES10.0": {RES: 10.0},
    "RDA3.0": {RDA: 3.0}, "RDA6.0": {RDA: 6.0}, "RDA3RES6": {RDA: 3.0, RES: 6.0},
}


def _settings() -> dict:
    s11 = HERE.parent / "tuning_s11"
    settings = {"RES3.0": (sorted(s11.glob("RES3.0_*.json")),
                           "the shipped defaults of session 11 (its runs, `../tuning_s11/RES3.0_*`)")}
    for label in sorted({p.name.split("_")[0] for p in HERE.glob("*_tseed*.json")}):
        sets = " ".join(f"--set {key}={value}" for key, value in WHAT[label].items())
        settings[label] = (sorted(HERE.glob(f"{label}_*.json")), f"`{sets}`")
    return settings


def main() -> None:
    lines = table(_settings(), "bench/results/issue14/tuning_s12/compare.py")
    (HERE / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
