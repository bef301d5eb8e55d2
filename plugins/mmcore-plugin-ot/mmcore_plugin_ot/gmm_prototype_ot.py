r"""DecAlign's hierarchical alignment as one aligner: decoupling, GMM prototypes, multi-marginal OT.

Per modality $m$ the encoded sequence $\tilde X_m$ (T_m, d) is split by a modality-unique encoder
and a shared encoder, $F^{(m)}_{uni} = E^{(m)}_{uni}(\tilde X_m)$, $F^{(m)}_{com} = E_{com}(\tilde X_m)$.
The unique features of each modality are summarised by a $K$-component diagonal GMM (prototypes
$(\mu^k_m, s^k_m)$, weights $\pi^k_m$); the prototypes of the $M$ modalities are matched by an
entropic multi-marginal plan $T^\star$ (a $K^M$ tensor) under the summed pairwise Bures–Wasserstein
cost; unique features are pulled towards matched prototypes; and the common features of the
modalities are made alike in moments and in MMD.

Two computations, chosen by ``reference``: ``mmcore`` (the default, stabilised: below) and
``authors`` (the authors' code, :mod:`mmcore_plugin_ot.decalign_authors`, equal to it to 1e-6).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmcore.errors import NumericalRangeError
from mmcore.functional import zero_invalid
from mmcore.protocols import AlignerOutput, BuildContext

from . import _gmm, decalign_authors
from ._masks import compute_dtype, tiny
from .decoupling import decoupling_loss, homogeneity_loss
from .gaussian import bures_wasserstein_squared_diag
from .multimarginal import multimarginal_sinkhorn_plan
from .params import GmmPrototypeOTParams

AUX_LOSSES = ("decoupling", "prototype_ot", "prototype_calibration", "homogeneity")


class GmmPrototypeOTAligner(nn.Module):
    r"""DecAlign: decoupled streams plus prototype-OT, calibration, homogeneity and decoupling losses.

    ``reference: mmcore`` (default):

    $$C(k_1..k_M) = \sum_{i<j} \lVert \mu^{k_i}_i - \mu^{k_j}_j\rVert^2 + \big\lVert \sqrt{s^{k_i}_i} - \sqrt{s^{k_j}_j}\big\rVert^2,\qquad
      T^\star = \arg\min_{T \in \Pi(\pi_1..\pi_M)} \langle T, C/\bar C\rangle + \varepsilon \textstyle\sum_k T(k)\log T(k)$$
    $$\mathcal L_{OT} = \tfrac1d \langle T^\star, C\rangle,\qquad
      \mathcal L_{proto} = \sum_{i} \sum_{j \ne i} \frac{1}{N_i d} \sum_{n} \sum_{k, l} r^n_i(k)\, T^\star_{ij}(l \mid k)\, \lVert F^n_i - \mu^l_j\rVert^2$$

    where $F^n_i$ (d,) are the valid unique tokens of modality $i$ ($N_i$ of them in the batch),
    $r^n_i(k)$ their GMM posteriors (Eq. 3), $(\mu^k_i, s^k_i)$ the prototype means and variances
    after the batch's EM steps (Eq. 2), $\pi_i$ their weights (the marginals $\nu_i$ of Eq. 8),
    $\bar C = \max_k C(k)$ (detached), $\varepsilon$ = ``reg``, $T^\star_{ij}$ the $(i, j)$
    marginal of $T^\star$ and $T^\star_{ij}(l \mid k) = T^\star_{ij}(k, l) / \pi_i(k)$. With
    $\mathcal L_{dec}$ and $\mathcal L_{homo}$ of :mod:`mmcore_plugin_ot.decoupling`, the aux losses are
    ``decoupling`` = $\sum_m \mathcal L^{(m)}_{dec}$ (weight 1, Eq. 13), ``prototype_ot`` = $\mathcal L_{OT}$
    and ``prototype_calibration`` = $\mathcal L_{proto}$ (both α = 0.05: $\mathcal L_{hete}$ of Eq. 9 is
    their sum), ``homogeneity`` = $\mathcal L_{sem} + \mathcal L_{MMD}$ (β = 0.05).
    ``ot_loss: entropic`` adds $\varepsilon \bar C \sum T^\star(\log T^\star - 1) / d$; ``ot_grad: unrolled``
    differentiates through the Sinkhorn sweeps instead of holding $T^\star$ constant.

    ``reference: authors``: the same four aux losses computed as the authors' code does
    (:mod:`mmcore_plugin_ot.decalign_authors`): ``decoupling`` = mean over modalities of the squared
    cosine; each batch, a GMM is initialised from evenly spaced rows and refit by ``em_steps`` EM steps,
    differentiated end to end, on the *time-pooled* unique features (one vector per instance);
    marginals = mean posteriors; cost averaged over d (``cost_reduction``); plain-domain Sinkhorn for
    exactly ``max_iter`` sweeps on the unscaled cost with ``reg`` in cost units; ``prototype_ot`` =
    its value with the entropy term, unrolled gradient; ``prototype_calibration`` = the mean over the
    $M(M-1)$ ordered pairs of $\frac1N\sum_n \sum_k \gamma_i(n, k)\, c(\bar x_{i,n}, \mu_{j,k})$;
    ``homogeneity`` = moment distance (N−1 covariance, element means) + MMD (σ² = ``mmd_sigma``²) of
    the pooled common features mapped by per-modality latent encoders (``latent_dim``), averaged
    over pairs. No state is kept between batches; ``alignment_plans()`` is empty (no token posteriors).

    Reference: DecAlign (Qian et al., arXiv 2503.11892 / CVPR version), §3.1 Eq. 1, §3.2 Eq. 2-9,
    §3.3 Eq. 10-12, §3.4 Eq. 13; defaults K = 7, 5 EM steps, variance floor 1e-4, λ_ot = 0.1 from the
    authors' public configs; the authors' code is taco-group/DecAlign at commit 6fa8df9.
    Notation: the paper's λ is ``reg``, $\nu_i$ is $\pi_i$, $w^n_i(k)$ is $r^n_i(k)$,
    $E_{uni}^{(m)}$ is ``unique[m]`` and $E_{com}$ is ``common`` (1x1 convolutions without bias in the
    authors' code: bias-free linear maps here).
    Streams: the output ``{m}`` is $F^{(m)}_{com}$ and ``{m}_unique`` is $F^{(m)}_{uni}$, each
    (B, T_m, d) with ``valid[m]``, zero on padding (``output_streams`` lists them, so a ``mult`` fuser
    runs its cross-modal transformer over all of them, and ``concat_pool`` concatenates them — the
    paper's fusion of transformer-refined unique features with common features).
    Gradients (mmcore): every parameter gets one through the output streams. The prototypes are refit
    from the stored ones by ``em_steps`` MAP-EM steps per batch (:mod:`mmcore_plugin_ot._gmm`), the last
    ``em_grad_steps`` differentiated, so $\mathcal L_{OT}$ and $\mathcal L_{proto}$ reach the unique
    encoders through $\mu$ and $s$. By default $T^\star$ and the posteriors $r$ are held constant
    (envelope theorem: $\partial_C \mathrm{OT}_\varepsilon = T^\star$; $r$ is an E-step posterior).
    How mmcore departs from the authors' code, and why (each row in docs/fidelity.md): (1) prototypes
    persist across batches (k-means++ seeds, MAP-EM with ``prior_count``) and are refit on the unique
    *tokens* (the paper's Eq. 2-4), not re-initialised every batch on time-pooled features; (2) the
    marginals are the mixture weights π, not mean posteriors; (3) the calibration pulls token $n$ of $i$
    towards the prototypes of $j$ that $T^\star$ matches its own prototypes to — the authors pair the
    k-th prototypes of independently fitted mixtures index by index, which only the plan makes
    meaningful; (4) the plan is solved to ``tol`` in the log domain on $C/\bar C$ so that ``reg`` is
    scale-free (the authors' absolute 0.1 on costs of a few units underflows their plain-domain kernel),
    and $\mathcal L_{OT}$, $\mathcal L_{proto}$, $\mathcal L_{sem}$ are divided by d and the Bures cost
    summed over d — the unnormalised terms grow with d_model and the feature scale and dominate the task
    loss; (5) ``decoupling`` is summed over modalities (the paper's Eq. 13), not averaged; (6) the moments
    are over tokens with 1/N and there are no latent encoders. Both computations keep rows whose
    modality is missing (``batch.missing``, passed since ``accepts_missing``) out of every statistic —
    the authors' code has no missing modalities.
    Shapes: seqs[m] (B, T_m, d) -> seqs {m, m_unique} (B, T_m, d); ``alignment_plans()[m]`` (B, T_anchor, T_m)
    is the token plan induced by $T^\star$ (see :meth:`alignment_plans`; mmcore only).

    Args:
        params: :class:`~mmcore_plugin_ot.params.GmmPrototypeOTParams`.
        ctx: the build context (its modalities fix the streams and the number of marginals).
    Raises:
        ValueError: when a modality is missing from the input or shapes disagree.
    """

    def __init__(self, params: GmmPrototypeOTParams, ctx: BuildContext):
        super().__init__()
        self.modalities = list(ctx.modalities)
        if not self.modalities:
            raise ValueError("GmmPrototypeOTAligner: the build context declares no modality")
        if params.anchor not in self.modalities:
            raise ValueError(f"GmmPrototypeOTAligner: anchor {params.anchor!r} is not a modality of this "
                             f"pipeline; modalities are {self.modalities}")
        self.p, self.anchor, self.d = params, params.anchor, ctx.d_model
        M, K, d = len(self.modalities), params.num_prototypes, ctx.d_model
        self.unique = nn.ModuleDict({m: nn.Linear(d, d, bias=False) for m in self.modalities})
        self.common = nn.Linear(d, d, bias=False)
        self.output_streams = self.modalities + [f"{m}_unique" for m in self.modalities]
        # the stored prototypes (EM starts there each batch); saved in checkpoints, never trained
        self.register_buffer("proto_means", torch.zeros(M, K, d))
        self.register_buffer("proto_vars", torch.ones(M, K, d))
        self.register_buffer("proto_log_weights", torch.full((M, K), -math.log(K)))
        self.register_buffer("proto_ready", torch.zeros(M, dtype=torch.bool))
        if params.reference == "authors":  # the authors' latent "distribution encoders" of the homogeneity branch
            # (their dropout, output_dropout, is 0.0 in every shipped config)
            self.latent = nn.ModuleDict({m: decalign_authors.DistributionEncoder(d, params.latent_dim or d, 0.0)
                                         for m in self.modalities})
        self._plans: dict[str, Tensor] = {}
        #: the multi-marginal plan T* (K, ..., K) of the last forward, detached (None with one modality)
        self.last_joint_plan: Tensor | None = None

    accepts_missing = True  # the pipeline passes missing={m: (B,)} so absent rows stay out of statistics

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor],
                missing: dict[str, Tensor] | None = None) -> AlignerOutput:
        absent = [m for m in self.modalities if m not in seqs]
        if absent:
            raise ValueError(f"GmmPrototypeOTAligner: built for {self.modalities} but got no input for {absent}")
        uni, com, vs = {}, {}, {}
        for m in self.modalities:
            x, v = seqs[m], valid[m].bool()
            if x.dim() != 3 or x.shape[-1] != self.d or tuple(v.shape) != tuple(x.shape[:2]):
                raise ValueError(f"GmmPrototypeOTAligner: {m} is {tuple(x.shape)} with valid {tuple(v.shape)}; "
                                 f"need (B, T, d={self.d}) and valid (B, T)")
            x = zero_invalid(x, v)  # padding holds nothing, not even NaN: selected away before the linear maps
            keep, zero = v.unsqueeze(-1), torch.zeros((), dtype=x.dtype, device=x.device)
            uni[m] = torch.where(keep, self.unique[m](x), zero)  # (B, T_m, d)
            com[m] = torch.where(keep, self.common(x), zero)  # (B, T_m, d)
            vs[m] = v
        self._check_scale(uni, com, vs)
        # statistics (EM, losses) use observed tokens only: rows whose modality is missing hold the encoding of
        # zeros, not data. A modality absent from every row of the batch falls back to its valid tokens so the
        # statistics stay defined (its losses then carry no information, as without this mask).
        obs = dict(vs)
        for m in self.modalities:
            if missing is not None and m in missing:
                o = vs[m] & ~missing[m].bool().unsqueeze(1)
                obs[m] = o if bool(o.any()) else vs[m]
        squared = self.p.decoupling == "squared_cosine"
        # the losses run in float32 even under bf16 autocast: EM sums, moments and OT need the precision
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.p.reference == "authors":
                aux, joint = self._authors_losses(uni, com, vs, missing)
                plans = {}  # no token posteriors: alignment_plans() says so
            else:
                aux = {"decoupling": sum(decoupling_loss(uni[m], com[m], obs[m], squared=squared)
                                         for m in self.modalities)}
                gmms, resp = self._fit_prototypes(uni, obs)
                aux["prototype_ot"], aux["prototype_calibration"], joint = self._prototype_losses(gmms, resp, uni, obs)
                plans = {} if joint is None else self._token_plans(joint, resp, obs)
                aux["homogeneity"] = homogeneity_loss(com, obs, var_floor=self.p.var_floor, sigma=self.p.mmd_sigma)
        # the plot state of this forward (alignment_plans, last_joint_plan): set here and nowhere else
        self._plans, self.last_joint_plan = plans, joint
        aux = {k: v.float() for k, v in aux.items()}
        out = {**com, **{f"{m}_unique": uni[m] for m in self.modalities}}
        return AlignerOutput(out, {**vs, **{f"{m}_unique": vs[m] for m in self.modalities}}, aux)

    #: the largest |feature| the statistics accept: covariance differences grow as |x|^4 and overflow float32
    #: (3.4e38) from about 1e10 (measured: homogeneity = inf at 1e10, the OT cost NaN at 1e19)
    MAX_ABS = 1e8

    def _check_scale(self, uni: dict[str, Tensor], com: dict[str, Tensor], vs: dict[str, Tensor]) -> None:
        """Refuse features whose statistics would overflow or that are not finite, naming the stream and range."""
        for m in self.modalities:
            for label, t in ((m, com[m]), (f"{m}_unique", uni[m])):
                peak = float(torch.where(vs[m].unsqueeze(-1), t.detach().abs(), 0.0).amax()) if t.numel() else 0.0
                if not peak <= self.MAX_ABS:  # also catches NaN
                    what = "not finite" if not math.isfinite(peak) else f"as large as |x| = {peak:.3g}"
                    raise NumericalRangeError(
                        f"gmm_prototype_ot: the {label} features are {what}; DecAlign's statistics (moments, "
                        f"Bures costs, MMD) need |x| <= {self.MAX_ABS:.0e} (they grow as |x|^4 and overflow float32 "
                        "from about 1e10).\n  Standardise the input features (data.params.standardize: true), check "
                        "the data for huge values, or, if training diverged, lower train.lr or set train.grad_clip")

    # ---------------------------------------------------------------- reference: authors
    def _authors_losses(self, uni: dict[str, Tensor], com: dict[str, Tensor], vs: dict[str, Tensor],
                        missing: dict[str, Tensor] | None) -> tuple[dict[str, Tensor], Tensor | None]:
        """The four aux losses as the authors' code computes them (:mod:`.decalign_authors`), and their
        multi-marginal plan, detached (None when fewer than two modalities are present).

        Rows whose modality is missing are left out of that modality's statistics; a modality with no
        present row in the batch is left out of the cross-modal terms.
        """
        p, da = self.p, decalign_authors
        rows = {}
        for m in self.modalities:
            present = torch.ones_like(vs[m][:, 0]) if missing is None or m not in missing else ~missing[m].bool()
            rows[m] = present.nonzero().squeeze(1)  # (B_m,)
        work = compute_dtype(*uni.values())
        pick = lambda t, m: t[rows[m]].to(work)  # noqa: E731
        masks = {m: (vs[m][rows[m]].to(work) if p.use_sequence_mask else None) for m in self.modalities}
        live = [m for m in self.modalities if rows[m].numel() > 0]
        zero = sum(u.sum() for u in uni.values()).to(work) * 0.0  # keeps every stream in the graph
        dec = [da.decoupling_loss(pick(uni[m], m), pick(com[m], m)) for m in live]
        aux = {"decoupling": torch.stack(dec).mean() if dec else zero}
        if len(live) < 2:  # nothing to align across
            return {**aux, "prototype_ot": zero, "prototype_calibration": zero, "homogeneity": zero}, None
        het = da.hetero_loss([pick(uni[m], m) for m in live], [masks[m] for m in live],
                             num_prototypes=p.num_prototypes, em_iters=p.em_steps, var_floor=p.var_floor,
                             ot_reg=p.reg, ot_iters=p.max_iter, cost_reduction=p.cost_reduction,
                             mahalanobis=p.local_mahalanobis, entropic=p.ot_loss == "entropic",
                             unrolled=p.ot_grad == "unrolled")
        homo = da.homo_loss([pick(com[m], m) for m in live], [masks[m] for m in live],
                            [self.latent[m] for m in live], bandwidth=p.mmd_sigma ** 2)
        return {**aux, "prototype_ot": het.ot_loss, "prototype_calibration": het.local_proto_loss,
                "homogeneity": homo.loss}, het.plan.detach()

    # ---------------------------------------------------------------- prototypes (Eq. 2-4)
    def _fit_prototypes(self, uni: dict[str, Tensor], vs: dict[str, Tensor]) -> tuple[list[_gmm.Gmm], list[Tensor]]:
        """Refit each modality's GMM on its valid unique tokens; posteriors (B, T_m, K), detached."""
        gmms, resp = [], []
        for i, m in enumerate(self.modalities):
            B, T, d = uni[m].shape
            work = compute_dtype(uni[m], self.proto_means)
            x = uni[m].to(work).reshape(B * T, d)  # (N, d), zeros on padding
            w = vs[m].reshape(B * T).to(work)  # (N,)
            if bool(self.proto_ready[i]):
                prior = _gmm.Gmm(self.proto_means[i].to(work).clone(), self.proto_vars[i].to(work).clone(),
                                 self.proto_log_weights[i].to(work).clone())
            else:  # first batch: k-means++ seeds from its tokens (a local generator: no global RNG state is touched)
                gen = torch.Generator().manual_seed(self.p.seed + i)
                prior = _gmm.init_from_data(x, w, self.p.num_prototypes, gen, self.p.var_floor)
            g = _gmm.fit(x, w, prior, steps=self.p.em_steps, grad_steps=self.p.em_grad_steps,
                         var_floor=self.p.var_floor, prior_count=self.p.prior_count)
            if self.training:  # like BatchNorm's running stats: evaluation never moves the prototypes
                with torch.no_grad():
                    self.proto_means[i].copy_(g.means)
                    self.proto_vars[i].copy_(g.vars)
                    self.proto_log_weights[i].copy_(g.log_weights)
                    self.proto_ready[i] = True
            with torch.no_grad():
                r = _gmm.responsibilities(x.detach(), g.detach()) * w.unsqueeze(1)  # (N, K), 0 on padding
            gmms.append(g)
            resp.append(r.reshape(B, T, -1))
        return gmms, resp

    # ---------------------------------------------------------------- OT and calibration (Eq. 5-9)
    def _prototype_losses(self, gmms: list[_gmm.Gmm], resp: list[Tensor], uni: dict[str, Tensor],
                          vs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        """(prototype_ot, prototype_calibration, the multi-marginal plan T* detached; None with one modality)."""
        M, d = len(gmms), self.d
        if M < 2:  # nothing to align across
            zero = gmms[0].means.sum() * 0.0
            return zero, zero, None
        K = gmms[0].means.shape[0]
        C = 0.0
        for i in range(M):
            for j in range(i + 1, M):
                cij = bures_wasserstein_squared_diag(gmms[i].means[:, None], gmms[i].vars[:, None],
                                                     gmms[j].means[None], gmms[j].vars[None])  # (K, K)
                shape = [1] * M
                shape[i] = shape[j] = K
                C = C + cij.reshape(shape)  # (K, ..., K)
        scale = C.detach().amax().clamp_min(tiny(C.dtype))  # the plan is solved on C / max C, in [0, 1]
        nus = [g.log_weights.detach().exp() for g in gmms]
        nus = [(nu / nu.sum()).unsqueeze(0) for nu in nus]  # M x (1, K), equal sums exactly
        unrolled = self.p.ot_grad == "unrolled"
        cost = C / scale if unrolled else C.detach() / scale
        T = multimarginal_sinkhorn_plan(nus, cost.unsqueeze(0), self.p.reg, max_iter=self.p.max_iter, tol=self.p.tol,
                                        detach=not unrolled).plan[0]  # (K, ..., K)
        if not unrolled:
            T = T.detach()
        ot = (T * C).sum() / d
        if self.p.ot_loss == "entropic":  # + eps * sum T (log T - 1), eps in cost units (reg is relative to max C)
            ot = ot + self.p.reg * scale * (T * (torch.log(T.clamp_min(tiny(T.dtype))) - 1.0)).sum() / d
        T = T.detach()  # the calibration's conditional plans are held constant
        cal = ot.new_zeros(())
        for i, mi in enumerate(self.modalities):
            B, Ti, _ = uni[mi].shape
            x = uni[mi].reshape(B * Ti, d).to(C.dtype)  # (N_i, d)
            r = resp[i].reshape(B * Ti, K)  # (N_i, K), 0 on padding
            n_i = vs[mi].sum().clamp_min(1)
            for j in range(M):
                if j == i:
                    continue
                tij = _pair_plan(T, i, j)
                cond = tij / tij.sum(1, keepdim=True).clamp_min(tiny(tij.dtype))  # (K, K): T(l | k)
                q = r @ cond  # (N_i, K): weight of each prototype of j for each token of i
                dist2 = (x.unsqueeze(1) - gmms[j].means.unsqueeze(0)).square().sum(-1)  # (N_i, K)
                cal = cal + (q * dist2).sum() / (n_i * d)
        return ot, cal, T

    @torch.no_grad()
    def _token_plans(self, T: Tensor, resp: list[Tensor], vs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Token plans induced by the prototype plan, {m: (B, T_anchor, T_m)} (see :meth:`alignment_plans`)."""
        a = self.modalities.index(self.anchor)
        ra = resp[a]  # (B, T_a, K)
        n_a = vs[self.anchor].sum(1).clamp_min(1).to(ra.dtype).view(-1, 1, 1)  # (B, 1, 1)
        plans = {}
        for j, m in enumerate(self.modalities):
            if j == a:
                continue
            rm = resp[j]  # (B, T_m, K)
            owned = rm.sum(1)  # (B, K): how much of the instance's frames each prototype of m holds
            share = rm / owned.unsqueeze(1).clamp_min(tiny(rm.dtype))  # (B, T_m, K): prototype l over frames
            avail = (owned > 0).to(rm.dtype).unsqueeze(1)  # (B, 1, K)
            cond = _pair_plan(T, a, j).unsqueeze(0) * avail  # (B, K, K): T(k, l), only prototypes present in b
            mass = cond.sum(2, keepdim=True)  # (B, K, 1)
            uniform = avail / avail.sum(2, keepdim=True).clamp_min(1.0)  # fallback when k's partners are all absent
            cond = torch.where(mass > 0, cond / mass.clamp_min(tiny(rm.dtype)), uniform)  # (B, K, K): T(l | k)
            plans[m] = (ra @ cond) @ share.transpose(1, 2) / n_a  # (B, T_a, T_m)
        return plans

    def alignment_plans(self) -> dict[str, Tensor]:
        r"""Token plans of the last forward, ``{m: (B, T_anchor, T_m)}``, induced by $T^\star$.

        $$P_m(i, j) = \frac{1}{T_a} \sum_{k, l} r_a(i, k)\, T^\star_{am}(l \mid k, L_b)\,
          \frac{r_m(j, l)}{\sum_{j'} r_m(j', l)}$$

        Anchor token $i$ (mass $1/T_a$) is spread over its prototypes by its posterior, sent to the
        prototypes of $m$ by the plan, and each of those shares its mass among the instance's frames
        in proportion to their posteriors. $T^\star_{am}(l \mid k, L_b)$ is the plan's conditional
        restricted to the set $L_b$ of prototypes that hold some of instance $b$'s frames (uniform
        over $L_b$ if the plan sends $k$ only outside it), so no mass is lost: rows sum to $1/T_a$,
        padding gets nothing. Detached.
        """
        if self.p.reference == "authors":
            from mmcore.errors import MmcoreUserError

            raise MmcoreUserError("gmm_prototype_ot with reference: authors matches prototypes of time-pooled "
                                  "features (one vector per instance), so it has no token-level plan to show; "
                                  "plot a run trained with reference: mmcore, or read aligner.last_joint_plan "
                                  "(the K x ... x K prototype plan)")
        return dict(self._plans)


def _pair_plan(T: Tensor, i: int, j: int) -> Tensor:
    """The (K_i, K_j) marginal of the multi-marginal plan T (K, ..., K) on modalities i and j."""
    lo, hi = min(i, j), max(i, j)
    others = tuple(k for k in range(T.dim()) if k not in (lo, hi))
    tij = T.sum(dim=others) if others else T  # (K_lo, K_hi); sum(dim=()) would reduce everything
    return tij if i < j else tij.transpose(0, 1)
