for cfg in "$@"; do
  set -- $cfg
  TAG=$1; R=$2; E=$3
  for T in 0 1 2; do
    bash bench/results/issue14/tuning_s15/colour_filter/run_filter.sh $TAG $T query.mask_colour_filter_radius=$R query.mask_colour_filter_eps=$E
  done
done
