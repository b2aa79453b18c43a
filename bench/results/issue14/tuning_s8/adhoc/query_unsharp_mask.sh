#!/bin/bash
# $1 ckpt $2 scene $3 label
cd /work/w10
for ws in "0 0.1" "0.5 0.1" "0.8 0.1" "0.8 0.2"; do set -- $1 $2 $3 $ws; 
 OVS_SURROUND_W=$4 OVS_SURROUND_FRAC=$5 OMP_NUM_THREADS=1 PYTHONPATH=/work/w10 /work/main/.venv/bin/python bench/reeval_query.py $1 $2 "" 2>&1 | grep "3D" | sed "s/^/$3 w=$4 f=$5 /"; done
