"""The one map between transformers' activation names (ACT2FN) and ours, checked numerically."""

import pytest
import torch

from plmlab.hf.hfconfig import ACT_HF, HF_ACT
from plmlab.nn.mlp import ACTIVATIONS

activations = pytest.importorskip("transformers.activations")  # optional extra: the oracle

X = torch.linspace(-6, 6, 1001)


@pytest.mark.parametrize("name", sorted(HF_ACT))
def test_every_hf_name_we_read_computes_our_function(name):
    torch.testing.assert_close(activations.ACT2FN[name](X), ACTIVATIONS[HF_ACT[name]](X), atol=2e-6, rtol=0)


@pytest.mark.parametrize("ours", sorted(ACT_HF))
def test_every_name_we_write_is_our_kernel_bit_for_bit(ours):
    assert torch.equal(activations.ACT2FN[ACT_HF[ours]](X), ACTIVATIONS[ours](X))
    assert HF_ACT[ACT_HF[ours]] == ours


def test_every_activation_of_ours_can_be_written_and_different_functions_are_not_mapped():
    assert set(ACT_HF) == set(ACTIVATIONS)
    assert "quick_gelu" not in HF_ACT  # x * sigmoid(1.702 x): not GELU to within fp32
    gelu_gap = (activations.ACT2FN["gelu"](X) - activations.ACT2FN["gelu_new"](X)).abs().max()
    assert gelu_gap > 1e-4  # exact and tanh GELU really differ: the map must not confuse them
