"""The written-out LSTM recurrence of `loop_bptt` (charrnn/rnn/lstm_bptt.py) against nn.LSTM and autograd."""
from __future__ import annotations

import pytest
import torch

from charrnn.rnn.cells import make_layer
from charrnn.rnn.lstm_bptt import LSTMBPTT, lstm_forward, lstm_recurrence

B, T, I, H = 3, 6, 5, 7


def run(layer, x, h0, c0):
    """out, h_n, c_n and the gradients of x, h0, c0 and every parameter under a fixed projection."""
    x, h0, c0 = (t.detach().clone().requires_grad_() for t in (x, h0, c0))
    out, (h_n, c_n) = layer(x, (h0, c0))
    gen = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (out, h_n, c_n))
    loss.backward()
    return [out, h_n, c_n, x.grad, h0.grad, c0.grad, *(p.grad for p in layer.parameters())]


def test_loop_bptt_lstm_uses_the_written_out_recurrence_and_matches_nn_lstm():
    torch.manual_seed(0)
    fused, bptt = make_layer("fused", "lstm", I, H), make_layer("loop_bptt", "lstm", I, H)
    bptt.load_state_dict(fused.state_dict())
    assert bptt.lstm_kernel
    x, h0, c0 = torch.randn(B, T, I), torch.randn(1, B, H), torch.randn(1, B, H)
    for got, want in zip(run(bptt, x, h0, c0), run(fused, x, h0, c0), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_lstm_bptt_gradients_pass_double_precision_gradcheck():
    torch.manual_seed(0)
    args = [torch.randn(T, B, 4 * H, dtype=torch.float64), 0.3 * torch.randn(4 * H, H, dtype=torch.float64),
            torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)]
    assert torch.autograd.gradcheck(LSTMBPTT.apply, [a.requires_grad_() for a in args])


def test_gradient_through_the_final_cell_state_alone():
    torch.manual_seed(0)
    ref, bptt = make_layer("loop_premul", "lstm", I, H), make_layer("loop_bptt", "lstm", I, H)
    bptt.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, I)
    grads = []
    for layer in (ref, bptt):
        layer(x)[1][1].square().sum().backward()
        grads.append([p.grad for p in layer.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_no_grad_recurrence_equals_the_grad_one_and_keeps_no_graph():
    torch.manual_seed(0)
    xp, w, h0, c0 = torch.randn(T, B, 4 * H), torch.randn(4 * H, H), torch.randn(B, H), torch.randn(B, H)
    with_grad = lstm_recurrence(xp.requires_grad_(), w, h0, c0)
    with torch.no_grad():
        without = lstm_recurrence(xp, w, h0, c0)
    assert all(t.grad_fn is None for t in without)
    for a, b_ in zip(with_grad, without, strict=True):
        torch.testing.assert_close(a.detach(), b_)


@pytest.mark.parametrize("backend", ["loop_bptt_compiled", "loop_cudagraph"])
def test_backends_that_replace_the_gate_math_keep_the_generic_recurrence(backend):
    assert not make_layer(backend, "lstm", I, H).lstm_kernel


def test_forward_with_g_rows_scaled_by_minus_two_matches_tanh_g_and_leaves_its_inputs_unchanged():
    """One sigmoid over all 4H with the g rows scaled by -2: act's g block is σ(-2g) = (1 - tanh g) / 2,
    h and c match the textbook step with tanh, also where the gates saturate."""
    torch.manual_seed(0)
    xp, w = 4 * torch.randn(T, B, 4 * H, dtype=torch.float64), torch.randn(4 * H, H, dtype=torch.float64)
    h0, c0 = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    inputs = [t.clone() for t in (xp, w, h0, c0)]
    hs, cs, act, _ = lstm_forward(xp, w, h0, c0)
    h, c = h0, c0
    for t in range(T):
        i, f, g, o = (xp[t] + h @ w.t()).chunk(4, dim=1)
        torch.testing.assert_close(act[t, :, 2 * H:3 * H], (1 - g.tanh()) / 2)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        torch.testing.assert_close(hs[t + 1], h)
        torch.testing.assert_close(cs[t + 1], c)
    for before, after in zip(inputs, (xp, w, h0, c0), strict=True):
        assert torch.equal(before, after)
