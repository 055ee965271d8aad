"""The harness's training loop against a bare PyTorch loop of the same model (a harness-overhead check).

One round = one evaluation interval of `Trainer.fit()` with a real MLflow RunHandle sink (sqlite
store, system metrics on), the tqdm bar on and checkpoints on: `eval_interval` optimiser steps,
then the evaluation, checkpoint and metric flush that end the interval. The bare loop does the same
arithmetic on the same model and config — forward, cross-entropy, backward, clip, Adam over
pre-built batches, then the same validation forward — and nothing else. Rounds alternate (a bare
round is run untimed by pytest-benchmark in the `setup` of every harness round and timed here), so
drift in machine load hits both; `extra_info["ratio"]` = median over rounds of harness / bare.
"""
from __future__ import annotations

import math
import os
import statistics
import time

import pytest
import torch
import torch.nn.functional as F

from charrnn.bench.workloads import device_timer, versions
from charrnn.config import make_config
from charrnn.rnn.models import CharRNN
from charrnn.tracking.store import Tracker
from charrnn.run.train import Trainer

pytestmark = pytest.mark.benchmark(timer=device_timer)

# The README defaults (gru, H128, B32, T64, Adam, clip 5, eval every 100 steps), on CPU, with one
# validation batch per evaluation; `test` is a tiny correctness-only version.
CONFIGS = {
    "test": {"hidden_size": 16, "batch_size": 4, "seq_len": 16, "eval_interval": 3, "eval_batches": 1},
    "default": {"hidden_size": 128, "batch_size": 32, "seq_len": 64, "eval_interval": 100,
                "eval_batches": 1},
}


class BareLoop:
    """The same model and optimiser driven by the minimal loop a user would write."""

    def __init__(self, trainer: Trainer) -> None:
        cfg = trainer.cfg
        torch.manual_seed(cfg.seed)
        self.model = CharRNN(cfg, trainer.task.vocab.size).to(trainer.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        self.batches = [trainer.task.train_batch(step, cfg.batch_size, cfg.seq_len, cfg.seed, False)
                        for step in range(cfg.eval_interval)]
        self.val_x = trainer.val[0].x

    def round(self) -> None:
        for batch in self.batches:
            logits, _ = self.model(batch.x)                                     # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1), batch.y.flatten())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
        with torch.no_grad():
            self.model(self.val_x)


@pytest.fixture
def harness(tmp_path, monkeypatch, profile_name):
    """A Trainer wired like `runner.run_one` wires it: real RunHandle sink (a throwaway store),
    checkpoints, tqdm on."""
    monkeypatch.setenv("CHARRNN_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    name = "test" if profile_name == "test" else "default"
    cfg = make_config({"task": "tinyshakespeare", "device": "cpu", **CONFIGS[name]})
    cfg = make_config({"steps": cfg.eval_interval}, base=cfg)
    trainer = Trainer(cfg, checkpoint_dir=tmp_path / "ckpt", progress=True)
    run = Tracker().start_run("harness-bench", cfg.run_name(), params=cfg.to_dict())
    trainer.sink = run
    yield trainer
    run.end()


def test_harness_step_vs_bare_loop(benchmark, harness, profile, quiet):
    bare = BareLoop(harness)
    bare_times: list[float] = []

    def setup() -> None:
        start = time.perf_counter()
        bare.round()
        bare_times.append(time.perf_counter() - start)
        harness.step = 0  # every round is one full eval interval of fit()

    waited = {} if benchmark.disabled else quiet()
    result = benchmark.pedantic(harness.fit, setup=setup, rounds=profile.harness_rounds,
                                warmup_rounds=0 if benchmark.disabled else 1)
    assert len(result.train_losses) == harness.cfg.steps
    assert all(math.isfinite(x) for x in result.train_losses)
    steps = harness.cfg.eval_interval
    info = {"shape": "harness-vs-bare", "backend": None, "cell": harness.cfg.cell,
            "hidden": harness.cfg.hidden_size, "batch": harness.cfg.batch_size,
            "seq_len": harness.cfg.seq_len, "steps_per_round": steps, **versions(),
            "loadavg_end": os.getloadavg()[0], **waited}
    if not benchmark.disabled:
        timed_bare = bare_times[1:]  # the first bare round pairs with the harness warm-up round
        harness_s = benchmark.stats.stats.data
        bare_median = statistics.median(timed_bare)
        info |= {"bare_round_s": timed_bare, "bare_median_ms": 1e3 * bare_median,
                 "harness_step_ms": 1e3 * statistics.median(harness_s) / steps,
                 "bare_step_ms": 1e3 * bare_median / steps,
                 "ratio_of_medians": statistics.median(harness_s) / bare_median,
                 "ratio": statistics.median(h / b for h, b in zip(harness_s, timed_bare))}
    benchmark.extra_info.update(info)
