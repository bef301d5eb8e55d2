"""State-dict mappings from MMSA 2.2.1's models to this plugin's (fuser, head) pairs.

``from_mmsa(model, mmsa_state, names, widths)`` returns ``(fuser_state, head_state)`` ready for
``load_state_dict(strict=True)``. It is what the equivalence tests use (the MMSA model's weights are
copied into the mmcore components), and it loads an MMSA checkpoint into an mmcore pipeline.

The mapping, per model (MMSA key -> mmcore key; m ∈ names, MMSA's modality prefixes are
text/audio/video and l/a/v):

| model | MMSA | mmcore fuser / head |
|---|---|---|
| TFN, LF-DNN | ``{text,audio,video}_subnet.*`` | ``subnets.{m}.*`` |
| TFN, LF-DNN | ``post_fusion_layer_1.weight`` | same key, input columns permuted from MMSA's (audio, video, text) order to ``names`` order |
| TFN, LF-DNN | ``post_fusion_layer_{1,2}.bias``, ``post_fusion_layer_2.weight`` | same key |
| TFN, LF-DNN | ``post_fusion_layer_3.*`` | head ``linear.*``; TFN's ``output_range``/``output_shift`` (6, −3) are the head's ``output_range: [-3, 3]`` |
| LMF | ``{text,audio,video}_subnet.*``, ``{text,audio,video}_factor`` | ``subnets.{m}.*``, ``factors.{m}`` |
| LMF | ``fusion_weights``, ``fusion_bias`` | same keys; head has no weights (``linear: false``) |
| EF-LSTM | ``norm.*``, ``lstm.*``, ``linear.*`` | same keys; ``lstm.weight_ih_l0`` columns permuted from MMSA's (text, audio, video) order |
| EF-LSTM | ``out.*`` | head ``linear.*`` |
| MFN | ``lstm_{l,a,v}.*`` | ``lstms.{m}.*`` |
| MFN | ``att1_fc*``, ``att2_fc*``, ``gamma{1,2}_fc*``, ``out_fc1`` | same keys; blocks permuted from MMSA's (text, audio, video) order |
| MFN | ``out_fc2.*`` | head ``linear.*`` |
| MFM | ``mfn_encoder.*`` | ``mfn.*`` as MFN's mapping; MFN's ``out_fc1/2`` (built, unused by MFM) are dropped |
| MFM | ``last_to_zy_fc1.*`` | same key; input columns permuted as MFN's ``out_fc1`` |
| MFM | ``encoder_{l,a,v}.*``, ``decoder_{l,a,v}.*`` | ``encoders.{m}.*``, ``decoders.{m}.*`` |
| MFM | ``z{l,a,v}_to_f{l,a,v}_fc{1,2}.*`` | ``z_to_f.{m}.fc{1,2}.*`` |
| MFM | ``zy_to_fy_fc{1,2}.*``, ``fy_to_y_fc1.*`` | same keys |
| MFM | ``fy_to_y_fc2.*`` | head ``linear.*`` |
| MISA | ``project_{t,a,v}.project_{t,a,v}.*``, ``..._layer_norm.*`` | ``project.{m}.0.*``, ``project.{m}.2.*`` |
| MISA | ``{v,a}rnn{1,2}.*``, ``{v,a}layer_norm.*`` | ``rnns.{m}.rnn{1,2}.*``, ``rnns.{m}.layer_norm.*`` |
| MISA | ``private_{t,v,a}.private_*``, ``shared.shared_1.*``, ``recon_{t,v,a}.recon_*`` | ``private.{m}.*``, ``shared.*``, ``recon.{m}.*`` |
| MISA | ``transformer_encoder.*`` | same keys |
| MISA | ``fusion.fusion_layer_1.*`` | same keys; input columns permuted from MMSA's code order (private t, v, a, shared t, v, a) |
| MISA | ``fusion.fusion_layer_3.*`` | head ``linear.*``; ``bertmodel.*``, ``sp_discriminator.*`` are not mapped |
| Self-MM | ``audio_model.*``, ``video_model.*`` | ``subnets.audio.*``, ``subnets.vision.*``; ``text_model.*`` (BERT) is not mapped |
| Self-MM | ``post_fusion_layer_1.weight`` | same key, input columns permuted from MMSA's (text, audio, video) order |
| Self-MM | ``post_fusion_layer_1.bias``, ``post_fusion_layer_2.*`` | same keys |
| Self-MM | ``post_{text,audio,video}_layer_{1,2,3}.*`` | ``heads.{m}.layer_{1,2,3}.*`` |
| Self-MM | ``post_fusion_layer_3.*`` | head ``linear.*``; the ULGM memories (MMSA's trainer state, not the model's) start empty |
| MulT | ``proj_{l,a,v}.weight`` | ``proj.{m}.weight``; dropped when d = dst_dim (MMSA builds but never uses it) |
| MulT | ``trans_{t}_with_{s}.*`` (t, s ∈ l/a/v) | ``cross.{t}_with_{s}.*``; the ``version`` buffer is dropped |
| MulT | ``trans_{t}_mem.*`` | ``mem.{t}.*``; channel blocks permuted when the sources of t are not in MMSA's (text, audio, vision) order |
| MulT | ``proj1.*``, ``proj2.*`` | same keys; ``proj1`` input columns and ``proj2`` outputs permuted from MMSA's (text, audio, vision) order, and within each block as its memory stream |
| MulT | ``out_layer.*`` | head ``linear.*``, input columns permuted likewise |

Every model works on the fuser's d_model-wide inputs: build MMSA's model with ``feature_dims = (d, d, d)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

MMSA_NAME = {"text": "text", "audio": "audio", "vision": "video"}
MFN_NAME = {"text": "l", "audio": "a", "vision": "v"}
_TAV = ("text", "audio", "vision")  # MMSA's order in concatenations (EF-LSTM, MFN)
_AVT = ("audio", "vision", "text")  # MMSA's order in TFN's outer product and LF-DNN's concatenation


def _check(names: list[str]) -> None:
    if sorted(names) != sorted(_TAV):
        raise ValueError(f"MMSA's models take text, audio and vision; got modalities {names}")


def _block_perm(sizes: dict[str, int], src: tuple[str, ...], dst: list[str]) -> Tensor:
    """Index that reorders a vector of blocks laid out in ``src`` order into ``dst`` order."""
    start, pos = {}, 0
    for m in src:
        start[m], pos = pos, pos + sizes[m]
    return torch.cat([torch.arange(start[m], start[m] + sizes[m]) for m in dst])


def _outer_perm(sizes: dict[str, int], src: tuple[str, ...], dst: list[str]) -> Tensor:
    """Index reordering the flattened outer product ⊗_{m∈src} (k_m+1) into ⊗_{m∈dst} order."""
    idx = torch.arange(int(torch.tensor([sizes[m] for m in src]).prod())).reshape([sizes[m] for m in src])
    return idx.permute([src.index(m) for m in dst]).reshape(-1)


def _subnet_keys(state: dict[str, Tensor], names: list[str]) -> dict[str, Tensor]:
    out = {}
    for m in names:
        prefix = f"{MMSA_NAME[m]}_subnet."
        out.update({f"subnets.{m}." + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return out


def from_mmsa(model: str, state: dict[str, Tensor], names: list[str], widths: dict[str, int] | None = None,
              d: int | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """MMSA ``state`` of ``model`` ("tfn", "lmf", "lf_dnn", "ef_lstm", "mfn", "mfm", "misa", "mmsa_mult",
    "self_mm") -> (fuser_state, head_state).

    ``names``: the fuser's modality order; ``widths[m]``: sub-network output sizes (TFN, LF-DNN) or MFN hidden
    sizes (MFM: its MFN's); ``d``: the fuser's input width (EF-LSTM).
    """
    _check(names)
    s = dict(state)
    if model in ("tfn", "lf_dnn"):
        fuser = _subnet_keys(s, names)
        w1 = s["post_fusion_layer_1.weight"]
        perm = (_outer_perm({m: widths[m] + 1 for m in names}, _AVT, names) if model == "tfn"
                else _block_perm(widths, _AVT, names))
        fuser["post_fusion_layer_1.weight"] = w1[:, perm]
        for k in ("post_fusion_layer_1.bias", "post_fusion_layer_2.weight", "post_fusion_layer_2.bias"):
            fuser[k] = s[k]
        head = {"linear.weight": s["post_fusion_layer_3.weight"], "linear.bias": s["post_fusion_layer_3.bias"]}
        return fuser, head
    if model == "lmf":
        fuser = _subnet_keys(s, names)
        fuser.update({f"factors.{m}": s[f"{MMSA_NAME[m]}_factor"] for m in names})
        fuser.update(fusion_weights=s["fusion_weights"], fusion_bias=s["fusion_bias"])
        return fuser, {}
    if model == "ef_lstm":
        fuser = {k: v for k, v in s.items() if k.startswith(("norm.", "lstm.", "linear."))}
        fuser["lstm.weight_ih_l0"] = s["lstm.weight_ih_l0"][:, _block_perm({m: d for m in names}, _TAV, names)]
        return fuser, {"linear.weight": s["out.weight"], "linear.bias": s["out.bias"]}
    if model == "mfn":
        fuser = {}
        for m in names:
            prefix = f"lstm_{MFN_NAME[m]}."
            fuser.update({f"lstms.{m}." + k[len(prefix):]: v for k, v in s.items() if k.startswith(prefix)})
        total = sum(widths.values())
        cells = _block_perm(widths, _TAV, names)
        c_star = torch.cat([cells, cells + total])  # [c_{t-1}; c_t]
        mem = s["att2_fc2.weight"].shape[0]
        for k, v in s.items():
            if k.startswith(("att", "gamma", "out_fc1")):
                fuser[k] = v
        fuser["att1_fc1.weight"] = s["att1_fc1.weight"][:, c_star]
        fuser["att1_fc2.weight"] = s["att1_fc2.weight"][c_star]
        fuser["att1_fc2.bias"] = s["att1_fc2.bias"][c_star]
        fuser["att2_fc1.weight"] = s["att2_fc1.weight"][:, c_star]
        for g in ("gamma1_fc1.weight", "gamma2_fc1.weight"):
            fuser[g] = s[g][:, torch.cat([c_star, torch.arange(2 * total, 2 * total + mem)])]
        fuser["out_fc1.weight"] = s["out_fc1.weight"][:, torch.cat([cells, torch.arange(total, total + mem)])]
        return fuser, {"linear.weight": s["out_fc2.weight"], "linear.bias": s["out_fc2.bias"]}
    if model == "mfm":
        return _mfm(s, names, widths)
    by_names = {"misa": _misa, "mmsa_mult": _mult, "self_mm": _self_mm}  # the mappings that need only the names
    if model in by_names:
        return by_names[model](s, names)
    raise ValueError(f"no MMSA mapping for {model!r}; have tfn, lmf, lf_dnn, ef_lstm, mfn, mfm, misa, mmsa_mult, "
                     "self_mm")


def _mfm(s: dict[str, Tensor], names: list[str], widths: dict[str, int]) -> tuple[dict, dict]:
    """MMSA ``MFM`` -> ``mfm`` fuser + ``mmsa_output`` head; ``widths``: the MFN hidden sizes."""
    sub = {k[len("mfn_encoder."):]: v for k, v in s.items() if k.startswith("mfn_encoder.")}
    # MFM reads MFN's state through last_to_zy_fc1, whose columns are laid out as MFN's out_fc1's
    sub["out_fc1.weight"], sub["out_fc1.bias"] = s["last_to_zy_fc1.weight"], s["last_to_zy_fc1.bias"]
    mfn, _ = from_mmsa("mfn", sub, names, widths)
    fuser = {"last_to_zy_fc1.weight": mfn.pop("out_fc1.weight"), "last_to_zy_fc1.bias": mfn.pop("out_fc1.bias")}
    fuser.update({"mfn." + k: v for k, v in mfn.items()})
    for m in names:
        short = MFN_NAME[m]
        for part in ("encoder", "decoder"):
            prefix = f"{part}_{short}."
            fuser.update({f"{part}s.{m}." + k[len(prefix):]: v for k, v in s.items() if k.startswith(prefix)})
        for fc in ("fc1", "fc2"):
            for p in ("weight", "bias"):
                fuser[f"z_to_f.{m}.{fc}.{p}"] = s[f"z{short}_to_f{short}_{fc}.{p}"]
    for k, v in s.items():
        if k.startswith(("zy_to_fy_fc", "fy_to_y_fc1")):
            fuser[k] = v
    return fuser, {"linear.weight": s["fy_to_y_fc2.weight"], "linear.bias": s["fy_to_y_fc2.bias"]}


def _misa(s: dict[str, Tensor], names: list[str]) -> tuple[dict, dict]:
    """MMSA ``MISA`` (everything after ``bertmodel``) -> ``misa`` fuser + ``mmsa_output`` head."""
    short = {"text": "t", "audio": "a", "vision": "v"}
    fuser = {}
    for m in names:
        k = short[m]
        parts = [(f"project_{k}.project_{k}.", f"project.{m}.0."),
                 (f"project_{k}.project_{k}_layer_norm.", f"project.{m}.2.")]
        if m != "text":  # MMSA's text is BERT's mean (an utterance modality); its tlayer_norm is unused
            parts += [(f"{k}rnn1.", f"rnns.{m}.rnn1."), (f"{k}rnn2.", f"rnns.{m}.rnn2."),
                      (f"{k}layer_norm.", f"rnns.{m}.layer_norm.")]
        for src, dst in parts:
            fuser.update({dst + key[len(src):]: v for key, v in s.items() if key.startswith(src)})
        private = "private_a_3" if m == "audio" else f"private_{k}_1"  # MMSA's naming
        for p in ("weight", "bias"):
            fuser[f"private.{m}.{p}"] = s[f"private_{k}.{private}.{p}"]
            fuser[f"recon.{m}.{p}"] = s[f"recon_{k}.recon_{k}_1.{p}"]
    for p in ("weight", "bias"):
        fuser[f"shared.{p}"] = s[f"shared.shared_1.{p}"]
    fuser.update({k: v for k, v in s.items() if k.startswith("transformer_encoder.")})
    h = s["shared.shared_1.weight"].shape[0]
    tva = ("text", "vision", "audio")  # MMSA stacks the codes private t, v, a, then shared t, v, a
    blocks = [("p", m) for m in tva] + [("c", m) for m in tva]
    ours = [("p", m) for m in names] + [("c", m) for m in names]
    perm = torch.cat([torch.arange(blocks.index(b) * h, (blocks.index(b) + 1) * h) for b in ours])
    fuser["fusion.fusion_layer_1.weight"] = s["fusion.fusion_layer_1.weight"][:, perm]
    fuser["fusion.fusion_layer_1.bias"] = s["fusion.fusion_layer_1.bias"]
    return fuser, {"linear.weight": s["fusion.fusion_layer_3.weight"], "linear.bias": s["fusion.fusion_layer_3.bias"]}


def _permute_stream(state: dict[str, Tensor], perm: Tensor) -> dict[str, Tensor]:
    """A MulT transformer's state with its residual-stream channels reordered by ``perm``.

    Why this is the same function: LayerNorm is equivariant under a channel permutation (its weight and
    bias permuted), and every linear map that reads the stream has its columns permuted, every map that
    writes it its rows; the heads split Q, K, V (rows of ``in_proj_weight``), which stay put.
    """
    out = {}
    for k, v in state.items():
        if k.endswith("in_proj_weight") or k.endswith("fc1.weight"):
            v = v[:, perm]
        elif k.endswith(("out_proj.weight", "fc2.weight")):
            v = v[perm]
        elif k.endswith(("out_proj.bias", "fc2.bias")) or ".layer_norms." in k or k.startswith("layer_norm."):
            v = v[perm]
        out[k] = v
    return out


def _mult(s: dict[str, Tensor], names: list[str]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """MMSA ``MULT`` -> ``mmsa_mult`` fuser + ``mmsa_output`` head."""
    dst = s["trans_l_with_a.layer_norm.weight"].shape[0]  # MMSA dst_feature_dim
    fuser, blocks = {}, []
    for m in names:
        w = s[f"proj_{MFN_NAME[m]}.weight"]  # (dst, d, k)
        if w.shape[1] != dst:  # MMSA builds the convolution always but uses it only when d != dst
            fuser[f"proj.{m}.weight"] = w
    for t in names:
        for src in names:
            if src == t:
                continue
            prefix = f"trans_{MFN_NAME[t]}_with_{MFN_NAME[src]}."
            fuser.update({f"cross.{t}_with_{src}." + k[len(prefix):]: v for k, v in s.items()
                          if k.startswith(prefix) and not k.endswith("version")})
        prefix = f"trans_{MFN_NAME[t]}_mem."
        mem = {k[len(prefix):]: v for k, v in s.items() if k.startswith(prefix) and not k.endswith("version")}
        sources = [m for m in names if m != t]
        within = _block_perm({m: dst for m in sources}, tuple(m for m in _TAV if m != t), sources)
        fuser.update({f"mem.{t}." + k: v for k, v in _permute_stream(mem, within).items()})
        # h = [H_t[n_t] for t in names]; each block is in the memory stream's (now permuted) channel order
        blocks.append(_TAV.index(t) * len(within) + within)
    perm = torch.cat(blocks)  # MMSA's [h_l; h_a; h_v] -> ours
    fuser["proj1.weight"], fuser["proj1.bias"] = s["proj1.weight"][:, perm], s["proj1.bias"]
    fuser["proj2.weight"], fuser["proj2.bias"] = s["proj2.weight"][perm], s["proj2.bias"][perm]
    head = {"linear.weight": s["out_layer.weight"][:, perm], "linear.bias": s["out_layer.bias"]}
    return fuser, head


def _self_mm(s: dict[str, Tensor], names: list[str]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """MMSA ``SELF_MM`` (everything after ``text_model``) -> ``self_mm`` fuser (empty ULGM) + ``mmsa_output`` head."""
    fuser = {}
    for m in ("audio", "vision"):
        prefix = f"{MMSA_NAME[m]}_model."
        fuser.update({f"subnets.{m}." + k[len(prefix):]: v for k, v in s.items() if k.startswith(prefix)})
    widths = {m: s[f"post_{MMSA_NAME[m]}_layer_1.weight"].shape[1] for m in names}
    fuser["post_fusion_layer_1.weight"] = s["post_fusion_layer_1.weight"][:, _block_perm(widths, _TAV, names)]
    for k in ("post_fusion_layer_1.bias", "post_fusion_layer_2.weight", "post_fusion_layer_2.bias"):
        fuser[k] = s[k]
    for m in names:
        for i in (1, 2, 3):
            for p in ("weight", "bias"):
                fuser[f"heads.{m}.layer_{i}.{p}"] = s[f"post_{MMSA_NAME[m]}_layer_{i}.{p}"]
    dims = {"fusion": s["post_fusion_layer_2.weight"].shape[0],
            **{m: s[f"post_{MMSA_NAME[m]}_layer_1.weight"].shape[0] for m in names}}
    fuser["ulgm.seen"] = torch.zeros(0, dtype=torch.long)
    for mode, d in dims.items():
        fuser.update({f"ulgm.memories.{mode}.label": torch.zeros(0), f"ulgm.memories.{mode}.feature": torch.zeros(0, d),
                      f"ulgm.memories.{mode}.center_pos": torch.zeros(d), f"ulgm.memories.{mode}.center_neg": torch.zeros(d)})
    return fuser, {"linear.weight": s["post_fusion_layer_3.weight"], "linear.bias": s["post_fusion_layer_3.bias"]}
