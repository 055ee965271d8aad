"""Output files are written whole or not at all, into place by a rename: never through a symlink at
their path, never half-written; claim tags are all logged or none."""
from __future__ import annotations

import errno
import os
import subprocess

import pytest
import yaml
from claim_support import SCOPE
from grid_support import run_charrnn
from test_report import _store_experiment

from charrnn.paths import write_atomic
from charrnn.tracking.store import Tracker


def test_report_replaces_a_symlink_at_its_output_path_and_leaves_its_target_alone(results_dir, tmp_path):
    grid = {"name": "smoke", "question": "Does a GRU win?", "seeds": [0, 1], "axes": {"cell": ["vanilla", "gru"]},
            "claims": [{**SCOPE, "metric": "val_loss", "expect": {"cell": "gru", "better_than": "vanilla"}}]}
    _store_experiment("smoke", yaml.safe_dump(grid))
    out, victim = tmp_path / "reports", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep me")
    for name in ("smoke.html", "verdicts.csv", "index.html"):
        (out / name).symlink_to(victim)
    done = run_charrnn("report", "smoke", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "keep me"
    for name in ("smoke.html", "verdicts.csv", "index.html"):
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_a_failed_write_leaves_the_previous_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = write_atomic(tmp_path / "verdicts.csv", "old\n")

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        write_atomic(path, "new\n")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["verdicts.csv"]


def test_a_temporary_file_left_by_a_killed_writer_is_swept_by_the_next_write(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = tmp_path / f".index.html.{dead.pid}.tmp"
    left.write_text("half")
    write_atomic(tmp_path / "index.html", "<html></html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]


def test_claim_tags_are_logged_all_or_none(results_dir):
    tracker = Tracker()
    with pytest.raises(ValueError, match="too long for the store"):
        tracker.preregister_claims("claims", {"ok": "a short claim", "long": "x" * 20_001}, runs_existing=0)
    assert tracker.preregistered_claims("claims") == {}
    exp_id = tracker.find_experiment("claims")
    assert exp_id is None or not [k for k in tracker.client.get_experiment(exp_id).tags if "claim" in k]
    tracker.preregister_claims("claims", {"ok": "a short claim"}, runs_existing=0)
    exp_id = tracker.find_experiment("claims")
    tracker.client.set_experiment_tag(exp_id, "charrnn.claim.half.sha256", "0" * 64)   # a write cut short
    assert sorted(tracker.preregistered_claims("claims")) == ["ok"]
    tracker.preregister_claims("claims", {"ok": "a short claim", "half": "written again"}, runs_existing=1)
    assert tracker.preregistered_claims("claims")["half"]["text"] == "written again"
