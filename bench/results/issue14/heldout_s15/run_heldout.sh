# run_heldout.sh PART [OUT PREFIX]: the held-out fields saved in sessions 13 / 14 answered by --load with
# today's defaults; PART a = desks 0 2 4-11, b = table / clutter / room 0-1 and desks 28 29.
# OUT (this folder) and PREFIX (S15) name the result files; heldout_s15_filter used OUT
# bench/results/issue14/heldout_s15_filter, PREFIX S15F.
cd "$(dirname "$0")/../../../.."
O=${2:-bench/results/issue14/heldout_s15}
P=${3:-S15}
mkdir -p $O
TU="--tuning desk:1 desk:3 desk:16 desk:27 desk:35 desk:36 table:2"
case $1 in
a) .venv/bin/python bench/semantic_eval.py --load /tmp/s14/r05all --steps 600 $TU --variants full no_fda no_rda --threads 1 --scenes desk --seeds 0 2 4 5 6 7 8 9 10 11 --json $O/${P}_desk.json --md $O/${P}_desk.md ;;
b) .venv/bin/python bench/semantic_eval.py --load /tmp/s14/r05all --steps 600 $TU --variants full no_fda no_rda --threads 1 --scenes table clutter room --seeds 0 1 --json $O/${P}_table_clutter_room.json --md $O/${P}_table_clutter_room.md
   .venv/bin/python bench/semantic_eval.py --load /tmp/s14/h600_2829 --steps 600 $TU --variants full no_fda no_rda --threads 1 --scenes desk --seeds 28 29 --json $O/${P}_desk2829.json --md $O/${P}_desk2829.md ;;
esac
