#!/usr/bin/env bash
# The mechanism-lab sweep of docs/lab.md (MGMR-Net): examples/lab/mgmr_recon.yaml trained AND tested at
# temporal masking rate r (MGMR-Net §4.4), three variants, seeds 0-4, as ONE `mmcore sweep` command:
#   recon         the recipe (gated Mamba reconstruction, α = 1 per modality)
#   recon_alpha0  the same module with α = 0 (its parameters and gate, no reconstruction loss); not run at
#                 r = 0, where the loss is identically 0 and it equals recon exactly
#   no_recon      the core's `zero` imputer (MGMR-Net Table 6 "w/o Recon")
# Usage (repository root): bash plugins/mmcore-plugin-recon/experiments/lab/sweep.sh OUT [extra mmcore sweep args, e.g. --set ...]
# RATES="0.6 0.9" bash ... runs those rates only (robustness.sh does).
# It prints the command it runs; resumable (rerun the same command).
set -euo pipefail
OUT=${1:-/tmp/lab/runs/mgmr}
shift || true
export OMP_NUM_THREADS=1
args=()
for r in ${RATES:-0.0 0.3 0.6 0.9}; do
  miss="missing.train=[{type: temporal, rate: $r}];missing.eval=[{type: temporal, rate: $r}]"
  args+=(--variant "recon_r$r:$miss")
  [ "$r" != 0.0 ] && args+=(--variant "recon_alpha0_r$r:$miss;imputer.params.default_alpha=0")
  args+=(--variant "no_recon_r$r:$miss;imputer={name: zero}")
done
set -x
.venv-test/bin/mmcore sweep examples/lab/mgmr_recon.yaml --seeds 5 --jobs 1 --out "$OUT" "${args[@]}" "$@"
