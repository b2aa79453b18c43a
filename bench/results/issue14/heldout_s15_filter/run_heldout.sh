cd /work/main
O=bench/results/issue14/heldout_s15_filter
mkdir -p $O
TU="--tuning desk:1 desk:3 desk:16 desk:27 desk:35 desk:36 table:2"
case $1 in
a) .venv/bin/python bench/semantic_eval.py --load /tmp/s14/r05all --steps 600 $TU --variants full no_fda no_rda --threads 1 --scenes desk --seeds 0 2 4 5 6 7 8 9 10 11 --json $O/S15F_desk.json --md $O/S15F_desk.md ;;
b) .venv/bin/python bench/semantic_eval.py --load /tmp/s14/r05all --steps 600 $TU --variants full no_fda no_rda --threads 1 --scenes table clutter room --seeds 0 1 --json $O/S15F_table_clutter_room.json --md $O/S15F_table_clutter_room.md
   .venv/bin/python bench/semantic_eval.py --load /tmp/s14/h600_2829 --steps 600 $TU --variants full no_fda no_rda --threads 1 --scenes desk --seeds 28 29 --json $O/S15F_desk2829.json --md $O/S15F_desk2829.md ;;
esac
