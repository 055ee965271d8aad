"""Run lifecycle: one TrainConfig → one MLflow run that ends FINISHED, FAILED or KILLED."""
from __future__ import annotations

import tempfile
import traceback
from dataclasses import dataclass, field

from . import provenance
from .config import TrainConfig
from .sample import generate, predictions
from .tracking import TAG_PREFIX, RunHandle, Tracker
from .train import Diverged, Trainer

DEFAULT_EXPERIMENT = "train"


@dataclass
class RunOutcome:
    run_id: str
    status: str                                   # FINISHED | FAILED | KILLED
    final: dict[str, float] = field(default_factory=dict)
    failure: str | None = None


def _log_outputs(run: RunHandle, trainer: Trainer) -> None:
    """Sample text and the teacher-forced vs free-running record, for the report."""
    cfg = trainer.cfg
    text = generate(trainer.model, trainer.task.vocab, trainer.task.sample_prime(),
                    cfg.sample_length, cfg.sample_temperature, seed=cfg.seed)
    run.log_text(text, "samples/sample.txt")
    run.log_json(predictions(trainer.model, trainer.task, cfg.seq_len), "predictions.json")


def run_one(cfg: TrainConfig, tracker: Tracker, experiment: str = DEFAULT_EXPERIMENT,
            run_name: str | None = None, tags: dict[str, str] | None = None,
            parent_run_id: str | None = None, progress: bool = True) -> RunOutcome:
    """Train `cfg` as one MLflow run. Bad input raises before any run exists; a failure inside
    training ends the run FAILED with `charrnn.failure` and is returned, not raised."""
    trainer = Trainer(cfg, progress=progress)  # task, model, val data: input errors surface here
    prov_tags, prov_files = provenance.collect(trainer.device)
    run = tracker.start_run(
        experiment, run_name or cfg.run_name(),
        params={**cfg.to_dict(), "param_count": trainer.param_count},
        tags={TAG_PREFIX + "config_hash": cfg.config_hash(), **prov_tags, **(tags or {})},
        parent_run_id=parent_run_id)
    for name, text in prov_files.items():
        run.log_text(text, name)
    with tempfile.TemporaryDirectory(prefix="charrnn-ckpt-") as ckpt_dir:
        trainer.sink, trainer.checkpoint_dir = run, ckpt_dir
        return _train_and_close(trainer, run)


def _train_and_close(trainer: Trainer, run: RunHandle) -> RunOutcome:
    try:
        result = trainer.fit()
        _log_outputs(run, trainer)
        run.log_metrics(result.final, step=trainer.cfg.steps)
    except Diverged as exc:
        run.end("FAILED", failure=str(exc))
        return RunOutcome(run.run_id, "FAILED", failure=str(exc))
    except KeyboardInterrupt:
        run.end("KILLED", failure="interrupted")
        raise
    except Exception as exc:  # OOM or a bug: record it on the run, let the caller go on
        reason = f"{type(exc).__name__}: {exc}"
        run.log_text(traceback.format_exc(), "failure_traceback.txt")
        run.end("FAILED", failure=reason)
        return RunOutcome(run.run_id, "FAILED", failure=reason)
    run.end("FINISHED")
    return RunOutcome(run.run_id, "FINISHED", final=result.final)
