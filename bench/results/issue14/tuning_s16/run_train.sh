# run_train.sh TAG T VARIANT [KEY=VALUE...]: the seven tuning scenes (desks 1 3 16 27 35 36, table 2)
# trained at trainer seed T with extra --set's (today's other defaults), saved to /tmp/s16/tune/TAG_tT.
cd "$(dirname "$0")/../../../.."
O=bench/results/issue14/tuning_s16
TAG=$1; T=$2; V=$3; shift 3  # VARIANT is required: the --set pairs follow it
SETS=""
for kv in "$@"; do SETS="$SETS --set $kv"; done
TU="--tuning desk:1 desk:3 desk:16 desk:27 desk:35 desk:36 table:2"
.venv/bin/python bench/semantic_eval.py --steps 600 --variants $V --threads 1 $TU --scenes desk --seeds 1 3 16 27 35 36 --set trainer.seed=$T $SETS --save /tmp/s16/tune/${TAG}_t$T --json $O/${TAG}_tseed${T}_desk.json --md $O/${TAG}_tseed${T}_desk.md
.venv/bin/python bench/semantic_eval.py --steps 600 --variants $V --threads 1 $TU --scenes table --seeds 2 --set trainer.seed=$T $SETS --save /tmp/s16/tune/${TAG}_t$T --json $O/${TAG}_tseed${T}_table2.json --md $O/${TAG}_tseed${T}_table2.md
