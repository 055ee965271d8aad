"""Model and evaluation options the rewritten grids use: between-layer skips, LSTM forget-gate
bias, and scoring a run under its own hidden-state protocol."""
from __future__ import annotations

import torch

from charrnn.config import make_config
from charrnn.rnn.models import CharRNN
from charrnn.run.train import Trainer


def model(**over):
    torch.manual_seed(0)
    return CharRNN(make_config({"hidden_size": 8, "device": "cpu", **over}), 11)


def test_between_layer_skips_add_each_layer_input_after_the_first():
    x = torch.randint(11, (2, 5))
    plain, skip = model(layers=2), model(layers=2, residual=True, residual_mode="between_layers")
    skip.load_state_dict(plain.state_dict())             # no extra parameters: the same weights
    inp = plain.encode(x)
    out0, _ = plain.layers[0](inp, None)
    out1, _ = plain.layers[1](out0, None)
    assert torch.allclose(skip(x)[0], plain.head(out1 + out0), atol=1e-6)
    assert torch.allclose(plain(x)[0], plain.head(out1), atol=1e-6)


def test_between_layer_skips_change_nothing_at_one_layer():
    x = torch.randint(11, (2, 5))
    assert torch.equal(model(residual=True, residual_mode="between_layers")(x)[0], model()(x)[0])


def test_forget_bias_sets_the_forget_gate_of_every_lstm_layer():
    m = model(cell="lstm", layers=2, forget_bias=1.0)
    for layer in m.layers:
        assert torch.all(layer.bias_ih_l0[8:16] == 1.0) and torch.all(layer.bias_hh_l0[8:16] == 0.0)
    assert not torch.all(model(cell="lstm").layers[0].bias_ih_l0[8:16] == 1.0)   # off by default


def fit(hidden_init):
    cfg = make_config({"task": "arithmetic", "cell": "vanilla", "backend": "loop", "hidden_size": 16,
                       "hidden_init": hidden_init, "steps": 20, "eval_interval": 20, "eval_batches": 2,
                       "batch_size": 16, "test_split": True, "device": "cpu", "sample_length": 0})
    return Trainer(cfg, progress=False).fit().final


def test_own_protocol_is_scored_apart_only_where_it_differs_from_a_zero_state():
    zero, carried = fit("zero"), fit("epoch_random")
    assert zero["final_test_own_loss"] == zero["final_test_loss"]
    assert carried["final_test_own_loss"] != carried["final_test_loss"]
    assert "final_generalization_gap" in zero and "final_log10_tokens_per_s" in zero
