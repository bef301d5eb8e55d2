"""DecAlign authors-exact functions against the authors' numeric fixtures (../shared/reference/decalign.npz).

Every (function, case) group of the archive is checked: outputs, and the gradients of the fixtures'
readout (README §1 of the fixtures) with respect to every differentiable input, to 1e-6 relative in
float64. The fixtures use the authors' channels-first layout (B, d, T); the leaves here are in that
layout and transposed to mmcore's (B, T, d) inside the graph, so the gradients compare directly.
The tests skip, saying why, when the archive is absent.
"""

from __future__ import annotations

import pytest
import torch

from mmcore.testing.reference import assert_close, load_reference, readout
from mmcore_plugin_ot import decalign_authors as da

#: every function of decalign.npz and the test below that checks it
COVERED = {
    "_pool": "test_pool", "compute_decoupling_loss": "test_decoupling_loss", "_init_gmm": "test_init_gmm",
    "_gmm_log_prob": "test_gmm_log_prob", "_fit_gmm_em": "test_fit_gmm_em", "_gaussian_cost": "test_gaussian_cost",
    "_sample_to_proto_cost": "test_sample_to_proto_cost", "_multi_marginal_sinkhorn": "test_multimarginal_sinkhorn",
    "compute_hetero_loss": "test_hetero_loss", "_distribution_stats": "test_distribution_stats",
    "_stats_distance": "test_stats_distance", "compute_mmd": "test_mmd", "compute_homo_loss": "test_homo_loss",
    "contrastive_loss": "tests/test_supervised_contrastive.py::test_matches_the_authors_fixtures (core)",
}


def _ref():
    return load_reference("decalign")


def _cases(fn: str) -> list[str]:
    """Case names of ``fn`` for parametrisation; [''] placeholder when the archive is absent (the test skips)."""
    from mmcore.testing.reference import reference_dir

    if not (reference_dir() / "decalign.npz").exists():
        return [""]
    return _ref().cases(fn)


def _backward(outputs: dict, g, leaves: dict) -> None:
    """Back-propagate the readout and compare value and gradients with the fixture."""
    r = readout(outputs, g)
    assert_close(r, g["readout"], what="readout")
    grads = torch.autograd.grad(r, list(leaves.values()), allow_unused=True)
    for (name, leaf), grad in zip(leaves.items(), grads):
        grad = torch.zeros_like(leaf) if grad is None else grad
        assert_close(grad, g[f"grad_{name}"], what=f"grad_{name}")


def _seq(g, name: str):
    """A (B, d, T) fixture stream as a leaf, and its (B, T, d) view for mmcore's functions."""
    leaf = g.tensor(name, requires_grad=True)
    return leaf, leaf.transpose(1, 2)


def _mask(g, name: str):
    return g.tensor(name)[:, 0, :] if name in g else None  # (B, 1, T) -> (B, T)


def test_every_fixture_function_has_a_test():
    assert set(_ref().functions()) == set(COVERED)


@pytest.mark.parametrize("case", _cases("_pool"))
def test_pool(case):
    g = _ref().group("_pool", case)
    leaf, x = _seq(g, "features")
    pooled = da.masked_pool(x, _mask(g, "mask"))
    assert_close(pooled, g["pooled"], what="pooled")
    _backward({"pooled": pooled}, g, {"features": leaf})


def test_decoupling_loss():
    g = _ref().group("compute_decoupling_loss")
    (ls, s), (lc, c) = _seq(g, "s"), _seq(g, "c")
    loss = da.decoupling_loss(s, c)
    assert_close(loss, g["loss"], what="loss")
    _backward({"loss": loss}, g, {"s": ls, "c": lc})


@pytest.mark.parametrize("case", _cases("_init_gmm"))
def test_init_gmm(case):
    g = _ref().group("_init_gmm", case)
    x = g.tensor("x", requires_grad=True)
    pi, mu, var, _ = da.init_gmm(x, g.scalar("num_prototypes"), g.scalar("gmm_var_floor"))
    for name, t in (("pi", pi), ("mu", mu), ("var", var)):
        assert_close(t, g[name], what=name)
    _backward({"mu": mu, "var": var}, g, {"x": x})


def test_gmm_log_prob():
    g = _ref().group("_gmm_log_prob")
    leaves = {k: g.tensor(k, requires_grad=True) for k in ("x", "pi", "mu", "var")}
    lj = da.gmm_log_prob(*leaves.values())
    assert_close(lj, g["log_joint"], what="log_joint")
    _backward({"log_joint": lj}, g, leaves)


@pytest.mark.parametrize("case", _cases("_fit_gmm_em"))
def test_fit_gmm_em(case):
    g = _ref().group("_fit_gmm_em", case)
    x = g.tensor("x", requires_grad=True)
    gmm = da.fit_gmm_em(x, g.scalar("num_prototypes"), g.scalar("gmm_em_iters"), g.scalar("gmm_var_floor"))
    out = gmm._asdict()
    for name in ("pi", "mu", "var", "posterior"):
        assert_close(out[name], g[name], what=name)
    _backward(out, g, {"x": x})


@pytest.mark.parametrize("case", _cases("_gaussian_cost"))
def test_gaussian_cost(case):
    g = _ref().group("_gaussian_cost", case)
    leaves = {k: g.tensor(k, requires_grad=True) for k in ("mu1", "var1", "mu2", "var2")}
    cost = da.gaussian_cost(*leaves.values(), reduction=g.scalar("hetero_cost_reduction"))
    assert_close(cost, g["cost"], what="cost")
    _backward({"cost": cost}, g, leaves)


@pytest.mark.parametrize("case", _cases("_sample_to_proto_cost"))
def test_sample_to_proto_cost(case):
    g = _ref().group("_sample_to_proto_cost", case)
    maha = g.scalar("local_proto_mahalanobis")
    leaves = {k: g.tensor(k, requires_grad=True) for k in (("x", "mu", "var") if maha else ("x", "mu"))}
    cost = da.sample_to_proto_cost(leaves["x"], leaves["mu"], leaves.get("var", g.tensor("var")),
                                   reduction=g.scalar("hetero_cost_reduction"), mahalanobis=maha,
                                   var_floor=g.scalar("gmm_var_floor"))
    assert_close(cost, g["cost"], what="cost")
    _backward({"cost": cost}, g, leaves)


@pytest.mark.parametrize("case", _cases("_multi_marginal_sinkhorn"))
def test_multimarginal_sinkhorn(case):
    g = _ref().group("_multi_marginal_sinkhorn", case)
    leaves = {k: g.tensor(k, requires_grad=True) for k in ("cost", "nu_l", "nu_a", "nu_v")}
    value, plan = da.multimarginal_sinkhorn(leaves["cost"], [leaves["nu_l"], leaves["nu_a"], leaves["nu_v"]],
                                            g.scalar("ot_reg"), g.scalar("ot_num_iters"))
    assert_close(value, g["value"], what="value")
    assert_close(plan, g["plan"], what="plan")
    _backward({"value": value, "plan": plan}, g, leaves)


@pytest.mark.parametrize("case", _cases("compute_hetero_loss"))
def test_hetero_loss(case):
    g = _ref().group("compute_hetero_loss", case)
    seqs = {m: _seq(g, f"s_{m}") for m in "lav"}
    masks = [_mask(g, f"mask_{m}") for m in "lav"] if "mask_l" in g else None
    res = da.hetero_loss([seqs[m][1] for m in "lav"], masks, num_prototypes=g.scalar("num_prototypes"),
                         em_iters=g.scalar("gmm_em_iters"), var_floor=g.scalar("gmm_var_floor"),
                         ot_reg=g.scalar("ot_reg"), ot_iters=g.scalar("ot_num_iters"),
                         cost_reduction=g.scalar("hetero_cost_reduction"),
                         mahalanobis=g.scalar("local_proto_mahalanobis"))
    assert_close(res.loss, g["loss"], what="loss")
    assert_close(res.ot_loss, g["ot_loss"], what="ot_loss")
    assert_close(res.local_proto_loss, g["local_proto_loss"], what="local_proto_loss")
    assert_close(res.joint_cost, g["joint_cost"], what="joint_cost")
    for k, m in enumerate("lav"):
        assert_close(res.pooled[k], g[f"pooled_{m}"], what=f"pooled_{m}")
        assert_close(res.marginals[k], g[f"nu_{m}"], what=f"nu_{m}")
        for name, t in res.gmms[k]._asdict().items():
            assert_close(t, g[f"gmm_{m}_{name}"], what=f"gmm_{m}_{name}")
    _backward({"loss": res.loss}, g, {f"s_{m}": seqs[m][0] for m in "lav"})


def test_distribution_stats():
    g = _ref().group("_distribution_stats")
    z = g.tensor("z", requires_grad=True)
    mu, cov, skew = da.distribution_stats(z)
    for name, t in (("mu", mu), ("cov", cov), ("skew", skew)):
        assert_close(t, g[name], what=name)
    _backward({"mu": mu, "cov": cov, "skew": skew}, g, {"z": z})


def test_stats_distance():
    g = _ref().group("_stats_distance")
    leaves = {k: g.tensor(k, requires_grad=True) for k in ("mu_x", "cov_x", "skew_x", "mu_y", "cov_y", "skew_y")}
    v = list(leaves.values())
    dist = da.stats_distance(tuple(v[:3]), tuple(v[3:]))
    assert_close(dist, g["dist"], what="dist")
    _backward({"dist": dist}, g, leaves)


@pytest.mark.parametrize("case", _cases("compute_mmd"))
def test_mmd(case):
    g = _ref().group("compute_mmd", case)
    leaves = {k: g.tensor(k, requires_grad=True) for k in ("x", "y")}
    out = da.mmd(leaves["x"], leaves["y"], g.scalar("mmd_bandwidth"))
    assert_close(out, g["mmd"], what="mmd")
    _backward({"mmd": out}, g, leaves)


def _encoder(g, m: str) -> da.DistributionEncoder:
    """The fixture's pde_m weights in a DistributionEncoder (keys pde_<m>_<i>_<w> -> <i>.<w>)."""
    w0 = g[f"pde_{m}_0_weight"]
    enc = da.DistributionEncoder(w0.shape[1], g[f"pde_{m}_3_weight"].shape[0], g.scalar("dropout")).double()
    enc.load_state_dict({f"{i}.{p}": g.tensor(f"pde_{m}_{i}_{p}") for i in (0, 3) for p in ("weight", "bias")})
    return enc


@pytest.mark.parametrize("case", _cases("compute_homo_loss"))
def test_homo_loss(case):
    g = _ref().group("compute_homo_loss", case)
    seqs = {m: _seq(g, f"c_{m}") for m in "lav"}
    masks = [_mask(g, f"mask_{m}") for m in "lav"] if "mask_l" in g else None
    encs = [_encoder(g, m) for m in "lav"]
    res = da.homo_loss([seqs[m][1] for m in "lav"], masks, encs, bandwidth=g.scalar("mmd_bandwidth"))
    assert_close(res.loss, g["loss"], what="loss")
    out = {"loss": res.loss}
    for k, m in enumerate("lav"):
        assert_close(res.latents[k], g[f"z_{m}"], what=f"z_{m}")
        out[f"z_{m}"] = res.latents[k]
    leaves = {f"c_{m}": seqs[m][0] for m in "lav"}
    params = {f"pde_{m}_{i}_{p}": getattr(encs[k][i], p) for k, m in enumerate("lav") for i in (0, 3)
              for p in ("weight", "bias")}
    _backward(out, g, {**leaves, **params})


def _authors_aligner(g, case_params: dict):
    """A gmm_prototype_ot aligner in authors mode, float64, identity unique/common maps."""
    from mmcore.protocols import BuildContext, ModalityInfo
    from mmcore_plugin_ot.gmm_prototype_ot import GmmPrototypeOTAligner
    from mmcore_plugin_ot.params import GmmPrototypeOTParams

    mods = {m: ModalityInfo(m, 8, 12) for m in ("text", "audio", "vision")}
    al = GmmPrototypeOTAligner(GmmPrototypeOTParams(reference="authors", anchor="text", **case_params),
                               BuildContext(modalities=mods, d_model=8)).double()
    with torch.no_grad():
        for lin in [*al.unique.values(), al.common]:
            lin.weight.copy_(torch.eye(8, dtype=torch.float64))
    return al


@pytest.mark.parametrize("case", _cases("compute_hetero_loss"))
def test_aligner_authors_mode_gives_the_authors_hetero_loss(case):
    """prototype_ot + prototype_calibration of the aligner = compute_hetero_loss (value and stream gradients)."""
    g = _ref().group("compute_hetero_loss", case)
    al = _authors_aligner(g, dict(num_prototypes=g.scalar("num_prototypes"), em_steps=g.scalar("gmm_em_iters"),
                                  var_floor=g.scalar("gmm_var_floor"), reg=g.scalar("ot_reg"),
                                  max_iter=g.scalar("ot_num_iters"), cost_reduction=g.scalar("hetero_cost_reduction"),
                                  local_mahalanobis=g.scalar("local_proto_mahalanobis"),
                                  use_sequence_mask="mask_l" in g))
    names = {"l": "text", "a": "audio", "v": "vision"}
    leaves = {m: _seq(g, f"s_{m}") for m in "lav"}
    valid = {names[m]: (_mask(g, f"mask_{m}").bool() if "mask_l" in g else torch.ones(leaves[m][1].shape[:2],
                                                                                      dtype=torch.bool))
             for m in "lav"}
    out = al({names[m]: leaves[m][1] for m in "lav"}, valid)
    # the aligner returns float32 aux losses (as the trainer sums them); compare at float32 resolution
    loss = out.aux["prototype_ot"].double() + out.aux["prototype_calibration"].double()
    assert_close(loss, g["loss"], rtol=1e-6, what="hetero loss")
    grads = torch.autograd.grad(loss, [leaves[m][0] for m in "lav"])
    for m, grad in zip("lav", grads):
        assert_close(grad, g[f"grad_s_{m}"], what=f"grad_s_{m}")


@pytest.mark.parametrize("case", _cases("compute_homo_loss"))
def test_aligner_authors_mode_gives_the_authors_homo_loss(case):
    """The aligner's homogeneity = compute_homo_loss, with the fixture's latent encoders loaded into it."""
    g = _ref().group("compute_homo_loss", case)
    al = _authors_aligner(g, dict(latent_dim=g.scalar("pde_dim"), mmd_sigma=g.scalar("mmd_bandwidth") ** 0.5,
                                  use_sequence_mask="mask_l" in g))
    names = {"l": "text", "a": "audio", "v": "vision"}
    for m in "lav":
        al.latent[names[m]].load_state_dict(_encoder(g, m).state_dict())
    leaves = {m: _seq(g, f"c_{m}") for m in "lav"}
    valid = {names[m]: (_mask(g, f"mask_{m}").bool() if "mask_l" in g else torch.ones(leaves[m][1].shape[:2],
                                                                                      dtype=torch.bool))
             for m in "lav"}
    out = al({names[m]: leaves[m][1] for m in "lav"}, valid)
    loss = out.aux["homogeneity"].double()
    assert_close(loss, g["loss"], what="homogeneity")
    grads = torch.autograd.grad(loss, [leaves[m][0] for m in "lav"])
    # the fixture's gradients are of loss + sum(z * w); the loss-only gradient comes from the function that
    # test_homo_loss checks against the fixture
    masks = [_mask(g, f"mask_{m}") for m in "lav"] if "mask_l" in g else None
    ref = da.homo_loss([leaves[m][1] for m in "lav"], masks, [_encoder(g, m) for m in "lav"],
                       bandwidth=g.scalar("mmd_bandwidth")).loss
    for m, grad, want in zip("lav", grads, torch.autograd.grad(ref, [leaves[m][0] for m in "lav"])):
        assert_close(grad, want.numpy(), what=f"grad_c_{m}")


def test_authors_preset_and_refusals():
    from pydantic import ValidationError

    from mmcore_plugin_ot.params import GmmPrototypeOTParams

    p = GmmPrototypeOTParams(reference="authors")
    assert (p.max_iter, p.mmd_sigma, p.decoupling, p.ot_loss, p.ot_grad) == (50, 1.0, "squared_cosine", "entropic",
                                                                            "unrolled")
    assert GmmPrototypeOTParams(reference="authors", max_iter=20).max_iter == 20  # explicit values win
    d = GmmPrototypeOTParams().model_dump()
    assert (d["ot_loss"], d["ot_grad"]) == ("transport", "envelope")
    assert GmmPrototypeOTParams(**d) == GmmPrototypeOTParams()  # a saved spec (every field given) re-validates
    for bad in (dict(reference="authors", prior_count=2.0), dict(reference="authors", decoupling="cosine"),
                dict(cost_reduction="sum"), dict(latent_dim=4)):
        with pytest.raises(ValidationError):
            GmmPrototypeOTParams(**bad)


# ------------------------------------------------------------------ where mmcore's default functions agree


def test_mmcore_squared_cosine_decoupling_equals_the_authors():
    """decoupling.decoupling_loss(squared=True) on all-valid tokens = compute_decoupling_loss (value and grads)."""
    from mmcore_plugin_ot.decoupling import decoupling_loss

    g = _ref().group("compute_decoupling_loss")
    (ls, s), (lc, c) = _seq(g, "s"), _seq(g, "c")
    loss = decoupling_loss(s, c, torch.ones(s.shape[:2], dtype=torch.bool), squared=True)
    assert_close(loss, g["loss"], what="loss")
    _backward({"loss": loss}, g, {"s": ls, "c": lc})


def test_mmcore_gmm_log_density_equals_the_authors_above_the_weight_clamp():
    """_gmm.log_joint = _gmm_log_prob for every component whose weight is above the authors' 1e-8 clamp."""
    from mmcore_plugin_ot import _gmm

    g = _ref().group("_gmm_log_prob")
    pi = g.tensor("pi")
    lj = _gmm.log_joint(g.tensor("x"), _gmm.Gmm(g.tensor("mu"), g.tensor("var"), pi.log()))
    keep = (pi > 1e-8).numpy()
    assert not keep.all()  # the fixture has one clamped weight
    assert_close(lj[:, keep], g["log_joint"][:, keep], what="log_joint")


@pytest.mark.parametrize("case", _cases("compute_mmd"))
def test_mmcore_mmd2_equals_the_authors_with_sigma_squared_as_bandwidth(case):
    """mmd.mmd2(sigma=sqrt(bandwidth)) = compute_mmd: the authors' mmd_bandwidth is sigma^2."""
    from mmcore_plugin_ot.mmd import mmd2

    g = _ref().group("compute_mmd", case)
    leaves = {k: g.tensor(k, requires_grad=True) for k in ("x", "y")}
    out = mmd2(leaves["x"], leaves["y"], sigma=g.scalar("mmd_bandwidth") ** 0.5)
    assert_close(out, g["mmd"], what="mmd")
    _backward({"mmd": out}, g, leaves)


@pytest.mark.parametrize("masked", [False, True])
def test_contract_in_authors_mode(masked):
    """The registry contract (shapes, finite outputs, gradients to every parameter, padding invariance) holds."""
    from mmcore.testing import check_component

    check_component("aligner", "gmm_prototype_ot", params={"reference": "authors", "use_sequence_mask": masked})


def test_authors_mode_says_why_it_has_no_token_plans():
    from mmcore.errors import MmcoreUserError
    from mmcore.protocols import BuildContext, ModalityInfo
    from mmcore_plugin_ot.gmm_prototype_ot import GmmPrototypeOTAligner
    from mmcore_plugin_ot.params import GmmPrototypeOTParams

    mods = {m: ModalityInfo(m, 4, 5) for m in ("audio", "vision")}
    al = GmmPrototypeOTAligner(GmmPrototypeOTParams(reference="authors", anchor="audio", num_prototypes=3),
                               BuildContext(modalities=mods, d_model=4))
    seqs = {m: torch.randn(6, 5, 4) for m in mods}
    al(seqs, {m: torch.ones(6, 5, dtype=torch.bool) for m in mods})
    assert al.last_joint_plan.shape == (3, 3)  # any M >= 2: here a 2-marginal plan
    with pytest.raises(MmcoreUserError, match="no token-level plan"):
        al.alignment_plans()
