"""Backend `min_native` (charrnn/rnn/native_min.py, csrc/min_steps.cpp) against minGRU / minLSTM's own
sequential loop (`loop`, the reference) and the log-space scan: outputs, h_n and every gradient (x, h0,
weight, bias), in fp64 and fp32, and the C++ backward against autograd's numerical gradients."""
from __future__ import annotations

import pytest
import torch
from test_mincells import assert_close_scaled, forward_backward

from charrnn import registry
from charrnn.capabilities import cxx_compiler
from charrnn.config import ConfigError, check_backend_device, make_config
from charrnn.rnn import mincells, native_min
from charrnn.rnn.cells import make_layer
from charrnn.rnn.models import CharRNN

pytestmark = pytest.mark.skipif(cxx_compiler() is None,
                                reason="min_native builds C++ kernels: no C++ compiler on PATH")

MIN_CELLS = registry.min_cells()
B, I, H = 3, 5, 7


def pair(cell: str, backend: str = "loop", dtype=torch.float32, scale: float = 1.0):
    """(reference on `backend`, min_native) on the same weights."""
    torch.manual_seed(0)
    ref = make_layer(backend, cell, I, H).to(dtype)
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(scale)
    native = make_layer("min_native", cell, I, H).to(dtype)
    native.load_state_dict(ref.state_dict())
    return ref, native


def inputs(T: int, dtype=torch.float32, scale: float = 1.0):
    return scale * torch.randn(B, T, I, dtype=dtype), torch.randn(1, B, H, dtype=dtype)   # h0 of both signs


@pytest.mark.parametrize("T", [1, 2, 37, 300])
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_min_native_equals_the_loop_in_fp64_outputs_and_every_gradient(cell, T):
    ref, native = pair(cell, dtype=torch.float64)
    x, h0 = inputs(T, torch.float64)
    assert_close_scaled(forward_backward(native, x, h0), forward_backward(ref, x, h0), 1e-12)


@pytest.mark.parametrize("T", [1, 64, 512])
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_min_native_equals_the_loop_in_fp32_outputs_and_every_gradient(cell, T):
    ref, native = pair(cell)
    x, h0 = inputs(T)
    assert_close_scaled(forward_backward(native, x, h0), forward_backward(ref, x, h0), 1e-5)


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_min_native_equals_the_log_space_scan_within_the_scans_tolerance(cell):
    scan, native = pair(cell, "scan")
    x, h0 = inputs(512)
    assert_close_scaled(forward_backward(scan, x, h0), forward_backward(native, x, h0),
                        mincells.SCAN_TOLERANCE["fp32"])


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_min_native_in_fp32_equals_the_fp64_loop_where_the_gates_saturate(cell):
    """Weights x30 and inputs x3: pre-activations of about ±100, where fp32 σ is 0 or 1 and g is
    linear. The fp32 loop itself gives NaN there for minLSTM (f = i = 0: 0 / 0); the kernel takes
    f / (f + i) in the scan's log form, so it stays finite and equals the fp64 loop."""
    ref, native = pair(cell, dtype=torch.float64, scale=30.0)
    native.float()
    x, h0 = inputs(20, torch.float64, scale=3.0)
    got = forward_backward(native, x.float(), h0.float())
    assert all(torch.isfinite(t).all() for t in got.values())
    want = {k: v.float() for k, v in forward_backward(ref, x, h0).items()}
    assert_close_scaled(got, want, 1e-5)


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_min_native_backward_passes_double_precision_gradcheck(cell):
    """The hand-written reverse-time loop against numerical gradients of xp and h0; xp of both
    signs, so both branches of g (u + 1/2 and σ(u)) are checked."""
    torch.manual_seed(0)
    gates = registry.CELLS[cell].gates
    xp = (2 * torch.randn(2, 6, gates * 4, dtype=torch.float64)).requires_grad_()
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: native_min.MinNative.apply(a, b, cell), (xp, h0))


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_min_native_without_an_initial_state_starts_from_zeros(cell):
    _, native = pair(cell)
    x, _ = inputs(9)
    out, h_n = native(x)
    want, want_h = native(x, torch.zeros(1, B, H))
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    torch.testing.assert_close(h_n, want_h, rtol=0, atol=0)
    assert h_n.shape == (1, B, H) and out.shape == (B, 9, H)


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_min_native_under_bf16_autocast_equals_the_scan_recurrence_in_fp32(cell):
    """Under autocast the input GEMM runs in bf16 and the recurrence in fp32, as the scan's: outputs and
    h0's gradient agree to fp32 rounding; the GEMM-side gradients within a bf16 rounding of each other.
    (Against the fp32 loop, minLSTM's x gradient differs by ~0.1 here on every backend, the loop's
    own bf16 run included: d xp_f and d xp_i nearly cancel in d x, after rounding to bf16.)"""
    scan, native = pair(cell, "scan")
    x, h0 = inputs(50)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = forward_backward(scan, x, h0), forward_backward(native, x, h0)
    assert got["out"].dtype == torch.float32
    exact = ("out", "h_n", "grad h0")
    assert_close_scaled({k: got[k] for k in exact}, {k: want[k] for k in exact}, mincells.SCAN_TOLERANCE["fp32"])
    assert_close_scaled({k: v.float() for k, v in got.items()}, {k: v.float() for k, v in want.items()},
                        mincells.SCAN_TOLERANCE["bf16"])


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_no_grad_forward_equals_the_grad_one_and_keeps_no_graph(cell):
    _, native = pair(cell)
    x, h0 = inputs(11)
    out, h_n = native(x, h0)
    with torch.no_grad():
        out2, h_n2 = native(x, h0)
    assert out2.grad_fn is None
    torch.testing.assert_close(out2, out.detach(), rtol=0, atol=0)
    torch.testing.assert_close(h_n2, h_n.detach(), rtol=0, atol=0)


def test_min_native_runs_only_the_min_cells():
    with pytest.raises(ConfigError, match=r"backend='min_native': does not run cell=gru; valid backends"):
        make_layer("min_native", "gru", I, H)


def test_min_native_on_cuda_is_bad_input_that_names_the_backends_valid_there():
    with pytest.raises(ConfigError, match=r"backend='min_native': .*CPU.*; device is cuda; valid on cuda: .*scan"):
        check_backend_device("min_native", "cuda")


@pytest.mark.parametrize("encoding", ["embedding", "onehot"])
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_charrnn_on_min_native_fed_token_ids_equals_the_loop_model_outputs_and_every_gradient(cell, encoding):
    """The first layer takes the token ids (its input projection a lookup in the projected
    vocabulary); a second layer runs on vectors. Logits, h_n and every gradient against `loop`."""
    overrides = {"cell": cell, "hidden_size": H, "layers": 2, "input": encoding, "embed_size": 6}
    torch.manual_seed(0)
    ref = CharRNN(make_config(overrides | {"backend": "loop"}), 11).double()
    native = CharRNN(make_config(overrides | {"backend": "min_native"}), 11).double()
    native.load_state_dict(ref.state_dict())
    assert native.tokens_to_first_layer and not ref.tokens_to_first_layer
    ids = torch.randint(0, 11, (B, 9), generator=torch.Generator().manual_seed(2))
    h0 = torch.randn(2, B, H, dtype=torch.float64)
    results = []
    for net in (native, ref):
        h = h0.clone().requires_grad_()
        logits, h_n = net(ids, h)
        gen = torch.Generator().manual_seed(1)
        ((logits * torch.randn(logits.shape, generator=gen, dtype=logits.dtype)).sum()
         + (h_n * torch.randn(h_n.shape, generator=gen, dtype=h_n.dtype)).sum()).backward()
        results.append({"logits": logits, "h_n": h_n, "grad h0": h.grad,
                        **{f"grad {n}": p.grad for n, p in net.named_parameters()}})
    assert_close_scaled(*results, 1e-12)
