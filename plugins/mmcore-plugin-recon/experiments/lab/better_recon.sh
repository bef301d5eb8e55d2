#!/usr/bin/env bash
# Follow-up of docs/lab.md (MGMR-Net): does a BETTER reconstruction convert into MAE at r = 0.6, where the
# oracle same-word fill helps? Options of mamba_reconstruction that are not the paper's defaults:
#   recon_bi       bidirectional: true (a masked frame is rebuilt from both sides of its word)
#   recon_bi_a10   bidirectional: true and α = 10 per modality (the loss weighted up 10x)
# Compare with recon / no_recon at r = 0.6 of sweep.sh (same data, same seeds); OUT-ep40: recon_bi_a10 at 40
# epochs, to compare with longer.sh.
# Usage (repository root): bash plugins/mmcore-plugin-recon/experiments/lab/better_recon.sh OUT
set -euo pipefail
OUT=${1:-/tmp/lab/runs/mgmr_better}
export OMP_NUM_THREADS=1
miss="missing.train=[{type: temporal, rate: 0.6}];missing.eval=[{type: temporal, rate: 0.6}]"
set -x
.venv-test/bin/mmcore sweep examples/lab/mgmr_recon.yaml --seeds 5 --jobs 1 --out "$OUT" \
  --variant "recon_bi_r0.6:$miss;imputer.params.bidirectional=true" \
  --variant "recon_bi_a10_r0.6:$miss;imputer.params.bidirectional=true;imputer.params.default_alpha=10"
# the same at 40 epochs (patience 10), against recon / no_recon of longer.sh
.venv-test/bin/mmcore sweep examples/lab/mgmr_recon.yaml --seeds 5 --jobs 1 --out "$OUT-ep40" --epochs 40 \
  --set train.patience=10 \
  --variant "recon_bi_a10_r0.6:$miss;imputer.params.bidirectional=true;imputer.params.default_alpha=10"
