"""One `charrnn grid` invocation against the store: who owns which run, what to do with each RunSpec.

- The invocation is a parent run; each RunSpec a child run (`mlflow.parentRunId`) named after its
  varied values and seed, tagged `charrnn.identity` (the config's stable identity, see
  `TrainConfig.identity`), `charrnn.grid.spec`, `charrnn.profile`. A store written before the
  identity tag existed is refused (bad input) until `charrnn migrate --apply` has tagged its runs,
  so it is never trained again.
- Ownership on one host is an fcntl lock (`locks.py`): one per identity, held while its run
  trains, and one per invocation, held while its parent run is open. A RUNNING run whose lock is
  free has a dead owner; it is marked KILLED and resumed. Runs owned by another host are left alone
  while their `charrnn.heartbeat` tag is fresher than CHARRNN_STALE_AFTER_S (default 1800 s).
- Before training a RunSpec the invocation takes its lock and reads the store again, so two
  invocations never train the same RunSpec: a busy lock defers the spec to the end of the pass.
"""
from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from tqdm import tqdm

from charrnn.config import ConfigError
from charrnn.grid.spec import Grid, RunSpec
from charrnn.grid.locks import FileLock, is_held, lock_path
from charrnn.run.outcome import CHECKPOINT_NAME, ResumePoint, RunOutcome
from charrnn.tags import OPENING, phase_metric
from charrnn.tags import EXCLUSIVE, GRID_ARTIFACT, HEARTBEAT_TAG, IDENTITY_TAG, ROLE_TAG, SERIAL, SHARED
from charrnn.tags import SPEED_TAG, TAG_PREFIX
from charrnn.tags import ARMS_TABLE, INVOCATION_TAG, NOTE_TAG, OWNER_HOST_TAG, OWNER_PID_TAG
from charrnn.tags import GRID_ROLE as ROLE_GRID
from charrnn.tags import RUN_ROLE as ROLE_RUN
from charrnn.tracking.failures import StoreError
from charrnn.paths import results_dir
from charrnn.tracking.run_handle import RunHandle, now_ms
from charrnn.tracking.store import StoredRun, Tracker
from charrnn.grid.summary import grid_summary, log_corpora

HOST = socket.gethostname()
OWNER_HOST, OWNER_PID, INVOCATION = OWNER_HOST_TAG, OWNER_PID_TAG, INVOCATION_TAG
NEW, RESUME, SKIP = "new", "resume", "skip"
FINISHED, FAILED, SKIPPED = "finished", "failed", "skipped"   # what this invocation did per spec
UNTRAINED = "untrained"   # a spec the invocation stopped before (summary only, not a SpecResult)


def stale_after_ms() -> float:
    return 1000 * float(os.environ.get("CHARRNN_STALE_AFTER_S", "1800"))


@dataclass(frozen=True)
class Decision:
    action: str                       # new | resume | skip
    run: StoredRun | None = None      # the stored run it concerns
    note: str = ""


def decide(runs: list[StoredRun], rerun_failed: bool, since_ms: int,
           alive: Callable[[StoredRun], bool]) -> Decision:
    """What to do with one RunSpec, given the store's runs with its identity (oldest first).

    FINISHED anywhere → skip (naming the earliest FINISHED run, the one `results` keeps).
    No run → new. The latest run RUNNING → skip while `alive` says its
    owner lives, else resume it. Ended after `since_ms` (by a concurrent invocation) → skip.
    FAILED → resume unless `rerun_failed` is off; KILLED → resume.
    """
    finished = [r for r in runs if r.status == "FINISHED"]
    if finished:
        late = (finished[0].end_time or 0) >= since_ms
        return Decision(SKIP, finished[0], "FINISHED by another invocation" if late else "already FINISHED")
    if not runs:
        return Decision(NEW)
    latest = max(runs, key=lambda r: r.start_time)
    if latest.status == "RUNNING":
        if alive(latest):
            return Decision(SKIP, latest, f"RUNNING, owned by {_owner(latest)}")
        return Decision(RESUME, latest, "owner died")
    if (latest.end_time or 0) >= since_ms:
        return Decision(SKIP, latest, f"{latest.status} by another invocation")
    if latest.status == "FAILED" and not rerun_failed:
        return Decision(SKIP, latest, "FAILED earlier; not re-run (--no-rerun-failed)")
    return Decision(RESUME, latest, f"{latest.status} earlier")


def _owner(run: StoredRun) -> str:
    return f"pid {run.tag('owner_pid', '?')} on {run.tag('owner_host', '?')}"


def heartbeat_fresh(run: StoredRun) -> bool:
    beat = int(run.tags.get(HEARTBEAT_TAG) or run.start_time or 0)
    return now_ms() - beat < stale_after_ms()


def run_lock(grid_name: str, run: StoredRun) -> FileLock | None:
    """The lock that a live owner of `run` holds (None for runs this harness did not create)."""
    root = results_dir()
    owned_by = run.identity
    if run.tag("role") == ROLE_RUN and owned_by:
        return FileLock(lock_path(root, grid_name, owned_by))
    if run.tag("role") == ROLE_GRID and run.tag("invocation"):
        return FileLock(lock_path(root, grid_name, "invocations", run.tag("invocation")))
    return None


def owner_alive(grid_name: str, run: StoredRun) -> bool:
    """Without taking anything: is the owner of this RUNNING run alive? (used by --dry-run)"""
    if run.tag("owner_host") != HOST:
        return heartbeat_fresh(run)
    lock = run_lock(grid_name, run)
    return lock is not None and is_held(lock.path)


@dataclass(frozen=True)
class SpecResult:
    """What this invocation did with one RunSpec."""
    spec: RunSpec
    outcome: str                      # finished | skipped | failed
    run_id: str | None
    status: str                       # the run's status in the store
    final: dict[str, float] = field(default_factory=dict)
    note: str = ""
    times: dict[str, float] = field(default_factory=dict)   # time_<phase>_s of a trained run (charrnn.run.phases)


@dataclass
class Job:
    """A claimed RunSpec: its lock is held and its run is open, ready to train."""
    spec: RunSpec
    run: RunHandle
    resume: ResumePoint | None
    lock: FileLock
    note: str = ""
    open_s: float = 0.0               # seconds creating (or reopening) its run: the run's `open` phase

    @property
    def run_id(self) -> str:
        return self.run.run_id


class GridSession:
    """A grid invocation: reaps dead runs, owns the parent run, claims and records RunSpecs."""

    def __init__(self, tracker: Tracker, grid: Grid, profile: str, specs: tuple[RunSpec, ...],
                 executor: str = "local", rerun_failed: bool = True, progress: bool = True):
        self.tracker, self.grid, self.profile, self.specs = tracker, grid, profile, specs
        self.executor, self.rerun_failed = executor, rerun_failed
        self.invocation = uuid.uuid4().hex
        self.results: list[SpecResult] = []
        self.started = time.perf_counter()
        self.since_ms = 0
        self.parent: RunHandle | None = None
        self._deferred: list[RunSpec] = []
        self.notes: list[str] = []                   # what the summary adds (e.g. a tuning extension)
        self.timing: dict[str, float] = {}           # wall seconds per step (console.GRID_STEPS)
        self._lock = FileLock(lock_path(results_dir(), grid.name, "invocations", self.invocation))
        self._bar = tqdm(total=len(specs), desc=f"grid {grid.name} [{profile}]", unit="run",
                         disable=not progress, dynamic_ncols=True, position=0)

    # --- the invocation ---
    def __enter__(self) -> "GridSession":
        # the store and experiment exist before any worker; the UI shows the question and the first
        # claim's metric as the experiment's primary metric
        require_identity_tags(self.grid.name, self.tracker.runs(self.grid.name, {ROLE_TAG: ROLE_RUN}))
        claim = self.grid.claims[0] if self.grid.claims else None
        self.tracker.describe_experiment(self.grid.name, self.grid.question, claim and claim.metric,
                                         claim and claim.higher_is_better)
        self.reap()
        existing = self.tracker.runs(self.grid.name, {ROLE_TAG: ROLE_RUN})
        # preregistration: the claims as they stand before this grid's first run (kept once logged)
        self.tracker.preregister_claims(self.grid.name, {c.id: c.canonical_text() for c in self.grid.claims},
                                        len(existing))
        self.since_ms = now_ms()
        self._lock.acquire()
        return self

    def ensure_parent(self) -> RunHandle:
        """The invocation's parent run, started when the first RunSpec is opened to train: an
        invocation that trains nothing (every run already FINISHED) leaves no parent behind."""
        if self.parent is None:
            self.parent = self.tracker.start_run(
                self.grid.name, f"{self.profile} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                params={"profile": self.profile, "executor": self.executor, "runs": len(self.specs),
                        "order_seed": self.grid.order_seed},
                tags={ROLE_TAG: ROLE_GRID, **self._owner_tags(), TAG_PREFIX + "question": self.grid.question},
                system_metrics=self.executor != "local")
            self.parent.log_text(self.grid.text, GRID_ARTIFACT)
            log_corpora(self.parent, self.specs)
        return self.parent

    def __exit__(self, kind, exc, tb) -> None:
        self._bar.close()
        try:
            if self.parent is not None:
                counts = self.counts()
                self.parent.set_tags({TAG_PREFIX + k: v for k, v in counts.items()})
                if kind is None:
                    try:
                        self._log_summary(counts)
                    except Exception as err:  # the runs are stored; a summary bug must not leave the parent open
                        print(f"grid {self.grid.name}: parent run summary not logged: {err!r}", file=sys.stderr)
                self.parent.end(*self._parent_status(kind, exc, counts))
        except Exception:
            if kind is None:
                raise
            # already failing (the store, most likely): the error in flight is the one to report;
            # the next invocation reaps the parent left RUNNING
        finally:
            self._lock.release()
            self._lock.path.unlink(missing_ok=True)  # unique to this invocation

    def _log_summary(self, counts: dict[str, int]) -> None:
        """The parent's claim metrics, verdict tags, arms table and description; named for what it trained."""
        found = grid_summary(self.grid, self.profile, self.tracker, counts)
        self.parent.log_metrics(found.metrics, step=0)
        if found.arms:
            self.parent.log_table(found.arms, ARMS_TABLE)
        self.parent.set_tags({NOTE_TAG: found.note, **found.tags})
        self.notes += found.verdict_lines()          # the console shows the verdicts too
        trained = counts[FINISHED] + counts[FAILED]
        self.parent.rename(f"{self.profile}: {f'{trained} trained' if trained else 'nothing trained'}"
                           f" · {time.strftime('%Y-%m-%d %H:%M')}")

    @staticmethod
    def _parent_status(kind, exc, counts: dict[str, int]) -> tuple[str, str | None]:
        if kind is not None:
            interrupted = issubclass(kind, KeyboardInterrupt)
            return ("KILLED", "interrupted") if interrupted else ("FAILED", f"{kind.__name__}: {exc}"[:2000])
        if counts[FAILED]:
            return "FAILED", f"{counts[FAILED]} run(s) failed"
        return "FINISHED", None

    def _owner_tags(self) -> dict[str, str]:
        return {TAG_PREFIX + "grid": self.grid.name, TAG_PREFIX + "profile": self.profile,
                INVOCATION: self.invocation, OWNER_HOST: HOST, OWNER_PID: str(os.getpid())}

    def reap(self) -> list[str]:
        """Mark KILLED every RUNNING run (parent or child) of this grid whose owner is dead."""
        reaped = []
        for run in self.tracker.runs(self.grid.name):
            if run.status != "RUNNING" or (run.tag("owner_host") != HOST and heartbeat_fresh(run)):
                continue
            lock = run_lock(self.grid.name, run)
            if lock is None or not lock.acquire():
                continue
            try:
                if self.tracker.run(run.run_id).status == "RUNNING":
                    self.tracker.terminate(run.run_id, "KILLED", note=f"owner died ({_owner(run)})")
                    reaped.append(run.run_id)
            finally:
                lock.release()
        return reaped

    # --- RunSpecs ---
    def acquire(self, spec: RunSpec, wait: bool = False) -> Job | None:
        """Lock `spec` and open its run (new, or reopened to resume). None when there is nothing to
        train now: skipped (recorded), or locked by a live invocation (deferred; see take_deferred)."""
        lock = FileLock(lock_path(results_dir(), self.grid.name, spec.identity))
        if not lock.acquire(blocking=wait):
            self._deferred.append(spec)
            return None
        try:
            runs = self.stored_runs(spec)
            decision = decide(runs, self.rerun_failed, self.since_ms,
                              lambda r: r.tag("owner_host") != HOST and heartbeat_fresh(r))
            if decision.action == SKIP:
                lock.release()
                self._record(_skipped(spec, decision))
                return None
            return self._open(spec, decision, lock)
        except BaseException:
            lock.release()
            raise

    def stored_runs(self, spec: RunSpec) -> list[StoredRun]:
        """The store's runs of `spec`'s identity, read now, oldest first."""
        runs = self.tracker.runs(self.grid.name, {IDENTITY_TAG: spec.identity, ROLE_TAG: ROLE_RUN})
        return sorted(runs, key=lambda r: (r.start_time, r.run_id))

    def take_deferred(self) -> list[RunSpec]:
        """Specs another invocation held when acquired; acquire them again with wait=True."""
        deferred, self._deferred = self._deferred, []
        return deferred

    def _open(self, spec: RunSpec, decision: Decision, lock: FileLock) -> Job:
        tags = {ROLE_TAG: ROLE_RUN, IDENTITY_TAG: spec.identity, TAG_PREFIX + "variant": spec.variant,
                TAG_PREFIX + "varied": spec.varied_json, SPEED_TAG: self.speed_measurement(spec),
                **self._owner_tags()}
        local = self.executor == "local"
        parent = self.ensure_parent()
        started = time.perf_counter()
        if decision.action == NEW:
            run = self.tracker.start_run(self.grid.name, spec.run_name, params={}, tags=tags,
                                         parent_run_id=parent.run_id, system_metrics=local)
            log_corpora(run, [spec])                    # the runs table's Dataset column
            return _opened(Job(spec, run, None, lock), started)
        stored = decision.run
        if stored.status == "RUNNING":
            self.tracker.terminate(stored.run_id, "KILLED", note=f"owner died ({_owner(stored)})")
        resume = self.resume_point(stored.run_id)
        run = self.tracker.resume_run(stored.run_id, tags=tags, system_metrics=local)
        return _opened(Job(spec, run, resume, lock, decision.note), started)

    def resume_point(self, run_id: str) -> ResumePoint:
        """The run's last checkpoint (if any), its logged train losses (one per step) and the last
        step each metric reached the store at."""
        with tempfile.TemporaryDirectory(prefix="charrnn-resume-") as tmp:
            try:
                checkpoint = self.tracker.download(run_id, f"checkpoint/{CHECKPOINT_NAME}", tmp).read_bytes()
            except Exception:  # no checkpoint yet: start from step 0 in the same run
                checkpoint = None
        losses = {step: value for step, value, _ in self.tracker.metric_history(run_id, "train_loss")}
        logged = self.tracker.last_logged_steps(run_id)
        return ResumePoint(checkpoint, tuple(sorted(losses.items())), tuple(sorted(logged.items())))

    def finish(self, job: Job, outcome: RunOutcome) -> SpecResult:
        """Record a trained job and release its lock."""
        job.lock.release()
        failed = outcome.status != "FINISHED"
        note = outcome.failure if failed else job.note
        if job.resume is not None and not failed:
            note = f"{job.note}; resumed from step {outcome.start_step}"
        times = {**outcome.times, phase_metric(OPENING): job.open_s} if outcome.times else {}
        result = SpecResult(job.spec, FAILED if failed else FINISHED, job.run_id, outcome.status,
                            outcome.final, note or "", times)
        self._record(result)
        return result

    def abort(self, job: Job, status: str, reason: str) -> SpecResult:
        """End a job whose trainer never reported back (worker crash, interrupt, a store failure).
        Where the store refuses even that write, the job is still recorded and its lock released:
        its run stays RUNNING until the next invocation reaps it."""
        try:
            job.run.end(status, failure=reason)
        except Exception as exc:
            reason = f"{reason} (not recorded in the store: {type(exc).__name__})"
        return self.finish(job, RunOutcome(job.run_id, status, failure=reason))

    def _record(self, result: SpecResult) -> None:
        self.results.append(result)
        self._bar.set_postfix_str(f"{result.outcome} {result.spec.run_name}", refresh=False)
        self._bar.update(1)

    def add(self, specs: tuple[RunSpec, ...], note: str) -> None:
        """A further round of RunSpecs in this invocation (a tuning extension), with why."""
        self.specs = tuple(self.specs) + tuple(specs)
        self.notes.append(note)
        self._bar.total = len(self.specs)
        self._bar.refresh()

    def speed_measurement(self, spec: RunSpec) -> str:
        """How the executor runs `spec` beside others (the SPEED_TAG value; see SPEED_MEASUREMENTS)."""
        return EXCLUSIVE if spec.exclusive else SERIAL if self.executor == "local" else SHARED

    # --- summary ---
    def counts(self) -> dict[str, int]:
        return {k: sum(r.outcome == k for r in self.results) for k in (FINISHED, SKIPPED, FAILED)}

    def untrained(self) -> list[RunSpec]:
        """Specs this invocation recorded nothing for: it stopped before them."""
        done = {r.spec.identity for r in self.results}
        return [spec for spec in self.specs if spec.identity not in done]

    def ordered_results(self) -> list[SpecResult]:
        order = {spec.identity: i for i, spec in enumerate(self.specs)}
        return sorted(self.results, key=lambda r: order[r.spec.identity])

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started


def _opened(job: Job, started: float) -> Job:
    """`job` with its `open` seconds, buffered on its run as `time_open_s` (sent with its first flush)."""
    job.open_s = time.perf_counter() - started
    job.run.log_metrics({phase_metric(OPENING): job.open_s}, step=0)
    return job


def require_identity_tags(experiment: str, runs: list[StoredRun]) -> None:
    """Runs without the identity tag were written by an earlier release: the grid would not
    recognise them and train them again, so the store must be upgraded first."""
    untagged = [r.run_id for r in runs if r.identity is None]
    if untagged:
        raise ConfigError(f"experiment={experiment!r}: {len(untagged)} runs lack the {IDENTITY_TAG} tag "
                          "(written by an earlier release); valid: a store upgraded by `charrnn migrate --apply`")


class GridStopped(Exception):
    """The store failed mid-grid: `error` says how (one line); `session` holds the results so far."""

    def __init__(self, session: GridSession, error: StoreError):
        super().__init__(str(error))
        self.session, self.error = session, error


def _skipped(spec: RunSpec, decision: Decision) -> SpecResult:
    run = decision.run
    final = {k: v for k, v in run.metrics.items() if k.startswith("final_")} if run else {}
    return SpecResult(spec, SKIPPED, run.run_id if run else None, run.status if run else "",
                      final, decision.note)
