"""How far the authors' multi-marginal Sinkhorn is from the problem it solves, and from mmcore's default plan.

On every `_multi_marginal_sinkhorn` case of the authors' fixtures (../shared/reference/decalign.npz), prints
the largest absolute difference between:
  (a) the authors' plan and the converged entropic plan of the same problem (mmcore's log-domain solver, tol 1e-12);
  (b) the authors' iteration with the 1e-8 terms removed (same sweeps) and that converged plan;
  (c) mmcore's default plan (cost scaled by its max, same reg) and the authors' plan;
and the authors' plan's row-marginal error.

    python plugins/mmcore-plugin-ot/experiments/authors_plan_gap.py      (numbers quoted in docs/fidelity.md)
"""

import warnings

import torch

from mmcore.testing.reference import ReferenceFixtures, reference_dir
from mmcore_plugin_ot import decalign_authors as da
from mmcore_plugin_ot.multimarginal import multimarginal_sinkhorn_plan

torch.set_num_threads(1)
warnings.simplefilter("ignore")
ref = ReferenceFixtures(reference_dir() / "decalign.npz")
print("| case | (a) authors vs converged | (b) authors without 1e-8 vs converged | (c) mmcore default vs authors "
      "| authors' row-marginal error |")
print("|---|---|---|---|---|")
for case in ref.cases("_multi_marginal_sinkhorn"):
    g = ref.group("_multi_marginal_sinkhorn", case)
    C, plan = g.tensor("cost"), g.tensor("plan")
    nus = [g.tensor(k) for k in ("nu_l", "nu_a", "nu_v")]
    reg, sweeps = g.scalar("ot_reg"), g.scalar("ot_num_iters")
    converged = multimarginal_sinkhorn_plan(nus, C, reg, max_iter=100_000, tol=1e-12).plan
    eps, da.SINKHORN_EPS = da.SINKHORN_EPS, 0.0
    _, no_eps = da.multimarginal_sinkhorn(C, nus, reg, sweeps)
    da.SINKHORN_EPS = eps
    scaled = multimarginal_sinkhorn_plan(nus, C / C.max(), reg, max_iter=100_000, tol=1e-12).plan
    err = (plan.sum((1, 2)) - nus[0]).abs().max()
    print(f"| {case} | {(plan - converged).abs().max():.1e} | {(no_eps - converged).abs().max():.1e} | "
          f"{(scaled - plan).abs().max():.1e} | {err:.1e} |")
