"""`backend=auto` against `backend=fused`: the tokens/s `charrnn train` reports (final_tokens_per_s,
the training loop of `Trainer.fit`) for a GRU at H256 B32 T64, and for an LSTM at H128 and H256 B32
T64 (the runs-per-hour benchmarks), on this device, each pair in one run.

One round = one short training run of each backend, in alternation (the `fused` run in the round's
setup, untimed by pytest-benchmark and recorded here), so load drift hits both. The auto probe
runs (and is cached) before the first round; its time, choice and ratios go into extra_info. The
probe times the whole model's training forward + backward (token lookup, layers, head, loss), so its
ratio for the chosen backend covers both sources of a CPU gain: the recurrence, and, where
`loop_native` is chosen, its first layer taking the token ids (the input projection a lookup in the
projected vocabulary). What it leaves out is the optimiser step and the data. `test` is a tiny
correctness-only version.
"""
from __future__ import annotations

import os
import statistics
import time

import pytest

from charrnn.bench.workloads import device_timer, versions
from charrnn.capabilities import AUTO_MARGIN, resolve_backend, resolve_device
from charrnn.config import make_config
from charrnn.run.train import Trainer

pytestmark = pytest.mark.benchmark(timer=device_timer)

CONFIGS = {
    "test": {"hidden_size": 16, "batch_size": 4, "seq_len": 8, "steps": 2, "eval_interval": 2},
    "default": {"hidden_size": 256, "batch_size": 32, "seq_len": 64, "steps": 40, "eval_interval": 40},
}
ROUNDS = 4


def config(profile_name: str, backend: str, cell: str = "gru", hidden: int | None = None):
    """A short training run of `cell` at the profile's shape (H256 B32 T64, 40 steps; `test`: tiny);
    `hidden` replaces H (in `test`, H / 16)."""
    name = "test" if profile_name == "test" else "default"
    shape = dict(CONFIGS[name])
    if hidden is not None:
        shape["hidden_size"] = max(4, hidden // 16) if name == "test" else hidden
    return make_config({"task": "tinyshakespeare", "cell": cell, "eval_batches": 1, "sample_length": 0,
                        "backend": backend, **shape})


def tokens_per_s(cfg) -> float:
    return Trainer(cfg, progress=False).fit().final["final_tokens_per_s"]


def auto_vs_fused(benchmark, profile_name: str, quiet, cell: str, hidden: int | None = None) -> None:
    """`auto` against `fused` training tokens/s of `cell`, paired rounds; the probe runs first (timed)."""
    if profile_name not in ("test", "quick"):
        pytest.skip(f"profile {profile_name}: the auto-vs-fused training comparison is timed in `quick` (CPU)")
    auto, fused = config(profile_name, "auto", cell, hidden), config(profile_name, "fused", cell, hidden)
    start = time.perf_counter()
    chosen = resolve_backend(auto, resolve_device(auto.device).type)
    probe_s = time.perf_counter() - start
    fused_rates: list[float] = []
    auto_rates: list[float] = []

    def setup() -> None:
        fused_rates.append(tokens_per_s(fused))

    def auto_round() -> None:
        auto_rates.append(tokens_per_s(auto))

    waited = {} if benchmark.disabled else quiet()
    benchmark.pedantic(auto_round, setup=setup, rounds=1 if benchmark.disabled else ROUNDS,
                       warmup_rounds=0 if benchmark.disabled else 1)
    assert all(rate > 0 for rate in auto_rates + fused_rates)
    warm = 0 if benchmark.disabled else 1   # the warm-up pair is not compared
    ratios = [a / f for a, f in zip(auto_rates[warm:], fused_rates[warm:])]
    shape = "train-auto-vs-fused" if cell == "gru" and hidden is None else f"train-{cell}-auto-vs-fused-h{hidden}"
    benchmark.extra_info.update({
        "shape": shape, "backend": chosen.backend, "cell": cell, "hidden": auto.hidden_size,
        "batch": auto.batch_size, "seq_len": auto.seq_len, "steps_per_round": auto.steps,
        "probe_s": probe_s, "probe_timed": chosen.timed, "probe_ratios": chosen.ratios,
        "probe_rejected": chosen.rejected, "probe_margin": AUTO_MARGIN,
        "auto_tokens_per_s": auto_rates[warm:], "fused_tokens_per_s": fused_rates[warm:],
        "ratio_label": "auto/fused tokens/s", "ratio": statistics.median(ratios),
        "ratio_min": min(ratios), "ratio_max": max(ratios),
        **versions(), "loadavg_end": os.getloadavg()[0], **waited})


def test_auto_vs_fused_training_tokens_per_s(benchmark, tmp_path, monkeypatch, profile_name, quiet):
    monkeypatch.setenv("CHARRNN_RESULTS_DIR", str(tmp_path))   # a fresh probe cache: the probe is timed too
    auto_vs_fused(benchmark, profile_name, quiet, "gru")


@pytest.mark.timeout(1200)   # 2 x 5 short trainings and a probe: minutes on a loaded 2-core CPU
@pytest.mark.parametrize("hidden", [128, 256], ids=lambda h: f"h{h}")
def test_lstm_auto_vs_fused_training_tokens_per_s(benchmark, tmp_path, monkeypatch, profile_name, quiet, hidden):
    """LSTM at H128 and H256 (B32 T64). `probe_ratios` is the whole-model probe's time of
    each candidate over nn.LSTM's: where `auto` keeps `fused`, no candidate was AUTO_MARGIN faster."""
    monkeypatch.setenv("CHARRNN_RESULTS_DIR", str(tmp_path))   # a fresh probe cache: the probe is timed too
    auto_vs_fused(benchmark, profile_name, quiet, "lstm", hidden)
