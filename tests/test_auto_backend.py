"""`backend: auto` (capabilities.resolve_backend): the fastest equivalent backend, chosen by a
cached per-machine probe with a margin, and the training step's graph plan."""
from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest
import torch
from grid_support import TINY_FIXED, empty_store_db, grid_data, runs_of, store, write_grid  # noqa: F401

from charrnn import capabilities, registry
from charrnn.capabilities import AUTO_MARGIN, PROBE_CACHE, candidates, probe, probe_key, resolve_backend, workload
from charrnn.config import ConfigError, make_config
from charrnn.grid.preflight import torch_threads
from charrnn.rnn import model_probe
from charrnn.rnn.models import CharRNN
from charrnn.run.runner import run_one
from charrnn.run.train import CAPTURED, Trainer, step_graph_plan
from charrnn.tags import STEP_GRAPH_TAG
from charrnn.tracking.store import Tracker

TINY = {**TINY_FIXED, "backend": "auto"}


def tiny(**overrides):
    return make_config({**TINY, **overrides})


def test_auto_is_a_valid_backend_and_unknown_values_list_it():
    assert tiny().backend == "auto"
    with pytest.raises(ConfigError, match="valid choices: auto, fused, "):
        make_config({"backend": "fastest"})


def test_candidates_start_with_the_reference_and_leave_out_slow_compiles_and_other_devices():
    gru = candidates(tiny(cell="gru"), "cpu")
    assert gru[0] == "fused" and "loop_bptt" in gru
    assert not {"loop_compiled", "loop_bptt_compiled", "loop_cudagraph", "fused_nocudnn"} & set(gru)
    add = candidates(tiny(cell="vanilla", input_combine="add"), "cpu")
    assert add[0] == "loop" and "fused" not in add   # nn.RNN has no add cell: the loop is the reference
    assert candidates(tiny(cell="mingru"), "cpu") == ["loop", "scan", "min_native"]
    assert candidates(tiny(cell="mingru"), "cuda") == ["loop", "scan"]   # min_native: CPU only


def fake_rounds(ratios: dict[str, float]):
    """_paired_rounds that reports `ratios` (candidate / reference) for models whose layers are of those classes."""
    def rounds(model, reference, batch, autocast, device, deadline):
        backend = next(name for name, ratio in ratios.items() if layer_of(name) is type(model.layers[0]))
        return [(ratios[backend], 1.0)] * 3
    return rounds


def layer_of(backend: str) -> type:
    from charrnn.rnn.cells import make_layer
    return type(make_layer(backend, "gru", 4, 4))


@pytest.mark.parametrize("loop_bptt, chosen", [(1 - AUTO_MARGIN / 2, "fused"), (0.5, "loop_bptt")])
def test_a_candidate_replaces_the_reference_only_beyond_the_margin(monkeypatch, loop_bptt, chosen):
    monkeypatch.setattr(capabilities, "candidates", lambda cfg, device: ["fused", "loop_bptt"])
    monkeypatch.setattr(capabilities, "_paired_rounds", fake_rounds({"loop_bptt": loop_bptt}))
    choice = probe(tiny(cell="gru"), "cpu", workload(tiny(cell="gru")))
    assert choice.backend == chosen and choice.ratios == {"fused": 1.0, "loop_bptt": loop_bptt}


def test_a_candidate_that_is_not_equivalent_is_rejected_with_the_reason(monkeypatch):
    strict = dataclasses.replace(registry.BACKENDS["loop_premul"], tolerances=(("fp32", -1.0),))  # nothing passes
    monkeypatch.setitem(registry.BACKENDS, "loop_premul", strict)
    monkeypatch.setattr(capabilities, "candidates", lambda cfg, device: ["fused", "loop_premul"])
    choice = probe(tiny(cell="gru"), "cpu", workload(tiny(cell="gru")))
    assert choice.backend == "fused" and "loop_premul" not in choice.ratios
    assert choice.rejected["loop_premul"].startswith("not equivalent to fused: logits: max |error|")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_real_probe_checks_every_candidate_and_leaves_the_rng_alone(cell):
    cfg = tiny(cell=cell, hidden_size=8, seq_len=4)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    choice = probe(cfg, "cpu", workload(cfg))
    assert torch.equal(torch.get_rng_state(), before)
    assert set(choice.ratios) == set(candidates(cfg, "cpu")) and choice.rejected == {}
    assert choice.backend in choice.ratios and all(r > 0 for r in choice.ratios.values())
    assert choice.timed == model_probe.WHOLE_MODEL


def test_the_probe_times_the_whole_model_on_the_runs_token_ids(monkeypatch):
    """Each timed call is the run's CharRNN (lookup, layers, head, loss) on a training batch of its
    task, forward + backward: token ids in, every parameter's gradient out."""
    cfg = tiny(cell="lstm", layers=2, input="onehot", residual=True)
    seen = []
    real = model_probe.timed

    def recording(model, batch, autocast, device):
        seen.append((type(model.layers[0]).__name__, batch.x.dtype, tuple(batch.x.shape)))
        result = real(model, batch, autocast, device)
        assert all(p.grad is not None for p in model.parameters())   # the head and the lookup too
        return result

    monkeypatch.setattr(model_probe, "timed", recording)
    work = workload(cfg)
    choice = probe(cfg, "cpu", work)
    assert isinstance(work.batch.x, torch.Tensor) and work.vocab_size == 65   # tinyshakespeare
    assert {kind for kind, _, _ in seen} >= {"LSTM", "LoopRNNLayer"}          # the reference and a loop
    assert {(dtype, shape) for _, dtype, shape in seen} == {(torch.int64, (4, 16))}
    assert len(seen) >= 2 * (1 + capabilities.MIN_ROUNDS) * (len(choice.ratios) - 1)   # pairs, a warm-up each


@pytest.mark.parametrize("candidate_s, rounds", [(1.0, capabilities.MIN_ROUNDS), (1.3, capabilities.MIN_ROUNDS),
                                                  (0.99, capabilities.PROBE_ROUNDS), (0.5, capabilities.PROBE_ROUNDS)])
def test_a_candidate_out_of_reach_stops_after_the_minimum_rounds(monkeypatch, candidate_s, rounds):
    """A candidate no faster than the reference in its best round cannot win by the margin: it is
    timed MIN_ROUNDS times; one that might win gets every round (the deadline far away)."""
    reference, candidate = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    monkeypatch.setattr(model_probe, "timed", lambda model, *a: candidate_s if model is candidate else 1.0)
    pairs = capabilities._paired_rounds(candidate, reference, None, None, torch.device("cpu"), deadline=float("inf"))
    assert len(pairs) == rounds and capabilities.best_ratio(pairs) == candidate_s


def test_the_probe_key_names_the_model_around_the_layers():
    keys = {probe_key(cfg, "cpu", workload(cfg)) for cfg in
            (tiny(), tiny(layers=2), tiny(input="onehot"), tiny(embed_size=4), tiny(residual=True),
             tiny(task="names"), tiny(seed=3))}
    assert len(keys) == 6                                     # the seed changes nothing the probe times
    with torch_threads(1):
        assert probe_key(tiny(), "cpu", workload(tiny())) == "gru/cpu/fp32/h8b4t16/v65e8l1/threads1"
    assert probe_key(tiny(task="names"), "cpu", workload(tiny(task="names"))).startswith("gru/cpu/fp32/h8b4t")


def test_the_probe_key_names_the_cpu_threads_a_gpu_key_does_not():
    """A run packed beside another trains on one thread, one alone on every core: each is probed
    (and its choice cached) at its own threads."""
    work = workload(tiny())
    with torch_threads(1):
        one = probe_key(tiny(), "cpu", work)
    with torch_threads(2):
        two = probe_key(tiny(), "cpu", work)
    assert one.endswith("/threads1") and two.endswith("/threads2")
    assert "threads" not in probe_key(tiny(), "cuda", work)


def test_preflight_probes_each_run_at_the_threads_it_will_train_with(monkeypatch, results_dir, tmp_path):
    from charrnn.grid.preflight import preflight
    from charrnn.grid.spec import load_grid

    seen = []

    def recording(cfg, device_type, work):
        seen.append((cfg.seed, torch.get_num_threads()))
        return capabilities.Choice("fused", {"fused": 1.0}, {})

    monkeypatch.setattr(capabilities, "probe", recording)
    fixed = {k: v for k, v in TINY.items() if k != "hidden_size"}
    grid = load_grid(write_grid(tmp_path, grid_data(fixed=fixed)))   # 4 models (cell x hidden_size) x 2 seeds
    before = torch.get_num_threads()
    preflight(grid, grid.expand("quick"), threads_of=lambda spec: 1 + spec.seed)
    assert sorted(seen) == [(0, 1)] * 4 + [(1, 2)] * 4     # each model once per thread count, at that count
    assert torch.get_num_threads() == before


def test_ray_gives_a_shared_run_its_share_of_the_cpus_and_an_exclusive_run_all_of_them(monkeypatch):
    from types import SimpleNamespace

    from charrnn.grid import executors

    monkeypatch.setattr(executors, "usable_cpus", lambda: 4)
    shared, alone = SimpleNamespace(exclusive=False), SimpleNamespace(exclusive=True)
    assert [executors.RayExecutor().threads_of(s) for s in (shared, alone)] == [1, 4]
    assert executors.RayExecutor(max_parallel=2).threads_of(shared) == 2
    assert executors.LocalExecutor().threads_of(shared) is None


MODELS = {"one layer": {}, "two layers, one-hot, residual": {"layers": 2, "input": "onehot", "residual": True},
          "between-layer skips, embed 6": {"layers": 2, "embed_size": 6, "residual": True,
                                           "residual_mode": "between_layers"}}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("cell", sorted(registry.CELLS))
def test_every_candidate_model_matches_the_reference_in_logits_and_gradients(cell, model):
    """What the probe checks before it times a candidate: the whole CharRNN on the reference's
    weights, logits and every parameter gradient of a training step, within the candidate's tolerance."""
    cfg = tiny(cell=cell, **MODELS[model])
    work, cpu = workload(cfg), torch.device("cpu")
    names = candidates(cfg, "cpu")
    torch.manual_seed(0)
    reference = model_probe.build(names[0], cfg, work.vocab_size, cpu)
    want = model_probe.forward_backward(reference, work.batch, contextlib.nullcontext())
    for name in names[1:]:
        if not capabilities.build_support(name).ok:
            continue   # loop_native / min_native without a compiler: rejected by the probe, tested apart
        candidate = model_probe.build(name, cfg, work.vocab_size, cpu, reference.state_dict())
        got = model_probe.forward_backward(candidate, work.batch, contextlib.nullcontext())
        assert set(got) == set(want)
        assert model_probe.equivalence_error(got, want, registry.BACKENDS[name].tolerance("fp32")) == "", name


def test_the_choice_is_cached_per_machine_and_shape(results_dir, monkeypatch):
    calls = []

    def counted(cfg, device_type, work):
        calls.append(cfg.hidden_size)
        return capabilities.Choice("loop_bptt", {"fused": 1.0, "loop_bptt": 0.5}, {})

    monkeypatch.setattr(capabilities, "probe", counted)
    assert resolve_backend(tiny(hidden_size=8), "cpu").backend == "loop_bptt"
    assert resolve_backend(tiny(hidden_size=8, seed=3), "cpu").backend == "loop_bptt"
    resolve_backend(tiny(hidden_size=16), "cpu")
    assert calls == [8, 16]
    stored = json.loads((results_dir / PROBE_CACHE).read_text())
    assert list(stored) == [capabilities.machine_key("cpu")]
    assert [entry["timed"] for entry in stored[capabilities.machine_key("cpu")].values()] == ["model", "model"]
    assert resolve_backend(tiny(backend="loop"), "cpu").backend == "loop" and calls == [8, 16]


def test_a_model_built_outside_training_uses_the_reference():
    model = CharRNN(tiny(cell="gru"), 10)
    assert isinstance(model.layers[0], torch.nn.GRU)


def test_training_runs_the_resolved_backend_and_logs_it(store, monkeypatch):
    monkeypatch.setattr(capabilities, "probe",
                        lambda cfg, device, work: capabilities.Choice("loop_premul", {"fused": 1.0}, {}))
    outcome = run_one(tiny(cell="gru"), Tracker(), experiment="auto", progress=False)
    assert outcome.status == "FINISHED"
    [run] = runs_of("auto", store)
    assert run.params["backend"] == "auto" and run.params["backend_resolved"] == "loop_premul"
    assert STEP_GRAPH_TAG not in run.tags          # CUDA graphs: tagged on CUDA runs only


def test_the_step_is_captured_only_on_cuda_for_backends_that_do_not_compile(monkeypatch):
    cuda = torch.device("cuda")
    assert step_graph_plan("fused", cuda) == CAPTURED
    assert step_graph_plan("loop_cudagraph", cuda).startswith("eager: backend=loop_cudagraph")
    assert step_graph_plan("loop_bptt", cuda).startswith("eager: backend=loop_bptt unrolls")
    monkeypatch.setenv("CHARRNN_EAGER_STEP", "1")
    assert step_graph_plan("fused", cuda) == "eager: forced by CHARRNN_EAGER_STEP=1"


def test_a_capture_that_fails_on_its_first_step_falls_back_to_eager_with_the_reason(results_dir):
    trainer = Trainer(tiny(backend="fused"), progress=False)
    eager = trainer.model

    def broken(*args):
        raise RuntimeError("graph capture unsupported here\nsecond line")

    trainer.forward, trainer.step_graph = broken, CAPTURED
    loss, _ = trainer.train_step(0)
    assert trainer.forward is eager and loss > 0
    assert trainer.step_graph == "eager: capture failed (RuntimeError: graph capture unsupported here)"
