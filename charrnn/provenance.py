"""Where a run came from: git state, installed packages, torch/CUDA versions, device."""
from __future__ import annotations

import datetime
import functools
import importlib.metadata
import json
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path

import torch

from charrnn.paths import SUITE_PROVENANCE, reports_dir
from charrnn.tags import (GIT_BRANCH_TAG, GIT_COMMIT_TAG, GIT_DIRTY_TAG, GIT_REPO_URL_TAG, SOURCE_NAME_TAG,
                          SOURCE_TYPE_TAG)

REPO_ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT = "charrnn"
# CPU flags that decide which kernels run (oneDNN / ATen dispatch): the rest of /proc/cpuinfo's list is noise
KERNEL_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd", "sve")
_CREDENTIALS = re.compile(r"(?<=//)[^/@]+@")  # user:token@ in a remote URL


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout if out.returncode == 0 else ""


@functools.lru_cache(maxsize=1)
def pip_freeze() -> str:
    """`pip freeze`-style listing, read from package metadata (no subprocess). Read once per process:
    the packages a process runs are the ones it found at its start (reading every package's metadata
    cost ~0.1 s per run on a 2-core machine, a fifth of a smoke run's time outside its training steps)."""
    lines = {f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
             if d.metadata["Name"]}
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def source_tags(commit: str, branch: str, repo_url: str, dirty: bool, entry_point: str) -> dict[str, str]:
    """MLflow's own `mlflow.source.*` tags (the UI links a run to its commit); empty facts left out."""
    tags = {SOURCE_TYPE_TAG: "LOCAL", SOURCE_NAME_TAG: entry_point, GIT_COMMIT_TAG: commit,
            GIT_BRANCH_TAG: branch, GIT_REPO_URL_TAG: repo_url}
    tags = {key: value for key, value in tags.items() if value}
    if commit:
        tags[GIT_DIRTY_TAG] = str(dirty).lower()
    return tags


def _source(sha: str, dirty: bool) -> dict[str, str]:
    """`mlflow.source.*`: commit, branch, remote URL (credentials removed), dirty flag, entry point."""
    branch = _git("rev-parse", "--abbrev-ref", "HEAD").strip()
    url = _CREDENTIALS.sub("", _git("config", "--get", "remote.origin.url").strip())
    return source_tags(sha, "" if branch == "HEAD" else branch, url, dirty, ENTRY_POINT)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return platform.processor() or platform.machine()


def collect(device: torch.device) -> tuple[dict[str, str], dict[str, str]]:
    """(tags, files): short facts as MLflow tags, long ones (diff, freeze) as artifact files."""
    sha = _git("rev-parse", "HEAD").strip()
    diff = _git("diff", "HEAD")
    tags = {
        "charrnn.git_sha": sha or "unknown",
        "charrnn.git_dirty": str(bool(diff.strip())).lower(),
        "charrnn.device": str(device),
        "charrnn.device_name": device_name(device),
        "charrnn.host": socket.gethostname(),
        "charrnn.torch": torch.__version__,
        "charrnn.cuda": torch.version.cuda or "none",
        "charrnn.cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "charrnn.python": sys.version.split()[0],
        "charrnn.cpu": _cpuinfo()[0],
        "charrnn.threads": str(torch.get_num_threads()),
        "charrnn.mlflow": _version("mlflow"),
        **_source(sha, bool(diff.strip())),
    }
    files = {"provenance/git_diff.patch": diff, "provenance/pip_freeze.txt": pip_freeze()}
    return tags, files


def _cpuinfo() -> tuple[str, list[str]]:
    """(CPU model name, its kernel-relevant flags) from /proc/cpuinfo; elsewhere platform's names."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), []
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    model = fields.get("model name") or fields.get("Hardware") or platform.processor() or platform.machine()
    family = f" (family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields else ""
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return model + family, [f for f in KERNEL_FLAGS if f in flags]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _gpu() -> dict[str, str]:
    """GPU name, driver and CUDA runtime where CUDA is used; {} on a CPU-only machine."""
    if not torch.cuda.is_available():
        return {}
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20).stdout.split("\n")[0].strip()
    except (OSError, subprocess.TimeoutExpired):
        driver = ""
    return {"gpu": torch.cuda.get_device_name(0), "gpu_driver": driver or "unknown",
            "cuda": torch.version.cuda or "none",
            "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none"}


def machine() -> dict[str, object]:
    """The machine as verdicts depend on it: CPU model, kernel flags and dispatch level, cores and
    torch threads; GPU, driver and CUDA where used; torch, MLflow and Python versions."""
    model, flags = _cpuinfo()
    return {"cpu": model, "cpu_flags": flags, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_count": os.cpu_count() or 0, "torch_threads": torch.get_num_threads(), **_gpu(),
            "torch": torch.__version__, "mlflow": _version("mlflow"), "python": sys.version.split()[0],
            "os": platform.platform()}


def suite(commit: str | None = None) -> dict[str, object]:
    """What a committed suite records beside its verdicts.csv: the commit of the code (and whether
    the tree was dirty), when, and `machine()`."""
    sha = commit if commit is not None else _git("rev-parse", "HEAD").strip()
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no").strip())
    return {"commit": sha[:12] or "unknown", "dirty": dirty,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **machine()}


def write_suite(out_dir: Path) -> Path:
    """`provenance.json` in `out_dir` (a suite's reports, beside verdicts.csv): `suite()`."""
    path = Path(out_dir) / SUITE_PROVENANCE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(suite(), indent=1) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":   # make ablations: the suite's commit and machine, beside its reports
    print(write_suite(reports_dir(sys.argv[1] if len(sys.argv) > 1 else None)))
