#!/usr/bin/env bash
# Follow-up of docs/lab.md (MGMR-Net): is the null result a training-budget artefact? recon vs no_recon at
# r = 0.6 with twice the epochs (40, patience 10) of sweep.sh.
# Usage (repository root): bash plugins/mmcore-plugin-recon/experiments/lab/longer.sh OUT
set -euo pipefail
OUT=${1:-/tmp/lab/runs/mgmr_longer}
export OMP_NUM_THREADS=1
miss="missing.train=[{type: temporal, rate: 0.6}];missing.eval=[{type: temporal, rate: 0.6}]"
set -x
.venv-test/bin/mmcore sweep examples/lab/mgmr_recon.yaml --seeds 5 --jobs 1 --out "$OUT" --epochs 40 \
  --set train.patience=10 --variant "recon_r0.6:$miss" --variant "no_recon_r0.6:$miss;imputer={name: zero}"
