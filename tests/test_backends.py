"""Backends beyond loop/fused, and the benchmark plumbing in charrnn/bench/suite.py.

Every backend's equivalence with `fused` at small shapes (fp32, 1 and 2 layers, fwd and fwd_bwd)
runs in tests/benchmarks under `make test`; this file covers what that suite does not: bf16, the
activations and state paths nn.* cannot check, profiles, the table, the JSON path, the CLI and the
MLflow run.
"""
from __future__ import annotations

import json
import re

import pytest
import torch

from charrnn import config
from charrnn.bench import cases as bench_cases
from charrnn.bench import suite, workloads
from charrnn.bench import results as bench_results
from charrnn import registry
from charrnn.bench.cases import Case
from charrnn.capabilities import MATMUL, bf16_support
from charrnn.rnn import cells
from charrnn.rnn.cells import make_layer
from charrnn.cli import main
from charrnn.config import ConfigError

B, T, I, H = 3, 5, 4, 6
CPU = torch.device("cpu")
JIT_WARNING = "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"  # inductor import
pytestmark = pytest.mark.filterwarnings(JIT_WARNING)
EAGER = ("loop", "loop_premul", "loop_bptt")  # no compilation: cheap to run everywhere
CLASSIC = [c.name for c in registry.CELLS.values() if c.recurrent]   # the cells nn.* has


def tiny(cell="gru", backend="loop_bptt", **kw) -> Case:
    return Case(cell, backend, **{"hidden": 8, "batch": 3, "seq_len": 5, "layers": 1} | kw)


def hidden_of(cell: str, layers: int = 1, requires_grad: bool = False):
    n = 2 if registry.CELLS[cell].has_cell_state else 1
    states = tuple(torch.randn(layers, B, H, requires_grad=requires_grad) for _ in range(n))
    return states if n == 2 else states[0]


# --------------------------------------------------------------------------- backends

@pytest.mark.parametrize("backend", registry.backends_for("lstm"))
def test_every_backend_shares_the_nn_state_dict_layout(backend):
    layer = make_layer(backend, "lstm", I, H)
    assert list(layer.state_dict()) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    layer.load_state_dict(make_layer("fused", "lstm", I, H).state_dict())


@pytest.mark.parametrize("dtype", ["bf16"])
@pytest.mark.parametrize("backend", EAGER)
@pytest.mark.parametrize("cell", CLASSIC)
def test_bf16_autocast_matches_fused_within_stated_tolerance(cell, backend, dtype):
    for kernel in (cell, MATMUL):  # the fused reference, then the loop backend's matmuls
        support = bf16_support(kernel, "cpu")
        if not support.ok:
            pytest.skip(f"bf16 {kernel} cannot run on this CPU: {support.reason}")
    case = tiny(cell, backend, layers=2, dtype=dtype)
    workloads.assert_equivalent(case, CPU, workloads.reference_model(case))


@pytest.mark.parametrize("activation", ["tanh", "relu", "identity"])
def test_bptt_vanilla_matches_autograd_loop_for_every_activation(activation):
    torch.manual_seed(0)
    ref = make_layer("loop_premul", "vanilla", I, H, activation=activation)
    bptt = make_layer("loop_bptt", "vanilla", I, H, activation=activation)
    bptt.load_state_dict(ref.state_dict())
    x, h0 = torch.randn(B, T, I), hidden_of("vanilla")
    results = []
    for layer in (ref, bptt):
        xg, hg = x.clone().requires_grad_(), h0.clone().requires_grad_()
        out, h_n = layer(xg, hg)
        ((out * torch.linspace(-1, 1, H)).sum() + h_n.square().sum()).backward()
        results.append([out, h_n, xg.grad, hg.grad, *(p.grad for p in layer.parameters())])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", CLASSIC)
def test_bptt_gradient_through_final_state_only(cell):
    """Loss on h_n (and c_n) alone: the unused per-step output gets zero gradient."""
    torch.manual_seed(0)
    ref, bptt = make_layer("loop_premul", cell, I, H), make_layer("loop_bptt", cell, I, H)
    bptt.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, I)
    grads = []
    for layer in (ref, bptt):
        _, h_n = layer(x)
        finals = h_n if isinstance(h_n, tuple) else (h_n,)
        finals[-1].square().sum().backward()  # c_n for lstm, h_n otherwise
        grads.append([p.grad for p in layer.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", CLASSIC)
def test_bptt_no_grad_path_equals_grad_path(cell):
    layer = make_layer("loop_bptt", cell, I, H)
    x, h0 = torch.randn(B, T, I), hidden_of(cell)
    out, h_n = layer(x, h0)
    with torch.no_grad():
        out_ng, h_ng = layer(x, h0)
    torch.testing.assert_close(out_ng, out.detach())
    for a, b in zip(h_ng if cell == "lstm" else (h_ng,), h_n if cell == "lstm" else (h_n,)):
        torch.testing.assert_close(a, b.detach())


def test_bptt_handles_empty_sequences_like_the_loop():
    out, h_n = make_layer("loop_bptt", "gru", I, H)(torch.randn(B, 0, I))
    assert out.shape == (B, 0, H) and h_n.shape == (1, B, H) and not h_n.any()


def test_per_step_projection_loop_equals_premul_loop():
    torch.manual_seed(0)
    loop, premul = make_layer("loop", "lstm", I, H), make_layer("loop_premul", "lstm", I, H)
    premul.load_state_dict(loop.state_dict())
    assert not loop.premul and premul.premul
    x = torch.randn(B, T, I)
    torch.testing.assert_close(loop(x)[0], premul(x)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", ["loop_bptt", "loop_bptt_compiled", "loop_cudagraph"])
def test_bptt_backends_reject_add_combine_and_point_to_loop(backend):
    with pytest.raises(ConfigError, match="loop_premul") as err:
        make_layer(backend, "vanilla", I, H, input_combine="add")
    assert str(err.value).startswith("input_combine='add'")


def test_cudagraph_layer_refuses_non_cuda_tensors():
    with pytest.raises(RuntimeError, match="CUDA"):
        make_layer("loop_cudagraph", "gru", I, H)(torch.randn(B, T, I))


def test_fused_nocudnn_is_the_fused_module_with_cudnn_off():
    layer = make_layer("fused_nocudnn", "gru", I, H)
    assert isinstance(layer, torch.nn.GRU) and type(layer).__name__ == "GRUNoCudnn"
    fused = make_layer("fused", "gru", I, H)
    layer.load_state_dict(fused.state_dict())
    x = torch.randn(B, T, I)
    torch.testing.assert_close(layer(x)[0], fused(x)[0])


def test_layer_stack_takes_nn_multilayer_weights():
    torch.manual_seed(0)
    case = tiny("lstm", "loop_premul", layers=3)
    fused = workloads.reference_model(case)
    stack = workloads.build_layer_model(case, fused)
    x, h0 = torch.randn(3, 5, 8), tuple(torch.randn(3, 3, 8) for _ in range(2))
    out_f, (h_f, c_f) = fused(x, h0)
    out_s, (h_s, c_s) = stack(x, h0)
    for a, b in ((out_s, out_f), (h_s, h_f), (c_s, c_f)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert workloads._canonical("layers.2.weight_hh_l0") == "weight_hh_l2"
    assert workloads._canonical("head.weight") == "head.weight"


def _perturb_loop_premul(monkeypatch, perturb) -> None:
    """`loop_premul` layers whose step goes through `perturb(xp, h, w, b, step)`; the registry names
    its factory by string, so patching the factory's module attribute reaches `make_layer`."""
    build = cells.loop_premul_layer

    def perturbed(*args):
        layer = build(*args)
        step = layer.step
        layer.step = lambda xp, h, w, b: perturb(xp, h, w, b, step)
        return layer

    monkeypatch.setattr(cells, "loop_premul_layer", perturbed)


def test_equivalence_failure_names_the_case_and_tensor(monkeypatch):
    _perturb_loop_premul(monkeypatch, lambda xp, h, w, b, step: step(xp + 1e-3, h, w, b))
    case = tiny("gru", "loop_premul")
    with pytest.raises(AssertionError, match=r"gru-h8-b3-t5-l1-fp32-fwd_bwd-loop_premul: out: max \|error\|"):
        workloads.assert_equivalent(case, CPU, workloads.reference_model(case))


# --------------------------------------------------------------------------- cases and profiles

def test_case_ids_name_every_parameter():
    case = Case("gru", "loop_bptt", 256, 32, 64, 2, "bf16", "fwd")
    assert case.shape == "gru-h256-b32-t64-l2-bf16-fwd"
    assert case.id == "gru-h256-b32-t64-l2-bf16-fwd-loop_bptt"
    assert set(case.params()) == {"cell", "backend", "hidden", "batch", "seq_len", "layers", "dtype",
                                  "direction"}


@pytest.mark.parametrize("name", ["test", "quick", "full"])
def test_every_profile_times_every_backend_of_every_cell(name):
    profile = bench_cases.PROFILES[name]
    cases = profile.cases() + profile.train_cases()
    assert {(c.cell, c.backend) for c in cases} == {(c, b.name) for b in registry.BACKENDS.values() for c in b.cells}
    assert len({c.id for c in cases}) == len(cases)


def test_quick_profile_times_min_cells_scan_loop_and_nn_gru_at_three_seq_lens():
    quick = {c.id for c in bench_cases.PROFILES["quick"].cases()}
    for t in (64, 256, 1024):
        for cell, backend in (("mingru", "scan"), ("mingru", "loop"), ("minlstm", "scan"), ("gru", "fused")):
            assert f"{cell}-h256-b32-t{t}-l1-fp32-fwd_bwd-{backend}" in quick


def test_quick_profile_holds_the_cpu_goal_shape_and_full_the_gpu_one():
    quick = {c.id for c in bench_cases.PROFILES["quick"].cases()}
    assert "gru-h256-b32-t64-l1-fp32-fwd_bwd-loop_bptt" in quick
    full = bench_cases.PROFILES["full"].cases()
    assert "gru-h512-b64-t100-l1-fp32-fwd_bwd-fused" in {c.id for c in full}
    assert {c.hidden for c in full} == {64, 128, 256, 512, 1024, 2048}
    assert {c.batch for c in full} == {1, 8, 32, 64, 128}
    assert {c.seq_len for c in full} == {16, 64, 100, 256, 1024}
    assert {c.layers for c in full} == {1, 2, 4} and {c.dtype for c in full} == {"fp32", "bf16"}


def test_rounds_follow_the_time_target_within_bounds():
    quick = bench_cases.PROFILES["quick"]
    assert quick.rounds(10.0) == quick.min_rounds
    assert quick.rounds(1e-6) == quick.max_rounds
    assert quick.min_rounds < quick.rounds(quick.target_s / 50) <= quick.max_rounds


def test_device_restricted_backends_have_a_skip_reason_off_their_device():
    for backend in registry.BACKENDS:
        reason = workloads.skip_reason(backend, CPU)
        assert (reason is not None) == (backend in config.CUDA_ONLY), backend
        if reason:
            assert reason.startswith(backend) and "cpu" in reason
    assert workloads.skip_reason("loop_cudagraph", torch.device("cuda")) is None
    assert workloads.skip_reason("loop_native", torch.device("cuda")).startswith("loop_native: its fused gate kernels")


def test_device_timer_on_cpu_is_a_monotonic_clock():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the timer reads CUDA events")
    first = workloads.device_timer()
    assert workloads.device_timer() >= first


def test_output_path_is_host_device_timestamp(tmp_path):
    from datetime import datetime, timezone

    path = suite.output_path(tmp_path, CPU, datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert path.parent == tmp_path / "benchmarks"
    assert re.fullmatch(r"[A-Za-z0-9.-]+-cpu-20260102T030405Z\.json", path.name)


# --------------------------------------------------------------------------- table, CLI, MLflow

def fake_results() -> dict:
    def entry(backend, median, iqr, shape="gru-h8-b3-t5-l1-fp32-fwd_bwd", **info):
        return {"name": f"test_layer[{shape}-{backend}]", "group": shape,
                "stats": {"median": median, "iqr": iqr, "rounds": 20},
                "extra_info": {"shape": shape, "backend": backend, "first_call_s": 0.5,
                               "compile_s": 2.0 if "compiled" in backend else 0.0, **info}}
    return {"machine_info": {"charrnn": {"device": "cpu"}}, "benchmarks": [
        entry("fused", 0.040, 0.001), entry("loop", 0.080, 0.002, paired_ratio=1.9),
        entry("loop_bptt_compiled", 0.032, 0.001),
        {**entry("harness", 2.1, 0.02, shape="harness-vs-bare"), "extra_info": {
            "shape": "harness-vs-bare", "backend": None, "ratio": 1.02}},
        {**entry("loop_native", 1.3, 0.02, shape="train-auto-vs-fused"), "extra_info": {
            "shape": "train-auto-vs-fused", "backend": "loop_native", "ratio": 2.3,
            "ratio_label": "auto/fused tokens/s"}}],
        "skipped": [{"name": "x", "reason": "loop_cudagraph: CUDA graphs need a CUDA device; device is cpu"}]}


def test_paired_ratio_is_preferred_over_separate_medians():
    rows = bench_results.table_rows(fake_results())
    loop = next(r for r in rows if r["backend"] == "loop")
    assert bench_results.vs_fused(loop) == 1.9 and loop["speedup"] == pytest.approx(0.5)
    info = workloads.paired_info([2.0, 4.0, 3.0], [1.0, 2.0, 3.0])  # ratios 2, 2, 1
    assert info["paired_fused_median_ms"] == 2000.0 and info["paired_ratio"] == 2.0
    assert info["paired_ratio_q1"] <= info["paired_ratio"] <= info["paired_ratio_q3"]
    assert workloads.paired_info([1.0], []) == {}


def test_table_has_median_iqr_speedup_best_custom_and_skips():
    text = bench_results.format_table(fake_results())
    assert re.search(r"fused\s+40\.000\s+1\.000\s+2\.5%\s+1\.00x", text)
    assert re.search(r"loop\s+80\.000\s+2\.000\s+2\.5%\s+0\.50x\s+1\.900\s+-\s+-\s+20", text)
    assert re.search(r"loop_bptt_compiled\s+32\.000 .* 1\.25x\s+-\s+-\s+-\s+20\s+2\.0", text)
    assert re.search(r"gru-h8-b3-t5-l1-fp32-fwd_bwd\s+loop_bptt_compiled\s+0\.800", text)
    assert "harness/bare 1.020" in text
    assert "auto/fused tokens/s 2.300" in text and "harness/bare 2.300" not in text   # each ratio named
    assert "1 x loop_cudagraph: CUDA graphs need a CUDA device" in text


def test_bench_table_cli_prints_and_rejects_bad_files(tmp_path, capsys):
    good = tmp_path / "b.json"
    good.write_text(json.dumps(fake_results()))
    assert main(["bench-table", str(good)]) == 0
    assert "speedup" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["bench-table", str(bad)]) == 2
    assert main(["bench-table", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "not a pytest-benchmark JSON" in err and "no such file" in err


def test_bench_cli_rejects_unknown_profile(capsys):
    assert main(["bench", "--profile", "huge"]) == 2
    assert "profile='huge': unknown value; valid choices: test, quick" in capsys.readouterr().err


def test_mlflow_run_in_kernels_experiment_holds_json_and_table(results_dir, tmp_path):
    from charrnn.tracking.store import Tracker

    path = tmp_path / "b.json"
    path.write_text(json.dumps(fake_results()))
    run_id = suite.log_to_mlflow(path, "quick", wall_s=12.0, exit_code=0)
    tracker = Tracker()
    run = tracker.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert tracker.client.get_experiment(run.info.experiment_id).name == "kernels"
    assert run.data.params["profile"] == "quick"
    assert run.data.metrics["best_over_fused.gru-h8-b3-t5-l1-fp32-fwd_bwd"] == pytest.approx(0.8)
    assert not [k for k in run.data.metrics if k.startswith(("median_ms", "ratio"))]   # rows go in the table
    files = {f.path for f in tracker.client.list_artifacts(run_id)}
    assert {"benchmarks", "summary.txt", suite.KERNEL_TABLE} <= files
    table = json.loads(tracker.artifact_text(run_id, suite.KERNEL_TABLE))
    rows = bench_results.table_rows(fake_results())
    assert len(table["data"]) == len(rows) and "median_ms" in table["columns"]


# --------------------------------------------------------------------------- FLOPs, bwd, sweep

def test_flops_follow_the_closed_form_per_cell_and_direction():
    lstm = Case("lstm", "fused", 256, 32, 64)
    assert lstm.flops() == 4 * 2 * (256 + 256) * 256 * 32 * 64 * 3
    assert Case("gru", "fused", 8, 2, 3, layers=2, direction="fwd").flops() == 3 * 2 * 16 * 8 * 2 * 3 * 2
    assert Case("vanilla", "fused", 8, 2, 3, direction="bwd").flops() == 2 * Case(
        "vanilla", "fused", 8, 2, 3, direction="fwd").flops()
    assert lstm.matmul_shapes() == {"all_steps": (64 * 32, 256, 1024), "one_step": (32, 256, 1024)}


def test_table_reports_gflops_percent_of_peak_and_paired_spread():
    data = fake_results()
    data["benchmarks"][1]["extra_info"] |= {"flops": 8e9, "peak_gflops": 400.0, "tokens": 2048,
                                            "paired_ratio_q1": 1.8, "paired_ratio_q3": 2.1}
    row = next(r for r in bench_results.table_rows(data) if r["backend"] == "loop")
    assert row["gflops"] == pytest.approx(100.0) and row["pct_peak"] == pytest.approx(25.0)
    assert row["tokens_per_s"] == pytest.approx(2048 / 0.08)
    assert re.search(r"loop\s+80\.000 .* 1\.900 \[1\.80,2\.10\]\s+100\.0\s+25\s+20", bench_results.format_table(data))


def test_matmul_rate_is_measured_once_per_size():
    rate = workloads.matmul_gflops(16, 8, 24, "fp32", CPU)
    assert rate > 0 and workloads.matmul_gflops(16, 8, 24, "fp32", CPU) == rate


def test_bwd_workload_times_the_backward_of_a_forward_run_before_it():
    case = tiny("lstm", "loop_bptt", direction="bwd")
    work = workloads.make_workload(case, CPU, workloads.reference_model(case))
    work.forward_for_backward()
    assert work.pending is not None and work.x.grad is None
    work.run()
    assert work.pending is None and work.x.grad is not None
    assert work.timed_call() > 0 and work.pending is None  # runs its own forward when none is pending


def test_equivalence_errors_are_explicit_not_library_asserts(monkeypatch):
    _perturb_loop_premul(monkeypatch, lambda xp, h, w, b, step: 1.01 * step(xp, h, w, b))
    case = tiny("gru", "loop_premul")
    with pytest.raises(workloads.EquivalenceError, match="out: max"):
        workloads.assert_equivalent(case, CPU, workloads.reference_model(case))


def test_sweep_profile_times_fused_and_bptt_at_ten_plus_hidden_sizes_fine_at_64_to_256():
    sweep = bench_cases.PROFILES["sweep_hidden"]
    cases = sweep.cases()
    for cell in ("vanilla", "gru", "lstm"):
        for backend in ("fused", "loop_bptt"):
            sizes = sorted({c.hidden for c in cases if (c.cell, c.backend) == (cell, backend)})
            assert len(sizes) >= 10 and sizes[0] == 32 and sizes[-1] == 1024
            assert len([h for h in sizes if 64 <= h <= 256]) >= 8
    assert {(c.batch, c.seq_len, c.direction) for c in cases} == {(32, 64, "fwd_bwd")}


def test_gpu_profile_is_the_fastrnns_shape_in_both_dtypes_and_every_direction():
    cases = bench_cases.PROFILES["gpu"].cases()
    assert {(c.hidden, c.batch, c.seq_len) for c in cases} == {(512, 64, 100)}
    assert {c.dtype for c in cases} == {"fp32", "bf16"} and {c.direction for c in cases} == {"fwd", "bwd", "fwd_bwd"}
    assert not {c.backend for c in cases} & {"loop_compiled", "loop_bptt_compiled"}


def test_bench_profile_names_are_checked_with_the_valid_choices():
    with pytest.raises(ConfigError, match="profile='tiny': unknown value; valid choices: test, quick, sweep_hidden"):
        bench_cases.profile_named("tiny")


def test_only_profiles_with_harness_rounds_time_the_harness():
    assert {n for n, p in bench_cases.PROFILES.items() if p.harness_rounds} == {"test", "quick", "full"}


def test_equivalence_backward_runs_with_tf32_off():
    """cuDNN's RNN backward runs in TF32 when allowed (grad errors ~1e-3 on an H200): the equivalence
    check must keep TF32 off through the backward as well as the forward."""
    from charrnn.bench.cases import Case
    from charrnn.bench.workloads import forward_backward, make_workload
    case = Case("gru", "fused", 8, 2, 3)
    work = make_workload(case, torch.device("cpu"))
    seen = []
    torch.backends.cudnn.allow_tf32 = True
    hook = torch.nn.modules.module.register_module_full_backward_hook(
        lambda *_: seen.append(torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32))
    try:
        forward_backward(work.model, work.x, work.h0, case, torch.device("cpu"))
    finally:
        hook.remove()
    assert seen and not any(seen)
    assert torch.backends.cudnn.allow_tf32   # restored afterwards
