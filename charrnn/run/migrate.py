"""`charrnn migrate`: upgrade, once and in place, a store written by an earlier release.

Releases up to 9221798 recognised a run by `charrnn.config_hash` (a hash of every config field,
which changes whenever a field is added), wrote checkpoints holding only the training state, and
read a grid's single claim from `claim:`. This release reads one form of each, so such a store is
upgraded first:

- a training run (one that logged the config as params) without `charrnn.identity` gets the
  identity of its logged config; `charrnn.config_hash` is deleted;
- its checkpoint artifact is rewritten in CHECKPOINT_FORMAT: `identity`, config, vocabulary and
  prime added (the vocabulary from the task's data), `config_hash` dropped;
- a grid file logged on an invocation's parent run with `claim:` is rewritten with `claims:`.

Dry run unless `apply`: the plan is printed and nothing is written. Idempotent: an upgraded store
plans nothing. A run that cannot be upgraded (a config this release rejects, a corpus file that is
gone) is listed with the reason and left as it was.
"""
from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import yaml

from charrnn.config import FIELDS, ConfigError, TrainConfig, check_value
from charrnn.rnn.models import CharRNN
from charrnn.run.checkpoint import CHECKPOINT_FORMAT, describe
from charrnn.run.outcome import CHECKPOINT_NAME
from charrnn.tags import GRID_ARTIFACT, IDENTITY_TAG, ROLE_TAG, TAG_PREFIX, GRID_ROLE
from charrnn.tasks.data import make_task
from charrnn.tracking.store import StoredRun, Tracker, store_exists, tracking_uri

LEGACY_HASH_TAG = TAG_PREFIX + "config_hash"
CHECKPOINT_ARTIFACT = f"checkpoint/{CHECKPOINT_NAME}"


@dataclass(frozen=True)
class Upgrade:
    """What the upgrade changes on one run (or, in `problem`, why it cannot)."""

    experiment: str
    run_id: str
    run_name: str
    identity: str | None = None        # the identity tag to set
    drop_hash: bool = False            # delete `charrnn.config_hash`
    checkpoint: dict[str, Any] | None = None   # the upgraded checkpoint state to write
    grid_text: str | None = None       # the upgraded grid file to write
    problem: str = ""

    @property
    def changes(self) -> list[str]:
        return [what for what, due in (
            (f"tag {IDENTITY_TAG}={self.identity}", self.identity is not None),
            (f"delete tag {LEGACY_HASH_TAG}", self.drop_hash),
            (f"checkpoint format {CHECKPOINT_FORMAT}", self.checkpoint is not None),
            ("grid file claim: -> claims:", self.grid_text is not None)) if due]


def logged_config(params: Mapping[str, str]) -> TrainConfig:
    """The config a run logged as params (keys it did not log keep their defaults); ConfigError
    when a value is not valid in this release."""
    values = {key: check_value(key, text) for key, text in params.items() if key in FIELDS}
    return dataclasses.replace(TrainConfig(), **values)


def upgraded_checkpoint(state: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    """A training-state-only checkpoint as CHECKPOINT_FORMAT. Raises when its weights do not fit
    the model this release builds from `cfg`, or the task's data cannot be read."""
    task = make_task(cfg)
    CharRNN(cfg, task.vocab.size).load_state_dict(state["model"])   # strict: the weights fit
    kept = {key: value for key, value in state.items() if key != "config_hash"}
    # `train_time_s` (the max_time_s budget spent) came with max_time_s; such runs had no budget
    return {**kept, "identity": cfg.identity_hash(), "train_time_s": float(state.get("train_time_s", 0.0)),
            **describe(cfg, task.vocab, task.sample_prime())}


def _checkpoint_state(tracker: Tracker, run_id: str) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory(prefix="charrnn-migrate-") as tmp:
        try:
            path = tracker.download(run_id, CHECKPOINT_ARTIFACT, tmp)
        except Exception:  # a run killed before its first checkpoint has none
            return None
        return torch.load(path, map_location="cpu", weights_only=True)


def plan_training_run(tracker: Tracker, experiment: str, run: StoredRun) -> Upgrade | None:
    base = Upgrade(experiment, run.run_id, run.name)
    try:
        cfg = logged_config(run.params)
        state = _checkpoint_state(tracker, run.run_id)
        checkpoint = (upgraded_checkpoint(state, cfg)
                      if state is not None and state.get("format") != CHECKPOINT_FORMAT else None)
    except Exception as exc:  # whatever stops one run (bad config, foreign weights, unreadable file) spares the rest
        return dataclasses.replace(base, problem=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    upgrade = dataclasses.replace(base, identity=None if run.identity else cfg.identity_hash(),
                                  drop_hash=LEGACY_HASH_TAG in run.tags, checkpoint=checkpoint)
    return upgrade if upgrade.changes else None


def plan_grid_run(tracker: Tracker, experiment: str, run: StoredRun) -> Upgrade | None:
    text = tracker.artifact_text(run.run_id, GRID_ARTIFACT)
    data = yaml.safe_load(text) if text else None
    if not isinstance(data, dict) or "claim" not in data:
        return None
    upgraded = {("claims" if key == "claim" else key): ([value] if key == "claim" else value)
                for key, value in data.items()}
    return Upgrade(experiment, run.run_id, run.name, grid_text=yaml.safe_dump(upgraded, sort_keys=False))


def plan(tracker: Tracker) -> list[Upgrade]:
    """Every change the upgrade makes, run by run, in experiment then start order."""
    found = []
    for experiment in tracker.experiment_names():
        for run in tracker.runs(experiment):
            if run.tags.get(ROLE_TAG) == GRID_ROLE:
                found.append(plan_grid_run(tracker, experiment, run))
            elif "task" in run.params:
                found.append(plan_training_run(tracker, experiment, run))
    return [u for u in found if u is not None]


def apply_upgrade(tracker: Tracker, upgrade: Upgrade) -> None:
    """Write one run's upgrade: the files first, the tags last (a run is tagged once whole)."""
    with tempfile.TemporaryDirectory(prefix="charrnn-migrate-") as tmp:
        if upgrade.checkpoint is not None:
            path = Path(tmp) / CHECKPOINT_NAME
            torch.save(upgrade.checkpoint, path)
            tracker.replace_artifact(upgrade.run_id, path, str(Path(CHECKPOINT_ARTIFACT).parent))
        if upgrade.grid_text is not None:
            path = Path(tmp) / GRID_ARTIFACT
            path.write_text(upgrade.grid_text, encoding="utf-8")
            tracker.replace_artifact(upgrade.run_id, path)
    tracker.retag(upgrade.run_id, {IDENTITY_TAG: upgrade.identity} if upgrade.identity else {},
                  remove=[LEGACY_HASH_TAG] if upgrade.drop_hash else [])


def migrate(apply: bool = False, out: Callable[[str], None] = print) -> int:
    """`charrnn migrate [--apply]`: print the plan (and write it with `apply`). Exit code 0, or 1
    when some run cannot be upgraded."""
    if not store_exists():
        raise ConfigError(f"store={tracking_uri(create=False)!r}: no store there; valid: the store of an "
                          "earlier release (CHARRNN_RESULTS_DIR or MLFLOW_TRACKING_URI)")
    tracker = Tracker()
    upgrades = plan(tracker)
    for u in upgrades:
        what = f"cannot upgrade: {u.problem}" if u.problem else "; ".join(u.changes)
        out(f"{u.experiment}/{u.run_name} ({u.run_id}): {what}")
    todo = [u for u in upgrades if not u.problem]
    if apply:
        for u in todo:
            apply_upgrade(tracker, u)
    verb = "upgraded" if apply else "would upgrade (dry run; --apply writes it)"
    out(f"{tracker.uri}: {verb} {len(todo)} runs; {len(upgrades) - len(todo)} cannot be upgraded"
        if upgrades else f"{tracker.uri}: nothing to upgrade")
    return 1 if len(todo) < len(upgrades) else 0
