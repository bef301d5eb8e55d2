"""The built-in supervised contrastive loss (DecAlign's contrastive training) against the authors' fixtures."""

import math

import pytest
import torch

from mmcore.builtins.losses import regression_classes, supervised_contrastive_loss
from mmcore.testing.reference import assert_close, load_reference, readout, reference_dir


def _cases():
    if not (reference_dir() / "decalign.npz").exists():
        return [""]  # the test skips with the reason
    return load_reference("decalign").cases("contrastive_loss")


@pytest.mark.parametrize("case", _cases())
def test_matches_the_authors_fixtures(case):
    g = load_reference("decalign").group("contrastive_loss", case)
    feats = g.tensor("features", requires_grad=True)
    y = g.tensor("labels")
    classes = regression_classes(y) if g.scalar("train_mode") == "regression" else y.long()
    loss = supervised_contrastive_loss(feats, classes, g.scalar("ct_temperature"))
    assert_close(loss, g["loss"], what="loss")
    r = readout({"loss": loss}, g)
    assert_close(r, g["readout"], what="readout")
    (grad,) = torch.autograd.grad(r, [feats])
    assert_close(grad, g["grad_features"], what="grad_features")


def test_regression_labels_round_half_to_even_after_clamping():
    y = torch.tensor([0.5, -1.5, 2.5, -2.5, 3.7, -9.0, 0.49])
    assert regression_classes(y).tolist() == [3, 1, 5, 1, 6, 0, 3]


def test_two_pairs_by_hand():
    """Rows 0,1 share a label, rows 2,3 share another; features on the unit circle at 0, 90, 180, 270 degrees.

    With tau = 1 every row i has one positive j; cos(i, j) = 0 for the pairs (0,1) and (2,3), and the
    three others of row 0 have cos 0, -1, 0, so l_01 = 0 - log(e^0 + e^-1 + e^0) for every row by symmetry.
    """
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    loss = supervised_contrastive_loss(f, torch.tensor([0, 0, 1, 1]), 1.0)
    assert loss.item() == pytest.approx(math.log(2 + math.exp(-1)), rel=1e-12)


def test_no_positive_pair_gives_zero_with_a_gradient_path():
    f = torch.randn(3, 4, requires_grad=True)
    loss = supervised_contrastive_loss(f, torch.tensor([0, 1, 2]), 0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(f.grad, torch.zeros_like(f))
