"""The device probe (charrnn/capabilities.py): bf16 where this CPU cannot run it is bad input."""
from __future__ import annotations

import pytest
import torch
from grid_support import TINY_FIXED, empty_store_db, store, write_grid  # noqa: F401

from charrnn import capabilities
from charrnn.capabilities import FORCE_NO_BF16, MATMUL, Support, bf16_support, check_device, check_device_support
from charrnn.cli import main
from charrnn.config import ConfigError, make_config

TINY_ARGS = [f"{k}={v}" for k, v in TINY_FIXED.items()]
ONEDNN = "could not create a primitive descriptor for the LSTM forward propagation primitive"


@pytest.fixture
def fresh_probe(monkeypatch):
    """The real probe, uncached, whatever CHARRNN_FORCE_NO_BF16 the suite runs under."""
    monkeypatch.delenv(FORCE_NO_BF16, raising=False)
    capabilities._probe_bf16.cache_clear()
    yield
    capabilities._probe_bf16.cache_clear()


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setenv(FORCE_NO_BF16, "1")


def test_train_with_bf16_where_unsupported_exits_2_with_one_line_and_no_store(no_bf16, results_dir, capsys):
    assert main(["train", "cell=lstm", "dtype=bf16", *TINY_ARGS, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("charrnn: error: dtype='bf16': this cpu cannot run a bf16 lstm (backend=fused)")
    assert f"forced off by {FORCE_NO_BF16}=1" in err and err.endswith("valid here: fp32")
    assert not results_dir.exists()


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_grid_with_bf16_where_unsupported_exits_2_before_any_run(no_bf16, results_dir, tmp_path, capsys,
                                                                 executor):
    path = write_grid(tmp_path, fixed={**TINY_FIXED, "dtype": "bf16", "backend": "loop"},
                      axes={"cell": ["gru"]}, claims=None)
    assert main(["grid", str(path), "--executor", executor, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dtype='bf16': this cpu cannot run bf16 matmuls" in err
    assert not results_dir.exists()


def test_a_kernel_that_fails_is_reported_unsupported_with_its_first_error_line(fresh_probe, monkeypatch):
    def onednn_refuses(kernel, device):
        if kernel == "lstm":
            raise RuntimeError(f"{ONEDNN}\n(details)")
        return None

    monkeypatch.setattr(capabilities, "_bf16_step", onednn_refuses)
    assert bf16_support("lstm") == Support(False, f"RuntimeError: {ONEDNN}")
    assert bf16_support("gru").ok and bf16_support(MATMUL).ok
    with pytest.raises(ConfigError, match=f"dtype='bf16': this cpu cannot run a bf16 lstm .*{ONEDNN}"):
        check_device_support(make_config({"cell": "lstm", "dtype": "bf16"}), "cpu")
    check_device_support(make_config({"cell": "lstm", "dtype": "bf16", "backend": "loop"}), "cpu")
    check_device_support(make_config({"cell": "lstm"}), "cpu")     # fp32 asks nothing


def test_the_probe_runs_once_and_leaves_the_rng_alone(fresh_probe, monkeypatch):
    calls = []
    real = capabilities._bf16_step
    monkeypatch.setattr(capabilities, "_bf16_step", lambda k, d: (calls.append(k), real(k, d)))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    bf16_support("gru"), bf16_support("gru")
    assert calls == ["gru"]
    torch.testing.assert_close(torch.rand(3), expected)


def test_bf16_lstm_trains_to_finished_where_the_probe_says_it_can(store, capsys):
    support = bf16_support("lstm")
    if not support.ok:
        pytest.skip(f"bf16 lstm cannot run on this CPU: {support.reason}")
    assert main(["train", "cell=lstm", "dtype=bf16", *TINY_ARGS, "--no-progress"]) == 0
    assert "status: FINISHED" in capsys.readouterr().out


def test_the_one_device_check_resolves_auto_and_refuses_a_backend_the_device_cannot_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert check_device(make_config({"backend": "loop"})) == torch.device("cpu")
    with pytest.raises(ConfigError, match="backend='loop_cudagraph': CUDA graphs need a CUDA device; device is cpu"):
        check_device(make_config({"backend": "loop_cudagraph"}))   # device=auto resolved to cpu
