"""minGRU / minLSTM: the scan equals the sequential loop (outputs and every gradient), the paper's
equations by hand, carried state, sampling, registry refusals, training, and the grid file.

Tolerance (fp32): max|scan - loop| <= SCAN_TOLERANCE["fp32"] (1e-4) x max(1, max|loop|) per tensor;
the chunked log-space scan measures ~3e-5 at T = 1024 (the whole-sequence scan, ~8e-3, would not
pass: see mincells.SCAN_CHUNK).
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from charrnn import registry
from charrnn.rnn import mincells
from charrnn.rnn.cells import make_layer
from charrnn.cli import main
from charrnn.config import ConfigError, make_config
from charrnn.grid.spec import load_grid
from charrnn.rnn.models import CharRNN, param_count

MIN_CELLS = registry.min_cells()
MIN_BACKENDS = registry.backends_for("mingru")   # loop (the sequential reference) and scan
TOL = mincells.SCAN_TOLERANCE
REPO = Path(__file__).resolve().parent.parent
GRID = REPO / "ablations" / "min_rnn.yaml"


def _sigmoid(u: float) -> float:
    return 1 / (1 + math.exp(-u))


def _g_positive(u: float) -> float:
    """The paper's positive activation g: x + 0.5 for x >= 0, sigmoid(x) below."""
    return u + 0.5 if u >= 0 else _sigmoid(u)


def forward_backward(layer, x, h0) -> dict[str, torch.Tensor]:
    """Outputs, h_n and the gradients of x, h0 and every parameter under a fixed random projection."""
    x, h0 = x.detach().clone().requires_grad_(), h0.detach().clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    out, h_n = layer(x, h0)
    gen = torch.Generator().manual_seed(123)
    loss = (out * torch.randn(out.shape, generator=gen)).sum() + (h_n * torch.randn(h_n.shape, generator=gen)).sum()
    loss.backward()
    return {"out": out, "h_n": h_n, "grad x": x.grad, "grad h0": h0.grad,
            **{f"grad {n}": p.grad for n, p in layer.named_parameters()}}


def assert_close_scaled(actual: dict, expected: dict, tol: float) -> None:
    assert actual.keys() == expected.keys()
    for name, want in expected.items():
        err, scale = (actual[name] - want).abs().max().item(), max(1.0, want.abs().max().item())
        assert err <= tol * scale, f"{name}: max|error| {err:.3g} > {tol:g} x {scale:.3g}"


def pair(cell: str, I: int, H: int, chunk: int = mincells.SCAN_CHUNK):
    torch.manual_seed(0)
    loop = make_layer("loop", cell, I, H)
    scan = mincells.MinLayer(cell, I, H, scan=True, chunk=chunk)
    scan.load_state_dict(loop.state_dict())
    return loop, scan


@pytest.mark.parametrize("T,chunk", [(2, 64), (37, 64), (64, 64), (300, 64), (1024, 64), (100, 7)],
                         ids=["T2", "T37", "T64", "T300", "T1024", "T100-chunk7"])
@pytest.mark.parametrize("cell", MIN_CELLS)

def test_mingru_minlstm_scan_equals_loop_outputs_and_every_gradient(cell, T, chunk):
    loop, scan = pair(cell, 12, 24, chunk)
    x, h0 = torch.randn(3, T, 12), torch.randn(1, 3, 24)  # h0 of both signs: outside the log
    assert_close_scaled(forward_backward(scan, x, h0), forward_backward(loop, x, h0), TOL["fp32"])


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_mingru_minlstm_scan_under_bf16_autocast_matches_fp32_loop(cell):
    loop, scan = pair(cell, 8, 16)
    x, h0 = torch.randn(2, 50, 8), torch.randn(1, 2, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = forward_backward(scan, x, h0)
    assert_close_scaled({k: v.float() for k, v in got.items()}, forward_backward(loop, x, h0), TOL["bf16"])


def test_mingru_two_steps_by_hand_from_the_paper_equations():
    # One unit (H = 1), one input: z = σ(w_z x + b_z), h̃ = g(w_h x + b_h), h' = (1 - z) h + z h̃.
    w, b = torch.tensor([[0.5], [-2.0]]), torch.tensor([0.1, 0.3])   # rows z | h̃
    h, expected = -0.4, []
    for x in (1.0, -0.7):
        z, cand = _sigmoid(0.5 * x + 0.1), _g_positive(-2.0 * x + 0.3)
        h = (1 - z) * h + z * cand
        expected.append(h)
    assert _g_positive(-2.0 * 1.0 + 0.3) == pytest.approx(_sigmoid(-1.7)) and _g_positive(1.7) == pytest.approx(2.2)
    for backend in MIN_BACKENDS:
        layer = make_layer(backend, "mingru", 1, 1)
        layer.load_state_dict({"weight_ih_l0": w, "bias_ih_l0": b})
        out, h_n = layer(torch.tensor([[[1.0], [-0.7]]]), torch.tensor([[[-0.4]]]))
        torch.testing.assert_close(out.flatten(), torch.tensor(expected), atol=1e-6, rtol=0)
        assert h_n.item() == pytest.approx(expected[-1], abs=1e-6)


def test_minlstm_two_steps_by_hand_from_the_paper_equations():
    # f = σ(.), i = σ(.), f' = f / (f + i), i' = i / (f + i), h' = f' h + i' g(h̃).
    w, b = torch.tensor([[1.0], [-0.5], [0.8]]), torch.tensor([0.0, 0.2, -0.1])  # rows f | i | h̃
    h, expected = 0.3, []
    for x in (0.6, -1.5):
        f, i, cand = _sigmoid(1.0 * x), _sigmoid(-0.5 * x + 0.2), _g_positive(0.8 * x - 0.1)
        h = f / (f + i) * h + i / (f + i) * cand
        expected.append(h)
    for backend in MIN_BACKENDS:
        layer = make_layer(backend, "minlstm", 1, 1)
        layer.load_state_dict({"weight_ih_l0": w, "bias_ih_l0": b})
        out, _ = layer(torch.tensor([[[0.6], [-1.5]]]), torch.tensor([[[0.3]]]))
        torch.testing.assert_close(out.flatten(), torch.tensor(expected), atol=1e-6, rtol=0)


def test_log_g_is_the_log_of_the_positive_activation_g():
    u = torch.linspace(-30, 30, 601, dtype=torch.float64)
    assert (mincells.g(u) > 0).all()
    torch.testing.assert_close(mincells.log_g(u), mincells.g(u).log())


def tiny_model(cell: str, backend: str, layers: int = 2, residual: bool = True) -> CharRNN:
    torch.manual_seed(0)
    cfg = make_config({"cell": cell, "backend": backend, "hidden_size": 16, "layers": layers,
                       "residual": residual, "device": "cpu"})
    return CharRNN(cfg, vocab_size=11)


@pytest.mark.parametrize("backend", MIN_BACKENDS)
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_mingru_minlstm_state_carried_across_chunks_equals_one_long_run(cell, backend):
    net = tiny_model(cell, backend, layers=3)
    x = torch.randint(0, 11, (2, 150))
    whole, h_whole = net(x)
    first, h = net(x[:, :70])
    second, h = net(x[:, 70:149], h)
    last, h = net(x[:, 149:], h)                      # a single step: the sequential form
    torch.testing.assert_close(torch.cat([first, second, last], dim=1), whole, atol=1e-4, rtol=0)
    torch.testing.assert_close(h, h_whole, atol=1e-4, rtol=0)


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_mingru_minlstm_models_share_weights_across_backends_for_1_to_8_layers(cell):
    for layers in (1, 8):
        loop, scan = tiny_model(cell, "loop", layers), tiny_model(cell, "scan", layers)
        scan.load_state_dict(loop.state_dict())
        x = torch.randint(0, 11, (2, 40))
        torch.testing.assert_close(scan(x)[0], loop(x)[0], atol=1e-4, rtol=0)
    G = registry.CELLS[cell].gates  # per layer G*H*(I+1), no hidden-to-hidden weights
    H, V = 16, 11
    expected = V * H + G * H * (H + 1) * 8 + H * V + V
    assert param_count(tiny_model(cell, "scan", 8, residual=False)) == expected


def test_mingru_sampling_steps_use_the_sequential_form(monkeypatch):
    from charrnn.run.sample import continue_from

    net = tiny_model("mingru", "scan", layers=2)
    scanned = []
    real = mincells.scan_time
    monkeypatch.setattr(mincells, "scan_time", lambda *a, **k: scanned.append(a[0].shape[1]) or real(*a, **k))
    ids = continue_from(net, [1, 2, 3], 20, 1.0, torch.Generator().manual_seed(0))
    assert len(ids) == 20 and scanned == [3, 3]  # the 3-token prefix, once per layer; steps: sequential


def test_scan_with_gru_is_refused_in_one_line_listing_the_valid_backends(capsys):
    with pytest.raises(ConfigError) as err:
        make_config({"cell": "gru", "backend": "scan"})
    message = str(err.value)
    assert "\n" not in message and message.startswith("backend='scan'")
    assert "valid backends for gru: fused, fused_nocudnn, loop," in message
    with pytest.raises(ConfigError, match="valid backends for mingru: loop, scan"):
        make_config({"cell": "mingru", "backend": "fused"})
    assert main(["train", "cell=gru", "backend=scan", "steps=1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("cell,backend", [("mingru", "scan"), ("minlstm", "loop")])
def test_mingru_minlstm_training_loss_falls(cell, backend):
    from charrnn.run.train import Trainer

    cfg = make_config({"cell": cell, "backend": backend, "hidden_size": 32, "batch_size": 8,
                       "seq_len": 32, "steps": 40, "eval_interval": 40, "eval_batches": 1,
                       "lr": 1e-2, "sample_length": 0, "device": "cpu"})
    losses = Trainer(cfg, progress=False).fit().train_losses
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5


def test_min_rnn_grid_plans_both_profiles_with_matched_parameter_counts(tmp_path):
    grid = load_grid(GRID)
    assert len({c.id for c in grid.claims}) == len(grid.claims) == 6
    assert all(c.source.startswith("Feng et al. 2024") for c in grid.claims)
    for profile in ("quick", "full"):
        specs = grid.expand(profile)
        assert len(grid.seeds_of(profile)) >= 5
        counts = {}
        for s in specs:
            counts[(s.config.cell, s.config.backend)] = param_count(CharRNN(s.config, 65))
        gru, mingru = counts[("gru", "fused")], counts[("mingru", "scan")]
        assert abs(mingru - gru) / gru < 0.03, counts   # equal parameters within 3 %


def test_max_time_s_stops_training_at_the_budget_and_evaluates_there():
    from charrnn.run.train import Trainer

    cfg = make_config({"cell": "mingru", "backend": "scan", "hidden_size": 8, "batch_size": 2,
                       "seq_len": 8, "steps": 100000, "eval_interval": 100000, "eval_batches": 1,
                       "max_time_s": 0.5, "sample_length": 0, "device": "cpu"})
    trainer = Trainer(cfg, progress=False)
    result = trainer.fit()
    assert 0 < trainer.step < cfg.steps and trainer.train_time_s >= 0.5
    assert math.isfinite(result.final["final_val_loss"]) and trainer.state_dict()["train_time_s"] >= 0.5


def test_kernels_page_plots_mingru_time_vs_seq_len_and_names_the_crossing(tmp_path):
    import json

    from charrnn.report.kernels import load_benchmarks, render_kernels
    from charrnn.report.kernels_scan import crossing

    ms = {("gru", "fused"): (10, 40, 160), ("mingru", "scan"): (20, 30, 40), ("mingru", "loop"): (15, 60, 240)}
    benches = [{"name": f"{c}-{b}-{t}", "stats": {"median": m / 1e3, "iqr": m / 2e4, "rounds": 15},
                "extra_info": {"cell": c, "backend": b, "hidden": 256, "batch": 32, "seq_len": t, "layers": 1,
                               "dtype": "fp32", "direction": "fwd_bwd", "device_name": "cpu"}}
               for (c, b), times in ms.items() for t, m in zip((64, 256, 1024), times)]
    (tmp_path / "b.json").write_text(json.dumps({"datetime": "2025-01-01", "benchmarks": benches}))
    frame = load_benchmarks([tmp_path / "b.json"])
    assert crossing(frame).startswith("mingru scan, H=256 B=32 fp32 fwd_bwd: faster than nn.GRU from T=256")
    html = render_kernels(tmp_path / "out", tmp_path).read_text(encoding="utf-8")
    assert "Min cells: time vs sequence length" in html and "T=64: 2.00×" in html


# --------------------------------------------------------------------------- the kernel suite's min-cell cases

def test_min_cell_bench_case_checks_against_loop_and_is_timed_against_nn_gru_at_its_shape():
    from charrnn.bench import cases as bench_cases
    from charrnn.bench import workloads

    case = bench_cases.Case("minlstm", "scan", 8, 2, 70)           # T = 70: two scan chunks of 64
    assert registry.reference("minlstm") == "loop" and registry.reference("gru") == "fused"
    assert bench_cases.tolerance(case) == TOL["fp32"] > bench_cases.tolerance(bench_cases.Case("gru", "loop", 8, 2, 70))
    prep = workloads.prepare(case, torch.device("cpu"))       # raises EquivalenceError if scan != loop
    assert prep.paired.case == bench_cases.Case("gru", "fused", 8, 2, 70)
    assert prep.info["paired_with"] == "gru-fused" and prep.info["reference"] == "loop"
    assert prep.info["equivalence"].startswith(f"max|err| <= {TOL['fp32']:g}")
    assert workloads.prepare(bench_cases.Case("gru", "fused", 8, 2, 70), torch.device("cpu")).paired is None


def test_min_cell_equivalence_fails_when_the_scan_weights_differ_from_the_loop(monkeypatch):
    from charrnn.bench import cases as bench_cases
    from charrnn.bench import workloads

    real = workloads.build_layer_model

    def perturbed(case, fused=None):
        model = real(case, fused)
        if case.backend == "scan":
            with torch.no_grad():
                model.layers[0].bias_ih_l0.add_(1e-2)
        return model
    monkeypatch.setattr(workloads, "build_layer_model", perturbed)
    with pytest.raises(workloads.EquivalenceError, match="mingru-h8-b2-t9-l1-fp32-fwd_bwd-scan"):
        workloads.assert_equivalent(bench_cases.Case("mingru", "scan", 8, 2, 9), torch.device("cpu"),
                                    workloads.reference_model(bench_cases.Case("mingru", "scan", 8, 2, 9)))


def test_min_cell_flops_count_the_input_projection_only():
    from charrnn.bench import cases as bench_cases

    case = bench_cases.Case("mingru", "scan", 256, 32, 64)
    assert case.flops() == 2 * 2 * 256 * 256 * 32 * 64 * 3    # G=2 gates x 2 I H, no hidden matmul
    assert case.matmul_shapes() == {"all_steps": (64 * 32, 256, 2 * 256)}


def test_bench_table_names_nn_gru_as_the_min_cells_paired_arm():
    from charrnn.bench import results as bench_results

    shape = "mingru-h8-b2-t9-l1-fp32-fwd_bwd"
    data = {"benchmarks": [{"name": f"test_layer[{shape}-scan]", "stats": {"median": 0.01, "iqr": 0.001, "rounds": 5},
                            "extra_info": {"shape": shape, "backend": "scan", "paired_with": "gru-fused",
                                           "paired_ratio": 0.5}}]}
    assert f"{shape}  (paired with gru-fused at the same shape)" in bench_results.format_table(data)
