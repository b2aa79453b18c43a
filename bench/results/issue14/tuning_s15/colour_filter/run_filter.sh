# run_filter.sh TAG T KEY=VALUE...: the 21 saved tuning fields of trainer seed T answered with extra --set's
cd "$(dirname "$0")/../../../../.."
O=bench/results/issue14/tuning_s15/colour_filter
mkdir -p $O
TAG=$1; T=$2; shift 2
SETS=""
for kv in "$@"; do SETS="$SETS --set $kv"; done
TU="--tuning desk:1 desk:3 desk:16 desk:27 desk:35 desk:36 table:2"
D14=/tmp/s14/tune/t$T; [ $T = 0 ] && D14=/tmp/s15/t14_0  # t14_0 links /tmp/s14/tune/a and b
.venv/bin/python bench/semantic_eval.py --load $D14 --steps 600 --variants full --threads 1 $TU --scenes desk --seeds 16 27 35 36 --set trainer.seed=$T $SETS --json $O/${TAG}_tseed${T}_desk16_27_35_36.json --md $O/${TAG}_tseed${T}_desk16_27_35_36.md
.venv/bin/python bench/semantic_eval.py --load /tmp/s15/tune/t$T --steps 600 --variants full --threads 1 $TU --scenes desk --seeds 1 3 --set trainer.seed=$T $SETS --json $O/${TAG}_tseed${T}_desk1_3.json --md $O/${TAG}_tseed${T}_desk1_3.md
.venv/bin/python bench/semantic_eval.py --load /tmp/s15/tune/t$T --steps 600 --variants full --threads 1 $TU --scenes table --seeds 2 --set trainer.seed=$T $SETS --json $O/${TAG}_tseed${T}_table2.json --md $O/${TAG}_tseed${T}_table2.md
