"""NaN / inf / 1e6 in padded positions never reaches a gradient, in every configuration of the OT aligners.

Regression test: before padding was selected away (``zero_invalid``) on the aligners' inputs, the gradients
of valid inputs were NaN for every entropic plan (sinkhorn with either cost, windowed, and so relaxed_ot's
deprecated ``plan: entropic``, which runs sinkhorn's code) and gmm_prototype_ot's parameter gradients were NaN. The contract test checks the
default parameters; this one checks each configuration that takes another code path.
"""

import pytest

from mmcore.testing import check_junk_padding

CONFIGS = [
    ("sinkhorn", {"cost": "cosine"}),
    ("sinkhorn", {"cost": "sqeuclidean"}),
    ("sinkhorn", {"cost": "cosine", "window": 1}),
    ("sinkhorn", {"cost": "sqeuclidean", "window": 0}),
    ("sinkhorn", {"cost": "cosine", "normalize": "paper"}),  # = relaxed_ot's deprecated plan: entropic
    ("relaxed_ot", {"plan": "relaxed"}),
    ("gmm_prototype_ot", {"reference": "mmcore"}),
    ("gmm_prototype_ot", {"reference": "mmcore", "ot_grad": "unrolled", "ot_loss": "entropic"}),
    ("gmm_prototype_ot", {"reference": "authors"}),
]


@pytest.mark.parametrize("junk", [float("nan"), float("inf"), 1e6])
@pytest.mark.parametrize("name,params", CONFIGS, ids=[f"{n}-{'-'.join(map(str, p.values()))}" for n, p in CONFIGS])
@pytest.mark.parametrize("lengths", [{"text": 7, "audio": 5, "vision": 6}, {"text": 3, "audio": 9, "vision": 2}])
def test_padding_junk_never_reaches_a_gradient(name, params, junk, lengths):
    check_junk_padding("aligner", name, junk, params=params, lengths=lengths, batch_size=3, seed=1)
