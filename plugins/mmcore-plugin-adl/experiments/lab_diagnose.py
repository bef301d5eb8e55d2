"""Mechanism-lab diagnostic of the ``adl`` imputer on the synthetic dataset (ground truth known).

For each run directory (best weights; synthetic data, any ``recoverable`` r), on the test split:

1. **Test MAE with the victim filled in different ways**, in the same trained model (the rest of the
   pipeline after the imputer: aligner -> fuser -> head), and the mean cosine of each fill to the
   real victim encoding at valid victim positions:

   * ``real``       the real victim (complete data: the upper bound of this backbone);
   * ``own``        the run's own imputer (adl, zero, mean, ...) with every victim missing — the
                    setting-A test number of that run;
   * ``real_nocue`` the real victim with its label-relevant event removed from the raw features
                    (vision: x - c_j P_v): what the victim is worth beyond the shared word code;
   * ``truth_echo`` data-level oracle: the victim rebuilt from the truth the source carries,
                    s W_v[k_j] + h_j P_v on the victim's own frames (h_j = the echo, 0 at r = 0),
                    passed through the victim encoder — what an imputer that recovers exactly what
                    the source reveals would give (the recoverability knob's promise);
   * ``truth_echo_src_time`` the same, but each victim frame t takes the word of the source frame at
                    the proportional position round(t (T_1 - 1)/(T_2 - 1)) (the window centre): what a
                    source-only oracle can know — the victim's own offset and warp are drawn
                    independently of the source's, so its timing is not recoverable from it;
   * ``truth_full`` the same with the event itself, c_j instead of h_j (r = 1 by construction);
   * ``adl``        the imputer itself with every victim missing (the reported setting-A number);
   * ``adl_linmap`` the ADL imputation passed through an affine map to the victim's encoding space,
                    fitted by ridge regression on the train split (imputation -> real victim encoding
                    at valid victim frames; the trained model is not changed): is the gap a matter of
                    the space the imputation lives in?
   * ``oracle_ot``  decoding (Eq. 14) with the OT plan computed from the real victim encoding
                    (the fitter's own target): the best any fitter can do with this decoder;
   * ``oracle_align`` decoding with the ground-truth alignment (each victim frame = the mean of
                    the source frames of the same word): the best any plan can do;
   * ``uniform_plan`` decoding with the uniform plan inside the window (no alignment learned: the
                    paper's "w/o L_fit" at test time);
   * ``adl_other_clip`` the ADL imputation from another test clip's present modality (the batch
                    rolled by one row), on this clip's victim length: does
                    the fuser use the clip's own imputed content, or just an in-distribution token?
   * ``mean``, ``zero`` the naive fills (mean = mean real victim encoding over train tokens).

   ``adl``/``oracle_ot`` need an ``adl`` imputer; the other rows work for every run (zero, mean, ...).

2. **Plans against the true alignment** (ADL runs): the share of each source row's mass that lands on
   victim frames of the same word, for the fitter's prediction, the OT target, and the uniform
   window; and the fit loss (Eq. 13) of the fitter and of the uniform window against the OT target.

3. **Linear probes of the victim's event** (ridge, fitted on train, R^2 on test): can c_j at victim
   frame t be read off linearly from the real victim encoding, from the ADL imputation, from the
   oracle-alignment decoding, and from the source encoding averaged over the same word?

    python plugins/mmcore-plugin-adl/experiments/lab_diagnose.py /tmp/lab/runs/mm_align_A/cells/*/seed0
    python plugins/mmcore-plugin-adl/experiments/lab_diagnose.py --json out.json RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

import torch
import torch.nn.functional as F

from mmcore.data.base import iterate_batches
from mmcore.train.run import load_run
from mmcore_plugin_adl.decode import decode
from mmcore_plugin_adl.losses import fit_loss
from mmcore_plugin_adl.window import to_dense, to_window, window_geometry

torch.set_num_threads(1)
_EVENT = {"audio": "stress", "vision": "cue"}
FILLS = ("real", "own", "real_nocue", "truth_echo", "truth_echo_src_time", "truth_full", "adl", "adl_linmap", "oracle_ot", "oracle_align", "uniform_plan",
         "adl_other_clip", "mean", "zero")


def rest(model, seqs, batch):
    """The pipeline after the imputer: aligner -> fuser -> head."""
    valid = {m: batch.valid[m] for m in seqs}
    al = model.aligner(seqs, valid)
    return model.head(model.fuser(al.seqs, al.valid).rep).reshape(-1)


def _gather_words(values: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """values (B, T_words) at each frame's word; seg (B, T_m) word or -1 -> (B, T_m), 0 where seg = -1."""
    return torch.gather(values, 1, seg.clamp_min(0)) * (seg >= 0)


def _same_word_plan(seg1: torch.Tensor, seg2: torch.Tensor) -> torch.Tensor:
    """(B, T_1, T_2) 1 where source frame i and victim frame j belong to the same word."""
    return ((seg1.unsqueeze(2) == seg2.unsqueeze(1)) & (seg1.unsqueeze(2) >= 0)).float()


def _ridge_r2(xtr, ytr, xte, yte, lam=1e-2):
    """R^2 on test of a ridge regression (with intercept) fitted on train."""
    def aug(x):
        return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)
    A, At = aug(xtr.double()), aug(xte.double())
    w = torch.linalg.solve(A.T @ A + lam * torch.eye(A.shape[1], dtype=A.dtype), A.T @ ytr.double())
    res = ((At @ w - yte.double()) ** 2).sum()
    tot = ((yte.double() - yte.double().mean()) ** 2).sum()
    return float(1 - res / tot)


@torch.no_grad()
def diagnose(run_dir: str) -> dict:
    tr = load_run(run_dir)
    model, ds = tr.model.eval(), tr.data
    P = ds.params
    imp = model.imputer
    is_adl = imp is not None and type(imp).__name__ == "ADLImputer"
    if is_adl:
        m1, m2 = imp.present, imp.victim
    else:
        m2, m1 = P.recover_modality, P.recover_from
    lang = ds.language
    s = P.content_share
    ev_name = _EVENT[m2]

    def raw_from_truth(meta, idx, event_words, seg2):
        tok = meta["tokens"][idx].clamp_min(0)  # (B, T_t)
        k = torch.gather(tok, 1, seg2.clamp_min(0))  # (B, T_2)
        has = (seg2 >= 0).float().unsqueeze(-1)
        x = s * lang[f"{m2}_code"][k] + _gather_words(event_words, seg2).unsqueeze(-1) * lang[ev_name]
        return x * has

    # probe data: the victim event at every victim frame of a word, and three encodings of that frame
    def probe_rows(split):
        feats = defaultdict(list)
        ys = []
        meta = ds.meta[split]
        for b in iterate_batches(ds.split(split), 64):
            enc = model.encode(b)
            z1, z2, v2 = enc[m1], enc[m2], b.valid[m2]
            seg1, seg2 = meta[f"segment_{m1}"][b.index], meta[f"segment_{m2}"][b.index]
            ev = _gather_words(meta[ev_name][b.index], seg2)  # (B, T_2) event at each victim frame
            word = seg2 >= 0
            al = _same_word_plan(seg1, seg2)
            za = decode(al, z1)
            feats["real victim encoding"].append(z2[word])
            feats["oracle-alignment decoding"].append(za[word])
            if is_adl:
                gone = b.replace(missing={**b.missing, m2: torch.ones_like(b.missing[m2])})
                adl = imp({m1: z1, m2: torch.zeros_like(z2)}, gone).seqs[m2]
                feats["ADL imputation"].append(adl[word])
            ys.append(ev[word])
        return {k: torch.cat(v) for k, v in feats.items()}, torch.cat(ys)

    num, mean_tok = 0, 0.0
    for b in iterate_batches(ds.split("train"), 64):
        z = model.encode(b)[m2]
        v = b.valid[m2].unsqueeze(-1)
        mean_tok = mean_tok + (z * v).sum((0, 1))
        num += int(v.sum())
    mean_tok = mean_tok / num

    lin = None  # affine map imputation -> victim encoding (adl_linmap), fitted on train
    if is_adl:
        xs, ys = [], []
        for b in iterate_batches(ds.split("train"), 64):
            enc = model.encode(b)
            gone = b.replace(missing={**b.missing, m2: torch.ones_like(b.missing[m2])})
            adl = imp({m1: enc[m1], m2: torch.zeros_like(enc[m2])}, gone).seqs[m2]
            xs.append(adl[b.valid[m2]])
            ys.append(enc[m2][b.valid[m2]])
        X = torch.cat(xs).double()
        X = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
        lin = torch.linalg.solve(X.T @ X + 1e-2 * torch.eye(X.shape[1], dtype=X.dtype), X.T @ torch.cat(ys).double())

    err = defaultdict(float)
    cos = defaultdict(list)
    align = defaultdict(list)
    fitl = defaultdict(list)
    n = 0
    meta = ds.meta["test"]
    for b in iterate_batches(ds.split("test"), 64):
        idx = b.index
        enc = model.encode(b)
        z1, z2, v1, v2 = enc[m1], enc[m2], b.valid[m1], b.valid[m2]
        seg1, seg2 = meta[f"segment_{m1}"][idx], meta[f"segment_{m2}"][idx]
        event = meta[ev_name][idx]
        echo = meta["echo"][idx] if "echo" in meta else torch.zeros_like(event)
        x2 = b.features[m2]
        gone = b.replace(missing={**b.missing, m2: torch.ones_like(b.missing[m2])})
        own = imp({m1: z1, m2: torch.zeros_like(z2)}, gone).seqs[m2] if imp is not None else torch.zeros_like(z2)
        fills = {"real": z2, "own": own, "mean": mean_tok.expand_as(z2) * v2.unsqueeze(-1), "zero": torch.zeros_like(z2)}
        nocue = x2 - _gather_words(event, seg2).unsqueeze(-1) * lang[ev_name]
        fills["real_nocue"] = model.encoders[m2](nocue * v2.unsqueeze(-1), v2)
        fills["truth_echo"] = model.encoders[m2](raw_from_truth(meta, idx, echo, seg2), v2)
        n1, n2 = v1.sum(1, keepdim=True), v2.sum(1, keepdim=True)
        t = torch.arange(z2.shape[1]).unsqueeze(0)
        src = torch.div(2 * t * (n1 - 1) + (n2 - 1).clamp_min(1), 2 * (n2 - 1).clamp_min(1), rounding_mode="floor")
        seg_src = torch.gather(seg1, 1, src.clamp(0, z1.shape[1] - 1)) * v2 + (-1) * (~v2)  # (B, T_2) source-timed words
        fills["truth_echo_src_time"] = model.encoders[m2](raw_from_truth(meta, idx, echo, seg_src), v2)
        fills["truth_full"] = model.encoders[m2](raw_from_truth(meta, idx, event, seg2), v2)
        truth_plan = _same_word_plan(seg1, seg2)
        fills["oracle_align"] = decode(truth_plan, z1)
        if is_adl:
            p = imp.p
            gone = b.replace(missing={**b.missing, m2: torch.ones_like(b.missing[m2])})
            fills["adl"] = imp({m1: z1, m2: torch.zeros_like(z2)}, gone).seqs[m2]
            xa = torch.cat([fills["adl"], torch.ones_like(fills["adl"][..., :1])], -1).double()
            fills["adl_linmap"] = (xa @ lin).to(z2.dtype) * v2.unsqueeze(-1)
            w1, w2, wv1, wv2 = imp._square_view(z1, z2, v1, v2) if imp.square else (z1, z2, v1, v2)
            geo = window_geometry(wv1, wv2, p.window)
            target = imp._targets(w1, w2, wv1, wv2, geo)  # (B, T_1, T_2) dense row distributions
            orc = decode(target.to(z1.dtype), w1, p.decode)
            fills["oracle_ot"] = F.pad(orc, (0, 0, 0, z2.shape[1] - orc.shape[1])) * v2.unsqueeze(-1)
            rows = imp.fitter(w1, wv1, geo)
            pred = to_dense(rows, geo, w2.shape[1])
            unif = to_dense(geo.ok.float() / geo.ok.float().sum(-1, keepdim=True).clamp_min(1), geo, w2.shape[1])
            if not imp.square:
                fills["uniform_plan"] = decode(unif, z1) * v2.unsqueeze(-1)
            # another clip's present modality (the batch rolled by one row) decoded onto this clip's victim length
            rolled = gone.replace(valid={**gone.valid, m1: v1.roll(1, 0)})
            fills["adl_other_clip"] = imp({m1: z1.roll(1, 0), m2: torch.zeros_like(z2)}, rolled).seqs[m2]
            if not imp.square:  # plans vs the true alignment (source rows that belong to a word)
                has = seg1 >= 0
                for name, plan in (("fitter", pred), ("ot_target", target), ("uniform_window", unif)):
                    mass = (plan * truth_plan).sum(-1)  # (B, T_1)
                    align[name].append(mass[has])
            tw = to_window(target.to(rows.dtype), geo)
            fitl["fitter"].append(float(fit_loss(rows, tw, geo.ok, "paper")) * b.batch_size)
            fitl["uniform_window"].append(float(fit_loss(to_window(unif, geo), tw, geo.ok, "paper")) * b.batch_size)
        for k, fill in fills.items():
            pred_y = rest(model, {m1: z1, m2: fill}, b)
            err[k] += float((pred_y - b.labels).abs().sum())
            if k != "real":
                cos[k].append(F.cosine_similarity(fill[v2], z2[v2], dim=-1))
        n += b.batch_size
    out = {"run": run_dir, "recoverable": P.recoverable, "data_seed": P.data_seed, "imputer": type(imp).__name__,
           "mae": {k: err[k] / n for k in FILLS if k in err},
           "cosine": {k: (float(torch.cat(cos[k]).mean()) if k in cos else 1.0) for k in FILLS if k in err}}
    if align:
        out["align_mass"] = {k: float(torch.cat(v).mean()) for k, v in align.items()}
    if fitl:
        out["fit_loss"] = {k: sum(v) / n for k, v in fitl.items()}
    # linear probes of the victim's event
    ftr, ytr = probe_rows("train")
    fte, yte = probe_rows("test")
    out["probe_r2"] = {k: _ridge_r2(ftr[k], ytr, fte[k], yte) for k in ftr}
    return out


def _ms(vals):
    if len(vals) > 1:
        return f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f}"
    return f"{vals[0]:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--json", help="also write every run's numbers to this file")
    a = ap.parse_args()
    rows = [diagnose(r) for r in a.runs]
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"{len(rows)} runs: {', '.join(a.runs)}")
    print("| victim filled with | test MAE (mean ± std over runs) | cosine to the real victim encoding |")
    print("|---|---|---|")
    for k in FILLS:
        if all(k in r["mae"] for r in rows):
            print(f"| {k} | {_ms([r['mae'][k] for r in rows])} | {statistics.mean(r['cosine'][k] for r in rows):.3f} |")
    for key, title in (("align_mass", "plan mass on same-word victim frames"), ("fit_loss", "Eq. 13 vs the OT target"),
                       ("probe_r2", "linear probe R^2 of the victim's event")):
        if all(key in r for r in rows):
            print(f"\n| {title} | mean ± std over runs |\n|---|---|")
            for k in [k for k in rows[0][key] if all(k in r[key] for r in rows)]:
                print(f"| {k} | {_ms([r[key][k] for r in rows])} |")


if __name__ == "__main__":
    main()
