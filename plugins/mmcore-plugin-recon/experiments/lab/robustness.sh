#!/usr/bin/env bash
# Robustness checks of docs/lab.md (MGMR-Net): the sweep of sweep.sh at the rates where the paper says
# reconstruction should help most, on another generator draw and on another knob value.
# Usage (repository root): bash plugins/mmcore-plugin-recon/experiments/lab/robustness.sh OUT_PREFIX
#   OUT_PREFIX-seed1   data.params.data_seed=1 (another draw of language, clips and labels)
#   OUT_PREFIX-mis05   data.params.misalignment=0.5 (the generator's default offsets and warps: word
#                      boundaries no longer every 3 frames, 3 frames per word on average)
set -euo pipefail
P=${1:-/tmp/lab/runs/mgmr_rob}
sweep=$(dirname "$0")/sweep.sh
RATES="0.6 0.9" bash "$sweep" "$P-seed1" --set data.params.data_seed=1
RATES="0.6 0.9" bash "$sweep" "$P-mis05" --set data.params.misalignment=0.5
