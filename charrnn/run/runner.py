"""Run lifecycle: one TrainConfig → one MLflow run that ends FINISHED, FAILED or KILLED.

`run_one` creates the run itself (`charrnn train`). `train_run` trains into a run someone else
opened — a new grid child run or a reopened KILLED/FAILED one, resumed from its last checkpoint —
through anything with RunHandle's methods (the Ray executor passes a queue-backed stand-in).
"""
from __future__ import annotations

import math
import tempfile
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from charrnn import provenance
from charrnn.config import TrainConfig
from charrnn.run.sample import generate, predictions
from charrnn.tags import IDENTITY_TAG, RESUMED_TAG, STEP_GRAPH_TAG, TAG_PREFIX, TEST_WINDOWS_ARTIFACT
from charrnn.run.outcome import CHECKPOINT_NAME, ResumePoint, RunOutcome
from charrnn.run.phases import PhaseClock, TimedSink
from charrnn.run.train import Diverged, Trainer

if TYPE_CHECKING:  # MLflow stays out of processes that only train (Ray workers)
    from charrnn.tracking.store import Tracker

DEFAULT_EXPERIMENT = "train"


class RunSink(Protocol):
    """What a run is written through: tracking.RunHandle, or worker.QueueRun in a Ray worker."""
    run_id: str

    def log_params(self, params: dict[str, Any]) -> None: ...
    def set_tags(self, tags: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def flush(self) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def log_json(self, obj: Any, artifact_file: str) -> None: ...
    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None: ...
    def end(self, status: str = "FINISHED", failure: str | None = None) -> None: ...


class LogOnce:
    """A run whose metric rows already in the store are not logged again. A resumed run replays
    from its checkpoint, which may be older than the last rows that reached the store (a flush
    between checkpoints, or the flush of a run that ended KILLED); the replay computes the same
    values bit for bit, so dropping them leaves one point per step in MLflow's history."""

    def __init__(self, run: RunSink, logged: dict[str, int]):
        self._run, self._logged = run, logged

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        new = {k: v for k, v in metrics.items() if step > self._logged.get(k, -1)}
        if new:
            self._run.log_metrics(new, step)


def identity_tags(cfg: TrainConfig) -> dict[str, str]:
    """The run's stable identity."""
    return {IDENTITY_TAG: cfg.identity_hash()}


# Config keys that shape one cell only; `residual_mode` shapes residual connections only.
CELL_ONLY_KEYS: dict[str, tuple[str, ...]] = {"input_combine": ("vanilla",), "activation": ("vanilla",),
                                              "forget_bias": ("lstm",)}


def applicable_params(cfg: TrainConfig) -> dict[str, Any]:
    """The config's params (`TrainConfig.params`: the keys of its task) without the keys that do
    not apply to its cell and options: no `forget_bias` on a GRU, no `residual_mode` without
    residual connections. The identity still covers every key."""
    dropped = {k for k, cells in CELL_ONLY_KEYS.items() if cfg.cell not in cells}
    if not cfg.residual:
        dropped.add("residual_mode")
    return {k: v for k, v in cfg.params().items() if k not in dropped}


def run_params(trainer: Trainer) -> dict[str, Any]:
    """The applicable config, the parameter count, and the backend it trains on (what `auto` resolved to)."""
    return {**applicable_params(trainer.cfg), "param_count": trainer.param_count, "backend_resolved": trainer.backend}


def _log_outputs(run: RunSink, trainer: Trainer) -> None:
    """Sample text, the teacher-forced vs free-running record and the per-test-window sums, for the report."""
    cfg = trainer.cfg
    with trainer.clock.phase("outputs"):
        if trainer.test_windows is not None:
            run.log_json(trainer.test_windows, TEST_WINDOWS_ARTIFACT)
        text = generate(trainer.model, trainer.task.vocab, trainer.task.sample_prime(),
                        cfg.sample_length, cfg.sample_temperature, seed=cfg.seed)
        run.log_text(text, "samples/sample.txt")
        run.log_json(predictions(trainer.model, trainer.task, cfg.seq_len), "predictions.json")


def _log_provenance(run: RunSink, trainer: Trainer) -> dict[str, str]:
    with trainer.clock.phase("provenance"):
        tags, files = provenance.collect(trainer.device)
    for name, text in files.items():
        run.log_text(text, name)
    return tags


def run_one(cfg: TrainConfig, tracker: Tracker, experiment: str = DEFAULT_EXPERIMENT,
            run_name: str | None = None, tags: dict[str, str] | None = None,
            parent_run_id: str | None = None, progress: bool = True) -> RunOutcome:
    """Train `cfg` as one MLflow run. Bad input raises before any run exists; a failure inside
    training ends the run FAILED with `charrnn.failure` and is returned, not raised."""
    clock = PhaseClock()
    with clock.phase("setup"):
        trainer = Trainer(cfg, progress=progress, clock=clock)  # task, model, val data: input errors surface here
    with clock.phase("provenance"):
        prov_tags, prov_files = provenance.collect(trainer.device)
    with clock.phase("mlflow"):
        run = tracker.start_run(
            experiment, run_name or cfg.run_name(),
            params=run_params(trainer),
            tags={**identity_tags(cfg), **prov_tags, **(tags or {})},
            parent_run_id=parent_run_id)
        for name, text in prov_files.items():
            run.log_text(text, name)
    return _train_in(trainer, TimedSink(run, clock), None)


def train_run(cfg: TrainConfig, run: RunSink, resume: ResumePoint | None = None,
              progress: bool = True, clock: PhaseClock | None = None) -> RunOutcome:
    """Train `cfg` into the open run `run`, from `resume`'s checkpoint when there is one; `clock`
    (a fresh one by default) gets the run's phase seconds, logged as `time_<phase>_s` metrics.
    Never raises for a training problem: the run ends FAILED and the outcome says why."""
    clock = clock or PhaseClock()
    run = TimedSink(run, clock)
    try:
        with clock.phase("setup"):
            trainer = Trainer(cfg, progress=progress, clock=clock)
        run.log_params(run_params(trainer))
        run.set_tags({**identity_tags(cfg), **_log_provenance(run, trainer)})
    except Exception as exc:  # unusable data or a bug before the first step
        return _fail(run, exc)
    return _train_in(trainer, run, resume)


def _train_in(trainer: Trainer, run: RunSink, resume: ResumePoint | None) -> RunOutcome:
    if resume is not None and resume.logged:
        run = LogOnce(run, dict(resume.logged))
    with tempfile.TemporaryDirectory(prefix="charrnn-ckpt-") as ckpt_dir:
        trainer.sink, trainer.checkpoint_dir = run, Path(ckpt_dir)
        trainer, earlier = _restore(trainer, run, resume)
        return _train_and_close(trainer, run, earlier)


def _restore(trainer: Trainer, run: RunSink, resume: ResumePoint | None) -> tuple[Trainer, dict[int, float]]:
    """Load `resume`'s checkpoint into `trainer`: (the trainer to use, train losses before it).
    An unreadable checkpoint (a kill mid-upload) restarts from step 0: slower, never wrong."""
    if resume is None:
        return trainer, {}
    if resume.checkpoint is None:  # killed before its first checkpoint: start over in the same run
        run.set_tags({RESUMED_TAG: 0})
        return trainer, {}
    path = trainer.checkpoint_dir / CHECKPOINT_NAME
    try:
        with trainer.clock.phase("setup"):
            path.write_bytes(resume.checkpoint)
            trainer.load_checkpoint(path)
    except Exception as exc:
        run.set_tags({RESUMED_TAG: 0, TAG_PREFIX + "resume_note": f"checkpoint unreadable ({exc})"[:500]})
        with trainer.clock.phase("setup"):
            fresh = Trainer(trainer.cfg, sink=run, checkpoint_dir=trainer.checkpoint_dir, progress=trainer.progress,
                            clock=trainer.clock)
        return fresh, {}
    run.set_tags({RESUMED_TAG: trainer.step})
    return trainer, {step: loss for step, loss in resume.train_losses if step < trainer.step}


def _finals(trainer: Trainer, result, earlier: dict[int, float]) -> dict[str, float]:
    """Final metrics; for a resumed run, made equal to an uninterrupted run's where they can be:
    the train-loss tail includes losses logged before the interruption, and a run resumed at its
    last step (killed while logging its outputs) is evaluated again instead of reporting nothing."""
    final = dict(result.final)
    if not result.start_step:
        return final
    cfg = trainer.cfg
    losses = [earlier[s] for s in sorted(earlier)] + result.train_losses
    tail = losses[-min(len(losses), cfg.eval_interval):]
    final["final_train_loss"] = sum(tail) / len(tail) if tail else math.nan
    if result.start_step >= cfg.steps:
        final.update({f"final_{k}": v for k, v in trainer.evaluate().items()})
    return final


def _fail(run: RunSink, exc: BaseException) -> RunOutcome:
    """End `run` FAILED with the exception as its reason (GPU OOM included)."""
    reason = f"{type(exc).__name__}: {exc}"
    run.log_text(traceback.format_exc(), "failure_traceback.txt")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # an OOM must not starve the runs that follow
    run.end("FAILED", failure=reason)
    return RunOutcome(run.run_id, "FAILED", failure=reason)


def _train_and_close(trainer: Trainer, run: RunSink, earlier: dict[int, float]) -> RunOutcome:
    try:
        result = trainer.fit()
        final = _finals(trainer, result, earlier)
        _log_outputs(run, trainer)
        times = trainer.clock.metrics()      # up to here: what follows is the run's end (phases.py)
        run.log_metrics({**final, **times}, step=trainer.cfg.steps)
    except Diverged as exc:
        run.end("FAILED", failure=str(exc))
        return RunOutcome(run.run_id, "FAILED", failure=str(exc))
    except KeyboardInterrupt:
        run.end("KILLED", failure="interrupted")
        raise
    except Exception as exc:  # OOM or a bug: record it on the run, let the caller go on
        return _fail(run, exc)
    if trainer.device.type == "cuda":            # CUDA graphs: a fact about CUDA runs only
        run.set_tags({STEP_GRAPH_TAG: trainer.step_graph})
    run.end("FINISHED")
    return RunOutcome(run.run_id, "FINISHED", final=final, start_step=result.start_step, times=times)
