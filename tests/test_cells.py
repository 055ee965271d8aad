"""Cells and backends: loop == fused on copied weights, the `add` combine by hand, registry errors."""
from __future__ import annotations

import math

import pytest
import torch

from charrnn import registry
from charrnn.config import ConfigError
from charrnn.rnn.cells import fused_module, make_layer
from charrnn.rnn.loop_layers import LoopRNNLayer

CLASSIC = [c.name for c in registry.CELLS.values() if c.recurrent]   # the cells nn.* has

# (cell, vanilla-only options) for every configuration the fused backend can run.
FUSED_CASES = [
    ("gru", {}),
    ("lstm", {}),
    ("vanilla", {"input_combine": "concat", "activation": "tanh"}),
    ("vanilla", {"input_combine": "concat", "activation": "relu"}),
]
CASE_IDS = ["gru", "lstm", "vanilla-tanh", "vanilla-relu"]
B, T, I, H = 3, 5, 4, 6
ATOL = 1e-5


def random_hidden(cell: str, batch: int, hidden: int, layers: int = 1, requires_grad=False):
    """Non-zero initial state in the nn.* convention: (L, B, H), or (h, c) for lstm."""
    n = 2 if registry.CELLS[cell].has_cell_state else 1
    states = tuple(torch.randn(layers, batch, hidden, requires_grad=requires_grad) for _ in range(n))
    return states if n == 2 else states[0]


def as_tuple(hidden):
    return hidden if isinstance(hidden, tuple) else (hidden,)


def run_and_backward(layer, x, h0):
    """Forward, then backward a fixed random projection of out and h_n; returns (out, h_n, grads)."""
    out, h_n = layer(x, h0)
    gen = torch.Generator().manual_seed(123)
    loss = (out * torch.randn(out.shape, generator=gen)).sum()
    for h in as_tuple(h_n):
        loss = loss + (h * torch.randn(h.shape, generator=gen)).sum()
    loss.backward()
    grads = {"x": x.grad} | {f"h0[{i}]": h.grad for i, h in enumerate(as_tuple(h0))}
    grads |= {name: p.grad for name, p in layer.named_parameters()}
    assert all(g is not None for g in grads.values())
    return out, h_n, grads


def leaf_copy(hidden):
    return tuple(h.detach().clone().requires_grad_() for h in as_tuple(hidden))


def unwrap(states: tuple):
    return states if len(states) == 2 else states[0]


@pytest.mark.parametrize("cell,opts", FUSED_CASES, ids=CASE_IDS)
def test_loop_layer_matches_fused_outputs_and_gradients(cell, opts):
    torch.manual_seed(0)
    fused = make_layer("fused", cell, I, H, **opts)
    loop = make_layer("loop", cell, I, H, **opts)
    loop.load_state_dict(fused.state_dict())
    x = torch.randn(B, T, I)
    h0 = random_hidden(cell, B, H)

    results = []
    for layer in (fused, loop):
        results.append(run_and_backward(layer, x.clone().requires_grad_(), unwrap(leaf_copy(h0))))
    (out_f, hn_f, g_f), (out_l, hn_l, g_l) = results

    torch.testing.assert_close(out_l, out_f, atol=ATOL, rtol=0)
    for a, b in zip(as_tuple(hn_l), as_tuple(hn_f)):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    assert g_l.keys() == g_f.keys()
    for name in g_f:
        torch.testing.assert_close(g_l[name], g_f[name], atol=ATOL, rtol=0, msg=name)


@pytest.mark.parametrize("cell,opts", FUSED_CASES, ids=CASE_IDS)
def test_state_dicts_copy_both_ways_between_loop_and_fused(cell, opts):
    fused = make_layer("fused", cell, I, H, **opts)
    loop = make_layer("loop", cell, I, H, **opts)
    assert list(loop.state_dict()) == list(fused.state_dict()) == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    fused.load_state_dict(loop.state_dict())
    for name, p in loop.state_dict().items():
        assert p.shape == fused.state_dict()[name].shape
        assert torch.equal(p, fused.state_dict()[name])


@pytest.mark.parametrize("cell,opts", FUSED_CASES, ids=CASE_IDS)
def test_none_initial_hidden_means_zeros_and_shapes_follow_nn_convention(cell, opts):
    loop = make_layer("loop", cell, I, H, **opts)
    x = torch.randn(B, T, I)
    out, h_n = loop(x)
    zeros = unwrap(tuple(torch.zeros(1, B, H) for _ in as_tuple(h_n)))
    out_z, h_z = loop(x, zeros)
    assert out.shape == (B, T, H)
    assert isinstance(h_n, tuple) == (cell == "lstm")
    assert all(h.shape == (1, B, H) for h in as_tuple(h_n))
    torch.testing.assert_close(out, out_z)
    torch.testing.assert_close(out[:, -1], as_tuple(h_n)[0][0])


@pytest.mark.parametrize("cell", CLASSIC)
def test_loop_init_is_pytorch_uniform_range(cell):
    torch.manual_seed(0)
    layer = LoopRNNLayer(cell, I, 16)
    bound = 1 / math.sqrt(16)
    for name, p in layer.named_parameters():
        assert p.abs().max() <= bound, name
        assert p.abs().max() > 0.5 * bound, name  # not left at zero / tiny
        assert p.shape[0] == {"vanilla": 1, "gru": 3, "lstm": 4}[cell] * 16


@pytest.mark.parametrize("activation", ["tanh", "identity"])
def test_add_combine_matches_hand_computed_two_steps(activation):
    act = torch.tanh if activation == "tanh" else (lambda t: t)
    w_ih = torch.tensor([[0.5, -1.0], [0.25, 2.0]])
    w_hh = torch.tensor([[1.0, 0.5], [-0.5, 0.3]])
    b_ih = torch.tensor([0.1, -0.2])
    b_hh = torch.tensor([0.05, 0.4])
    x1, x2 = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.5])
    h0 = torch.tensor([0.3, -0.7])
    # h_t = act(W_hh (W_ih x_t + b_ih + h_{t-1}) + b_hh): one shared hidden matrix.
    h1 = act(w_hh @ (w_ih @ x1 + b_ih + h0) + b_hh)
    h2 = act(w_hh @ (w_ih @ x2 + b_ih + h1) + b_hh)

    layer = make_layer("loop", "vanilla", 2, 2, input_combine="add", activation=activation)
    layer.load_state_dict({"weight_ih_l0": w_ih, "weight_hh_l0": w_hh,
                           "bias_ih_l0": b_ih, "bias_hh_l0": b_hh})
    out, h_n = layer(torch.stack([x1, x2]).view(1, 2, 2), h0.view(1, 1, 2))
    torch.testing.assert_close(out[0], torch.stack([h1, h2]))
    torch.testing.assert_close(h_n[0, 0], h2)


def test_add_and_concat_have_same_parameter_shapes_but_differ():
    torch.manual_seed(0)
    add = make_layer("loop", "vanilla", I, H, input_combine="add")
    concat = make_layer("loop", "vanilla", I, H, input_combine="concat")
    concat.load_state_dict(add.state_dict())
    x = torch.randn(B, T, I)
    assert not torch.allclose(add(x)[0], concat(x)[0])


@pytest.mark.parametrize("opts,key", [({"input_combine": "add"}, "input_combine='add'"),
                                      ({"activation": "identity"}, "activation='identity'")])
def test_fused_vanilla_rejects_what_it_cannot_run_and_points_to_loop(opts, key):
    with pytest.raises(ConfigError, match="backends that run [a-z]+: loop") as err:
        make_layer("fused", "vanilla", I, H, **opts)
    assert str(err.value).startswith(key)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs,key", [
    ({"backend": "loop", "cell": "mgu"}, "cell='mgu'"),
    ({"backend": "cudnn", "cell": "gru"}, "backend='cudnn'"),
    ({"backend": "loop", "cell": "vanilla", "activation": "gelu"}, "activation='gelu'"),
    ({"backend": "loop", "cell": "vanilla", "input_combine": "mul"}, "input_combine='mul'"),
])
def test_unknown_names_raise_listing_valid_choices(kwargs, key):
    with pytest.raises(ConfigError, match="valid choices") as err:
        make_layer(input_size=I, hidden_size=H, **kwargs)
    assert str(err.value).startswith(key)


def test_unknown_cell_lists_every_registered_cell():
    with pytest.raises(ConfigError, match="vanilla, gru, lstm"):
        make_layer("fused", "mgu", I, H)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_vanilla_only_options_are_ignored_for_gated_cells(cell):
    layer = make_layer("fused", cell, I, H, input_combine="add", activation="identity")
    assert isinstance(layer, fused_module(cell))
    torch.manual_seed(0)
    plain = make_layer("loop", cell, I, H)
    odd = make_layer("loop", cell, I, H, input_combine="add", activation="identity")
    odd.load_state_dict(plain.state_dict())
    x = torch.randn(B, T, I)
    torch.testing.assert_close(odd(x)[0], plain(x)[0])


def test_fused_registry_builds_single_layer_batch_first_modules():
    for cell in CLASSIC:
        layer = make_layer("fused", cell, I, H)
        assert type(layer) is fused_module(cell) and layer.num_layers == 1 and layer.batch_first
    assert make_layer("fused", "vanilla", I, H, activation="relu").nonlinearity == "relu"


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor import
def test_every_registry_reference_names_its_object_and_every_pair_builds_in_nn_layout():
    for cell in registry.CELLS.values():
        assert registry.load(cell.math) is not None
        assert not cell.fused or issubclass(registry.load(cell.fused), torch.nn.RNNBase)
    for backend in registry.BACKENDS.values():
        assert callable(registry.load(backend.layer))
        for cell in backend.cells:
            shapes = {n: tuple(p.shape) for n, p in make_layer(backend.name, cell, I, H).named_parameters()}
            rows = registry.CELLS[cell].gates * H
            assert shapes["weight_ih_l0"] == (rows, I) and shapes["bias_ih_l0"] == (rows,), (backend.name, cell)
            assert ("weight_hh_l0" in shapes) == registry.CELLS[cell].recurrent, (backend.name, cell)
