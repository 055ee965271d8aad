"""Kernel benchmark suite (pytest-benchmark), parametrised over the cases of one profile.

    charrnn bench --profile quick     # = make bench: this directory, timed (from any directory)
    pytest -q                         # = make test: every case once, untimed (--benchmark-disable)

Profiles (charrnn/bench/cases.py): `test` (default; tiny shapes, correctness only under make test's
--benchmark-disable), `quick` (CPU, a few shapes per cell), `sweep_hidden` (tokens/s against H),
`gpu` (the GPU proof at H512 B64 T100), `full` (the GPU grid). Backends that
cannot run on this device are skipped with the reason, and the reasons are written into the JSON
(`skipped`) so `charrnn bench-table` lists them.

Per case: build, time the first call (compile / graph capture: `compile_s`), assert equivalence
with `fused`, wait (bounded) for other processes to leave the CPUs idle, then time `rounds` calls
after warm-up with the device-synchronising timer; `fused` on the same weights and inputs runs
untimed by pytest-benchmark before every round and is timed here, giving `paired_ratio` (median)
and its quartiles. A `bwd` round times the backward alone: its forward runs in the round's setup.
"""
from __future__ import annotations

import os

import pytest

from charrnn import registry
from charrnn.bench import cases, workloads

SKIPPED: list[dict[str, str]] = []  # {"name", "reason"} of every skipped benchmark this session
QUIET = [0.0]                       # seconds spent this session waiting for an idle machine


def pytest_addoption(parser):
    parser.addoption("--bench-profile", default="test", choices=tuple(cases.PROFILES),
                     help="benchmark profile: test (tiny, correctness), quick (CPU), full (GPU grid)")


def _profile_name(config) -> str:
    # Registered only when this directory is on the command line; `pytest -q` gets the default.
    return config.getoption("bench_profile", default="test")


def _slow_if_compiling(case) -> pytest.MarkDecorator | tuple:
    """A compiling backend's first call compiles (seconds per case): `make test` leaves it to `make test-all`;
    a backend with a build check (the C++ extension, built once per machine and cached) stays in `make test`."""
    compiling = case.backend in cases.COMPILING and not registry.BACKENDS[case.backend].support
    return pytest.mark.slow if compiling else ()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: cases `make test` leaves to `make test-all` (seconds of compilation)")


def pytest_generate_tests(metafunc):
    profile = cases.PROFILES[_profile_name(metafunc.config)]
    if "case" in metafunc.fixturenames:
        metafunc.parametrize("case", [pytest.param(c, id=c.id, marks=_slow_if_compiling(c)) for c in profile.cases()])
    if "train_case" in metafunc.fixturenames:
        metafunc.parametrize("train_case", profile.train_cases(), ids=lambda c: c.id)


def pytest_collection_modifyitems(config, items):
    """Profiles that do not time the harness (harness_rounds == 0) deselect its benchmark."""
    if cases.PROFILES[_profile_name(config)].harness_rounds:
        return
    harness = [item for item in items if "test_harness_overhead" in item.nodeid]
    if harness:
        config.hook.pytest_deselected(items=harness)
        items[:] = [item for item in items if item not in harness]


@pytest.fixture(scope="session")
def profile_name(request) -> str:
    return _profile_name(request.config)


@pytest.fixture(scope="session")
def profile(profile_name) -> cases.Profile:
    return cases.PROFILES[profile_name]


@pytest.fixture(scope="session")
def device():
    return workloads.bench_device()


def pytest_runtest_logreport(report):
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2].removeprefix("Skipped: ")
        SKIPPED.append({"name": report.nodeid.split("::")[-1], "reason": reason})


def pytest_benchmark_update_machine_info(config, machine_info):
    device = workloads.bench_device()
    machine_info["charrnn"] = {"profile": _profile_name(config), "device": device.type,
                               "device_name": workloads.device_name(device), **workloads.versions(),
                               "loadavg_1m": os.getloadavg()[0], "cpu_capability": workloads.cpu_capability()}


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["skipped"] = SKIPPED


@pytest.fixture
def quiet(profile):
    """quiet() → {"quiet_wait_s", "cpu_busy_before"}: wait for other processes to leave the CPUs
    idle, within the profile's per-case and per-session limits (no wait when benchmarks are off)."""
    def wait() -> dict:
        if not profile.quiet_wait_s:
            return {}
        waited, busy = workloads.wait_for_quiet(max(0.0, min(profile.quiet_wait_s, profile.quiet_budget_s - QUIET[0])))
        QUIET[0] += waited
        return {"quiet_wait_s": waited, "cpu_busy_before": busy}
    return wait


@pytest.fixture
def run_case(benchmark, device, profile, quiet):
    """run_case(case): skip with the reason when the backend cannot run here; otherwise build, time
    the first call (compilation), assert equivalence with `fused`, then time steady state."""
    return lambda case: _run_case(benchmark, case, device, profile, quiet)


def _run_case(benchmark, case: cases.Case, device, profile: cases.Profile, quiet) -> None:
    reason = workloads.skip_reason(case.backend, device)
    if reason:
        pytest.skip(reason)
    prep = workloads.prepare(case, device, reset_compiled=not benchmark.disabled)
    benchmark.group = case.shape
    benchmark.extra_info.update(prep.info)
    if benchmark.disabled:  # make test: correctness only, one untimed call
        benchmark.pedantic(prep.work.run)
        return
    fused_s: list[float] = []  # `fused` timed just before every round of this backend

    def setup() -> None:
        if prep.paired is not None:
            fused_s.append(prep.paired.timed_call())
        if case.direction == "bwd":  # the forward whose backward the round times
            prep.work.forward_for_backward()

    benchmark.extra_info.update(quiet())
    rounds = profile.rounds(prep.work.timed_call())
    benchmark.pedantic(prep.work.run, setup=setup, rounds=rounds, warmup_rounds=profile.warmup_rounds)
    timed = fused_s[profile.warmup_rounds:]
    benchmark.extra_info.update(workloads.paired_info(benchmark.stats.stats.data, timed),
                                loadavg_end=os.getloadavg()[0])
