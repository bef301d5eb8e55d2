#!/usr/bin/env bash
# ADL vs zero-fill vs mean-fill on ICT-MMMO, settings A and B, one victim per call:
#   plugins/mmcore-plugin-adl/experiments/sweep.sh vision runs/adl_vision [extra mmcore sweep args]
#   plugins/mmcore-plugin-adl/experiments/sweep.sh audio  runs/adl_audio
# Run from the repository root. Every cell is examples/mm_align.yaml with the imputer and the
# missing protocol replaced; everything else (encoders, fuser, head, optimiser, epochs, model
# selection on validation) is the same for the three imputers.
#   A<p>  : train victim rate p              eval victim rate 1.0   (the paper's setting A, Fig. 1c; p' = RATES_A)
#   B<p>  : train victim rate p              eval victim rate p     (the paper's setting B, Fig. 1d; p' = RATES_B)
#   1b    : train []                         eval victim rate 1.0   (Fig. 1b: victim complete in training; not one
#                                                                     of the paper's settings; called "A" before 2026-12-01)
set -euo pipefail
victim=${1:?victim modality (vision or audio)}
out=${2:?sweep directory}
shift 2
case $victim in
  vision) present=audio ;;
  audio) present=vision ;;
  *) echo "victim must be vision or audio" >&2; exit 2 ;;
esac
SEEDS=${SEEDS:-3}
RATES_B=${RATES_B:-"0.3 0.5 0.7"}
RATES_A=${RATES_A:-"0.5"}
ADL_PARAMS=${ADL_PARAMS:-""}   # extra params of the `adl` variant, e.g. "window: 4, reg: 0.5"
# adl       : the recipe (contrast imputed, substitute_rate 0.3: chosen on validation by explore.sh)
# adl_paper : the paper's configuration (Eq. 16 between Z1 and Z2, no substitution)

imputers=(
  "adl:imputer={name: adl, params: {present: $present, victim: $victim, contrast: imputed, substitute_rate: 0.3${ADL_PARAMS:+, $ADL_PARAMS}}}"
  "adl_paper:imputer={name: adl, params: {present: $present, victim: $victim, contrast: modalities, substitute_rate: 0.0}}"
  "zero:imputer={name: zero}"
  "mean:imputer={name: mean}"
)
op() { echo "{type: victim, modality: $victim, rate: $1}"; }
settings=("1b:missing.train=[];missing.eval=[$(op 1.0)]")
for p in $RATES_A; do settings+=("A$p:missing.train=[$(op "$p")];missing.eval=[$(op 1.0)]"); done
for p in $RATES_B; do settings+=("B$p:missing.train=[$(op "$p")];missing.eval=[$(op "$p")]"); done

args=()
for s in "${settings[@]}"; do
  for i in "${imputers[@]}"; do
    args+=(--variant "${s%%:*}-${i%%:*}:${s#*:};${i#*:}")
  done
done
exec nice -n 10 mmcore sweep examples/mm_align.yaml --seeds "$SEEDS" --out "$out" "${args[@]}" "$@"
