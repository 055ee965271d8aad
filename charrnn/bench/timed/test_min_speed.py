"""minGRU `auto` (on a CPU it may pick `min_native`, the C++ loop) against the two things it must beat,
each pair timed in alternation in one run (the other arm in the round's setup, untimed by
pytest-benchmark and recorded here), so load drift hits both; ratios are medians of per-round ratios:

- one layer, forward + backward, at H256 B32 T512: `auto`'s choice against the log-space `scan`;
- training a CharRNN at H256 B32 T64 (`final_tokens_per_s` of `Trainer.fit`, as test_auto_speed):
  minGRU `auto` against GRU `auto`, at equal H.

The `auto` probes run (each cached in a fresh results dir) before the first round; their choices
and ratios (whole-model training forward + backward, at each test's own shape) go into extra_info.
`test` is a tiny correctness-only version.
"""
from __future__ import annotations

import os
import statistics
import time

import pytest
import torch

from charrnn.bench.timed.test_auto_speed import CONFIGS, ROUNDS, tokens_per_s
from charrnn.bench.workloads import device_timer, sync, versions
from charrnn.capabilities import resolve_backend
from charrnn.config import make_config
from charrnn.rnn.cells import make_layer
from charrnn.rnn.mincells import SCAN_TOLERANCE

pytestmark = pytest.mark.benchmark(timer=device_timer)

LAYER_SHAPES = {"test": {"hidden_size": 16, "batch_size": 4, "seq_len": 24},
                "default": {"hidden_size": 256, "batch_size": 32, "seq_len": 512}}
LAYER_ROUNDS = 5


def timed_profile(profile_name: str) -> str:
    """`test` or `default`; other profiles skip (these comparisons are timed in `quick`, on the CPU)."""
    if profile_name not in ("test", "quick"):
        pytest.skip(f"profile {profile_name}: the minGRU speed comparisons are timed in `quick` (CPU)")
    return "test" if profile_name == "test" else "default"


def forward_backward(layer, x: torch.Tensor) -> list[torch.Tensor]:
    """Output and the gradients of x and every parameter of one forward + backward; x (B, T, H)."""
    x = x.detach().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    out = layer(x)[0]                                                      # (B, T, H)
    out.square().mean().backward()
    return [out.detach(), x.grad, *(p.grad for p in layer.parameters())]


def rounds_info(arm_s: list[float], other_s: list[float], warm: int, label: str) -> dict:
    """The per-round ratios other / arm (> 1: the arm is faster), after `warm` untimed pairs."""
    ratios = [o / a for a, o in zip(arm_s[warm:], other_s[warm:], strict=True)]
    return {"ratio_label": label, "ratio": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), **versions(), "loadavg_end": os.getloadavg()[0]}


def test_mingru_auto_vs_log_space_scan_layer_tokens_per_s(benchmark, tmp_path, monkeypatch, profile_name, device,
                                                         quiet):
    shape = LAYER_SHAPES[timed_profile(profile_name)]
    monkeypatch.setenv("CHARRNN_RESULTS_DIR", str(tmp_path))   # a fresh probe cache
    cfg = make_config({"cell": "mingru", "backend": "auto", **shape})
    chosen = resolve_backend(cfg, device.type)
    H, B, T = cfg.hidden_size, cfg.batch_size, cfg.seq_len
    torch.manual_seed(0)
    scan = make_layer("scan", "mingru", H, H).to(device)
    auto = make_layer(chosen.backend, "mingru", H, H)
    auto.load_state_dict(scan.state_dict())
    auto.to(device)
    x = torch.randn(B, T, H, device=device)
    for got, want in zip(forward_backward(auto, x), forward_backward(scan, x), strict=True):
        scale = max(1.0, want.abs().max().item())
        assert (got - want).abs().max().item() <= SCAN_TOLERANCE["fp32"] * scale
    scan_s: list[float] = []
    auto_s: list[float] = []

    def timed(layer, into: list[float]) -> None:
        sync(device)
        start = time.perf_counter()
        forward_backward(layer, x)
        sync(device)
        into.append(time.perf_counter() - start)

    waited = {} if benchmark.disabled else quiet()
    benchmark.pedantic(timed, args=(auto, auto_s), setup=lambda: timed(scan, scan_s),
                       rounds=1 if benchmark.disabled else LAYER_ROUNDS, warmup_rounds=0 if benchmark.disabled else 1)
    warm = 0 if benchmark.disabled else 1
    benchmark.extra_info.update({
        "shape": "mingru-layer-auto-vs-scan", "backend": chosen.backend, "cell": "mingru", "hidden": H, "batch": B,
        "seq_len": T, "direction": "fwd_bwd", "probe_ratios": chosen.ratios, "probe_rejected": chosen.rejected,
        "auto_tokens_per_s": [B * T / s for s in auto_s[warm:]],
        "scan_tokens_per_s": [B * T / s for s in scan_s[warm:]],
        **rounds_info(auto_s, scan_s, warm, "auto/scan tokens/s"), **waited})


def train_config(profile: str, cell: str):
    return make_config({"task": "tinyshakespeare", "cell": cell, "eval_batches": 1, "sample_length": 0,
                        "backend": "auto", **CONFIGS[profile]})


@pytest.mark.timeout(1800)   # 2 x 5 short trainings at H256 and two probes: > 10 min on a loaded 2-core CPU
def test_mingru_auto_vs_gru_auto_training_tokens_per_s(benchmark, tmp_path, monkeypatch, profile_name, device,
                                                      quiet):
    profile = timed_profile(profile_name)
    monkeypatch.setenv("CHARRNN_RESULTS_DIR", str(tmp_path))   # fresh probe caches
    mingru, gru = train_config(profile, "mingru"), train_config(profile, "gru")
    chosen = {cfg.cell: resolve_backend(cfg, device.type) for cfg in (mingru, gru)}
    mingru_rates: list[float] = []
    gru_rates: list[float] = []

    waited = {} if benchmark.disabled else quiet()
    benchmark.pedantic(lambda: mingru_rates.append(tokens_per_s(mingru)),
                       setup=lambda: gru_rates.append(tokens_per_s(gru)),
                       rounds=1 if benchmark.disabled else ROUNDS, warmup_rounds=0 if benchmark.disabled else 1)
    assert all(rate > 0 for rate in mingru_rates + gru_rates)
    warm = 0 if benchmark.disabled else 1
    # tokens/s: the ratio mingru / gru is gru's time over mingru's, as rounds_info takes it
    seconds = {"mingru": [1 / r for r in mingru_rates], "gru": [1 / r for r in gru_rates]}
    benchmark.extra_info.update({
        "shape": "train-mingru-auto-vs-gru-auto", "backend": chosen["mingru"].backend, "cell": "mingru",
        "gru_backend": chosen["gru"].backend, "hidden": mingru.hidden_size, "batch": mingru.batch_size,
        "seq_len": mingru.seq_len, "steps_per_round": mingru.steps,
        "probe_ratios": {cell: c.ratios for cell, c in chosen.items()},
        "probe_rejected": {cell: c.rejected for cell, c in chosen.items()},
        "mingru_tokens_per_s": mingru_rates[warm:], "gru_tokens_per_s": gru_rates[warm:],
        **rounds_info(seconds["mingru"], seconds["gru"], warm, "mingru auto/gru auto tokens/s"), **waited})
