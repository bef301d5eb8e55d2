"""Property test: junk in padded positions never reaches a gradient, for every registered aligner and imputer.

Hypothesis draws the junk value (NaN, ±inf, huge finite), the batch size and each modality's padded
length; :func:`mmcore.testing.check_junk_padding` then requires finite valid outputs, aux losses, input
gradients and parameter gradients. With plugins installed (CI's second pass) it covers their components.
The contract test runs the same check on fixed cases; this one searches the space around them.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcore.testing import check_junk_padding, contract_cases

CASES = contract_cases("aligner") + contract_cases("imputer")
JUNK = st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e6, -1e30, 3e38])


@pytest.mark.parametrize("kind,name", CASES, ids=[f"{k}-{n}" for k, n in CASES])
@settings(max_examples=12, deadline=None, derandomize=True)
@given(junk=JUNK, batch_size=st.integers(2, 4), text=st.integers(1, 9), audio=st.integers(1, 9),
       vision=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_padding_junk_never_reaches_a_gradient(kind, name, junk, batch_size, text, audio, vision, seed):
    check_junk_padding(kind, name, junk, lengths={"text": text, "audio": audio, "vision": vision},
                       batch_size=batch_size, seed=seed)
