"""Where a run came from: git state, installed packages, torch/CUDA versions, device."""
from __future__ import annotations

import importlib.metadata
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path

import torch

from charrnn.tags import (GIT_BRANCH_TAG, GIT_COMMIT_TAG, GIT_DIRTY_TAG, GIT_REPO_URL_TAG, SOURCE_NAME_TAG,
                          SOURCE_TYPE_TAG)

REPO_ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT = "charrnn"
_CREDENTIALS = re.compile(r"(?<=//)[^/@]+@")  # user:token@ in a remote URL


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout if out.returncode == 0 else ""


def pip_freeze() -> str:
    """`pip freeze`-style listing, read from package metadata (no subprocess)."""
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
        **_source(sha, bool(diff.strip())),
    }
    files = {"provenance/git_diff.patch": diff, "provenance/pip_freeze.txt": pip_freeze()}
    return tags, files
