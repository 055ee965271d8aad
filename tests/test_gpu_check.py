"""`make gpu-check` / charrnn.bench.gpu_check: the no-CUDA exit and the stage orchestration, on CPU."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charrnn.bench import gpu_check
from charrnn.bench.gpu_check import Stage

REPO = Path(__file__).resolve().parents[1]


def no_gpu_env(tmp_path) -> dict[str, str]:
    """PATH with python3 and make but without nvidia-smi."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "python3"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return {**os.environ, "PATH": str(bin_dir), "PYTHON": sys.executable}


def test_without_cuda_make_gpu_check_exits_2_at_once_with_one_line(tmp_path):
    start = time.monotonic()
    result = subprocess.run(["make", "-s", "gpu-check", f"PYTHON={sys.executable}"], cwd=REPO,
                            env=no_gpu_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start <= 10
    assert result.returncode == 2
    ours = [line for line in result.stderr.splitlines() if line.startswith("charrnn gpu-check")]
    assert len(ours) == 1 and "no CUDA device" in ours[0]
    assert result.stdout == ""


def test_without_cuda_nothing_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "cuda_present", lambda: (False, "nvidia-smi not found"))
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
    assert capsys.readouterr().err.count("\n") == 1


def fake_plan(python, out, dry_run):
    return [Stage("ok", [python, "-c", "print('fine')"], 30.0),
            Stage("fails", [python, "-c", "import sys; sys.exit(3)"], 30.0),
            Stage("slow", [python, "-c", "import time; time.sleep(60)"], 6.0),
            Stage("after", [python, "-c", "open('after.txt', 'w')"], 30.0)]


def test_a_failed_or_timed_out_stage_is_recorded_and_the_rest_go_on(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "plan", fake_plan)
    monkeypatch.setattr(gpu_check, "REPO", tmp_path)
    out = tmp_path / "out"
    assert gpu_check.main(["--cpu-dry-run", "--out", str(out)]) == 1
    summary = json.loads((out / "summary.json").read_text())
    status = {s["name"]: (s["status"], s["returncode"]) for s in summary["stages"]}
    assert status["ok"] == ("ok", 0) and status["fails"] == ("failed", 3)
    assert status["slow"][0] == "timeout" and status["after"] == ("ok", 0)
    assert (tmp_path / "after.txt").exists()
    assert (out / "logs" / "ok.log").read_text().splitlines()[-1] == "fine"
    assert "timeout" in (out / "summary.txt").read_text()


def test_stages_past_the_budget_are_not_run(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "plan", fake_plan)
    monkeypatch.setattr(gpu_check, "DRY_RUN_BUDGET_S", gpu_check.RESERVE_S + 2)
    gpu_check.main(["--cpu-dry-run", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {s["status"] for s in summary["stages"]} == {"not run"}


def test_unknown_stage_names_are_bad_input(tmp_path, capsys):
    assert gpu_check.main(["--cpu-dry-run", "--out", str(tmp_path), "--stages", "info,warp"]) == 2
    assert "stages='warp': unknown; valid choices: info, cuda_tests" in capsys.readouterr().err


@pytest.mark.parametrize("dry_run, budget", [(False, gpu_check.BUDGET_S), (True, gpu_check.DRY_RUN_BUDGET_S)])
def test_the_plan_runs_every_stage_within_ten_minutes_or_three_dry(tmp_path, dry_run, budget):
    stages = gpu_check.plan("python", tmp_path, dry_run=dry_run)
    names = [s.name for s in stages]
    assert names == ["info", "cuda_tests", "bench_fp32", "bench_bf16", "sweep_hidden", "suite_gpu",
                     "reports", "kernels_page"]
    assert sum(s.budget_s for s in stages) <= budget <= (180 if dry_run else 600)
    argv = {s.name: s.argv for s in stages}
    assert {"NVIDIA_TF32_OVERRIDE": "0"} == stages[1].env   # TF32 off in forward and backward
    if dry_run:
        assert argv["suite_gpu"][3:] == ["quick", str(gpu_check.RUNS_PER_GPU), "1", "ablations/smoke.yaml"]
        return
    assert "--bench-profile=gpu" in argv["bench_fp32"] and "fp32" in argv["bench_fp32"]
    assert "--bench-profile=sweep_hidden" in argv["sweep_hidden"]
    grids = sorted(f"ablations/{p.name}" for p in (REPO / "ablations").glob("*.yaml"))
    assert argv["suite_gpu"][3:] == ["gpu", str(gpu_check.RUNS_PER_GPU), "0", *grids]


@pytest.mark.slow
def test_cpu_dry_run_writes_machine_info_cuda_tests_and_the_kernels_page(tmp_path):
    """The real stages, tiny: info, the CUDA-only tests (skipped on CPU), a tiny bench, the page."""
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "charrnn.bench.gpu_check", "--cpu-dry-run", "--out", str(out),
                             "--stages", "info,cuda_tests,bench_bf16,kernels_page", "--budget-s", "400"],
                            cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((out / "machine.json").read_text())["torch"]
    assert (out / "benchmarks" / "bench_bf16.json").exists() and (out / "kernels.html").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["stages"]] == ["ok"] * 4
    assert summary["best_custom_over_fused"]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_a_cpu_dry_run_writes_where_git_ignores_and_a_gpu_run_where_it_is_committed():
    def ignored(path: Path) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", str(path.relative_to(REPO) / "summary.json")],
                              cwd=REPO).returncode == 0
    assert ignored(gpu_check.default_out(dry_run=True))
    assert not ignored(gpu_check.default_out(dry_run=False))
