# Confirmation fields for the cap candidate: tuning desks 1, 3 and table 2 x trainer seeds 0-2
# (shipped defaults, saved), then the same fields answered at cap 1.5 and 1.0 by --load.
cd "$(dirname "$0")/../../../../.."
O=bench/results/issue14/tuning_s15/cap
mkdir -p $O
TU="--tuning desk:1 desk:3 desk:16 desk:27 desk:35 desk:36 table:2"
T=$1
.venv/bin/python bench/semantic_eval.py --steps 600 --variants full --threads 1 $TU --scenes desk --seeds 1 3 --set trainer.seed=$T --save /tmp/s15/tune/t$T --json $O/shipped_tseed${T}_desk1_3.json --md $O/shipped_tseed${T}_desk1_3.md
.venv/bin/python bench/semantic_eval.py --steps 600 --variants full --threads 1 $TU --scenes table --seeds 2 --set trainer.seed=$T --save /tmp/s15/tune/t$T --json $O/shipped_tseed${T}_table2.json --md $O/shipped_tseed${T}_table2.md
for C in 1.5 1.0; do
.venv/bin/python bench/semantic_eval.py --load /tmp/s15/tune/t$T --steps 600 --variants full --threads 1 $TU --scenes desk --seeds 1 3 --set trainer.seed=$T --set query.relevancy_area_cap=$C --json $O/CAP${C}_tseed${T}_desk1_3.json --md $O/CAP${C}_tseed${T}_desk1_3.md
.venv/bin/python bench/semantic_eval.py --load /tmp/s15/tune/t$T --steps 600 --variants full --threads 1 $TU --scenes table --seeds 2 --set trainer.seed=$T --set query.relevancy_area_cap=$C --json $O/CAP${C}_tseed${T}_table2.json --md $O/CAP${C}_tseed${T}_table2.md
done
