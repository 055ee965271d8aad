"""`charrnn` command line. Flags and key=value pairs are parsed here and nowhere else."""
from __future__ import annotations

import argparse
from pathlib import Path
import os
import sys
import tempfile

from charrnn.config import FIELDS, ConfigError, make_config, parse_key_values
from charrnn.paths import NAME_RULE, valid_name

EXIT_BAD_INPUT = 2
EXIT_STORE_FAILED = 1
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad command-line usage: printed as one line, exit code 2."""


def checked_name(value: str, what: str) -> str:
    """An experiment or run name every verb accepts (it names files under the results directory)."""
    if not valid_name(value):
        raise UsageError(f"{what}={value!r}: valid: {NAME_RULE}")
    return value


def _print_outcome(outcome, uri: str) -> None:
    print(f"run_id: {outcome.run_id}")
    print(f"status: {outcome.status}")
    for key, value in sorted(outcome.final.items()):
        print(f"{key}: {value:.4f}")
    if outcome.failure:
        print(f"failure: {outcome.failure}")
    print(f"view it: make ui   (or: mlflow ui --backend-store-uri {uri})")


def cmd_train(args: argparse.Namespace) -> int:
    """One run: validate every key first, then train it into MLflow."""
    checked_name(args.experiment, "--experiment")
    cfg = make_config(parse_key_values(args.overrides))
    from charrnn.capabilities import check_device
    from charrnn.run.runner import run_one
    from charrnn.tracking.store import Tracker

    check_device(cfg)  # before the store exists
    tracker = Tracker()
    outcome = run_one(cfg, tracker, experiment=args.experiment, progress=not args.no_progress)
    _print_outcome(outcome, tracker.uri)
    return 0 if outcome.status == "FINISHED" else 1


def cmd_sample(args: argparse.Namespace) -> int:
    """Text from a checkpoint file (`*.pt`, needs nothing else) or from a run's checkpoint."""
    from charrnn.run.checkpoint import CheckpointError, read, rebuild
    from charrnn.run.sample import generate

    try:
        if args.run_id.endswith(".pt") or os.path.isfile(args.run_id):
            model, vocab, prime = rebuild(read(args.run_id), source=f"checkpoint={args.run_id!r}")
        else:
            model, vocab, prime = _run_model(checked_name(args.run_id, "run_id"))
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    prime = prime if args.prime is None else args.prime
    print(generate(model, vocab, prime, args.length, args.temperature, seed=args.seed))
    return 0


def _run_model(run_id: str):
    """(model, vocab, prime) of a run's last checkpoint."""
    from charrnn.run.checkpoint import read, rebuild
    from charrnn.tracking.store import Tracker, store_exists, tracking_uri
    from charrnn.run.outcome import CHECKPOINT_NAME

    if not store_exists():  # opening it would create an empty store
        raise UsageError(f"run_id={run_id!r}: no such run (no store at {tracking_uri(create=False)} yet); "
                         "valid: the id of a run that `charrnn train` or `charrnn grid` logged, or a CHECKPOINT.pt")
    tracker = Tracker()
    try:
        tracker.get_run(run_id)
    except Exception:
        raise UsageError(f"run_id={run_id!r}: no such run in {tracker.uri}") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = tracker.download(run_id, f"checkpoint/{CHECKPOINT_NAME}", tmp)
        except Exception:
            raise UsageError(f"run_id={run_id!r}: run has no checkpoint artifact") from None
        return rebuild(read(path), source=f"run_id={run_id!r}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1")
    return value


def cmd_grid(args: argparse.Namespace) -> int:
    """Train every RunSpec of each grid file not already FINISHED (or, with --dry-run, list them).
    Several files train one after another in this process, on one executor (one Ray for all of them),
    so the process, its imports and Ray start once; every file is checked before any run."""
    # Before torch loads (Ray workers inherit it): idle OpenMP threads sleep instead of spinning.
    # Measured on the 2-core machine: with any other busy process, spinning threads made a GRU-64
    # training step 3-5 s instead of 20-40 ms; on an idle machine sleeping costs up to ~3x on tiny
    # models. Bounded beats catastrophic for a grid; set OMP_WAIT_POLICY yourself to override.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from charrnn.grid.spec import load_grid

    grids = [(path, load_grid(path)) for path in args.file]
    for _, grid in grids:
        grid.expand(args.profile)   # an unknown profile or a bad value: exit 2 before any run
        if args.until_decided and grid.judges_after_tuning(args.profile):
            raise ConfigError(f"--until-decided: profile {args.profile} sets tune_seeds; valid: a profile whose "
                              "every seed tunes (each look's fresh seeds would choose their own values)")
    if len(grids) == 1 or args.dry_run:
        return max(_grid_command(grid, path, args) for path, grid in grids)
    from charrnn.grid.executors import shared_executor

    codes = []
    with shared_executor(args.executor, args.ray_address):
        for number, (path, grid) in enumerate(grids, 1):
            print(f"== {path} (grid {number} of {len(grids)})", flush=True)
            codes.append(_grid_command(grid, path, args))
    return max(codes)


def _grid_command(grid, path: str, args: argparse.Namespace) -> int:
    """`charrnn grid` for one loaded grid file: 0 when every run finished, 1 when one failed."""
    specs = grid.expand(args.profile)
    if args.dry_run:
        code = _dry_run(grid, args.profile, specs, args.rerun_failed)
        _print_if_any(decidability_text(grid, path, args.profile))
        return code
    if not args.until_decided and (done := _all_finished(grid, args.profile, specs)):
        print(done)
        return 0
    _print_if_any(decidability_text(grid, path, args.profile))
    from charrnn.grid.executors import run_grid
    from charrnn.grid.console import summary_text, time_split_text
    from charrnn.grid.session import FAILED, GridStopped

    def run_round(g):
        return run_grid(g, args.profile, executor=args.executor, max_parallel=args.max_parallel,
                        ray_address=args.ray_address, rerun_failed=args.rerun_failed,
                        progress=not args.no_progress, runs_per_gpu=args.runs_per_gpu)

    try:
        if args.until_decided:
            return _until_decided(grid, args, run_round)
        session = run_round(grid)
    except GridStopped as stop:  # the store failed: what was done so far, then its one line
        print(summary_text(stop.session))
        raise stop.error from None
    print(summary_text(session))
    print(time_split_text(session))
    print(f"view it: make ui   (or: mlflow ui --backend-store-uri {session.tracker.uri})")
    print(f"then open http://127.0.0.1:5000/{session.tracker.ui_path(grid.name)}  (its runs table)")
    return 1 if session.counts()[FAILED] or session.untrained() else 0


def _all_finished(grid, profile: str, specs) -> str | None:
    """When the store holds a FINISHED run of every RunSpec (and no tuning extension or judging
    round could add one), what a rerun prints; None otherwise. Reads the store only: neither torch nor the
    executors are loaded, so a rerun that trains nothing returns at once."""
    from charrnn.tags import ROLE_TAG, RUN_ROLE
    from charrnn.tracking.failures import store_error
    from charrnn.tracking.store import Tracker, store_exists

    if grid.tune_bounds or grid.judges_after_tuning(profile) or not specs or not store_exists():
        return None
    try:
        tracker = Tracker()
        runs = tracker.runs(grid.name, {ROLE_TAG: RUN_ROLE})
    except Exception as exc:   # a store that fails is the session's to report, with its run summary
        if store_error(exc) is None:
            raise
        return None
    finished = {r.identity for r in runs if r.status == "FINISHED"}
    if not all(spec.identity in finished for spec in specs):
        return None
    tracker.preregister_claims(grid.name, {c.id: c.canonical_text() for c in grid.claims}, len(runs))
    return (f"grid {grid.name} [{profile}]: {len(specs)} runs: 0 finished, {len(specs)} skipped, 0 failed: "
            "every run is already FINISHED in the store\nnothing to train: no new parent run (the grid's latest "
            f"parent run keeps its verdicts); `charrnn report {grid.name}` renders its page")


def _until_decided(grid, args: argparse.Namespace, run_round) -> int:
    """Rounds of seeds until every claim is decided (see charrnn.grid.sequential); the rule and the
    stopping reason are tagged on the last round's parent run."""
    from charrnn.science.results import runs_frame
    from charrnn.grid.sequential import summary, until_decided
    from charrnn.grid.console import summary_text
    from charrnn.grid.session import FAILED

    trackers = []

    def tracked_round(g):
        session = run_round(g)
        trackers.append(session.tracker)
        print(summary_text(session))
        return session

    def runs_of(g, seeds):
        frame = runs_frame(g.name, trackers[-1])
        return frame if frame.empty else frame[(frame["profile"] == args.profile) & frame["seed"].isin(seeds)]

    max_seeds = args.max_seeds or 2 * len(grid.seeds_of(args.profile))
    outcome = until_decided(grid, args.profile, max_seeds, tracked_round, runs_of)
    last = outcome.sessions[-1]
    last.ensure_parent().set_tags(outcome.tags())
    print(summary(outcome))
    return 1 if any(s.counts()[FAILED] for s in outcome.sessions) else 0


def _print_if_any(text: str) -> None:
    if text:
        print(text)


def decidability_text(grid, path: str, profile: str) -> str:
    """Each claim's decidability at the profile's seeds (charrnn.science.decidability), its Holm
    family counted over the suite: the claims judged in this profile by every grid in the file's
    folder (a grid there that does not load is left out and named)."""
    from charrnn.grid.spec import GridError, load_grid
    from charrnn.science import decidability

    folder = Path(path).resolve().parent
    claims, unreadable = [], []
    for other in sorted(folder.glob("*.yaml")):
        if other.resolve() == Path(path).resolve():
            claims += list(grid.claims)
            continue
        try:
            claims += list(load_grid(other).claims)
        except (GridError, OSError):
            unreadable.append(other.name)
    judged = [c for c in claims if c.judged_in(profile)]
    suite = f"the {profile} profile of the grids in {folder.name}/" + (
        f" (not loadable, left out: {', '.join(unreadable)})" if unreadable else "")
    mine = [c for c in grid.claims if c.judged_in(profile)]
    skipped = [c.id for c in grid.claims if not c.judged_in(profile)]
    text = decidability.report(mine, len(grid.judged_seeds_of(profile)), decidability.family_sizes(judged), suite)
    if skipped:
        text += f"\n  judged on other profiles only: {', '.join(skipped)}"
    return text


def _dry_run(grid, profile: str, specs, rerun_failed: bool) -> int:
    from charrnn.grid.console import plan_text
    from charrnn.tracking.store import Tracker, store_exists

    tracker = Tracker() if store_exists() else None
    print(plan_text(grid, profile, specs, tracker, rerun_failed))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from charrnn.science.results import export

    path = export(checked_name(args.experiment, "experiment"), args.format, args.out, curves=args.curves)
    print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """HTML reports: one page per experiment (default: all in the store), kernels page, index."""
    from charrnn.report.base import ReportError, reports_dir
    from charrnn.report.run import render_reports

    for name in args.experiments:
        checked_name(name, "experiment")
    try:
        pages = render_reports(args.experiments, args.out)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    for page in pages:
        print(f"{page.path}  ({page.seconds:.1f} s)  {page.line}")
    print(f"index: {reports_dir(args.out) / 'index.html'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """The kernel suite (charrnn/bench/timed) → results/benchmarks/*.json, a table, MLflow `kernels`."""
    from charrnn.bench.suite import run_bench

    return run_bench(args.profile, ["-k", args.select] if args.select else [], mlflow=not args.no_mlflow)


def cmd_bench_table(args: argparse.Namespace) -> int:
    from charrnn.bench.results import format_table, read_results

    print(format_table(read_results(args.file)))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Upgrade a store of an earlier release (identity tags, checkpoints, grid files)."""
    from charrnn.run.migrate import migrate

    return migrate(apply=args.apply)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="charrnn", description="RNN ablation and benchmark harness")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one run: charrnn train key=value ...",
                           description=f"Valid keys: {', '.join(FIELDS)}")
    train.add_argument("overrides", nargs="*", metavar="key=value")
    train.add_argument("--experiment", default="train", help="MLflow experiment (default: train)")
    train.add_argument("--no-progress", action="store_true", help="hide the tqdm bar")
    train.set_defaults(func=cmd_train)

    sample = sub.add_parser("sample", help="generate text from a run or a checkpoint file")
    sample.add_argument("run_id", help="RUN_ID or CHECKPOINT.pt (a file needs no MLflow store)")
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--length", type=int, default=300)
    sample.add_argument("--prime", default=None, help="text to start from (default: the task's)")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=cmd_sample)

    grid = sub.add_parser("grid", help="train ablation grids: every variant x seed of each YAML file",
                          description="Runs already FINISHED are skipped; KILLED/FAILED ones resume from "
                                      "their last checkpoint. Safe to re-run and to kill. Several files "
                                      "train one after another in one process, on one executor (one Ray).")
    grid.add_argument("file", nargs="+", help="grid file(s), e.g. ablations/smoke.yaml")
    grid.add_argument("--profile", default="quick", help="named overrides from the file (default: quick)")
    grid.add_argument("--executor", default="local", help="local (in this process) | ray (one task per run)")
    grid.add_argument("--max-parallel", type=_positive_int, default=None, metavar="N",
                      help="ray: runs at once (default: one per CPU, or per GPU when there are GPUs)")
    grid.add_argument("--runs-per-gpu", type=_positive_int, default=1, metavar="N",
                      help="ray: N runs share each GPU at once (each 1/N of it, its own CUDA stream; default 1)")
    grid.add_argument("--ray-address", default=None, help="join this Ray cluster (default: $RAY_ADDRESS, "
                                                           "else start a local one)")
    grid.add_argument("--dry-run", action="store_true", help="list the runs and their store status; "
                                                             "create nothing")
    grid.add_argument("--rerun-failed", action=argparse.BooleanOptionalAction, default=True,
                      help="re-run FAILED runs (default: yes)")
    grid.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    grid.add_argument("--until-decided", action="store_true",
                      help="add seeds (the next integers after the profile's) in rounds until every claim "
                           "is decided; each of the K planned looks is judged at alpha/K")
    grid.add_argument("--max-seeds", type=_positive_int, default=None, metavar="N",
                      help="--until-decided: at most N seeds per arm (default: twice the profile's)")
    grid.set_defaults(func=cmd_grid)

    export = sub.add_parser("export", help="an experiment as a table: one row per run (CSV or Parquet)")
    export.add_argument("experiment", help="MLflow experiment (a grid's name)")
    export.add_argument("--format", default="csv", help="csv | parquet (default: csv)")
    export.add_argument("--out", default=None, help="output file (default: results/EXPERIMENT.FORMAT)")
    export.add_argument("--curves", action="store_true", help="the long-form learning curves instead")
    export.set_defaults(func=cmd_export)

    report = sub.add_parser("report", help="HTML reports: one page per experiment, kernels, index",
                            description="Writes DIR/EXPERIMENT.html per experiment, DIR/kernels.html "
                                        "(when benchmark JSON exists) and DIR/index.html; each page is "
                                        "also logged to its grid's parent run.")
    report.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                        help="experiments to render (default: every experiment in the store)")
    report.add_argument("--out", default=None, metavar="DIR",
                        help="output directory (default: $CHARRNN_REPORTS_DIR or reports/)")
    report.set_defaults(func=cmd_report)
    bench = sub.add_parser("bench", help="kernel timing suite: every backend vs fused (pytest-benchmark)",
                           description="Runs the kernel suite shipped in the package (from any directory), writes "
                                       "results/benchmarks/<host>-<device>-<timestamp>.json, prints the "
                                       "table and logs one run to MLflow experiment `kernels`.")
    bench.add_argument("--profile", default="quick",
                       help="quick: CPU, a few shapes per cell (default) | sweep_hidden: tokens/s against "
                            "H | gpu: the GPU proof at H512 B64 T100 | full: the GPU grid | test: tiny "
                            "shapes, a check that the suite runs (its times mean little)")
    bench.add_argument("-k", dest="select", default=None, metavar="EXPR",
                       help="pytest -k expression: time part of the profile, e.g. 'gru and h512'")
    bench.add_argument("--no-mlflow", action="store_true", help="skip the MLflow run")
    bench.set_defaults(func=cmd_bench)

    bench_table = sub.add_parser("bench-table", help="median, IQR and speedup vs fused from a bench JSON")
    bench_table.add_argument("file", metavar="FILE.json")
    bench_table.set_defaults(func=cmd_bench_table)

    migrate = sub.add_parser("migrate", help="upgrade a store written by an earlier release (dry run unless --apply)",
                             description="Tags every training run with its identity, rewrites its checkpoint "
                                         "in the current format and its grid file with `claims:`. Prints the "
                                         "plan; writes it only with --apply. Running it again changes nothing.")
    migrate.add_argument("--apply", action="store_true", help="write the upgrade (default: only print it)")
    migrate.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UsageError) as exc:
        print(f"charrnn: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # runs in flight ended KILLED; the same command resumes them
        print("charrnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        error = _store_failure(exc)
        if error is None:
            raise
        print(f"charrnn: error: {error}", file=sys.stderr)
        return EXIT_STORE_FAILED


def _store_failure(exc: Exception) -> Exception | None:
    """`exc` as one line when the MLflow store (or the disk under it) failed, else None."""
    from charrnn.tracking.failures import StoreError, store_error

    return exc if isinstance(exc, StoreError) else store_error(exc)


if __name__ == "__main__":
    sys.exit(main())
