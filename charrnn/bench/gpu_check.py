"""`make gpu-check`: the whole GPU story in one command, within a fixed budget and without network.

    python3 -m charrnn.bench.gpu_check [--out DIR] [--stages a,b] [--cpu-dry-run]

Runs with the system `python3` and imports no torch itself, so on a machine without CUDA it exits 2
at once with one line. On a CUDA machine it finds (or builds) an interpreter with CUDA torch, then
runs the stages below, each a subprocess with its own timeout (SIGINT first, so pytest still writes
its JSON and a grid marks its runs KILLED; SIGKILL after a grace period). A stage that fails or
times out is recorded and the rest go on. The stages: machine info; the CUDA-only equivalence tests
(fp32 with TF32 off in forward and backward); the kernel bench at H512 B64 T100 in fp32 and bf16; the
hidden sweep; every grid's `gpu` profile, packed RUNS_PER_GPU runs per GPU on one Ray; the reports
(verdicts included) and the kernels page. Everything lands in results/gpu/<host>-<date>/:
machine.json, nvidia-smi.txt, logs/<stage>.log, benchmarks/*.json, kernels.html, the suite's
store, reports/, summary.json and summary.txt.

The interpreter: `.venv/bin/python` when its torch sees CUDA; else `.venv-gpu/`, a venv made with
--system-site-packages from `python3` (reusing its CUDA torch) into which the wheels of `.whl/`
(see tools/gpu_wheels.sh: mlflow and what the system lacks) are installed with --no-index. The
package itself runs from the checkout (PYTHONPATH), so no build step needs the network.

`--cpu-dry-run` runs the same orchestration on CPU with this interpreter and tiny sizes (the suite:
the smoke grid's quick profile packed on one logical Ray GPU), to check the plumbing before
spending GPU minutes; CI runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from charrnn.paths import write_atomic

EXIT_NO_CUDA = 2
BUDGET_S = 590.0        # the whole run, start to summary: under 10 minutes
DRY_RUN_BUDGET_S = 180.0  # --cpu-dry-run: under 3 minutes
RESERVE_S = 15.0        # kept back for the kernels page and the summary
RUNS_PER_GPU = 8        # runs packed on the GPU in the suite stage
GRACE_S = 20.0          # after SIGINT, before SIGKILL
REPO = Path(__file__).resolve().parents[2]
WHEELS = REPO / ".whl"
GPU_VENV = REPO / ".venv-gpu"
SUITE = str(Path(__file__).resolve().parent / "timed")   # the kernel suite (charrnn.bench.suite.SUITE)
CHECK_CUDA = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"
INFO_SCRIPT = """
import json, platform, socket, sys, torch
cuda = torch.cuda.is_available()
info = {"host": socket.gethostname(), "python": sys.version.split()[0], "platform": platform.platform(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
        "memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
json.dump(info, open(sys.argv[1], "w"), indent=1)
print(json.dumps(info))
"""
# Every grid's profile on one Ray (started once), grid after grid; exit 1 if a run failed.
SUITE_SCRIPT = """
import sys
from charrnn.grid.executors import run_grid
from charrnn.grid.local_ray import local_ray_env, start_local_ray
from charrnn.grid.spec import load_grid
profile, runs_per_gpu, logical_gpus, files = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
local_ray_env()
start_local_ray(include_dashboard=False, log_to_driver=False, **({"num_gpus": logical_gpus} if logical_gpus else {}))
failed = 0
for path in files:
    counts = run_grid(load_grid(path), profile, executor="ray", runs_per_gpu=runs_per_gpu, progress=False).counts()
    print(path, counts, flush=True)
    failed += counts["failed"]
sys.exit(1 if failed else 0)
"""
PAGE_SCRIPT = """
import sys
from pathlib import Path
from charrnn.report.kernels import render_kernels
print(render_kernels(Path(sys.argv[1]), Path(sys.argv[2])))
"""


@dataclass
class Stage:
    """One step of the check: a command, its time limit, and what happened."""

    name: str
    argv: list[str]
    budget_s: float
    env: dict[str, str] = field(default_factory=dict)
    status: str = "not run"   # ok | failed | timeout | not run
    returncode: int | None = None
    wall_s: float = 0.0
    timeout_s: float = 0.0


def cuda_present() -> tuple[bool, str]:
    """(True, GPU list) when nvidia-smi lists a GPU; (False, why not) otherwise. No torch needed."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False, "nvidia-smi not found"
    try:
        result = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=8)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"nvidia-smi failed ({exc})"
    gpus = [line for line in result.stdout.splitlines() if line.startswith("GPU")]
    if result.returncode != 0 or not gpus:
        return False, f"nvidia-smi lists no GPU (exit code {result.returncode})"
    return True, "\n".join(gpus)


def _has_cuda_torch(python: Path | str) -> bool:
    try:
        return subprocess.run([str(python), "-c", CHECK_CUDA], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# `python3` may itself be a venv (its CUDA torch in that venv's site-packages), and a venv made from
# a venv sees only the base interpreter's packages: link python3's own site-packages into the new
# venv with a .pth file, so torch, pytest-benchmark and the rest are seen and pip skips them.
LINK_SITE = """
import site, sys, sysconfig
from pathlib import Path
venv = Path(sys.argv[1])
purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
Path(purelib).mkdir(parents=True, exist_ok=True)
(Path(purelib) / "_charrnn_system_site.pth").write_text("\\n".join(site.getsitepackages()) + "\\n")
"""


def gpu_python(log: Path) -> tuple[str | None, str]:
    """An interpreter whose torch sees CUDA: .venv, else .venv-gpu (built from python3 with the
    system site-packages and the local wheels of .whl/). (None, why) when there is none."""
    for venv in (REPO / ".venv", GPU_VENV):
        if _has_cuda_torch(venv / "bin" / "python"):
            return str(venv / "bin" / "python"), f"{venv.name}: CUDA torch found"
    base = shutil.which("python3")
    if base is None or not _has_cuda_torch(base):
        return None, "no interpreter with CUDA torch: python3 lacks it and .venv has none"
    python = GPU_VENV / "bin" / "python"
    with log.open("a") as out:
        make_venv = [base, "-m", "venv", "--system-site-packages", str(GPU_VENV)]
        steps = []
        if subprocess.run(make_venv, stdout=out, stderr=subprocess.STDOUT, timeout=120).returncode != 0:
            steps.append([*make_venv, "--without-pip"])  # no ensurepip: the system's pip is seen
                                                         # through the system site-packages
        steps.append([base, "-c", LINK_SITE, str(GPU_VENV)])
        if (WHEELS / "requirements.txt").exists():
            steps.append([str(python), "-m", "pip", "install", "--no-index", "--find-links", str(WHEELS),
                          "-r", str(WHEELS / "requirements.txt")])
        for argv in steps:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=240).returncode != 0:
                return None, f"building {GPU_VENV.name} failed: {' '.join(argv[:4])} (see {log.name})"
    missing = subprocess.run([str(python), "-c", "import mlflow, pytest_benchmark"], capture_output=True)
    if missing.returncode != 0:
        return None, f"{GPU_VENV.name} lacks mlflow or pytest-benchmark (no wheels in {WHEELS.name}/?)"
    return str(python), f"{GPU_VENV.name}: built from {base} (system CUDA torch) + {WHEELS.name}/"


def bench_argv(python: str, profile: str, json_path: Path, select: str | None) -> list[str]:
    return [python, "-m", "pytest", SUITE, "-q", "-p", "no:cacheprovider", "--benchmark-enable",
            "--benchmark-only", f"--bench-profile={profile}", f"--benchmark-json={json_path}",
            "--benchmark-columns=median,iqr,rounds", "--benchmark-sort=name",
            *(["-k", select] if select else [])]


def suite_argv(python: str, profile: str, logical_gpus: float, grids: list[str]) -> list[str]:
    return [python, "-c", SUITE_SCRIPT, profile, str(RUNS_PER_GPU), str(logical_gpus), *grids]


def plan(python: str, out: Path, dry_run: bool) -> list[Stage]:
    """The stages in order, with their limits (seconds, summing to BUDGET_S). Real run: the GPU
    bench (fp32 and bf16 as separate stages, so one timing out keeps the other's JSON), the
    hidden sweep, every grid's `gpu` profile packed. Dry run: the same commands on CPU with tiny
    sizes (limits summing to DRY_RUN_BUDGET_S)."""
    bench = out / "benchmarks"
    store = {"CHARRNN_RESULTS_DIR": str(out / "store")}
    gpu_bench = [("bench_fp32", "gpu", "fp32", 55.0), ("bench_bf16", "gpu", "bf16", 40.0)]
    sweep_select, limits = None, {"info": 15.0, "cuda_tests": 45.0, "sweep_hidden": 40.0, "suite_gpu": 360.0,
                                  "reports": 20.0}
    suite = suite_argv(python, "gpu", 0, sorted(str(p.relative_to(REPO)) for p in (REPO / "ablations").glob("*.yaml")))
    if dry_run:
        gpu_bench = [("bench_fp32", "test", "lstm and l1 and fwd_bwd and (fused or loop_bptt) and not compiled",
                      25.0),
                     ("bench_bf16", "test", "gru and l1 and fp32-fwd- and (fused or loop_bptt) and not compiled",
                      25.0)]
        sweep_select, limits = "vanilla-h32- or vanilla-h64-", {"info": 5.0, "cuda_tests": 25.0, "sweep_hidden": 25.0,
                                                                 "suite_gpu": 50.0, "reports": 10.0}
        suite = suite_argv(python, "quick", 1, ["ablations/smoke.yaml"])
    # NVIDIA_TF32_OVERRIDE=0: no TF32 anywhere in cuBLAS/cuDNN, whatever a test's own flags say
    stages = [Stage("info", [python, "-c", INFO_SCRIPT, str(out / "machine.json")], limits["info"]),
              Stage("cuda_tests", [python, "-m", "pytest", SUITE, "tests/test_backends.py", "-q",
                                   "-p", "no:cacheprovider", "-k", "fused_nocudnn or cudagraph",
                                   f"--junitxml={out / 'cuda_tests.xml'}"], limits["cuda_tests"],
                    {"NVIDIA_TF32_OVERRIDE": "0"})]
    stages += [Stage(name, bench_argv(python, profile, bench / f"{name}.json", select), budget)
               for name, profile, select, budget in gpu_bench]
    stages.append(Stage("sweep_hidden", bench_argv(python, "sweep_hidden", bench / "sweep_hidden.json",
                                                   sweep_select), limits["sweep_hidden"]))
    # the suite's captured steps reuse inductor's caches: the same graph compiles once, not once per run
    stages.append(Stage("suite_gpu", suite, limits["suite_gpu"], {**store, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "0"}))
    stages.append(Stage("reports", [python, "-m", "charrnn", "report", "--out", str(out / "reports")],
                        limits["reports"], store))
    stages.append(Stage("kernels_page", [python, "-c", PAGE_SCRIPT, str(out), str(bench)], RESERVE_S))
    return stages


def run_stage(stage: Stage, log: Path, deadline: float, reserve_s: float) -> None:
    """Run within min(budget, time left before the deadline less `reserve_s`); record the result."""
    stage.timeout_s = min(stage.budget_s, deadline - time.monotonic() - reserve_s)
    if stage.timeout_s < 5:
        stage.status = "not run"
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1", "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
           **stage.env}
    start = time.monotonic()
    with log.open("w") as out:
        out.write(f"$ {' '.join(stage.argv)}\n")
        out.flush()
        proc = subprocess.Popen(stage.argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            stage.returncode = proc.wait(timeout=stage.timeout_s)
            stage.status = "ok" if stage.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)   # pytest writes its JSON; the grid marks runs KILLED
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stage.status, stage.returncode = "timeout", proc.returncode
    stage.wall_s = time.monotonic() - start


def headline(out: Path) -> list[dict]:
    """Best custom / fused fwd+bwd per cell and dtype from the GPU-profile JSON files (goal <= 1.3
    against cuDNN at H512 B64 T100)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from charrnn.bench.results import best_custom, read_results, table_rows
    from charrnn.config import ConfigError

    found = []
    for path in sorted((out / "benchmarks").glob("bench_*.json")):
        try:
            rows = table_rows(read_results(path))
        except ConfigError:
            continue
        for shape, (backend, ratio) in sorted(best_custom(rows).items()):
            found.append({"shape": shape, "best_custom": backend, "over_fused": round(ratio, 3)})
    return found


def write_summary(out: Path, stages: list[Stage], started: float, note: str, dry_run: bool,
                  budget_s: float = BUDGET_S) -> dict:
    summary = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": socket.gethostname(),
               "dry_run": dry_run, "interpreter": note, "budget_s": budget_s,
               "wall_s": round(time.monotonic() - started, 1),
               "stages": [{k: v for k, v in asdict(s).items() if k != "env"} for s in stages],
               "best_custom_over_fused": headline(out)}
    write_atomic(out / "summary.json", json.dumps(summary, indent=1))
    lines = [f"gpu-check {summary['when']} on {summary['host']}: {summary['wall_s']} s of {budget_s:.0f} s"
             f"{' (CPU dry run)' if dry_run else ''}; {note}"]
    lines += [f"  {s.name:<14} {s.status:<8} rc={s.returncode} {s.wall_s:6.1f} s (limit {s.timeout_s:.0f} s)"
              for s in stages]
    lines += ["best custom / fused:"] + [f"  {h['shape']:<40} {h['best_custom']:<16} {h['over_fused']:.3f}"
                                          for h in summary["best_custom_over_fused"]]
    write_atomic(out / "summary.txt", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def default_out(dry_run: bool, now: datetime | None = None) -> Path:
    """results/gpu/<host>-<date> (committed with the machine info), or for a CPU dry run
    results/gpu-dry-run/<host>-<date> (git-ignored: a plumbing check, no numbers to keep)."""
    now = now or datetime.now(timezone.utc)
    return REPO / "results" / ("gpu-dry-run" if dry_run else "gpu") / f"{socket.gethostname()}-{now:%Y%m%dT%H%M%SZ}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="charrnn gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: results/gpu/<host>-<date>; "
                             "results/gpu-dry-run/<host>-<date> with --cpu-dry-run)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help=f"whole-run budget in seconds; each stage's limit scales with it (default {BUDGET_S:.0f}, "
                             f"{DRY_RUN_BUDGET_S:.0f} with --cpu-dry-run)")
    parser.add_argument("--stages", default=None, help="comma-separated subset of the stages to run")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="run the orchestration on CPU with this interpreter and tiny sizes")
    args = parser.parse_args(argv)
    default_budget = DRY_RUN_BUDGET_S if args.cpu_dry_run else BUDGET_S
    args.budget_s = args.budget_s or default_budget
    started = time.monotonic()
    deadline = started + args.budget_s
    if not args.cpu_dry_run:
        ok, why = cuda_present()
        if not ok:
            print(f"charrnn gpu-check: no CUDA device here ({why}); nothing run (use --cpu-dry-run to check "
                  "the plumbing on CPU)", file=sys.stderr)
            return EXIT_NO_CUDA
    out = (args.out or default_out(args.cpu_dry_run)).resolve()
    for sub in ("logs", "benchmarks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if args.cpu_dry_run:
        python, note = sys.executable, f"{sys.executable} (CPU dry run)"
    else:
        (out / "nvidia-smi.txt").write_text(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout)
        python, note = gpu_python(out / "logs" / "venv.log")
        if python is None:
            print(f"charrnn gpu-check: {note}", file=sys.stderr)
            write_summary(out, [], started, note, False, args.budget_s)
            return 1
    stages = [replace(s, budget_s=s.budget_s * args.budget_s / default_budget)
              for s in plan(python, out, args.cpu_dry_run)]
    if args.stages:
        wanted = args.stages.split(",")
        unknown = sorted(set(wanted) - {s.name for s in stages})
        if unknown:
            print(f"charrnn gpu-check: stages={','.join(unknown)!r}: unknown; valid choices: "
                  f"{', '.join(s.name for s in stages)}", file=sys.stderr)
            return 2
        stages = [s for s in stages if s.name in wanted]
    try:
        for stage in stages:
            reserve = 0.0 if stage.name == "kernels_page" else RESERVE_S
            run_stage(stage, out / "logs" / f"{stage.name}.log", deadline, reserve)
            print(f"gpu-check: {stage.name}: {stage.status} ({stage.wall_s:.0f} s)", flush=True)
    except KeyboardInterrupt:  # the stage's child got the same Ctrl-C; what finished is kept
        write_summary(out, stages, started, note + "; interrupted", args.cpu_dry_run, args.budget_s)
        return 130
    summary = write_summary(out, stages, started, note, args.cpu_dry_run, args.budget_s)
    print(f"gpu-check: outputs in {out}")
    return 0 if all(s["status"] == "ok" for s in summary["stages"]) else 1


if __name__ == "__main__":
    sys.exit(main())
