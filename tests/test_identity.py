"""Run identity: the canonical config (non-default keys + task + schema version), runs stored by an
earlier release (tagged only with the all-fields `charrnn.config_hash`), and FINISHED duplicates."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from grid_support import empty_store_db, store, write_grid  # noqa: F401

from charrnn import config
from charrnn.science import results
from charrnn.report import store as report_store
from charrnn.config import TrainConfig, identity_from_params, make_config
from charrnn.grid.executors import run_grid
from charrnn.grid.spec import RunSpec, load_grid
from charrnn.report.pages import build_context, render_experiment
from charrnn.tracking import Tracker

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
    assert new.config_hash() == old.config_hash()   # the legacy tag leaves defaulted later keys out too
    assert WithNewKnob(hidden_size=64, seed=2, new_knob=4).identity_hash() != old.identity_hash()


def test_the_schema_version_is_part_of_the_identity(monkeypatch):
    before = TrainConfig().identity_hash()
    monkeypatch.setattr(config, "IDENTITY_SCHEMA", config.IDENTITY_SCHEMA + 1)
    assert TrainConfig().identity_hash() != before


def test_identity_from_logged_params_matches_the_config_even_without_later_keys():
    cfg = make_config({"cell": "vanilla", "input_combine": "add", "backend": "loop", "residual": True,
                       "lr": 0.01, "dataset_fraction": 0.5})
    params = {k: str(v) for k, v in cfg.to_dict().items()} | {"param_count": "123"}  # as MLflow stores them
    assert identity_from_params(params) == cfg.identity_hash()
    del params["lr_schedule"]                    # a run logged before lr_schedule existed
    assert identity_from_params(params) == cfg.identity_hash()
    assert identity_from_params({k: v for k, v in params.items() if k != "task"}) is None
    assert identity_from_params(params | {"hidden_size": "not a number"}) is None


# --------------------------------------------------------------------------- a previous release's store

def legacy_store(specs: tuple[RunSpec, ...]) -> dict[str, str]:
    """Write `specs` FINISHED the way the previous release did: every config key a param, tagged
    with the all-fields hash and no identity tag. Odd runs lack `lr_schedule` (logged before it
    existed). Returns spec run name → run id."""
    tracker = Tracker()
    grid = specs[0].grid
    parent = tracker.start_run(grid, "quick old", {}, tags={"charrnn.role": "grid"}, system_metrics=False)
    parent.end()
    ids = {}
    for i, spec in enumerate(specs):
        logged = spec.config.to_dict()
        if i % 2:
            logged.pop("lr_schedule")
        legacy_hash = config._sha16(logged)   # that release's all-fields hash: != spec.config_hash when odd
        run = tracker.start_run(grid, spec.run_name, {**logged, "param_count": 99}, parent_run_id=parent.run_id,
                                system_metrics=False,
                                tags={"charrnn.role": "run", "charrnn.config_hash": legacy_hash,
                                      "charrnn.grid.spec": grid, "charrnn.profile": spec.profile,
                                      "charrnn.variant": spec.variant, "charrnn.varied": spec.varied_json})
        run.log_metrics({"final_val_loss": 2.0 + i / 100, "final_train_loss": 1.9}, step=spec.config.steps)
        run.end()
        ids[spec.run_name] = run.run_id
    return ids


def test_rerunning_a_grid_on_a_previous_release_store_trains_nothing(store, tmp_path):
    grid = load_grid(write_grid(tmp_path))
    specs = grid.expand("quick")
    stored = legacy_store(specs)
    session = run_grid(grid, "quick", progress=False)
    assert session.counts() == {"finished": 0, "skipped": len(specs), "failed": 0}
    assert {r.spec.run_name: r.run_id for r in session.results} == stored
    frame = results.runs_frame("tiny")
    assert len(frame) == len(specs) and frame.attrs["duplicates"] == []
    assert set(frame["identity"]) == {s.identity for s in specs}


def test_duplicate_finished_runs_are_listed_and_not_counted(store, tmp_path):
    grid = load_grid(write_grid(tmp_path))
    specs = grid.expand("quick")
    stored = legacy_store(specs)
    tracker = Tracker()   # the same spec trained again by a release that did not recognise the old run
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


@pytest.mark.parametrize("release_checkpoint", [True, False], ids=["previous-release", "current"])
def test_a_checkpoint_is_accepted_by_identity_or_by_the_previous_release_hash(tmp_path, release_checkpoint):
    import torch

    from charrnn.run.train import Trainer

    cfg = make_config({"hidden_size": 8, "batch_size": 2, "seq_len": 8, "steps": 2, "eval_batches": 1,
                       "device": "cpu", "task": "bitflip"})
    trainer = Trainer(cfg, progress=False)
    state = trainer.state_dict()
    if release_checkpoint:
        del state["identity"]
    torch.save(state, tmp_path / "ckpt.pt")
    Trainer(cfg, progress=False).load_checkpoint(tmp_path / "ckpt.pt")
    other = Trainer(dataclasses.replace(cfg, seed=1), progress=False)
    with pytest.raises(ValueError, match="belongs to config"):
        other.load_checkpoint(tmp_path / "ckpt.pt")
