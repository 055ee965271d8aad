"""The private oneDNN ops behind charrnn.rnn.onednn, checked against torch 2.13.0."""
import pytest
import torch

from charrnn.rnn import onednn


def test_the_oneDNN_door_was_checked_against_this_torch():
    """A torch upgrade fails here first: re-check `packed_linear` against it, then move TORCH_CHECKED."""
    assert torch.__version__.split("+")[0] == onednn.TORCH_CHECKED


@pytest.mark.skipif(not onednn.AVAILABLE, reason="this torch build has no oneDNN")
@pytest.mark.parametrize("with_bias", [True, False])
def test_packed_linear_computes_what_addmm_computes(with_bias):
    torch.manual_seed(0)
    weight, x, add = torch.randn(12, 5), torch.randn(3, 5), torch.randn(3, 12)   # (N, K), (rows, K), (rows, N)
    bias = torch.randn(12) if with_bias else None
    linear = onednn.packed_linear(weight, bias, rows=3)
    expected = x @ weight.t() + (bias if with_bias else 0)
    torch.testing.assert_close(linear(x), expected)
    torch.testing.assert_close(linear(x, add), expected + add)


def test_packed_linear_declines_what_oneDNN_does_not_pack():
    assert onednn.packed_linear(torch.randn(4, 4, dtype=torch.float64), None, rows=2) is None
    assert onednn.packed_linear(torch.randn(4, 4).to(torch.bfloat16), None, rows=2) is None
