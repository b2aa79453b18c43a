# run_heldout_train.sh PART: the held-out set trained with the tuning winner of session 16
# (teacher.dino.min_short_side 128, ../tuning_s16/README.md), saved to /tmp/s16/heldout_dino128 so a
# later session answers it by --load. Variants full, no_fda, no_rda; PART a = desks 2 28 0 4-9, b = table /
# clutter / room 0-1, then desks 10 11 29 (27 fields each).
cd "$(dirname "$0")/../../../.."
O=bench/results/issue14/heldout_s16_dino128
TU="--tuning desk:1 desk:3 desk:16 desk:27 desk:35 desk:36 table:2"
S="--set teacher.dino.min_short_side=128 --save /tmp/s16/heldout_dino128"
case $1 in
a) .venv/bin/python bench/semantic_eval.py --steps 600 $TU --variants full no_fda no_rda --threads 1 --scenes desk --seeds 2 28 0 4 5 6 7 8 9 $S --json $O/D128_desk_a.json --md $O/D128_desk_a.md ;;
b) .venv/bin/python bench/semantic_eval.py --steps 600 $TU --variants full no_fda no_rda --threads 1 --scenes table clutter room --seeds 0 1 $S --json $O/D128_table_clutter_room.json --md $O/D128_table_clutter_room.md
   .venv/bin/python bench/semantic_eval.py --steps 600 $TU --variants full no_fda no_rda --threads 1 --scenes desk --seeds 10 11 29 $S --json $O/D128_desk_b.json --md $O/D128_desk_b.md ;;
esac
