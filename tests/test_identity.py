"""Run identity: the canonical config (non-default keys + task + schema version), the one tag it is
read from, and FINISHED duplicates. (Stores of earlier releases: test_migrate.py.)"""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from grid_support import empty_store_db, store, write_grid  # noqa: F401

from charrnn import config
from charrnn.science import results
from charrnn.report import store as report_store
from charrnn.config import TrainConfig, make_config
from charrnn.grid.executors import run_grid
from charrnn.grid.spec import RunSpec, load_grid
from charrnn.report.pages import build_context, render_experiment
from charrnn.tracking.store import Tracker

# What a new release adding a knob with a default looks like to the identity.
WithNewKnob = dataclasses.make_dataclass(
    "WithNewKnob", [("new_knob", int, dataclasses.field(default=3))], bases=(TrainConfig,), frozen=True)


def test_identity_is_task_plus_the_keys_that_differ_from_their_defaults():
    assert TrainConfig().identity() == {"schema": config.IDENTITY_SCHEMA, "config": {"task": "tinyshakespeare"}}
    cfg = make_config({"hidden_size": 64, "lr": "2e-3", "cell": "lstm"})   # lr at its default
    assert cfg.identity()["config"] == {"task": "tinyshakespeare", "hidden_size": 64, "cell": "lstm"}
    assert cfg.identity_hash() == make_config({"cell": "lstm", "hidden_size": 64}).identity_hash()
    assert cfg.identity_hash() != make_config({"cell": "lstm", "hidden_size": 64, "seed": 1}).identity_hash()


def test_a_key_added_later_with_a_default_keeps_every_identity():
    old, new = TrainConfig(hidden_size=64, seed=2), WithNewKnob(hidden_size=64, seed=2)
    assert new.identity_hash() == old.identity_hash()
    assert WithNewKnob(hidden_size=64, seed=2, new_knob=4).identity_hash() != old.identity_hash()


def test_the_schema_version_is_part_of_the_identity(monkeypatch):
    before = TrainConfig().identity_hash()
    monkeypatch.setattr(config, "IDENTITY_SCHEMA", config.IDENTITY_SCHEMA + 1)
    assert TrainConfig().identity_hash() != before


# --------------------------------------------------------------------------- stored runs

def finished_store(specs: tuple[RunSpec, ...]) -> dict[str, str]:
    """Write `specs` FINISHED under one grid invocation, tagged with their identities. Returns spec
    run name → run id."""
    tracker = Tracker()
    grid = specs[0].grid
    parent = tracker.start_run(grid, "quick old", {}, tags={"charrnn.role": "grid"}, system_metrics=False)
    parent.end()
    ids = {}
    for i, spec in enumerate(specs):
        run = tracker.start_run(grid, spec.run_name, {**spec.config.to_dict(), "param_count": 99},
                                parent_run_id=parent.run_id, system_metrics=False,
                                tags={"charrnn.role": "run", "charrnn.identity": spec.identity,
                                      "charrnn.grid.spec": grid, "charrnn.profile": spec.profile,
                                      "charrnn.variant": spec.variant, "charrnn.varied": spec.varied_json})
        run.log_metrics({"final_val_loss": 2.0 + i / 100, "final_train_loss": 1.9}, step=spec.config.steps)
        run.end()
        ids[spec.run_name] = run.run_id
    return ids


def test_duplicate_finished_runs_are_listed_and_not_counted(store, tmp_path):
    grid = load_grid(write_grid(tmp_path))
    specs = grid.expand("quick")
    stored = finished_store(specs)
    tracker = Tracker()   # the same spec trained again by a second store writer
    spec = specs[0]
    again = tracker.start_run("tiny", spec.run_name, {**spec.config.to_dict(), "param_count": 99},
                              tags={"charrnn.role": "run", "charrnn.identity": spec.identity,
                                    "charrnn.varied": spec.varied_json}, system_metrics=False)
    again.log_metrics({"final_val_loss": 9.0, "final_train_loss": 9.0}, step=spec.config.steps)
    again.end()

    frame = results.runs_frame("tiny")
    assert len(frame) == len(specs) and again.run_id not in set(frame["run_id"])
    assert frame.attrs["duplicates"] == [{"identity": spec.identity, "kept_run_id": stored[spec.run_name],
                                          "run_ids": [again.run_id]}]
    assert again.run_id not in set(results.curves_frame("tiny")["run_id"])
    assert run_grid(grid, "quick", progress=False).counts()["finished"] == 0

    exp = report_store.load_experiment("tiny")
    assert build_context(exp)["n_runs"] == len(specs)
    html = render_experiment(exp, tmp_path / "reports").path.read_text(encoding="utf-8")
    assert "Duplicate finished runs" in html and again.run_id in html and stored[spec.run_name] in html


def test_finished_duplicates_keeps_the_earliest_finished_run_of_each_identity():
    frame = pd.DataFrame({
        "run_id": ["a", "b", "c", "d", "e", "f"],
        "identity": ["x", "x", "x", "y", None, None],
        "status": ["FAILED", "FINISHED", "FINISHED", "FINISHED", "FINISHED", "FINISHED"],
        "start_time": [1, 3, 2, 4, 5, 5]})
    found = results.finished_duplicates(frame)
    assert found.to_dict("records") == [{"identity": "x", "run_id": "b", "kept_run_id": "c"}]
    assert results.duplicate_groups(found) == [{"identity": "x", "kept_run_id": "c", "run_ids": ["b"]}]
    assert results.finished_duplicates(frame[frame["identity"] == "y"]).empty


def test_a_checkpoint_is_accepted_only_by_its_own_identity(tmp_path):
    import torch

    from charrnn.run.checkpoint import CheckpointError
    from charrnn.run.train import Trainer

    cfg = make_config({"hidden_size": 8, "batch_size": 2, "seq_len": 8, "steps": 2, "eval_batches": 1,
                       "device": "cpu", "task": "bitflip"})
    trainer = Trainer(cfg, progress=False)
    torch.save(trainer.state_dict(), tmp_path / "ckpt.pt")
    Trainer(cfg, progress=False).load_checkpoint(tmp_path / "ckpt.pt")
    other = Trainer(dataclasses.replace(cfg, seed=1), progress=False)
    with pytest.raises(ValueError, match="belongs to config"):
        other.load_checkpoint(tmp_path / "ckpt.pt")
    torch.save({**trainer.state_dict(), "format": 1}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="charrnn migrate"):
        Trainer(cfg, progress=False).load_checkpoint(tmp_path / "old.pt")
