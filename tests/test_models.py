"""CharRNN: loop == fused for whole models, hidden-state init modes, input encodings, residuals."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from charrnn.capabilities import compile_support, cxx_compiler
from charrnn.config import CHOICES, ConfigError, make_config
from charrnn.registry import BACKENDS, CELLS, compiling_backends
from charrnn.rnn.models import CharRNN, detach_hidden, param_count

V, B, T, H = 11, 3, 7, 8
ATOL = 1e-5
FUSED_CASES = {
    "gru": {"cell": "gru"},
    "lstm": {"cell": "lstm"},
    "vanilla-tanh": {"cell": "vanilla", "activation": "tanh"},
    "vanilla-relu": {"cell": "vanilla", "activation": "relu"},
}

# Every custom backend that runs on CPU; the compiled ones get one case each (compiling is slow).
# (loop_native builds its C++ kernels once per machine, then runs like an eager loop.)
EAGER_LOOPS = [b for b in CHOICES["backend"] if b.startswith("loop") and not BACKENDS[b].device_restriction("cpu")
               and "compiled" not in b]
COMPILED_LOOPS = [b for b in CHOICES["backend"] if b in compiling_backends()
                  and not BACKENDS[b].device_restriction("cpu") and "compiled" in b]
NEEDS_COMPILER = pytest.mark.skipif(cxx_compiler() is None, reason="no C++ compiler on PATH")
EAGER_CASES = [pytest.param(b, c, marks=NEEDS_COMPILER if b in compiling_backends() else ())
               for b in EAGER_LOOPS for c in FUSED_CASES if FUSED_CASES[c]["cell"] in BACKENDS[b].cells]


def model(**overrides) -> CharRNN:
    return CharRNN(make_config({"hidden_size": H} | overrides), V)


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def states(hidden) -> tuple:
    return hidden if isinstance(hidden, tuple) else (hidden,)


def forward_backward(net: CharRNN, x, h0: tuple):
    """Logits, final hidden and gradients (every parameter and the initial state) of a fixed loss."""
    h0 = tuple(h.clone().requires_grad_() for h in h0)
    logits, h_n = net(x, h0 if len(h0) == 2 else h0[0])
    gen = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=gen)).sum() for t in (logits, *states(h_n)))
    loss.backward()
    grads = {f"h0[{i}]": h.grad for i, h in enumerate(h0)}
    grads |= {name: p.grad for name, p in net.named_parameters()}
    assert all(g is not None for g in grads.values())
    return logits, states(h_n), grads


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(("backend", "case"), EAGER_CASES)
def test_charrnn_loop_matches_fused_outputs_and_gradients(backend, case, layers, residual):
    check_model_matches_fused(backend, case, layers, residual)


@pytest.mark.parametrize("backend", COMPILED_LOOPS)
def test_charrnn_compiled_loop_matches_fused_outputs_and_gradients(backend):
    support = compile_support()
    if not support.ok:
        pytest.skip(f"torch.compile cannot run here: {support.reason}")
    check_model_matches_fused(backend, "lstm", layers=2, residual=True)


@NEEDS_COMPILER
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("case", ["gru", "lstm"])
def test_charrnn_loop_native_fed_onehot_token_ids_matches_fused(case, residual):
    """loop_native's first layer takes the token ids (its input projection a table lookup), for one-hot
    inputs as for embeddings (the matrix above)."""
    assert model(backend="loop_native", cell=case).tokens_to_first_layer
    check_model_matches_fused("loop_native", case, layers=2, residual=residual, input="onehot")


def check_model_matches_fused(backend: str, case: str, layers: int, residual: bool, **extra) -> None:
    # embed_size != hidden_size so the residual of layer 0 goes through a projection.
    opts = FUSED_CASES[case] | {"layers": layers, "residual": residual, "embed_size": 5} | extra
    torch.manual_seed(0)
    fused = model(backend="fused", **opts)
    loop = model(backend=backend, **opts)
    loop.load_state_dict(fused.state_dict())
    x = tokens()
    h0 = tuple(torch.randn(layers, B, H) for _ in states(fused.init_hidden(B, "zero")))

    logits_f, hn_f, grads_f = forward_backward(fused, x, h0)
    logits_l, hn_l, grads_l = forward_backward(loop, x, h0)

    torch.testing.assert_close(logits_l, logits_f, atol=ATOL, rtol=0)
    for a, b in zip(hn_l, hn_f):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    assert grads_l.keys() == grads_f.keys()
    for name in grads_f:
        torch.testing.assert_close(grads_l[name], grads_f[name], atol=ATOL, rtol=0, msg=name)


@pytest.mark.parametrize("cell", list(CELLS))   # every cell: loop runs them all
def test_forward_shapes_and_none_hidden_means_zero(cell):
    net = model(cell=cell, backend="loop", layers=2)
    x = tokens()
    logits, hidden = net(x)
    assert logits.shape == (B, T, V)
    assert isinstance(hidden, tuple) == (cell == "lstm")
    assert all(h.shape == (2, B, H) for h in states(hidden))
    torch.testing.assert_close(net(x, net.init_hidden(B, "zero"))[0], logits)


def test_state_carried_across_chunks_equals_one_long_sequence():
    net = model(cell="lstm", backend="loop", layers=2)
    x = tokens()
    whole, h_whole = net(x)
    first, h = net(x[:, :4])
    second, h_split = net(x[:, 4:], h)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    for a, b in zip(h_split, h_whole):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_learned_hidden_init_is_trainable_zero_start_and_receives_gradient(cell):
    net = model(cell=cell, layers=2, hidden_init="learned")
    learned = [net.h0] + ([net.c0] if cell == "lstm" else [])
    for p in learned:
        assert isinstance(p, nn.Parameter) and p.requires_grad
        assert p.shape == (2, 1, H) and not p.any()
        assert any(p is q for q in net.parameters())
    hidden = net.init_hidden(B, "learned")
    assert all(h.shape == (2, B, H) for h in states(hidden))
    logits, _ = net(tokens(), hidden)
    logits.square().sum().backward()
    for p in learned:
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_learned_hidden_is_in_state_dict_and_copies_between_backends():
    fused = model(cell="lstm", hidden_init="learned", backend="fused")
    loop = model(cell="lstm", hidden_init="learned", backend="loop")
    assert {"h0", "c0"} <= set(fused.state_dict())
    loop.load_state_dict(fused.state_dict())


def test_learned_init_on_model_without_learned_state_raises():
    with pytest.raises(ConfigError, match="hidden_init=learned"):
        model().init_hidden(B, "learned")


def test_unknown_init_mode_raises_listing_choices():
    with pytest.raises(ConfigError, match="zero, random, learned"):
        model().init_hidden(B, "epoch_zero")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_random_init_is_reproducible_from_generator(cell):
    net = model(cell=cell, layers=2)
    a = states(net.init_hidden(B, "random", torch.Generator().manual_seed(7)))
    b = states(net.init_hidden(B, "random", torch.Generator().manual_seed(7)))
    c = states(net.init_hidden(B, "random", torch.Generator().manual_seed(8)))
    for x, y, z in zip(a, b, c):
        assert x.shape == (2, B, H) and x.std() > 0.5
        assert torch.equal(x, y) and not torch.equal(x, z)
    if cell == "lstm":
        assert not torch.equal(a[0], a[1])  # h and c are separate draws


def test_onehot_input_feeds_vocab_width_to_first_layer():
    net = model(input="onehot", layers=2, backend="loop")
    assert net.embedding is None
    assert net.layers[0].weight_ih_l0.shape == (3 * H, V)
    assert net.layers[1].weight_ih_l0.shape == (3 * H, H)
    assert net(tokens())[0].shape == (B, T, V)


def test_embedding_width_defaults_to_hidden_size():
    assert model().embedding.embedding_dim == H
    assert model(embed_size=5).embedding.embedding_dim == 5


def test_residual_projects_only_when_widths_differ():
    net = model(residual=True, layers=3, embed_size=5)
    proj = net.residual_proj
    assert isinstance(proj[0], nn.Linear) and proj[0].weight.shape == (H, 5) and proj[0].bias is None
    assert all(isinstance(p, nn.Identity) for p in proj[1:])
    assert model(residual=True, layers=2).residual_proj[0].__class__ is nn.Identity
    assert model().residual_proj is None


def test_residual_adds_layer_input_to_layer_output():
    net = model(residual=True, backend="loop", embed_size=5)
    x = tokens()
    inp = net.embedding(x)
    out, _ = net.layers[0](inp)
    expected = net.head(out + net.residual_proj[0](inp))
    torch.testing.assert_close(net(x)[0], expected)


@pytest.mark.parametrize("cell,gates", [("vanilla", 1), ("gru", 3), ("lstm", 4)])
def test_param_count_matches_closed_form(cell, gates):
    E, L = 5, 2
    per_layer = lambda width: gates * H * (width + H + 2)  # noqa: E731
    expected = V * E + per_layer(E) + per_layer(H) * (L - 1) + H * V + V
    assert param_count(model(cell=cell, embed_size=E, layers=L)) == expected
    # residual projection (E → H, no bias) and learned h0 (+ c0) add exactly their sizes
    extra = E * H + L * H * (2 if cell == "lstm" else 1)
    assert param_count(model(cell=cell, embed_size=E, layers=L, residual=True,
                             hidden_init="learned")) == expected + extra


def test_param_count_is_same_on_every_backend():
    assert param_count(model(backend="loop", layers=2)) == param_count(model(backend="fused", layers=2))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_detach_hidden_cuts_graph_and_keeps_structure(cell):
    net = model(cell=cell)
    _, hidden = net(tokens())
    assert all(h.requires_grad for h in states(hidden))
    detached = detach_hidden(hidden)
    assert type(detached) is type(hidden)
    for d, h in zip(states(detached), states(hidden)):
        assert not d.requires_grad and torch.equal(d, h)


def test_fused_config_for_add_combine_is_rejected_before_model_build():
    with pytest.raises(ConfigError, match="backends that run add: loop"):
        model(cell="vanilla", input_combine="add", backend="fused")
    assert model(cell="vanilla", input_combine="add", backend="loop")(tokens())[0].shape == (B, T, V)
