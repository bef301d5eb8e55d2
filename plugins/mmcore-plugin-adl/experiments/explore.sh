#!/usr/bin/env bash
# Validation-only exploration of the ADL knobs (vision victim, settings A and B at p' = 0.5, 3 seeds).
# The choice is made on results.json's best_valid (validation MAE); test numbers are not looked at
# for it. Run from the repository root:
#   plugins/mmcore-plugin-adl/experiments/explore.sh runs/adl_explore
#   python plugins/mmcore-plugin-adl/experiments/valid_table.py runs/adl_explore
set -euo pipefail
out=${1:?sweep directory}
shift
op() { echo "{type: victim, modality: vision, rate: $1}"; }
declare -A settings=(
  [A]="missing.train=[];missing.eval=[$(op 1.0)]"
  [B0.5]="missing.train=[$(op 0.5)];missing.eval=[$(op 0.5)]"
)
declare -A knobs=(
  [default]=""
  [imputed]="contrast: imputed"
  [sub0.3]="substitute_rate: 0.3"
  [imputed_sub0.3]="contrast: imputed, substitute_rate: 0.3"
  [reg5]="reg: 5.0"
  [w2]="window: 2"
)
args=()
for s in A B0.5; do
  for k in default imputed sub0.3 imputed_sub0.3 reg5 w2; do
    extra=${knobs[$k]}
    args+=(--variant "$s-$k:${settings[$s]};imputer={name: adl, params: {present: audio, victim: vision${extra:+, $extra}}}")
  done
done
exec nice -n 10 mmcore sweep examples/mm_align.yaml --seeds 3 --out "$out" "${args[@]}" "$@"
