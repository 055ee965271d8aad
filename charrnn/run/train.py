"""One training run: task → model → optimiser loop, with evals, checkpoints and buffered metrics.

MLflow is not imported here: the loop reports through a `RunHandle`-like object (or None).
"""
from __future__ import annotations

import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from tqdm import tqdm

from charrnn import registry
from charrnn.capabilities import check_device, resolve_backend
from charrnn.run.checkpoint import describe, read
from charrnn.run.convergence import EarlyStopping
from charrnn.config import TrainConfig
from charrnn.tasks.baseline import baseline_metrics
from charrnn.tasks.data import Batch, Task, make_task
from charrnn.rnn.cell_math import map_hidden
from charrnn.rnn.models import CharRNN, detach_hidden, masked_cross_entropy, param_count
from charrnn.run.outcome import CHECKPOINT_NAME
from charrnn.run.phases import PhaseClock

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}
COSINE_FLOOR = 0.1   # cosine schedule ends at lr * COSINE_FLOOR (nanoGPT's min_lr = lr / 10)
EAGER_ENV = "CHARRNN_EAGER_STEP"   # =1: never capture the training step (e.g. to compare against it)
CAPTURED = "captured: torch.compile(mode='reduce-overhead') (CUDA graphs)"


def lr_at(cfg: TrainConfig, step: int) -> float:
    """The learning rate of `step` (0-based): a pure function of the step, so a resumed run
    continues the schedule exactly."""
    if cfg.lr_schedule == "constant" or cfg.steps <= 1:
        return cfg.lr
    progress = step / (cfg.steps - 1)                                   # 0 → 1
    return cfg.lr * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))


class Diverged(RuntimeError):
    """The training loss became NaN or inf."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"diverged at step {step} (train_loss={loss})")
        self.step = step


class MetricSink(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None: ...
    def flush(self) -> None: ...


@dataclass
class TrainResult:
    final: dict[str, float]                  # final_* and baseline_* metrics, also logged to the run
    train_losses: list[float] = field(default_factory=list)  # this process's per-step losses
    start_step: int = 0                       # > 0 when resumed from a checkpoint


def step_graph_plan(backend: str, device: torch.device) -> str:
    """Why the training step runs eager here, or CAPTURED. A small RNN step is launch-bound on a
    GPU; replaying it as CUDA graphs removes the per-kernel launch cost. Off CUDA nothing to gain."""
    if os.environ.get(EAGER_ENV, "") not in ("", "0"):
        return f"eager: forced by {EAGER_ENV}=1"
    if device.type != "cuda":
        return f"eager: CUDA graphs need a CUDA device (device is {device.type})"
    if backend in registry.compiling_backends():
        return f"eager: backend={backend} compiles or captures its own kernels"
    if backend not in registry.fused_backends():   # a loop unrolls T cells: minutes of compilation per run
        return f"eager: backend={backend} unrolls its time loop (compiling it costs more than a run saves)"
    return CAPTURED


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


OWN_PROTOCOL = ("random", "epoch_zero", "epoch_random")   # hidden_init modes whose own eval differs from zero


def step_generator(seed: int, step: int) -> torch.Generator:
    """Independent RNG stream per (seed, step): batches and random h0 replay exactly on resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def batch_to(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return Batch(batch.x.to(device, non_blocking=True), batch.y.to(device, non_blocking=True),
                 batch.mask.to(device, non_blocking=True))


class WindowRecord:
    """Per test window: loss sum (nats), scored tokens, correct tokens, exact matches and rows with a
    target, the sums the test metrics are means of, for an interval over test windows
    (`charrnn.science.window_uncertainty`).
    A window is one row of one batch; when rows carry their state batch to batch (eval_mode=stateful
    or an epoch_* protocol) it is the whole track, row b of every batch, as its parts are not
    scored independently."""

    def __init__(self) -> None:
        self.rows: list[torch.Tensor] = []   # per batch: (B, 5) loss_sum, tokens, correct, exact, rows
        self.carried = False

    def add(self, logits: torch.Tensor, batch: Batch, hit: torch.Tensor, has_target: torch.Tensor) -> None:
        losses = F.cross_entropy(logits.flatten(0, 1).float(), batch.y.flatten(), reduction="none")  # (B*T,)
        mask = batch.mask.to(losses.dtype)                                                            # (B, T)
        loss_sum = (losses.view_as(mask) * mask).sum(dim=1, dtype=torch.float64)                      # (B,)
        exact = (hit.all(dim=1) & has_target).double()                                                # (B,)
        self.rows.append(torch.stack([loss_sum, mask.sum(1).double(), (hit & batch.mask).sum(1).double(),
                                      exact, has_target.double()], dim=1).cpu())                      # (B, 5)

    def as_json(self) -> dict[str, Any]:
        table = torch.stack(self.rows) if self.rows else torch.zeros(0, 0, 5, dtype=torch.float64)  # (N, B, 5)
        table = table.sum(0) if self.carried else table.flatten(0, 1)                               # (W, 5)
        names = ("loss_sum", "tokens", "correct", "exact", "rows")
        return {"unit": "track" if self.carried else "row", **{n: table[:, i].tolist() for i, n in enumerate(names)}}


class Trainer:
    """Owns model, optimiser and data for one config; `fit()` runs the loop."""

    def __init__(self, cfg: TrainConfig, sink: MetricSink | None = None,
                 checkpoint_dir: str | Path | None = None, progress: bool = True,
                 clock: PhaseClock | None = None):
        self.cfg = cfg
        self.sink = sink
        self.progress = progress
        self.clock = clock or PhaseClock()   # fit() charges train / eval / checkpoint seconds to it
        self.device = check_device(cfg)
        seed_everything(cfg.seed)
        self.task: Task = make_task(cfg)
        self.backend = resolve_backend(cfg, self.device.type, self.task).backend   # what `auto` means here
        self.model = CharRNN(replace(cfg, backend=self.backend), self.task.vocab.size).to(self.device)
        self.step_graph = step_graph_plan(self.backend, self.device)
        self.forward = self.model if self.step_graph != CAPTURED else \
            torch.compile(self.model, mode="reduce-overhead", dynamic=False)
        self.optimizer = OPTIMIZERS[cfg.optimizer](self.model.parameters(), lr=cfg.lr)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.val = self.eval_set("val")
        self.train_eval = self.eval_set("train")   # fixed train batches, scored like val
        self.test = self.eval_set("test") if self.task.has_test else []   # built now: bad data fails early
        self.carry = cfg.hidden_init.startswith("epoch_")
        self.batches_per_epoch = self.task.batches_per_epoch(cfg.batch_size, cfg.seq_len)
        self.step = 0
        self.hidden: Any = None  # carried state (epoch_* modes)
        self.train_time_s = 0.0  # seconds in the training loop so far, across resumes (max_time_s)
        self.stopping = EarlyStopping(cfg.patience, cfg.min_improvement)   # tracks the best val_loss always
        self.best_model: dict[str, torch.Tensor] | None = None   # weights of the best eval (patience > 0)
        self.test_windows: dict[str, dict[str, Any]] | None = None   # per test window, after evaluate_test
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                         if cfg.dtype == "bf16" else nullcontext())

    @property
    def param_count(self) -> int:
        return param_count(self.model)

    # --- state ---
    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "step": self.step, "hidden": self.hidden, "torch_rng": torch.get_rng_state(),
                 "python_rng": random.getstate(), "identity": self.cfg.identity_hash(),
                 "train_time_s": self.train_time_s, "stopping": self.stopping.state_dict()}
        if self.best_model is not None:   # a resumed run keeps its best-so-far weights and patience count
            state["best_model"] = self.best_model
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        state.update(describe(self.cfg, self.task.vocab, self.task.sample_prime()))  # self-describing
        return state

    def load_checkpoint(self, path: str | Path) -> None:
        """Resume model, optimiser, step, carried hidden and RNG states from `path`."""
        state = read(path, map_location=self.device)
        if state.get("identity") != self.cfg.identity_hash():
            raise ValueError(f"checkpoint {path} belongs to config {state.get('identity')}, "
                             f"not {self.cfg.identity_hash()}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.hidden = state["step"], state["hidden"]
        self.train_time_s = float(state["train_time_s"])
        if "stopping" in state:   # absent in checkpoints written before the convergence budget
            self.stopping = EarlyStopping.from_state(state["stopping"])
        self.best_model = state.get("best_model")
        torch.set_rng_state(state["torch_rng"].cpu())
        random.setstate(state["python_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])

    def save_checkpoint(self) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        directory = Path(self.checkpoint_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CHECKPOINT_NAME
        tmp = path.with_suffix(".tmp")
        with self.clock.phase("checkpoint"):
            torch.save(self.state_dict(), tmp)
            os.replace(tmp, path)  # atomic: a kill never leaves a torn checkpoint
        if self.sink is not None:
            self.sink.log_artifact(path, "checkpoint")
        return path

    # --- one step ---
    def initial_hidden(self, step: int) -> Any:
        """h0 for this batch: fresh (zero/random/learned) or carried across an epoch (epoch_*)."""
        mode = self.cfg.hidden_init
        if self.carry and self.hidden is not None and step % self.batches_per_epoch != 0:
            return detach_hidden(self.hidden)
        mode = mode.removeprefix("epoch_")
        return self.model.init_hidden(self.cfg.batch_size, mode, step_generator(self.cfg.seed, step))

    def train_step(self, step: int) -> tuple[float, float]:
        """Forward, backward, clip, update. Returns (loss, grad_norm). A captured step that fails
        on its first call (capture or compilation) falls back to eager; `step_graph` says why."""
        if self.forward is self.model or self.step_graph != CAPTURED:
            return self._train_step(step)
        try:
            result = self._train_step(step)
        except Exception as exc:  # nothing was updated: the optimiser steps last
            self.forward = self.model
            text = str(exc).strip().splitlines()
            self.step_graph = f"eager: capture failed ({type(exc).__name__}: {text[0] if text else ''})"[:250]
            self.optimizer.zero_grad(set_to_none=True)
            return self._train_step(step)
        self.step_graph += " (first step ran)"
        return result

    def _train_step(self, step: int) -> tuple[float, float]:
        cfg = self.cfg
        batch = batch_to(self.task.train_batch(step, cfg.batch_size, cfg.seq_len, cfg.seed, self.carry),
                         self.device)
        if self.forward is not self.model:
            torch.compiler.cudagraph_mark_step_begin()   # the previous replay's outputs are consumed
        with self.autocast:
            logits, hidden = self.forward(batch.x, self.initial_hidden(step))  # (B, T, V)
            loss = masked_cross_entropy(logits, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(cfg, step)
        self.optimizer.step()
        if self.carry and self.forward is not self.model:   # a replay overwrites its outputs
            hidden = map_hidden(torch.Tensor.clone, hidden)
        self.hidden = hidden if self.carry else None
        return loss.item(), grad_norm.item()

    # --- evaluation ---
    def eval_set(self, split: str) -> list[Batch]:
        """The fixed evaluation batches of `split` under cfg.eval_mode (tasks/stream.py shows both layouts)."""
        cfg = self.cfg
        if cfg.eval_mode == "stateful":
            batches = self.task.stateful_batches(split, cfg.batch_size, cfg.seq_len)
        else:
            batches = self.task.eval_batches(split, cfg.batch_size, cfg.seq_len, cfg.eval_batches)
        return [batch_to(b, self.device) for b in batches]

    def evaluate(self) -> dict[str, float]:
        """val_loss (+ val_accuracy / val_exact_match for synthetic tasks) and train_eval_loss."""
        with self.clock.phase("eval"):
            metrics = self.score(self.val, "val")
            metrics["train_eval_loss"] = self.score(self.train_eval, "train_eval")["train_eval_loss"]
        metrics["generalization_gap"] = metrics["val_loss"] - metrics["train_eval_loss"]
        return metrics

    def evaluate_test(self) -> dict[str, float]:
        """test_loss (+ accuracy, exact match) once, after training; {} without a test split. Also
        `test_own_*`: scored under the run's own hidden_init protocol (random states drawn per
        batch, epoch_* states carried batch to batch), equal to `test_*` for zero and learned."""
        if not self.test:
            return {}
        plain_windows, own_windows = WindowRecord(), WindowRecord()
        with self.clock.phase("eval"):
            plain = self.score(self.test, "test", windows=plain_windows)
            own, own_windows = (self.score(self.test, "test", own=True, windows=own_windows), own_windows) \
                if self.cfg.hidden_init in OWN_PROTOCOL else (plain, plain_windows)
        self.test_windows = {"test": plain_windows.as_json(), "test_own": own_windows.as_json()}
        return {**plain, **{k.replace("test_", "test_own_", 1): v for k, v in own.items()}}

    def baselines(self) -> dict[str, float]:
        """`baseline_<metric>` of every loss / accuracy / exact match this run reports: the better
        of a unigram and a bigram model of its train split on the same evaluation batches
        (`charrnn.tasks.baseline`). A trivial model has no state, so test_own_* equals test_*."""
        with self.clock.phase("eval"):
            found = baseline_metrics(self.task, {"val": self.val, "train_eval": self.train_eval, "test": self.test})
        own = {k.replace("baseline_test_", "baseline_test_own_", 1): v for k, v in found.items()
               if k.startswith("baseline_test_")}
        return {k: v for k, v in {**found, **own}.items() if k in registry.METRICS}  # not train_eval_accuracy

    @torch.no_grad()
    def score(self, batches: list[Batch], prefix: str, stateful: bool | None = None,
              own: bool = False, windows: WindowRecord | None = None) -> dict[str, float]:
        """Mean loss over `batches` (and accuracy / exact match where the task has them). Each batch
        starts from the learned h0 (if any) or zeros; when stateful (default: eval_mode=stateful)
        row b carries its state into the next batch, which continues it. `own`: the states the run
        trained with instead (OWN_PROTOCOL: random h0 from a fixed stream; epoch_* carried).
        `windows`: also filled with each row's loss sum, token count, correct and exact match."""
        self.model.eval()
        mode = self.cfg.hidden_init if own else "zero"
        carry = (self.cfg.eval_mode == "stateful" if stateful is None else stateful) or mode.startswith("epoch_")
        generator = step_generator(self.cfg.seed, -1)          # own random states: the same every eval
        hidden = None
        loss_sum = correct = counted = exact = rows = 0.0
        for batch in batches:
            if hidden is None and mode.removeprefix("epoch_") == "random":
                hidden = self.model.init_hidden(batch.x.shape[0], "random", generator)
            with self.autocast:
                logits, last = self.model(batch.x, hidden)  # (B, T, V)
            hidden = last if carry else None
            n = batch.mask.sum().item()
            loss_sum += masked_cross_entropy(logits, batch).item() * n
            hit = (logits.argmax(-1) == batch.y) | ~batch.mask  # (B, T)
            correct += (hit & batch.mask).sum().item()
            counted += n
            has_target = batch.mask.any(dim=1)
            exact += (hit.all(dim=1) & has_target).sum().item()
            rows += has_target.sum().item()
            if windows is not None:
                windows.add(logits, batch, hit, has_target)
        self.model.train()
        if windows is not None:
            windows.carried = carry
        metrics = {f"{prefix}_loss": loss_sum / max(counted, 1)}
        if self.task.has_accuracy:
            metrics[f"{prefix}_accuracy"] = correct / max(counted, 1)
            metrics[f"{prefix}_exact_match"] = exact / max(rows, 1)
        return metrics

    # --- the loop ---
    def fit(self) -> TrainResult:
        """The loop; its seconds are charged to `clock`'s `train` phase, less what its evaluations,
        checkpoints and (through a `TimedSink`) store writes take (`charrnn.run.phases`)."""
        with self.clock.phase("train"):
            return self._fit()

    def _fit(self) -> TrainResult:
        cfg = self.cfg
        start = self.step
        losses: list[float] = []
        evals: dict[str, float] = {}
        tokens_per_step = cfg.batch_size * (self.task.fixed_seq_len or cfg.seq_len)
        bar = tqdm(total=cfg.steps, initial=start, disable=not self.progress, desc=cfg.run_name(),
                   unit="step", dynamic_ncols=True, leave=False)
        t_start = t_last = time.perf_counter()
        last_step, time_before = start, self.train_time_s
        clipped = clipped_total = 0   # steps where clipping changed the gradient (norm > grad_clip)
        for step in range(start, cfg.steps):
            if self.stopping.stopped:   # resumed after patience ran out (killed while logging outputs)
                break
            loss, grad_norm = self.train_step(step)
            if not math.isfinite(loss):
                bar.close()
                raise Diverged(step, loss)
            self.step = step + 1
            losses.append(loss)
            was_clipped = int(0 < cfg.grad_clip < grad_norm)
            clipped, clipped_total = clipped + was_clipped, clipped_total + was_clipped
            self._log({"train_loss": loss, "grad_norm": grad_norm}, step)
            bar.update(1)
            self.train_time_s = time_before + time.perf_counter() - t_start
            out_of_time = 0 < cfg.max_time_s <= self.train_time_s
            if step % 10 == 0:
                elapsed = time.perf_counter() - t_start
                rate = tokens_per_step * (self.step - start) / max(elapsed, 1e-9)
                bar.set_postfix(loss=f"{loss:.3f}", chars_per_s=f"{rate:,.0f}", refresh=False)
            if self.step % cfg.eval_interval == 0 or self.step == cfg.steps or out_of_time:
                now = time.perf_counter()
                interval = {"tokens_per_s": tokens_per_step * (self.step - last_step) / (now - t_last),
                            "step_time_ms": 1000 * (now - t_last) / (self.step - last_step),
                            "clip_fraction": clipped / (self.step - last_step)}
                clipped = 0
                evals = self.evaluate()
                self._track_best(evals["val_loss"])
                self._log({**evals, **interval}, step)
                self.save_checkpoint()
                if self.sink is not None:
                    self.sink.flush()
                t_last, last_step = time.perf_counter(), self.step
            if out_of_time or self.stopping.stopped:
                break
        bar.close()
        elapsed = time.perf_counter() - t_start
        tail = losses[-min(len(losses), cfg.eval_interval):] or [float("nan")]
        if self.restore_best():
            evals = self.evaluate()   # final val metrics and test metrics of the best-validation weights
        final = {f"final_{k}": v for k, v in {**evals, **self.evaluate_test()}.items()}
        final.update(self.stopping_metrics())
        tokens_per_s = tokens_per_step * (self.step - start) / max(elapsed, 1e-9)
        final.update(final_train_loss=sum(tail) / len(tail),
                     final_tokens_per_s=tokens_per_s, final_log10_tokens_per_s=math.log10(max(tokens_per_s, 1e-9)),
                     final_clip_fraction=clipped_total / max(self.step - start, 1),
                     train_time_s=elapsed)
        final.update(self.baselines())
        return TrainResult(final=final, train_losses=losses, start_step=start)

    # --- the convergence budget ---
    def _track_best(self, val_loss: float) -> None:
        """Feed the stopping rule; under a convergence budget keep the best weights (CPU copy)."""
        if self.stopping.update(self.step, val_loss) and self.cfg.patience > 0:
            with self.clock.phase("eval"):
                self.best_model = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def restore_best(self) -> bool:
        """Under a convergence budget, load the best-validation weights into the model (True if it did)."""
        if self.cfg.patience == 0 or self.best_model is None:
            return False
        with self.clock.phase("eval"):
            self.model.load_state_dict(self.best_model)
        return True

    def stopping_metrics(self) -> dict[str, float]:
        """`converged` (1: stopped by patience, 0: by the step cap or max_time_s), `best_step` (the
        step of the best val_loss; test metrics come from it under a convergence budget), and
        `epochs` (passes over the training data in the steps taken)."""
        return {"converged": float(self.stopping.stopped), "best_step": float(self.stopping.best_step),
                "epochs": self.step / self.batches_per_epoch}

    def _log(self, metrics: dict[str, float], step: int) -> None:
        if self.sink is not None:
            self.sink.log_metrics(metrics, step)
