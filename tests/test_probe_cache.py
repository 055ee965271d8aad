"""The backend probe cache (results/backend_probe.json) is data, not trust. Through the CLI, in a
subprocess: a truncated, empty or wrongly typed file, an entry naming no backend, one the device
refuses, one its own `rejected` list rejects, or one that does not say it timed the whole model
(the one-layer probe's entries), is probed again with one line saying why, and the
run trains on a checked backend. In process: a cached backend that is not equivalent on the
reference's weights is probed again; one that is gets checked once per process."""
from __future__ import annotations

import dataclasses
import json

import pytest
from grid_support import run_charrnn

from charrnn import capabilities, registry
from charrnn.capabilities import PROBE_CACHE, machine_key, probe_key, resolve_backend, workload
from charrnn.config import make_config
from charrnn.tracking.store import Tracker

TINY = {"backend": "auto", "cell": "vanilla", "hidden_size": 8, "batch_size": 2, "seq_len": 8, "steps": 2,
        "eval_interval": 2, "eval_batches": 1, "sample_length": 4, "device": "cpu"}
CFG = make_config(TINY)
MACHINE, KEY = machine_key("cpu"), probe_key(CFG, "cpu", workload(CFG))


def entry(backend: str, rejected: dict | None = None, timed: str | None = "model", key: str = KEY) -> str:
    found = {"backend": backend, "ratios": {"fused": 1.0, backend: 0.5}, "rejected": rejected or {}}
    return json.dumps({MACHINE: {key: found if timed is None else {**found, "timed": timed}}})


BROKEN = {
    "truncated": entry("loop_premul")[:40],
    "empty": "",
    "wrong type": "[1, 2, 3]",
    "wrong field type": json.dumps({MACHINE: {KEY: {"backend": 7, "ratios": {}, "rejected": {}, "timed": "model"}}}),
    # written by the one-layer probe (no `timed`, its key without the model): its ratios timed a layer alone
    "one-layer entry": entry("loop_premul", timed=None, key="vanilla/concat-tanh/cpu/fp32/h8b2t8"),
    "one-layer entry, this key": entry("loop_premul", timed=None),
    "other timing": entry("loop_premul", timed="layer"),
    "unknown name": entry("cudnn9"),
    "device-refused name": entry("fused_nocudnn"),   # cuDNN off: CUDA only, and this is the CPU
    "rejected by its entry": entry("loop", {"loop": "not equivalent to fused: out: max |error| 1 > 1e-05"}),
}


# Each case is a `charrnn train` subprocess (~7 s): `make test` runs one of each kind (unreadable, stale,
# rejected), `make test-all` (CI) every case.
FAST_CASES = {"truncated", "one-layer entry", "rejected by its entry"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=() if c in FAST_CASES else pytest.mark.slow)
                                  for c in sorted(BROKEN)])
def test_a_broken_cache_is_probed_again_with_one_line_and_trains_on_a_checked_backend(results_dir, case):
    results_dir.mkdir(parents=True)
    (results_dir / PROBE_CACHE).write_text(BROKEN[case])
    done = run_charrnn("train", *(f"{k}={v}" for k, v in TINY.items()))
    assert done.returncode == 0, done.stderr[-2000:]
    said = [line for line in done.stderr.splitlines() if "probing again" in line]
    assert len(said) == 1 and str(results_dir / PROBE_CACHE) in said[0], done.stderr[-2000:]
    [run] = Tracker().runs("train")
    trained = run.params["backend_resolved"]
    assert trained in capabilities.candidates(CFG, "cpu")
    stored = json.loads((results_dir / PROBE_CACHE).read_text())[MACHINE][KEY]
    assert stored["backend"] == trained and trained not in stored["rejected"]


def test_a_cached_backend_that_is_not_equivalent_is_probed_again(results_dir, monkeypatch, capsys):
    results_dir.mkdir(parents=True)
    (results_dir / PROBE_CACHE).write_text(entry("loop_premul"))
    strict = dataclasses.replace(registry.BACKENDS["loop_premul"], tolerances=(("fp32", -1.0),))  # nothing passes
    monkeypatch.setitem(registry.BACKENDS, "loop_premul", strict)
    monkeypatch.setattr(capabilities, "_checked", {})
    choice = resolve_backend(CFG, "cpu")
    assert choice.backend != "loop_premul" and choice.rejected["loop_premul"].startswith("not equivalent")
    [line] = capsys.readouterr().err.splitlines()
    assert "entry" in line and "loop_premul" in line and "not equivalent to fused" in line and "probing again" in line


def test_a_sound_cached_backend_is_checked_once_per_process_and_used(results_dir, monkeypatch, capsys):
    results_dir.mkdir(parents=True)
    (results_dir / PROBE_CACHE).write_text(entry("loop_premul"))
    monkeypatch.setattr(capabilities, "_checked", {})
    monkeypatch.setattr(capabilities, "probe", lambda cfg, device: pytest.fail("a sound entry was probed again"))
    checks = []
    real = capabilities._check_equivalence
    monkeypatch.setattr(capabilities, "_check_equivalence", lambda *a: checks.append(a[2]) or real(*a))
    assert resolve_backend(CFG, "cpu").backend == "loop_premul"
    assert resolve_backend(dataclasses.replace(CFG, seed=3), "cpu").backend == "loop_premul"
    assert checks == ["loop_premul"] and capsys.readouterr().err == ""
