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
    """MMSA ``state`` of ``model`` ("tfn", "lmf", "lf_dnn", "ef_lstm", "mfn") -> (fuser_state, head_state).

    ``names``: the fuser's modality order; ``widths[m]``: sub-network output sizes (TFN, LF-DNN) or MFN hidden
    sizes; ``d``: the fuser's input width (EF-LSTM).
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
    raise ValueError(f"no MMSA mapping for {model!r}; have tfn, lmf, lf_dnn, ef_lstm, mfn")
