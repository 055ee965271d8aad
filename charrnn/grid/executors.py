"""Where a grid's runs train, and `run_grid`, the body of `charrnn grid`.

- `local` (default): in this process, one after the other, with a per-run progress bar.
- `ray`: one Ray task per RunSpec. Joins `--ray-address` / `RAY_ADDRESS` when given, otherwise
  starts a fresh local Ray (`address="local"`) with this machine's CPUs (and GPUs: `num_gpus` per
  task) — never the cluster named in Ray's `ray_current_cluster` file, which outlives a dead Ray. The
  local Ray listens on 127.0.0.1 only, with token auth where Ray has it (`start_local_ray`). Each task gets
  CPUs // parallel CPUs and as many torch threads. The driver owns every MLflow write: a worker
  (`worker.py`, which never imports MLflow) logs through a `QueueRun`, whose calls travel over a
  Ray queue and are replayed by the driver on the real run, so the sqlite store has one writer and
  workers need no access to it (a remote cluster works the same way). A dead driver leaves its
  workers nobody to write to.
- On a cluster (docs/scaling-out.md): the queue lives on the driver's node; checkpoints reach the
  store (a tracking server's artifact store) through the driver, so when a worker node dies
  (`NodeDiedError`) the run stays claimed and is resubmitted, resumed from its last checkpoint
  artifact on whichever node Ray picks (at most NODE_LOSS_RETRIES times). A worker process that
  dies on a live node (OOM kill, crash) or a task that raises ends its run FAILED with the reason.
- Order and exclusivity: runs start in seed blocks (`order.py`). A RunSpec marked `exclusive` (its
  grid judges speed) trains with nothing beside it: the local executor trains one run at a time
  anyway; Ray runs the exclusive specs after the others, one task at a time, each holding every
  CPU of the largest node (and a whole GPU where there is one).
- Rounds: after the specs of a round finish, a tuned axis whose choice sat at its edge grows within
  the grid's `tune_bounds` (`extend.py`) and the new RunSpecs train as the next round.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from charrnn.config import ConfigError
from charrnn.grid.extend import edge_report, judging_round, next_round, tried_values
from charrnn.grid.preflight import preflight, unfinished
from charrnn.grid.order import ordered
from charrnn.grid.local_ray import join_cluster, local_ray_env, restore_env, start_local_ray
from charrnn.grid.spec import Grid, RunSpec
from charrnn.grid.session import GridSession, GridStopped, Job
from charrnn.run.phases import PhaseClock
from charrnn.tags import NODE_LOST_TAG, TUNE_TRIED_TAG
from charrnn.tracking.failures import store_error
from charrnn.tracking.store import Tracker, store_exists

POLL_S = 0.2
NODE_LOSS_RETRIES = 3   # times one run is resumed elsewhere after its node died, then FAILED


class LocalExecutor:
    """Runs in this process, in order; specs another invocation holds are retried at the end."""

    def __init__(self, max_parallel: int | None = None, ray_address: str | None = None,
                 progress: bool = True, runs_per_gpu: int = 1):
        for flag, value in (("--max-parallel", max_parallel), ("--runs-per-gpu", runs_per_gpu)):
            if value not in (None, 1):
                raise ConfigError(f"{flag}={value}: the local executor trains one run at a "
                                  "time; valid: 1, or use --executor ray")
        self.progress = progress

    def __enter__(self) -> "LocalExecutor":
        return self

    def threads_of(self, spec: RunSpec) -> None:
        """Runs train in this process, at its own torch threads."""
        return None

    def __exit__(self, *exc) -> None:
        pass

    def run(self, session: GridSession, specs: tuple[RunSpec, ...]) -> None:
        for spec in specs:
            self._train(session, session.acquire(spec))
        for spec in session.take_deferred():
            self._train(session, session.acquire(spec, wait=True))

    def _train(self, session: GridSession, job: Job | None) -> None:
        if job is None:
            return
        clock = PhaseClock()
        with clock.phase("startup"):
            from charrnn.run.runner import train_run   # the training code loads with the first run to train

        try:
            outcome = train_run(job.spec.config, job.run, job.resume, progress=self.progress, clock=clock)
        except Exception as exc:
            if store_error(exc, session.tracker.uri) is not None:  # the store failed: stop the grid
                session.abort(job, "KILLED", abandon_reason(exc, session.tracker.uri))
                raise
            session.abort(job, "FAILED", f"{type(exc).__name__}: {exc}"[:2000])  # this run only
            return
        except BaseException:  # KeyboardInterrupt: the run already ended KILLED
            job.lock.release()
            raise
        session.finish(job, outcome)
        error = store_error(RuntimeError(outcome.failure), session.tracker.uri) if outcome.failure else None
        if error is not None:  # the run ended FAILED because the store failed under it: stop the grid
            raise error


# ------------------------------------------------------------------------------------------ ray

def apply_message(run, method: str, args: tuple) -> None:
    """Replay one QueueRun call on the driver's RunHandle."""
    if method == "log_artifact":
        name, data, artifact_path = args
        with tempfile.TemporaryDirectory(prefix="charrnn-upload-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            run.log_artifact(path, artifact_path)
        return
    if method not in ("log_params", "set_tags", "log_metric_rows", "flush", "log_text", "end"):
        raise ValueError(f"unknown run message {method!r}")
    getattr(run, method)(*args)


def usable_cpus() -> int:
    """CPUs this process may run on (respects taskset/cpusets, unlike os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def task_resources(cluster: dict[str, float], max_parallel: int | None,
                   runs_per_gpu: int = 1) -> tuple[float, float, int]:
    """(CPUs per task, GPUs per task, tasks at once) for a cluster's total resources. With GPUs,
    `runs_per_gpu` runs share each (a fraction of a GPU each: small RNN steps leave a GPU idle
    between kernel launches); when tasks outnumber CPUs each gets a fraction of one."""
    cpus, gpus = max(1, int(cluster.get("CPU", 1))), float(cluster.get("GPU", 0))
    parallel = max_parallel or (int(gpus) * runs_per_gpu if gpus >= 1 else cpus)
    per_task = cpus // parallel or cpus / parallel
    return per_task, (min(1.0, gpus / parallel) if gpus else 0.0), parallel


def exclusive_resources(nodes: list[dict[str, Any]]) -> tuple[int, float]:
    """(CPUs, GPUs) of one task that has a node to itself: every CPU of the largest live node,
    and one whole GPU where that node has any."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)] or [{}]
    largest = max(alive, key=lambda r: (r.get("CPU", 0), r.get("GPU", 0)))
    return max(1, int(largest.get("CPU", 1))), (1.0 if largest.get("GPU", 0) >= 1 else 0.0)


class RayExecutor:
    """One Ray task per claimed RunSpec, at most `parallel` at once; the driver writes to MLflow."""

    def __init__(self, max_parallel: int | None = None, ray_address: str | None = None,
                 progress: bool = True, runs_per_gpu: int = 1):
        self.max_parallel, self.runs_per_gpu = max_parallel, runs_per_gpu
        self.address = ray_address or os.environ.get("RAY_ADDRESS") or None
        self._started = False
        self._env_before: dict[str, str | None] = {}   # what a local Ray's settings replaced

    def threads_of(self, spec: RunSpec) -> int:
        """The torch threads `spec` will train with on a local Ray: every CPU when it trains alone
        (`exclusive`), else its share (`task_resources`), as `run` gives them."""
        if spec.exclusive:
            return usable_cpus()
        cpus, _, _ = task_resources({"CPU": usable_cpus()}, self.max_parallel, self.runs_per_gpu)
        return max(1, int(cpus))

    def __enter__(self) -> "RayExecutor":
        """Connect to (or start) Ray before any run exists: a bad address is bad input."""
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            return self   # a Ray this process started or joined itself (e.g. bench/gpu_check's suite)
        common = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
        try:
            if self.address:
                join_cluster(self.address, common)
            else:  # a fresh local Ray: never a stale /tmp/ray/ray_current_cluster or someone else's
                self._env_before = local_ray_env()   # before `ray` is imported
                start_local_ray(num_cpus=usable_cpus(), **common)
        except (ConnectionError, ValueError, RuntimeError) as err:
            restore_env(self._env_before)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"--ray-address={self.address!r}: cannot start or join Ray ({first}); "
                              "valid: a running cluster's address, or none for a local Ray") from None
        self._started = True
        return self

    def __exit__(self, *exc) -> None:
        import ray

        if self._started:
            ray.shutdown()
            restore_env(self._env_before)
            self._started = False

    def run(self, session: GridSession, specs: tuple[RunSpec, ...]) -> None:
        """Train `specs`: the shared ones `parallel` at a time, then the exclusive ones alone."""
        import ray
        from ray.util.queue import Queue

        queue = Queue(actor_options=on_driver_node())
        shared = [s for s in specs if not s.exclusive]
        alone = [s for s in specs if s.exclusive]
        if shared:
            cpus, gpus, parallel = task_resources(ray.cluster_resources(), self.max_parallel,
                                                  self.runs_per_gpu)
            _RayLoop(session, queue, _remote(cpus, gpus), max(1, int(cpus)), parallel).run(shared)
        if alone:
            cpus, gpus = exclusive_resources(ray.nodes())
            _RayLoop(session, queue, _remote(cpus, gpus), cpus, 1).run(alone)


def _remote(cpus: float, gpus: float) -> Any:
    """The Ray task that trains one run with these resources (and as many torch threads)."""
    import ray

    from charrnn.grid.worker import train_task

    return ray.remote(train_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=0, runtime_env=worker_env())


class _RayLoop:
    """Submit claimed jobs, apply worker messages, record outcomes, until every spec is done."""

    def __init__(self, session: GridSession, queue: Any, remote: Any, threads: int, parallel: int):
        self.session, self.queue, self.remote = session, queue, remote
        self.threads, self.parallel = threads, parallel
        self.inflight: dict[Any, Job] = {}
        self.by_run: dict[str, Job] = {}           # message key → job
        self.keys: dict[Any, str] = {}             # task ref → its message key
        self.node_losses: dict[str, int] = {}

    def run(self, specs: list[RunSpec]) -> None:
        todo = deque(specs)
        try:
            while True:
                while todo and len(self.inflight) < self.parallel:
                    self._submit(self.session.acquire(todo.popleft()))
                if not todo and not self.inflight:
                    # Specs another invocation held are taken only once nothing is in flight; one
                    # of them is waited for, the rest tried again without waiting (as the local executor).
                    todo.extend(self.session.take_deferred())
                    if not todo:
                        return
                    self._submit(self.session.acquire(todo.popleft(), wait=True))
                self._wait()
        except BaseException as exc:
            self._abandon(exc)
            raise

    def _submit(self, job: Job | None) -> None:
        if job is None:
            return
        # A resubmitted run gets a new message key: the task it replaces may live on as an orphan
        # (its node's raylet died, its process not yet), and its late messages must be dropped.
        lost = self.node_losses.get(job.run_id, 0)
        key = f"{job.run_id}#{lost}" if lost else job.run_id
        ref = self.remote.remote(job.spec.config, key, job.resume, self.queue, self.threads)
        self.inflight[ref] = job
        self.keys[ref] = key
        self.by_run[key] = job

    def _drain(self) -> None:
        size = self.queue.size()
        if size:
            for run_id, method, args in self.queue.get_nowait_batch(size):
                job = self.by_run.get(run_id)
                if job is not None:
                    apply_message(job.run, method, args)

    def _wait(self) -> None:
        import ray

        self._drain()
        if not self.inflight:
            return
        ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=POLL_S)
        for ref in ready:
            self._drain()  # the task put its last message before returning
            job = self.inflight.pop(ref)
            self.by_run.pop(self.keys.pop(ref), None)
            try:
                self.session.finish(job, ray.get(ref))
            except ray.exceptions.NodeDiedError as exc:  # the node, not the run, failed
                if not self._resume_elsewhere(job, exc):
                    self.session.abort(job, "FAILED", f"worker: {type(exc).__name__}: {exc}"[:2000])
            except Exception as exc:  # the worker died or the task raised
                self.session.abort(job, "FAILED", f"worker: {type(exc).__name__}: {exc}"[:2000])

    def _resume_elsewhere(self, job: Job, exc: Exception) -> bool:
        """Resubmit a run whose node died, from its last checkpoint artifact; the run stays
        RUNNING and claimed. False once it has lost NODE_LOSS_RETRIES nodes."""
        lost = self.node_losses[job.run_id] = self.node_losses.get(job.run_id, 0) + 1
        if lost > NODE_LOSS_RETRIES:
            return False
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        job.run.flush()
        job.run.set_tags({NODE_LOST_TAG: f"{lost}: {first}"[:500]})
        job.resume = self.session.resume_point(job.run_id)
        job.note = f"node died ({lost}x)"
        self._submit(job)
        return True

    def _abandon(self, exc: BaseException) -> None:
        """Interrupted or failing: stop the tasks, end their runs KILLED (resumable) with the
        reason where the store still takes it, release their locks."""
        import ray

        uri = self.session.tracker.uri
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else abandon_reason(exc, uri)
        for ref, job in list(self.inflight.items()):
            ray.cancel(ref, force=True)
            self.session.abort(job, "KILLED", reason)
        self.inflight.clear()


def abandon_reason(exc: BaseException, uri: str | None = None) -> str:
    """Why runs in flight end when `exc` stops the grid: the store failure's one line, if it is one."""
    error = store_error(exc, uri)
    return str(error if error is not None else f"{type(exc).__name__}: {exc}")[:2000]


def worker_env() -> dict[str, Any] | None:
    """The driver's OMP_WAIT_POLICY (see `charrnn grid`) for every worker, wherever its node was
    started: a worker node's processes inherit the environment of its `ray start`, not the driver's."""
    policy = os.environ.get("OMP_WAIT_POLICY")
    return {"env_vars": {"OMP_WAIT_POLICY": policy}} if policy else None


def on_driver_node() -> dict[str, Any]:
    """Actor options that keep an actor (the message queue) on this driver's node, so the death
    of a worker node never takes the queue, and the messages of the other runs, with it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return {"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}


EXECUTORS = {"local": LocalExecutor, "ray": RayExecutor}


def run_grid(grid: Grid, profile: str, executor: str = "local", max_parallel: int | None = None,
             ray_address: str | None = None, rerun_failed: bool = True, progress: bool = True,
             tracker: Tracker | None = None, runs_per_gpu: int = 1) -> GridSession:
    """Train every RunSpec of `profile` not already FINISHED; returns the closed session (its
    results and summary; `session.timing`: its wall seconds per step, `console.GRID_STEPS`). Bad input
    raises ConfigError before any run is created."""
    started = time.perf_counter()
    timing = {"process": process_seconds()}
    specs = ordered(grid.expand(profile), grid.order_seed)
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor={executor!r}: unknown executor; valid choices: {', '.join(EXECUTORS)}")
    runner = EXECUTORS[executor](max_parallel=max_parallel, ray_address=ray_address, progress=progress,
                                 runs_per_gpu=runs_per_gpu)
    tracker = tracker or (Tracker() if store_exists() else None)
    preflight(grid, unfinished(grid, specs, tracker),
              local_devices=not getattr(runner, "address", None),  # a cluster's GPUs are its own
              threads_of=runner.threads_of)
    timing["plan"] = time.perf_counter() - started
    with runner:
        timing["executor start"] = time.perf_counter() - started - timing["plan"]
        session = GridSession(tracker or Tracker(), grid, profile, specs, executor, rerun_failed, progress)
        session.timing.update(timing)
        try:
            begun = time.perf_counter()
            with session:
                trains = time.perf_counter()
                train_rounds(runner, session, specs)
                ended = time.perf_counter()
            stopping = time.perf_counter()
        except Exception as exc:
            error = store_error(exc, session.tracker.uri)
            if error is None:
                raise
            raise GridStopped(session, error) from None
        session.timing.update({"store": trains - begun, "runs": ended - trains, "summary": stopping - ended})
    session.timing["executor stop"] = time.perf_counter() - stopping
    return session


_process_charged: list[bool] = []   # the process's start-up went to the first grid this process trained


def process_seconds() -> float:
    """Seconds since this process started (Python, imports, what ran before the grid), charged to the
    first grid the process trains and 0 for the grids after it (`charrnn grid A.yaml B.yaml`); 0 where
    unknown."""
    if _process_charged:
        return 0.0
    _process_charged.append(True)
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:   # psutil missing (it comes with MLflow) or the platform hides it
        return 0.0


@contextmanager
def shared_executor(executor: str, ray_address: str | None = None) -> Iterator[None]:
    """One executor for several grids trained in one process: for `ray`, one Ray started (or joined)
    here, which each grid's RayExecutor finds running and leaves up, so its workers, their imports and
    the cluster start once; `local` needs nothing shared."""
    if executor != "ray":
        yield
        return
    with RayExecutor(ray_address=ray_address, progress=False):
        yield


def train_rounds(runner, session: GridSession, specs: tuple[RunSpec, ...]) -> None:
    """Train `specs`, then every round a tuning extension adds, then (under `tune_seeds`) the judging
    round (see extend.py); the parent run records every value some arm finally tried (TUNE_TRIED_TAG)
    when an axis grew."""
    grid = session.grid
    while specs:
        runner.run(session, specs)
        done = {s.identity for s in session.specs}
        grid, specs, note = next_round(grid, session.profile, session.results, done)
        if specs:
            session.ensure_parent().set_tags({TUNE_TRIED_TAG: json.dumps(tried_values(grid))})
        else:
            specs, note = judging_round(grid, session.profile, session.results, done)
        if specs:
            session.add(specs, note)
    session.notes.append(edge_report(grid, session.profile, session.results))
