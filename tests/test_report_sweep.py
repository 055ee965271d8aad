"""The hidden-size sweep on the kernels page, from synthetic benchmark JSON."""
from __future__ import annotations

import json

import pytest

from charrnn.report.kernels import load_benchmarks, render_kernels
from charrnn.report.kernels_sweep import largest_jump, sweep_lines

SIZES = (32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 512)


def sweep_json(path, seconds) -> None:
    """fused and loop_bptt gru at every size; `seconds(backend, h)` is the median call time."""
    benches = [{"name": f"test_layer[gru-h{h}-{b}]", "stats": {"median": seconds(b, h), "iqr": 1e-4, "rounds": 9},
                "extra_info": {"cell": "gru", "backend": b, "hidden": h, "batch": 32, "seq_len": 64, "layers": 1,
                               "dtype": "fp32", "direction": "fwd_bwd", "device_name": "cpu x", "tokens": 2048,
                               "flops": 1e9 * (h / 32) ** 2, "peak_gflops": 100.0}}
               for h in SIZES for b in ("fused", "loop_bptt")]
    path.write_text(json.dumps({"datetime": "2026-01-01T00:00:00", "benchmarks": benches}))


def timing(backend: str, h: int) -> float:
    """Smooth in H except a 4x slowdown of loop_bptt from 128 to 160."""
    base = 1e-3 * h / 32
    return base * (4 if backend == "loop_bptt" and h >= 160 else 1)


def test_largest_neighbour_jump_is_found_with_its_direction(tmp_path):
    sweep_json(tmp_path / "s.json", timing)
    lines = sweep_lines(load_benchmarks([tmp_path / "s.json"]))
    assert {key[:2] for key in lines} == {("gru", "fused"), ("gru", "loop_bptt")}
    jump = largest_jump(lines[("gru", "loop_bptt", 32, 64, 1, "fp32", "fwd_bwd")])
    assert (jump["from_h"], jump["to_h"], jump["direction"]) == (128, 160, "slower")
    assert jump["factor"] == pytest.approx(4 * 160 / 128)
    # FLOPs grow as H² here, time as H (and 4x at the jump): GFLOP/s change by (160/128) / 4
    assert jump["flops_factor"] == pytest.approx((160 / 128) ** 2)
    assert jump["beyond_flops"] == pytest.approx(4 / (160 / 128))


def test_kernel_page_shows_the_sweep_with_the_largest_jump_flagged_and_rates(tmp_path):
    sweep_json(tmp_path / "s.json", timing)
    html = render_kernels(tmp_path / "out", tmp_path).read_text(encoding="utf-8")
    assert "Tokens/s against hidden size" in html
    assert "Largest jump: gru · loop_bptt, H 128 → 160: 5.00× slower (the FLOPs grow 1.56×; " in html
    assert "% of matmul peak" in html


def test_fewer_than_ten_sizes_is_not_a_sweep(tmp_path):
    sweep_json(tmp_path / "s.json", timing)
    frame = load_benchmarks([tmp_path / "s.json"])
    assert not sweep_lines(frame[frame["hidden"] <= 192])  # 9 sizes
