"""Diagnostics of the MMD / DecAlign aux losses on finished runs (docs/lab.md, "Ablations").

usage (repository root, OMP_NUM_THREADS=1; runs = cells of the sweeps of examples/lab/alignmamba_mmd.yaml or
examples/lab/decalign_ablation.yaml, about 25 s per run on one core):
  python examples/lab/ablation_diagnose.py OUT.json RUN_DIR [RUN_DIR ...]   (resumable: runs already in OUT.json are skipped)
  e.g.  python examples/lab/ablation_diagnose.py /tmp/lab/abl/diag_am.json /tmp/lab/runs/alignmamba_mmd/cells/*/seed*
Summarise OUT.json with examples/lab/ablation_tables.py diag.

Per run:
  grads    -- on 8 train batches (eval-mode forward, dropout off), at initialisation (the run's seed)
              and at the selected weights: the norm of d(task)/dθ and of d(w_k · aux_k)/dθ over all
              parameters and over the encoders (the parameters every term shares), and the cosine between
              each weighted aux gradient and the task gradient. w_k = the run's weight, or the recipe's
              weight when the run has w_k = 0 (so an ablated run still says what the term *would* push).
  aux      -- every aux term on the test split, unweighted, mean over batches.
  geometry -- on test tokens of the streams the losses act on:
              * A-distance proxy 2(1 - 2 err) of a linear classifier (logistic regression, trained on train
                tokens, scored on test tokens, balanced) telling two modalities' tokens apart;
              * pooled-token MMD² (median bandwidth) between two modalities (2,000 tokens each);
              * linear probes of the ground truth: the word's stress (audio) / cue (vision) event and its
                polarity from the token that should carry it (AUC for events, R² for polarity);
              * cross-modal transfer of word identity: a 12-class word-type classifier trained on one
                modality's tokens, scored on another's (chance ~1/12): do two modalities encode a word alike?
              * DecAlign: mean |cos| between unique and common streams per instance;
              * DecAlign reference: authors: the latent codes z_m of the homogeneity branch vs the pooled common
                features they encode (mean distance between modalities, spread).
"""

from __future__ import annotations

import json
import os
import statistics as st
import sys
import tempfile

import torch

from mmcore.data.base import iterate_batches
from mmcore.train.run import load_run
from mmcore.train.trainer import Trainer

torch.set_num_threads(1)
RECIPE_W = {"mmd": 0.1, "decoupling": 1.0, "prototype_ot": 0.05, "prototype_calibration": 0.05, "homogeneity": 0.05}
ENC_PREFIX = "encoders."


def grad_vec(model, loss, names):
    params = [p for n, p in model.named_parameters() if n in names]
    g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, params)])


def grad_stats(model, data, n_batches=8, bs=64):
    model.eval()  # dropout off: the gradients of the terms, not of the noise
    split = data.split("train")
    all_names = [n for n, p in model.named_parameters() if p.requires_grad]
    enc_names = [n for n in all_names if n.startswith(ENC_PREFIX)]
    acc = {}
    for i, b in enumerate(iterate_batches(split, bs, shuffle=True, generator=torch.Generator().manual_seed(123))):
        if i == n_batches:
            break
        out = model(b)
        task = model.head.loss(out.pred, b.labels)
        terms = {"task": task}
        for k, v in out.aux.items():
            w = model.loss_weights.get(k, 0.0) or RECIPE_W.get(k, 0.0)
            terms[k] = w * v
        vec = {}
        for k, v in terms.items():
            if not v.requires_grad:
                continue
            vec[k] = (grad_vec(model, v, set(all_names)), grad_vec(model, v, set(enc_names)))
        for k, (ga, ge) in vec.items():
            d = acc.setdefault(k, {"norm_all": 0.0, "norm_enc": 0.0, "cos_task_all": 0.0, "cos_task_enc": 0.0})
            d["norm_all"] += float(ga.norm()) / n_batches
            d["norm_enc"] += float(ge.norm()) / n_batches
            ta, te = vec["task"]
            d["cos_task_all"] += float(torch.nn.functional.cosine_similarity(ga, ta, dim=0)) / n_batches
            d["cos_task_enc"] += float(torch.nn.functional.cosine_similarity(ge, te, dim=0)) / n_batches
    return acc


@torch.no_grad()
def collect(model, data, split_name, max_rows=None, bs=128):
    """Token features of the relevant streams + ground truth, concatenated over the split."""
    model.eval()
    split = data.split(split_name)
    meta = data.meta[split_name]
    rows = {}
    aux_sum, nb = {}, 0
    for b in iterate_batches(split, bs):
        if max_rows is not None and int(b.index[0]) >= max_rows:
            break
        out = model(b)
        for k, v in out.aux.items():
            aux_sum[k] = aux_sum.get(k, 0.0) + float(v)
        nb += 1
        st = out.state
        idx = b.index
        for name, x in st.aligned.items():
            rows.setdefault(("aligned", name), []).append((x, st.aligned_valid[name], idx))
        for name, x in st.encoded.items():
            rows.setdefault(("encoded", name), []).append((x, b.valid[name], idx))
    feats = {}
    for key, parts in rows.items():
        feats[key] = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]))
    return feats, {k: v / max(nb, 1) for k, v in aux_sum.items()}, meta


def logreg(xtr, ytr, xte, yte, steps=200, l2=1e-3):
    """Binary logistic regression (standardised inputs, LBFGS); returns test accuracy and AUC."""
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    w = torch.zeros(xtr.shape[1] + 1, requires_grad=True)
    Xtr = torch.cat([xtr, torch.ones(len(xtr), 1)], 1)
    Xte = torch.cat([xte, torch.ones(len(xte), 1)], 1)
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")
    ytr = ytr.float()

    def closure():
        opt.zero_grad()
        z = Xtr @ w
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, ytr) + l2 * w[:-1].square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        z = Xte @ w
        acc = float(((z > 0).long() == yte.long()).float().mean())
        pos, neg = z[yte > 0.5], z[yte < 0.5]
        auc = float((pos.unsqueeze(1) > neg.unsqueeze(0)).float().mean()) if len(pos) and len(neg) else float("nan")
    return acc, auc


def ridge_r2(xtr, ytr, xte, yte, lam=1e-2):
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    X = torch.cat([xtr, torch.ones(len(xtr), 1)], 1).double()
    A = X.T @ X + lam * len(X) * torch.eye(X.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(A, X.T @ ytr.double())
    pred = torch.cat([xte, torch.ones(len(xte), 1)], 1).double() @ w
    return float(1 - ((pred - yte) ** 2).sum() / ((yte - yte.mean()) ** 2).sum())


def softmax_reg(xtr, ytr, xte, yte, C, steps=200, l2=1e-3, standardize="source"):
    """Multinomial logistic regression (LBFGS). Inputs standardised with the training tokens' statistics
    (standardize="source") or each side with its own (standardize="each": a per-modality affine rescaling is
    forgiven, only the geometry of the codes must agree). Returns test accuracy."""
    if standardize == "each":
        xte = (xte - xte.mean(0)) / xte.std(0).clamp_min(1e-6)
        xtr = (xtr - xtr.mean(0)) / xtr.std(0).clamp_min(1e-6)
    else:
        mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
        xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    W = torch.zeros(xtr.shape[1] + 1, C, requires_grad=True)
    Xtr = torch.cat([xtr, torch.ones(len(xtr), 1)], 1)
    Xte = torch.cat([xte, torch.ones(len(xte), 1)], 1)
    opt = torch.optim.LBFGS([W], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Xtr @ W, ytr) + l2 * W[:-1].square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((Xte @ W).argmax(1) == yte).float().mean())


def word_tokens(feats, meta, key, axis, n=6000):
    x, v, idx = feats[key]
    ok, _, _, _, tok = per_token_truth(meta, key[1], axis, v, idx)
    X = x[ok].float()
    if len(X) > n:
        sel = torch.randperm(len(X), generator=torch.Generator().manual_seed(3))[:n]
        X, tok = X[sel], tok[sel]
    return X, tok.long()


def transfer(ftr, fte, mtr, mte, src, dst):
    """Word-type (12 classes) classifier trained on src tokens (train split), scored on dst tokens (test).

    src/dst = (key, axis). Within-modality accuracy (dst -> dst) is the ceiling; chance is ~1/12.
    """
    xs, ys = word_tokens(ftr, mtr, *src)
    xd, yd = word_tokens(fte, mte, *dst)
    xdd, ydd = word_tokens(ftr, mtr, *dst)
    return {"xfer": softmax_reg(xs, ys, xd, yd, 12), "xfer_each_std": softmax_reg(xs, ys, xd, yd, 12, standardize="each"),
            "within_dst": softmax_reg(xdd, ydd, xd, yd, 12)}


def tokens(feats, key, n=None, gen=None):
    x, v, _ = feats[key]
    t = x[v.bool()]
    if n is not None and len(t) > n:
        t = t[torch.randperm(len(t), generator=gen)[:n]]
    return t.float()


def a_distance(ftr, fte, k1, k2, n=3000):
    g = torch.Generator().manual_seed(0)
    a_tr, b_tr = tokens(ftr, k1, n, g), tokens(ftr, k2, n, g)
    a_te, b_te = tokens(fte, k1, n, g), tokens(fte, k2, n, g)
    m_tr, m_te = min(len(a_tr), len(b_tr)), min(len(a_te), len(b_te))
    xtr = torch.cat([a_tr[:m_tr], b_tr[:m_tr]]); ytr = torch.cat([torch.ones(m_tr), torch.zeros(m_tr)])
    xte = torch.cat([a_te[:m_te], b_te[:m_te]]); yte = torch.cat([torch.ones(m_te), torch.zeros(m_te)])
    acc, _ = logreg(xtr, ytr, xte, yte)
    return 2 * (1 - 2 * (1 - acc))


def pooled_mmd(fte, k1, k2, n=2000):
    from mmcore_plugin_ot.mmd import mmd2
    g = torch.Generator().manual_seed(1)
    a, b = tokens(fte, k1, n, g), tokens(fte, k2, n, g)
    return float(mmd2(a, b, sigma="median"))


def per_token_truth(meta, stream, key_mod, valid, index):
    """Ground truth per valid token of a stream: (event, polarity, word type) at that token's word.

    Text-length streams (text, and every stream the relaxed-OT aligner put on the text axis): token j is
    word j. Frame streams: the word of the frame (segment), -1 = offset noise / padding (dropped).
    """
    stress, cue, pol, tok = meta["stress"][index], meta["cue"][index], meta["polarity"][index], meta["tokens"][index]
    T = valid.shape[1]
    if key_mod == "text_axis":
        word = torch.arange(T).expand(len(index), T)
        ok = valid.bool()
    else:
        word = meta[f"segment_{key_mod}"][index][:, :T]
        ok = valid.bool() & (word >= 0)
    w = word.clamp(min=0)
    g = lambda z: torch.gather(z, 1, w)[ok]  # noqa: E731
    return ok, g(stress), g(cue), g(pol), g(tok)


def probes(ftr, fte, mtr, mte, key, axis):
    """Linear probes of the ground truth from one stream's valid tokens."""
    res = {}
    (xtr, vtr, itr), (xte, vte, ite) = ftr[key], fte[key]
    oktr, s_tr, c_tr, p_tr, k_tr = per_token_truth(mtr, key[1], axis, vtr, itr)
    okte, s_te, c_te, p_te, k_te = per_token_truth(mte, key[1], axis, vte, ite)
    Xtr, Xte = xtr[oktr].float(), xte[okte].float()
    if len(Xtr) > 20000:
        sel = torch.randperm(len(Xtr), generator=torch.Generator().manual_seed(2))[:20000]
        Xtr, s_tr, c_tr, p_tr = Xtr[sel], s_tr[sel], c_tr[sel], p_tr[sel]
    res["stress_auc"] = logreg(Xtr, s_tr, Xte, s_te)[1]
    res["cue_auc"] = logreg(Xtr, c_tr, Xte, c_te)[1]
    res["polarity_r2"] = ridge_r2(Xtr, p_tr, Xte, p_te)
    return res


def unique_common_cos(fte, modalities):
    out = {}
    for m in modalities:
        if ("aligned", f"{m}_unique") not in fte:
            continue
        u, v, _ = fte[("aligned", f"{m}_unique")]
        c, _, _ = fte[("aligned", m)]
        keep = v.bool().unsqueeze(-1)
        u, c = (u * keep).flatten(1), (c * keep).flatten(1)
        cos = (u * c).sum(1) / (u.norm(dim=1) * c.norm(dim=1)).clamp_min(1e-8)
        out[m] = float(cos.abs().mean())
    return out


@torch.no_grad()
def latent_check(model, data):
    """reference: authors: where is the homogeneity loss satisfied -- in z_m = pde_m(pooled common) or in the
    common features themselves? Mean distance between the modalities' means, and mean total spread, of both."""
    from mmcore_plugin_ot.decalign_authors import masked_pool

    model.eval()
    Z, C = {m: [] for m in model.modalities}, {m: [] for m in model.modalities}
    for b in iterate_batches(data.split("test"), 128):
        s_ = model(b).state
        for m in model.modalities:
            c = masked_pool(s_.aligned[m], None)  # the authors' configs pool over all steps (use_sequence_mask false)
            C[m].append(c)
            Z[m].append(model.aligner.latent[m](c))
    mods = list(model.modalities)
    zs, cs = {m: torch.cat(Z[m]) for m in mods}, {m: torch.cat(C[m]) for m in mods}
    pairs = [(a, b) for i, a in enumerate(mods) for b in mods[i + 1:]]
    return {"z_mean_dist": st.mean(float((zs[a].mean(0) - zs[b].mean(0)).norm()) for a, b in pairs),
            "c_mean_dist": st.mean(float((cs[a].mean(0) - cs[b].mean(0)).norm()) for a, b in pairs),
            "z_spread": st.mean(float(zs[m].var(0).sum().sqrt()) for m in mods),
            "c_spread": st.mean(float(cs[m].var(0).sum().sqrt()) for m in mods)}


def diagnose(run_dir):
    trainer = load_run(run_dir)
    model, data, spec = trainer.model, trainer.data, trainer.spec
    res = {"run": run_dir, "weights": dict(model.loss_weights)}
    res["grads_best"] = grad_stats(model, data)
    ftr, _, mtr = collect(model, data, "train", max_rows=1024)
    fte, aux_te, mte = collect(model, data, "test")
    res["aux_test"] = aux_te
    mods = list(model.modalities)
    geo = {}
    aligner = spec.aligner.name
    if aligner == "relaxed_ot":
        for m in mods:
            if m == "text":
                continue
            geo[f"A_aligned_{m}_vs_text"] = a_distance(ftr, fte, ("aligned", m), ("aligned", "text"))
            geo[f"mmd_aligned_{m}_vs_text"] = pooled_mmd(fte, ("aligned", m), ("aligned", "text"))
            geo[f"probe_aligned_{m}"] = probes(ftr, fte, mtr, mte, ("aligned", m), "text_axis")
            geo[f"probe_encoded_{m}"] = probes(ftr, fte, mtr, mte, ("encoded", m), m)
        geo["probe_text"] = probes(ftr, fte, mtr, mte, ("aligned", "text"), "text_axis")
        for m in mods:
            if m != "text":
                x, v, _ = fte[("aligned", m)]
                empty = (x.abs().sum(-1) == 0) & v.bool()
                xt, vt, _ = fte[("aligned", "text")]
                geo[f"norm_ratio_aligned_{m}_to_text"] = float(x[v.bool() & ~empty].norm(dim=-1).mean() / xt[vt.bool()].norm(dim=-1).mean())
                geo[f"empty_rows_{m}"] = float(empty.sum() / v.sum())
                geo[f"xfer_encoded_text_to_{m}"] = transfer(ftr, fte, mtr, mte, (("encoded", "text"), "text_axis"),
                                                             (("encoded", m), m))
    else:  # gmm_prototype_ot: common streams {m}, unique {m}_unique
        for i, a in enumerate(mods):
            for b in mods[i + 1:]:
                geo[f"A_common_{a}_vs_{b}"] = a_distance(ftr, fte, ("aligned", a), ("aligned", b))
                geo[f"mmd_common_{a}_vs_{b}"] = pooled_mmd(fte, ("aligned", a), ("aligned", b))
                geo[f"A_unique_{a}_vs_{b}"] = a_distance(ftr, fte, ("aligned", f"{a}_unique"), ("aligned", f"{b}_unique"))
        geo["abs_cos_unique_common"] = unique_common_cos(fte, mods)
        for m in mods:
            axis = "text_axis" if m == "text" else m
            geo[f"probe_unique_{m}"] = probes(ftr, fte, mtr, mte, ("aligned", f"{m}_unique"), axis)
            geo[f"probe_common_{m}"] = probes(ftr, fte, mtr, mte, ("aligned", m), axis)
        for i, a in enumerate(mods):
            for b in mods[i + 1:]:
                ax = lambda m: "text_axis" if m == "text" else m  # noqa: E731
                geo[f"xfer_common_{a}_to_{b}"] = transfer(ftr, fte, mtr, mte, (("aligned", a), ax(a)), (("aligned", b), ax(b)))
                geo[f"xfer_unique_{a}_to_{b}"] = transfer(ftr, fte, mtr, mte, (("aligned", f"{a}_unique"), ax(a)),
                                                          (("aligned", f"{b}_unique"), ax(b)))
    if aligner != "relaxed_ot" and spec.aligner.params.get("reference") == "authors":
        geo["latent"] = latent_check(model, data)
    res["geometry"] = geo
    # gradients at initialisation (the run's seed; fresh prototypes)
    init = Trainer.for_training(trainer.rs, data, tempfile.mkdtemp(), progress=False)
    res["grads_init"] = grad_stats(init.model, data)
    return res


def main():
    out, runs = sys.argv[1], sys.argv[2:]
    results = []
    if os.path.exists(out):
        results = json.load(open(out))
    done = {r["run"] for r in results}
    for r in runs:
        if r in done:
            continue
        print("diagnosing", r, flush=True)
        results.append(diagnose(r))
        with open(out + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
