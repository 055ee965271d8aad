"""Where a run's wall time goes: exclusive phase seconds (`charrnn.run.phases`), logged by every grid
run as `time_<phase>_s`, printed at the end of `charrnn grid`, summed per grid by the times file."""
from __future__ import annotations

import importlib.metadata
from types import SimpleNamespace

import pandas as pd
import pytest
from grid_support import TINY_FIXED, children, empty_store_db, runs_of, store, write_grid  # noqa: F401

import charrnn.run.phases as phases
from charrnn import provenance
from charrnn.cli import main
from charrnn.grid.console import time_split_text
from charrnn.grid.suite_times import split_line, suite_times
from charrnn.run.phases import PhaseClock, TimedSink
from charrnn.science.results import runs_frame
from charrnn.tags import RUN_PHASES, TIME_METRICS


class FakeTime:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(phases.time, "perf_counter", fake)
    return fake


def test_time_is_charged_to_the_innermost_phase_so_phases_never_overlap(ticks):
    clock = PhaseClock()
    ticks.now += 1                         # outside any phase: other
    with clock.phase("train"):
        ticks.now += 10
        with clock.phase("eval"):
            ticks.now += 2
            with clock.phase("mlflow"):
                ticks.now += 0.5
            ticks.now += 1
        with clock.phase("checkpoint"):
            ticks.now += 0.25
        ticks.now += 3
    clock.add("startup", 4)                # measured before the clock started (a Ray worker's imports)
    ticks.now += 0.125
    found = clock.metrics()
    assert found == {"time_startup_s": 4, "time_setup_s": 0, "time_provenance_s": 0, "time_mlflow_s": 0.5,
                     "time_train_s": 13, "time_eval_s": 3, "time_checkpoint_s": 0.25, "time_outputs_s": 0,
                     "time_other_s": 1.125}
    assert sum(found.values()) - 4 == ticks.now - 100      # the clock's span, each second once
    assert "time_open_s" not in found                      # the session logs `open` itself


def test_a_timed_sink_charges_every_call_to_mlflow_and_passes_attributes_through(ticks):
    class Sink:
        run_id = "r1"

        def log_metrics(self, metrics, step):
            ticks.now += 0.5
            return step

    clock = PhaseClock()
    sink = TimedSink(Sink(), clock)
    with clock.phase("train"):
        ticks.now += 2
        assert sink.log_metrics({"a": 1.0}, 7) == 7
    assert sink.run_id == "r1"
    assert clock.metrics()["time_mlflow_s"] == 0.5 and clock.metrics()["time_train_s"] == 2


def test_package_metadata_is_read_once_per_process(monkeypatch):
    provenance.pip_freeze.cache_clear()
    calls = []
    real = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: calls.append(1) or real())
    first = provenance.pip_freeze()
    assert provenance.pip_freeze() == first and len(calls) == 1
    provenance.pip_freeze.cache_clear()


T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def timed_run(start: float, end: float, **seconds) -> dict:
    return {"experiment": "tiny", "cell": "gru", "start_time": T0 + pd.Timedelta(seconds=start),
            "end_time": T0 + pd.Timedelta(seconds=end),
            **{f"time_{p}_s": seconds.get(p, 0.0) for p in RUN_PHASES}}


def test_the_times_file_splits_a_grid_into_phases_unaccounted_and_time_with_no_run_open():
    runs = pd.DataFrame([timed_run(0, 10, open=0.5, train=6, eval=1, mlflow=1, provenance=0.5, other=0.5),
                         timed_run(12, 20, train=5, eval=1, mlflow=0.5, checkpoint=0.5),
                         timed_run(21, 25, train=3, setup=0.5)])
    line = split_line(runs)
    assert line == ("                  phases, s summed over 3 runs' 22.0 s: open 0.5 (2 %), setup 0.5 (2 %), "
                    "provenance 0.5 (2 %), mlflow 1.5 (7 %), train 14.0 (64 %), eval 2.0 (9 %), checkpoint 0.5 (2 %), "
                    "other 0.5 (2 %), unaccounted 2.0 (9 %); no run open 3.0 s of the 25 s span; "
                    "outside training steps: 36 % of run time, 2.67 s per run")
    lines = suite_times(runs, {"tiny": None})
    assert lines[0].startswith("tiny") and lines[1] == line and lines[2].startswith("grids total")


def test_runs_that_recorded_no_phases_get_no_split_line_and_overlapping_runs_count_once_as_open():
    earlier = pd.DataFrame([{"experiment": "tiny", "start_time": T0, "end_time": T0 + pd.Timedelta(seconds=5)}])
    assert split_line(earlier) is None and len(suite_times(earlier, {"tiny": None})) == 2
    side_by_side = pd.DataFrame([timed_run(0, 10, train=9), timed_run(5, 12, train=6), timed_run(14, 15, train=1)])
    assert "no run open 2.0 s of the 15 s span" in split_line(side_by_side)   # 12 to 14


def test_the_grid_prints_its_steps_and_its_runs_phases_with_what_they_leave_unaccounted():
    times = {f"time_{p}_s": 0.0 for p in RUN_PHASES}
    runs = [SimpleNamespace(times={**times, "time_train_s": 3.0, "time_mlflow_s": 0.5, "time_open_s": 0.5}),
            SimpleNamespace(times={**times, "time_train_s": 2.0, "time_eval_s": 1.0}),
            SimpleNamespace(times={})]                                   # skipped: nothing trained
    session = SimpleNamespace(results=runs, timing={"process": 2.0, "plan": 1.0, "executor start": 0.0,
                                                    "store": 0.5, "runs": 8.0, "summary": 0.5, "executor stop": 0.0})
    assert time_split_text(session).splitlines() == [
        "time split: process 2.0 s, plan 1.0 s, executor start 0.0 s, store 0.5 s, runs 8.0 s, summary 0.5 s, "
        "executor stop 0.0 s = 12.0 s",
        "  2 trained runs' phases, summed: open 0.50 s (7 %), mlflow 0.50 s (7 %), train 5.00 s (71 %), "
        "eval 1.00 s (14 %) = 7.0 s",
        "  runs wall 8.0 s - phases 7.0 s = 1.0 s unaccounted (claiming specs, ending runs, between runs)",
        "  not training: 7.0 s of 12.0 s (58 %); per trained run 1.00 s of 3.50 s (29 %) outside its training steps"]
    session.timing["runs"] = 4.0                                         # two at a time: phases exceed the wall
    assert time_split_text(session).splitlines()[-1] == (
        "  outside the runs: 4.0 s of 8.0 s (50 %); per trained run 1.00 s of 3.50 s (29 %) outside its training steps")
    session.results = []
    assert time_split_text(session).count("\n") == 0


def test_every_grid_run_logs_its_phases_and_they_fit_in_its_wall_time(store, tmp_path, capsys):
    path = write_grid(tmp_path, axes={"cell": ["vanilla", "gru"]}, seeds=[0], claims=None,
                      fixed={**TINY_FIXED, "steps": 8, "eval_interval": 4})
    assert main(["grid", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "time split: process" in out and "2 trained runs' phases, summed: " in out and "not training:" in out
    kids = children(runs_of("tiny", store))
    assert len(kids) == 2
    for run in kids:
        assert set(TIME_METRICS) <= set(run.metrics)
        summed = sum(run.metrics[m] for m in TIME_METRICS)
        assert run.metrics["time_train_s"] > 0 and run.metrics["time_open_s"] > 0
        assert summed <= (run.end_time - run.start_time) / 1000 + 0.002   # MLflow keeps milliseconds
    frame = runs_frame("tiny").assign(experiment="tiny")
    assert set(TIME_METRICS) <= set(frame.columns)
    assert "phases, s summed over 2 runs'" in split_line(frame)
