"""Backend `loop_native` (charrnn/rnn/native_rnn.py, csrc/rnn_steps.cpp) against nn.LSTM / nn.GRU and autograd."""
from __future__ import annotations

import pytest
import torch

from charrnn.rnn import native_rnn
from charrnn.capabilities import cxx_compiler
from charrnn.rnn.cells import make_layer
from charrnn.config import ConfigError, check_backend_device

pytestmark = pytest.mark.skipif(cxx_compiler() is None,
                                reason="loop_native builds C++ kernels: no C++ compiler on PATH")

B, T, I, H = 3, 6, 5, 7
CELLS = ("gru", "lstm")


def run(layer, x, hidden):
    """out, h_n (and c_n), then the gradients of x, the initial state and every parameter."""
    x = x.detach().clone().requires_grad_()
    hidden = tuple(t.detach().clone().requires_grad_() for t in hidden)
    out, h_n = layer(x, hidden if len(hidden) == 2 else hidden[0])
    finals = h_n if isinstance(h_n, tuple) else (h_n,)
    gen = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=gen).to(t.dtype)).sum() for t in (out, *finals))
    loss.backward()
    return [out, *finals, x.grad, *(t.grad for t in hidden), *(p.grad for p in layer.parameters())]


def layers(cell: str, scale: float = 1.0):
    torch.manual_seed(0)
    fused, native = make_layer("fused", cell, I, H), make_layer("loop_native", cell, I, H)
    with torch.no_grad():
        for p in fused.parameters():
            p.mul_(scale)
    native.load_state_dict(fused.state_dict())
    return fused, native


def initial(cell: str, dtype=torch.float32):
    return tuple(torch.randn(1, B, H, dtype=dtype) for _ in range(2 if cell == "lstm" else 1))


@pytest.mark.parametrize("cell", CELLS)
def test_loop_native_matches_the_fused_module_outputs_and_every_gradient(cell):
    fused, native = layers(cell)
    x, hidden = torch.randn(B, T, I), initial(cell)
    for got, want in zip(run(native, x, hidden), run(fused, x, hidden), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_loop_native_matches_the_fused_module_where_the_gates_saturate(cell):
    """Weights ×30: pre-activations of ±100 put σ and tanh at 0 / ±1 (exp overflows in the kernel's
    σ(x) = 1 / (1 + exp(-x))); values and gradients stay finite and equal to nn.*'s."""
    fused, native = layers(cell, scale=30.0)
    x, hidden = 3 * torch.randn(B, T, I), initial(cell)
    for got, want in zip(run(native, x, hidden), run(fused, x, hidden), strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, atol=1e-5 * max(1.0, want.abs().max().item()), rtol=1e-5)


@pytest.mark.parametrize("encoding", ["embedding", "onehot"])
def test_token_projection_equals_projecting_the_encoded_tokens_values_and_gradients(encoding):
    """project_tokens (a lookup in the projected vocabulary) against project (one GEMM over T*B rows)."""
    torch.manual_seed(0)
    V = 9
    ids = torch.randint(0, V, (T, B))
    table_in = torch.randn(V, I) if encoding == "embedding" else torch.eye(V)
    w_ih, bias = torch.randn(3 * H, table_in.shape[1]), torch.randn(3 * H)
    g = torch.randn(T, B, 3 * H)
    results = []
    for by_tokens in (True, False):
        leaves = [t.clone().requires_grad_() for t in (table_in, w_ih, bias)]
        if by_tokens:
            xp = native_rnn.project_tokens(ids, leaves[0] if encoding == "embedding" else None, *leaves[1:])
        else:
            xp = native_rnn.project(leaves[0][ids], *leaves[1:])
        (xp * g).sum().backward()
        results.append([xp, *(leaf.grad for leaf in leaves[(1 if encoding == "onehot" else 0):])])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def double(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def test_lstm_native_gradients_pass_double_precision_gradcheck():
    torch.manual_seed(0)
    args = [double(T, B, 4 * H), 0.3 * double(4 * H, H), double(B, H), double(B, H)]
    assert torch.autograd.gradcheck(native_rnn.LSTMNative.apply, [a.requires_grad_() for a in args])


def test_gru_native_gradients_pass_double_precision_gradcheck():
    torch.manual_seed(0)
    args = [double(T, B, 3 * H), 0.3 * double(3 * H, H), double(3 * H), double(B, H)]
    assert torch.autograd.gradcheck(native_rnn.GRUNative.apply, [a.requires_grad_() for a in args])


@pytest.mark.parametrize("cell", CELLS)
def test_loop_native_under_bf16_autocast_stays_close_to_fp32(cell):
    """The kernels compute bf16 tensors in fp32 (ATen's opmath); the matmuls round to bf16."""
    _, native = layers(cell)
    x, hidden = torch.randn(B, T, I), initial(cell)
    want = run(native, x, hidden)
    native.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = run(native, x, hidden)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.float(), w, atol=5e-2 * max(1.0, w.abs().max().item()), rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_no_grad_forward_equals_the_grad_one_and_keeps_no_graph(cell):
    _, native = layers(cell)
    x, hidden = torch.randn(B, T, I), initial(cell)
    out, h_n = native(x, hidden if cell == "lstm" else hidden[0])
    with torch.no_grad():
        out2, h_n2 = native(x, hidden if cell == "lstm" else hidden[0])
    assert out2.grad_fn is None
    torch.testing.assert_close(out2, out.detach())
    torch.testing.assert_close(torch.cat([*(h_n2 if cell == "lstm" else (h_n2,))]),
                               torch.cat([*(h_n if cell == "lstm" else (h_n,))]).detach())


def test_loop_native_runs_only_the_cells_it_has_kernels_for():
    with pytest.raises(ConfigError, match=r"backend='loop_native': does not run cell=vanilla; valid backends"):
        make_layer("loop_native", "vanilla", I, H)


def test_loop_native_on_cuda_is_bad_input_that_names_the_backends_valid_there():
    with pytest.raises(ConfigError,
                       match=r"backend='loop_native': .*CPU.*; device is cuda; valid on cuda: .*loop_cudagraph"):
        check_backend_device("loop_native", "cuda")


def test_the_kernels_are_built_for_the_isa_torch_dispatches_to_not_for_march_native():
    capability = torch.backends.cpu.get_cpu_capability()
    assert not any("march" in f for f in native_rnn.BASE_FLAGS + sum(native_rnn.ISA_FLAGS.values(), []))
    if capability in native_rnn.ISA_FLAGS:
        assert native_rnn.build_flags() == native_rnn.BASE_FLAGS + native_rnn.ISA_FLAGS[capability]


def test_loading_the_kernels_leaves_subnormal_floats_alone():
    """-ffast-math compiles the kernels only: the shared object must not switch the process to
    flush-to-zero (which linking GCC's crtfastmath.o would do)."""
    native_rnn.ops()
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    assert (tiny * 1.0).item() > 0
