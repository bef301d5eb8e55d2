"""Paper equations the core implements, on small cases computed by hand (or by a float64 loop written here).

- AlignMamba (arXiv 2412.00833) Eq. 12, L = L_task + λ L_align: the trainer's ``Pipeline.total_loss``.
- MGMR-Net (Electronics 14(15):3088, 2025), numbered as in docs/fidelity.md (display equations of §3 in
  order): Eq. 1-3 the unimodal encoders of §3.2, Eq. 17 the FC head, Eq. 23 the L1 task loss.

The plugins' equations are tested in their own folders (``plugins/*/tests/test_*_equations.py``). These
tests use built-in components only: the core runs them with no plugin installed.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmcore.batch import Batch
from mmcore.builtins.encoders import Conv1dEncoder, LinearEncoder, LSTMEncoder
from mmcore.builtins.heads import RegressionMlpHead
from mmcore.builtins.params import Conv1dParams, LinearParams, LSTMParams, RegressionHeadParams
from mmcore.pipeline import Pipeline, PipelineOutput
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore.spec.models import ModalitySpec

F64 = torch.float64
EXACT = 1e-12  # float64 round-off


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one torch thread (the CPU is shared), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ctx(d_model: int, in_dim: int | None = None, modality: str = "audio") -> BuildContext:
    mods = {modality: ModalityInfo(modality, in_dim or d_model, 0)}
    return BuildContext(modalities=mods, d_model=d_model, modality=modality, in_dim=in_dim)


def head(d_in: int, loss: str = "l1") -> RegressionMlpHead:
    return RegressionMlpHead(RegressionHeadParams(hidden=0, loss=loss), ctx(d_in, in_dim=d_in)).double().eval()


def pipeline_with(head_module: nn.Module, loss_weights: dict[str, float]) -> Pipeline:
    """A pipeline whose only parts that matter to ``total_loss`` are the head and the loss weights."""
    return Pipeline({}, nn.Identity(), nn.Identity(), head_module, loss_weights=loss_weights)


# --- AlignMamba ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss, task", [("l1", 1.5), ("mse", 2.5)])
def test_alignmamba_eq12_total_loss_is_task_plus_lambda_times_align(loss, task):
    """AlignMamba Eq. 12: L = L_task + λ L_align. By hand: ŷ = (1, 2), y = (0, 0), L_align = 0.4 and λ = 0.25
    (the spec's ``losses: {mmd: {weight: 0.25}}``): with the L1 task loss (the regression head's default and
    examples/alignmamba.yaml's) L_task = 1.5 and L = 1.6; with ``loss: mse`` (the paper's choice for
    regression) L_task = (1 + 4)/2 = 2.5 and L = 2.6. The unweighted terms are reported as they are.
    """
    model = pipeline_with(head(2, loss), {"mmd": 0.25})
    out = PipelineOutput(torch.tensor([1.0, 2.0], dtype=F64), {"mmd": torch.tensor(0.4, dtype=F64)}, None)
    total, terms = model.total_loss(out, torch.zeros(2, dtype=F64))
    assert abs(float(total) - (task + 0.1)) < EXACT
    assert abs(float(terms["task"]) - task) < EXACT and abs(float(terms["mmd"]) - 0.4) < EXACT


# --- MGMR-Net §3.2 encoders -----------------------------------------------------------------------------------


def lstm_reference(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """One-layer unidirectional LSTM (Hochreiter & Schmidhuber 1997; gates i, f, g, o) as a loop.

    Shapes: x (T, d_in) -> (T, h).
    """
    W_ih, W_hh, b = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0
    H = W_hh.shape[1]
    h, c, outs = torch.zeros(H, dtype=x.dtype), torch.zeros(H, dtype=x.dtype), []
    for x_t in x:
        i, f, g, o = (W_ih @ x_t + W_hh @ h + b).split(H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs)


def test_mgmr_eq1_lstm_encoder_is_a_unidirectional_lstm_then_a_linear_map():
    """MGMR-Net Eq. 1: X_a^lstm = sLSTM(X_a; θ_a), X_v^lstm = sLSTM(X_v; θ_v). The ``lstm`` encoder with
    ``bidirectional: false`` (as examples/mgmr_net.yaml sets; the encoder's default is a BiLSTM) is an LSTM
    over each row's valid prefix followed by a linear map W h_t + b to d_model; checked against a float64
    loop (T = 4, the second row padded after 2 steps: its padded outputs are 0 and its valid outputs do not
    see the padding).
    """
    torch.manual_seed(0)
    assert LSTMParams().bidirectional is True
    enc = LSTMEncoder(LSTMParams(bidirectional=False), ctx(3, in_dim=2)).double().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 2, generator=g, dtype=F64)
    x[1, 2:] = 1e3  # padding: must not leak
    valid = torch.tensor([[True] * 4, [True, True, False, False]])
    with torch.no_grad():
        y = enc(x, valid)
        for b, n in enumerate((4, 2)):
            expected = enc.proj(lstm_reference(enc.lstm, x[b, :n]))
            torch.testing.assert_close(y[b, :n], expected, rtol=0, atol=EXACT)
    assert (y[1, 2:] == 0).all()


def test_mgmr_eq2_text_enters_as_given_features_with_an_unknown_vector_at_masked_tokens():
    """MGMR-Net Eq. 2: X_t^bert = BERT(X_t; θ_t). mmcore runs no BERT: text arrives as pre-extracted token
    features (e.g. the MMSA pickles' BERT features) and goes through the spec's encoder like any modality.
    What the core adds for text is §4.4's "masked tokens substituted with a special token": a modality named
    text defaults to ``mask_with: unk``, and the pipeline puts its learned unknown vector at masked tokens
    before the encoder. By hand: token 2 of 3 masked, unk = (7, -7), so the encoder sees (x_1, unk, x_3).
    """
    assert ModalitySpec().resolved_mask_with("text") == "unk" and ModalitySpec().resolved_mask_with("audio") == "zero"
    torch.manual_seed(0)
    enc = LinearEncoder(LinearParams(layer_norm=False), ctx(2, in_dim=2, modality="text")).double()
    model = Pipeline({"text": enc}, nn.Identity(), nn.Identity(), nn.Identity(), unk_dims={"text": 2}).double()
    with torch.no_grad():
        model.unk["text"].copy_(torch.tensor([7.0, -7.0], dtype=F64))
    x = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 4.0]]], dtype=F64)  # the masked token was zeroed
    masked = torch.tensor([[False, True, False]])
    batch = Batch(features={"text": x}, valid={"text": torch.ones(1, 3, dtype=torch.bool)}, labels=torch.zeros(1),
                  masked={"text": masked})
    with torch.no_grad():
        seen = torch.tensor([[[1.0, 2.0], [7.0, -7.0], [3.0, 4.0]]], dtype=F64)
        torch.testing.assert_close(model.encode(batch)["text"], enc.proj(seen), rtol=0, atol=EXACT)


def test_mgmr_eq3_conv1d_encoder_is_a_same_length_temporal_convolution():
    """MGMR-Net Eq. 3: X_m = Conv1D(X_m^w; kernel_m). The ``conv1d`` encoder with kernel 3, weights (1, 2, 3)
    and bias 0.5 on x = (1, 2, 3) (zero-padded, same length): by hand 2·1 + 3·2 + 0.5 = 8.5,
    1·1 + 2·2 + 3·3 + 0.5 = 14.5, 1·2 + 2·3 + 0.5 = 8.5. (In examples/mgmr_net.yaml the Conv1D after the
    LSTM is not reproduced: one encoder per modality; see the fidelity row.)
    """
    enc = Conv1dEncoder(Conv1dParams(kernel_size=3), ctx(1, in_dim=1)).double()
    with torch.no_grad():
        enc.convs[0].weight.copy_(torch.tensor([[[1.0, 2.0, 3.0]]], dtype=F64))
        enc.convs[0].bias.fill_(0.5)
        y = enc(torch.tensor([[[1.0], [2.0], [3.0]]], dtype=F64), torch.ones(1, 3, dtype=torch.bool))
    torch.testing.assert_close(y[0, :, 0], torch.tensor([8.5, 14.5, 8.5], dtype=F64), rtol=0, atol=EXACT)


# --- MGMR-Net §3.3 Stage 2 head, §3.5 task loss -----------------------------------------------------------------


def test_mgmr_eq17_prediction_is_one_fully_connected_layer_of_the_pooled_vector():
    """MGMR-Net Eq. 17: ŷ = FC(F_final). ``regression_mlp`` with ``hidden: 0`` is one linear layer (c = 1 output
    for sentiment intensity): with W = (1, -2), b = 0.5 and F_final = (3, 1), ŷ = 3 - 2 + 0.5 = 1.5.
    """
    assert RegressionHeadParams().hidden == 0
    h = head(2)
    with torch.no_grad():
        linear = h.mlp[-1]
        linear.weight.copy_(torch.tensor([[1.0, -2.0]], dtype=F64))
        linear.bias.fill_(0.5)
        pred = h(torch.tensor([[3.0, 1.0]], dtype=F64))
    assert sum(isinstance(m, nn.Linear) for m in h.modules()) == 1
    assert abs(float(pred[0]) - 1.5) < EXACT


def test_mgmr_eq23_task_loss_is_the_mean_absolute_error():
    """MGMR-Net Eq. 23: L_task = (1/N) Σ |ŷ_i - y_i|. By hand: ŷ = (1, -1, 0.5), y = (0, 1, 0.5) gives
    (1 + 2 + 0)/3 = 1 (``loss: l1``, the head's default).
    """
    assert RegressionHeadParams().loss == "l1"
    loss = head(1).loss(torch.tensor([1.0, -1.0, 0.5], dtype=F64), torch.tensor([0.0, 1.0, 0.5], dtype=F64))
    assert abs(float(loss) - 1.0) < EXACT
