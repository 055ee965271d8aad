"""`charrnn migrate` on a store written by release 9221798.

tests/fixtures/store-9221798 is that release's own output: its source (`git archive 9221798`) ran
`charrnn grid legacy.yaml --profile quick --executor local` with CHARRNN_RESULTS_DIR=/tmp/cbstore/results
(the sqlite file gzipped). Its runs carry only `charrnn.config_hash`, its checkpoints only the
training state, and its logged grid file the single `claim:` form.
"""
from __future__ import annotations

import gzip
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.claim_support import SCOPE
from charrnn.cli import main
from charrnn.grid.executors import run_grid
from charrnn.grid.spec import load_grid
from charrnn.run.checkpoint import CHECKPOINT_FORMAT, read
from charrnn.run.migrate import CHECKPOINT_ARTIFACT, LEGACY_HASH_TAG
from charrnn.tags import IDENTITY_TAG
from charrnn.tracking.store import Tracker

FIXTURE = Path(__file__).parent / "fixtures" / "store-9221798"
WRITTEN_AT = "file:///tmp/cbstore/results"   # where the release wrote it (artifact URIs are absolute)


@pytest.fixture
def legacy_store(results_dir) -> Path:
    """The release's store copied into this test's results dir, its artifact URIs pointed there."""
    results_dir.mkdir(parents=True)
    shutil.copytree(FIXTURE / "mlartifacts", results_dir / "mlartifacts")
    db = results_dir / "mlflow.db"
    db.write_bytes(gzip.decompress((FIXTURE / "mlflow.db.gz").read_bytes()))
    with sqlite3.connect(db) as con:
        here = results_dir.as_uri()
        con.execute("UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)", (WRITTEN_AT, here))
        con.execute("UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?)", (WRITTEN_AT, here))
    con.close()
    return results_dir


def current_grid(tmp_path: Path) -> Path:
    """The fixture's grid file in this release's form (`claims:`)."""
    data = yaml.safe_load((FIXTURE / "legacy.yaml").read_text(encoding="utf-8"))
    data["claims"] = [{**data.pop("claim"), **SCOPE}]   # this release also asks each claim for its scope
    path = tmp_path / "legacy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def training_runs() -> list:
    return [r for r in Tracker().runs("legacy") if "task" in r.params]


def test_the_dry_run_lists_every_change_and_writes_nothing(legacy_store, capsys):
    before = {r.run_id: dict(r.tags) for r in Tracker().runs("legacy")}
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and "would upgrade (dry run; --apply writes it) 3 runs" in out[-1]
    assert sum(f"tag {IDENTITY_TAG}=" in line and f"checkpoint format {CHECKPOINT_FORMAT}" in line
               for line in out) == 2
    assert sum("grid file claim: -> claims:" in line for line in out) == 1
    assert {r.run_id: dict(r.tags) for r in Tracker().runs("legacy")} == before


def test_a_grid_over_the_store_refuses_before_the_upgrade(legacy_store, tmp_path, capsys):
    assert main(["grid", str(current_grid(tmp_path)), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "charrnn migrate --apply" in err
    assert len(Tracker().runs("legacy")) == 3   # no invocation opened


def test_after_the_upgrade_a_grid_rerun_trains_nothing_and_a_second_upgrade_changes_nothing(
        legacy_store, tmp_path, capsys):
    assert main(["migrate", "--apply"]) == 0
    grid = load_grid(current_grid(tmp_path))
    specs = grid.expand("quick")
    runs = training_runs()
    assert {r.identity for r in runs} == {s.identity for s in specs}
    assert not any(LEGACY_HASH_TAG in r.tags for r in runs)
    session = run_grid(grid, "quick", progress=False)
    assert session.counts() == {"finished": 0, "skipped": len(specs), "failed": 0}
    assert {r.run_id for r in session.results} == {r.run_id for r in runs}
    capsys.readouterr()
    assert main(["migrate", "--apply"]) == 0
    assert capsys.readouterr().out.strip().endswith("nothing to upgrade")


def test_an_upgraded_checkpoint_is_read_by_this_release_and_samples(legacy_store, tmp_path, capsys):
    assert main(["migrate", "--apply"]) == 0
    run = training_runs()[0]
    state = read(Tracker().download(run.run_id, CHECKPOINT_ARTIFACT, tmp_path))
    assert state["identity"] == run.identity and "config_hash" not in state
    capsys.readouterr()
    assert main(["sample", run.run_id, "--length", "20"]) == 0
    assert capsys.readouterr().out.strip()


def test_a_run_that_cannot_be_upgraded_is_named_and_the_others_still_are(legacy_store, capsys):
    broken, kept = training_runs()
    (next((legacy_store / "mlartifacts").rglob(f"{broken.run_id}/artifacts/{CHECKPOINT_ARTIFACT}"))
     .write_bytes(b"not a checkpoint"))
    assert main(["migrate", "--apply"]) == 1
    out = capsys.readouterr().out
    assert f"({broken.run_id}): cannot upgrade: " in out and "1 cannot be upgraded" in out
    assert Tracker().run(kept.run_id).identity and Tracker().run(broken.run_id).identity is None
