#!/usr/bin/env bash
# The masking-rate sweep of the README: examples/mgmr_net.yaml trained AND tested at temporal masking rate
# r = 0.0, 0.1, ..., 0.9 (MGMR-Net §4.4: one set of runs per rate), three variants, seeds 0-2:
#   recon         the recipe as is (gated Mamba reconstruction, α = 1 per modality)
#   recon_alpha0  the same module with α = 0: its architecture without the reconstruction loss
#   no_recon      no imputer (MGMR-Net Table 6 "w/o Recon")
# Run from the repository root:  bash plugins/mmcore-plugin-recon/docs/run_sweep.sh [OUT] [JOBS]
# Resumable: rerun the same command after an interruption. Then draw the README's plot with plot_sweep.py.
set -euo pipefail
OUT=${1:-runs/mgmr_masking_sweep}
JOBS=${2:-2}
args=()
for r in 0.0 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9; do
  miss="missing.train=[{type: temporal, rate: $r}];missing.eval=[{type: temporal, rate: $r}]"
  args+=(--variant "recon_r$r:$miss")
  args+=(--variant "recon_alpha0_r$r:$miss;imputer.params.alpha={audio: 0.0, vision: 0.0}")
  args+=(--variant "no_recon_r$r:$miss;imputer=null")
done
set -x
nice -n 10 mmcore sweep examples/mgmr_net.yaml --seeds 3 --jobs "$JOBS" --out "$OUT" "${args[@]}"
