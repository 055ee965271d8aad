"""Grid files (`ablations/*.yaml`): load, validate against the TrainConfig schema, expand to RunSpecs.

A resolved config is built in this order, later layers winning:
TrainConfig defaults < `task` < `fixed` < the chosen profile < the variant's `axes`/`zip` values
< the `tune` values < seed.
`tune: {KEY: [v1, v2, v3, ...]}` declares nuisance parameters: every (variant, seed) trains once per
combination of tuned values; `charrnn.science.tuning` then selects one run per (variant, seed) on val.
The block and `tune_bounds` are parsed by `charrnn.science.tune_space` (also for the stored grid.yaml).
`order_seed` (default 0) draws the order runs execute in (`charrnn.grid.order`).
A profile's `tune_seeds: k` tunes on its first k seeds; each other seed trains once, at its arm's
choice (`judging_specs`, planned by `charrnn.grid.extend.judging_round`).
Every key and value is checked (each on its own, then every resolved config of every profile)
before anything runs; a problem is a `GridError`, one line naming the file, the key, the bad value
and the valid choices. Importing this module pulls in neither torch nor MLflow.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from charrnn import registry
from charrnn.grid import rounds, strict_yaml
from charrnn.grid.rounds import PROFILE_KEYS
from charrnn.science.claims import Claim, Pairs, parse_claims
from charrnn.science.tune_space import CHOICES, TuneSpace, parse_tune, speed_only, timed_by
from charrnn.config import ConfigError, TrainConfig, check_value, format_value, make_config, short_repr
from charrnn.paths import NAME_RULE, valid_name

TOP_KEYS = {"name": True, "question": True, "claims": False, "task": True,
            "fixed": False, "axes": False, "zip": False, "seeds": True, "profiles": True,
            "tune": False, "tune_bounds": False, "order_seed": False}  # key -> required
REQUIRED_PROFILES = ("quick", "full")
MAX_FILE_BYTES = 1_000_000   # a grid file (the shipped ones are under 5 kB)
MAX_SEEDS = 1_000             # seeds of one profile
MAX_RUNS = 10_000             # runs of one profile: variants x tuned combinations x seeds
MAX_CLAIM_TEXT = 20_000       # a claim's canonical text: the store keeps it as one experiment tag
NOT_VARIABLE = {"seed": "list seeds under the top-level `seeds`",
                "task": "set the task with the top-level `task`"}


class GridError(ConfigError):
    """A malformed grid file. One line: file, key, bad value, valid choices."""


def variant_name(varied: Pairs) -> str:
    return ",".join(f"{key}={format_value(value)}" for key, value in varied)


def run_name(varied: Pairs, seed: int) -> str:
    return ",".join(filter(None, [variant_name(varied), f"seed={seed}"]))


@dataclass(frozen=True)
class RunSpec:
    """One (variant, seed) of a grid: the fully resolved config and what the grid varied."""
    config: TrainConfig
    varied: Pairs              # the axes/zip values of this variant, in file order
    grid: str
    profile: str
    tuned: Pairs = ()          # this run's values of the grid's `tune` keys (a nuisance, not an arm)
    exclusive: bool = False    # a claim of its grid measures speed: it trains with nothing beside it

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def identity(self) -> str:
        """The stable identity of its config (`TrainConfig.identity_hash`): what the store is
        searched by, what a lock is named after, what `results` keeps one FINISHED run of."""
        return self.config.identity_hash()

    @property
    def variant(self) -> str:
        """`input_combine=concat` (empty for a grid without axes)."""
        return variant_name(self.varied)

    @property
    def arm(self) -> str:
        """What a seed block holds once: the variant and its tuned values (`cell=gru,lr=0.003`)."""
        return variant_name(self.varied + self.tuned)

    @property
    def run_name(self) -> str:
        """`input_combine=concat,seed=1` (`input_combine=concat,lr=0.003,seed=1` when tuned): the MLflow run name."""
        return run_name(self.varied + self.tuned, self.seed)

    @property
    def varied_json(self) -> str:
        """The varied values as a JSON object (the `charrnn.varied` tag)."""
        return json.dumps(dict(self.varied))


@dataclass(frozen=True)
class Grid:
    path: str
    text: str                  # the file's content, logged with every invocation
    name: str                  # MLflow experiment
    question: str
    task: str
    claims: tuple[Claim, ...]
    fixed: Pairs
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    zipped: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    profiles: tuple[tuple[str, Pairs], ...]
    profile_seeds: tuple[tuple[str, tuple[int, ...]], ...] = ()  # profiles with their own `seeds`
    profile_tune_seeds: tuple[tuple[str, int], ...] = ()          # profiles that tune on their first k seeds
    profile_judge_steps: tuple[tuple[str, int], ...] = ()         # profiles judging at a longer step cap
    tune: tuple[tuple[str, tuple[Any, ...]], ...] = ()             # nuisance key -> values to try
    tune_bounds: tuple[tuple[str, tuple[Any, Any]], ...] = ()      # tuned key -> (lo, hi) it may grow to
    order_seed: int = 0                                             # draws the execution order
    tune_choice: str = CHOICES[0]                                   # a tuned value per arm, or per seed
    tune_grown: tuple[tuple[str, tuple[tuple[str, tuple[Any, ...]], ...]], ...] = ()  # variant -> key -> extension

    @property
    def tune_space(self) -> TuneSpace:
        """`tune`, `tune_bounds` and `tune_choice` as the tune space selection reads."""
        return TuneSpace(dict(self.tune), dict(self.tune_bounds), self.tune_choice)

    @property
    def measures_speed(self) -> bool:
        """Some claim judges a speed metric: the runs it judges train alone (see RunSpec.exclusive)."""
        return any(registry.METRICS[c.metric].speed for c in self.claims)

    def times(self, varied: Pairs) -> bool:
        """A speed claim's `where` holds for this variant: its runs train with nothing beside them.
        Every value of the claim's axis counts, not only its two arms: the page's speed sweep
        reads them all. Other variants of the grid train as usual."""
        return timed_by(self.claims, dict(varied))

    def arm_tune(self, varied: Pairs) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """The tuned values this variant tries: the grid's, then its own extensions (`extend.grow`)."""
        grown = dict(dict(self.tune_grown).get(variant_name(varied), ()))
        return tuple((key, (*values, *grown.get(key, ()))) for key, values in self.tune)

    def with_seeds(self, profile: str, seeds: tuple[int, ...]) -> "Grid":
        """The same grid with `profile` running `seeds` (sequential seeding adds seeds this way)."""
        others = tuple((p, s) for p, s in self.profile_seeds if p != profile)
        return replace(self, profile_seeds=others + ((profile, tuple(seeds)),))

    def seeds_of(self, profile: str) -> tuple[int, ...]:
        """The profile's own `seeds` list when it has one (e.g. more seeds in `full`), else `seeds`."""
        return dict(self.profile_seeds).get(profile, self.seeds)

    def tune_seeds_of(self, profile: str) -> tuple[int, ...]:
        """The seeds of `profile` that train every tuned combination: its first `tune_seeds`, else all."""
        seeds = self.seeds_of(profile)
        k = dict(self.profile_tune_seeds).get(profile)
        return seeds[:k] if self.tune and k else seeds

    def steps_of(self, profile: str) -> int:
        """The step cap of `profile`'s runs (of its first run: `steps` is fixed unless an axis varies it)."""
        return self._spec(profile, self.variants()[0], self.tunings()[0], self.seeds_of(profile)[0]).config.steps

    def judge_steps_of(self, profile: str) -> int | None:
        """The judging round's step cap where `profile` sets `judge_steps` (see `rounds`), else None."""
        return dict(self.profile_judge_steps).get(profile)

    def judging_seeds_of(self, profile: str) -> tuple[int, ...]:
        """The seeds of `profile` that did not tune (each trains once, at its arm's choice); () without tune_seeds."""
        tuning = self.tune_seeds_of(profile)
        return tuple(s for s in self.seeds_of(profile) if s not in tuning)

    def judged_seeds_of(self, profile: str) -> tuple[int, ...]:
        """The seeds claims are judged on: under `judge_steps` those that did not tune, else all."""
        return self.judging_seeds_of(profile) if self.judge_steps_of(profile) else self.seeds_of(profile)

    def judges_after_tuning(self, profile: str) -> bool:
        """Some seed of `profile` trains only at its arm's chosen values (a judging round follows tuning)."""
        return bool(self.judging_seeds_of(profile))

    @property
    def profile_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.profiles)

    def variants(self) -> list[Pairs]:
        """Every variant: the cartesian product of `axes`, times the rows of `zip`."""
        zip_rows = [tuple(zip((k for k, _ in self.zipped), row))
                    for row in zip(*(values for _, values in self.zipped))] or [()]
        axis_rows = itertools.product(*([(key, v) for v in values] for key, values in self.axes))
        return [tuple(a) + z for a in axis_rows for z in zip_rows]

    def tunings(self, varied: Pairs | None = None) -> list[Pairs]:
        """Every combination of the variant's tuned values (`arm_tune`; the grid's `tune` without a
        variant), in file order ([()] without `tune`); for a variant only speed claims judge
        (`tune_space.speed_only`), the first alone: an extension appends values, so it stays the
        same combination."""
        tune = self.arm_tune(varied) if varied is not None else self.tune
        rows = [tuple(row) for row in itertools.product(*([(k, v) for v in vs] for k, vs in tune))]
        return rows[:1] if varied is not None and speed_only(self.claims, dict(varied)) else rows

    def expand(self, profile: str) -> tuple[RunSpec, ...]:
        """The RunSpecs of `profile`: every variant × its tuned combinations × tuning seed, as frozen configs."""
        return tuple(self._spec(profile, varied, tuned, seed) for varied in self.variants()
                     for tuned in self.tunings(varied) for seed in self.tune_seeds_of(profile))

    def judging_specs(self, profile: str, choices: dict[str, Pairs]) -> tuple[RunSpec, ...]:
        """The RunSpecs of the seeds that did not tune, each variant at `choices[variant name]` (or none),
        to the profile's `judge_steps` where it sets one."""
        cap = self.judge_steps_of(profile)
        return tuple(self._spec(profile, varied, choices[variant_name(varied)], seed, cap)
                     for varied in self.variants() if variant_name(varied) in choices
                     for seed in self.judging_seeds_of(profile))

    def _spec(self, profile: str, varied: Pairs, tuned: Pairs, seed: int, steps: int | None = None) -> RunSpec:
        """One resolved RunSpec; `steps`, where given, replaces the profile's cap (a `judge_steps` run)."""
        overrides = dict(self.profiles).get(profile)
        if overrides is None:
            raise GridError(f"{self.path}: profile {profile!r}: unknown profile; "
                            f"valid: {', '.join(self.profile_names)}")
        try:
            cfg = make_config({"task": self.task, **dict(self.fixed), **dict(overrides), **dict(varied),
                               **dict(tuned), **({"steps": steps} if steps else {}), "seed": seed})
        except ConfigError as err:
            raise GridError(f"{self.path}: profile {profile}, run {run_name(varied + tuned, seed)}: {err}") from None
        return RunSpec(cfg, varied, self.name, profile, tuned, self.times(varied))


# ------------------------------------------------------------------------------------ loading


class _Checker:
    """Validation of one file's parsed content; every error is prefixed with the file name."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, where: str, message: str) -> GridError:
        return GridError(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")

    def mapping(self, value: Any, where: str, allow_none: bool = True) -> dict[str, Any]:
        if value is None and allow_none:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, f"{short_repr(value)}: expected a mapping of key: value")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"{short_repr(value)}: expected a non-empty string")
        return value.strip()

    def keys(self, data: dict[str, Any], spec: dict[str, bool], where: str) -> None:
        for key in data:
            if key not in spec:
                raise self.fail(where, f"unknown key {key!r}; valid keys: {', '.join(spec)}")
        for key, required in spec.items():
            if required and key not in data:
                raise self.fail(where, f"missing required key {key!r}")

    def value(self, key: Any, raw: Any, where: str) -> Any:
        """One config key/value checked alone (type, choice, range)."""
        if not isinstance(key, str):
            raise self.fail(where, f"key {key!r}: expected a config key name")
        try:
            return check_value(key, raw)
        except ConfigError as err:
            raise self.fail(where, str(err)) from None

    def overrides(self, raw: Any, where: str, forbidden: dict[str, str]) -> Pairs:
        """A block of config keys (`fixed`, a profile)."""
        pairs = []
        for key, value in self.mapping(raw, where).items():
            if key in forbidden:
                raise self.fail(f"{where}.{key}", f"{key} cannot be set here; {forbidden[key]}")
            pairs.append((key, self.value(key, value, where)))
        return tuple(pairs)

    def value_lists(self, raw: Any, where: str, forbidden: dict[str, str],
                    distinct: bool = True) -> tuple[tuple[str, tuple], ...]:
        """`axes` / `zip`: key -> non-empty list of valid values, distinct unless `distinct` is False
        (a zip key may repeat a value: its rows, not its lists, must differ)."""
        out = []
        for key, values in self.mapping(raw, where).items():
            if key in forbidden:
                raise self.fail(f"{where}.{key}", f"{key} cannot vary here; {forbidden[key]}")
            if not isinstance(values, list):
                raise self.fail(f"{where}.{key}", f"{short_repr(values)}: expected a list of values, "
                                                  f"e.g. {key}: [a, b]")
            if not values:
                raise self.fail(f"{where}.{key}", "empty axis; valid: a list of one or more values")
            coerced = tuple(self.value(key, v, where) for v in values)
            if distinct and len(set(coerced)) != len(coerced):
                raise self.fail(f"{where}.{key}", f"{values!r}: repeated value; valid: distinct values")
            out.append((key, coerced))
        return tuple(out)

    def seeds(self, raw: Any) -> tuple[int, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.fail("seeds", f"{short_repr(raw)}: expected a non-empty list of integers, e.g. [0, 1, 2]")
        if len(raw) > MAX_SEEDS:
            raise self.fail("seeds", f"{len(raw)} seeds; valid: at most {MAX_SEEDS}")
        seeds = tuple(self.value("seed", s, "seeds") for s in raw)
        if len(set(seeds)) != len(seeds):
            raise self.fail("seeds", f"{raw!r}: repeated seed; valid: distinct integers")
        return seeds

    def profile_seeds(self, raw: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Profiles that list their own `seeds` (a profile block's only non-config key)."""
        data = self.mapping(raw, "profiles", allow_none=False)
        return tuple((name, self.seeds(block["seeds"])) for name, block in data.items()
                     if isinstance(block, dict) and "seeds" in block)

    def profiles(self, raw: Any, varied: set[str]) -> tuple[tuple[str, Pairs], ...]:
        data = self.mapping(raw, "profiles", allow_none=False)
        for name in REQUIRED_PROFILES:
            if name not in data:
                raise self.fail("profiles", f"missing profile {name!r}; every grid defines "
                                            f"{' and '.join(REQUIRED_PROFILES)}")
        out = []
        for name, block in data.items():
            if not isinstance(name, str) or not valid_name(name):
                raise self.fail("profiles", f"profile name {name!r}: valid: {NAME_RULE}")
            forbidden = {"seed": NOT_VARIABLE["seed"],
                         **{k: f"{k} is varied by the grid" for k in varied}}
            block = {k: v for k, v in block.items() if k not in PROFILE_KEYS} if isinstance(block, dict) else block
            out.append((name, self.overrides(block, f"profiles.{name}", forbidden)))
        return tuple(out)

    def tune(self, data: dict[str, Any], forbidden: dict[str, str]) -> TuneSpace:
        """`tune` and `tune_bounds`, parsed by the one tune parser (`science.tune_space`)."""
        try:
            return parse_tune(data.get("tune"), data.get("tune_bounds"), forbidden)
        except ConfigError as err:
            raise self.fail("", str(err)) from None

    def order_seed(self, raw: Any) -> int:
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
            raise self.fail("order_seed", f"{short_repr(raw)}: expected an integer >= 0")
        return raw

    def claims(self, data: dict[str, Any], lists: dict[str, tuple]) -> tuple[Claim, ...]:
        try:
            return parse_claims(data, lists)
        except ConfigError as err:
            raise self.fail("", str(err)) from None


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise GridError(f"{path}: a grid file of {size} bytes; valid: at most {MAX_FILE_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        found = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        valid = f"; valid: {', '.join(found)}" if found else ""
        raise GridError(f"{path}: grid file not found{valid}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise GridError(f"{path}: cannot read the grid file ({err}); valid: a UTF-8 YAML file") from None


def _parse(path: Path, text: str) -> Any:
    try:
        return strict_yaml.load(text)
    except strict_yaml.StrictYAMLError as err:
        raise GridError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise GridError(f"{path}: YAML syntax error{where}: {problem}") from None


def _lengths_match(check: _Checker, zipped: tuple[tuple[str, tuple], ...]) -> None:
    lengths = {key: len(values) for key, values in zipped}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise check.fail("zip", f"lists of unequal length ({detail}); valid: every zip list has the "
                                "same length")
    rows = list(zip(*(values for _, values in zipped)))
    repeated = next((i for i, row in enumerate(rows) if row in rows[:i]), None)
    if repeated is not None:
        raise check.fail("zip", f"row {repeated + 1} {dict(zip((k for k, _ in zipped), rows[repeated]))} repeats "
                                f"row {rows.index(rows[repeated]) + 1}; valid: distinct rows")


def _size_within_bounds(check: _Checker, grid: Grid) -> None:
    """Each profile's run count, counted without listing the runs, is at most MAX_RUNS."""
    variants = math.prod(len(values) for _, values in grid.axes) * (len(grid.zipped[0][1]) if grid.zipped else 1)
    tunings = math.prod(len(values) for _, values in grid.tune)
    for profile in grid.profile_names:
        runs = variants * tunings * len(grid.seeds_of(profile))
        if runs > MAX_RUNS:
            raise check.fail(f"profile {profile}", f"{runs} runs ({variants} variant(s) x {tunings} tuned "
                                                   f"combination(s) x {len(grid.seeds_of(profile))} seed(s)); "
                                                   f"valid: at most {MAX_RUNS} runs per profile")


def load_grid(path: str | Path) -> Grid:
    """Read, validate and freeze a grid file; every profile's every RunSpec is resolved once to
    prove the file is valid. Raises GridError (one line) on any problem."""
    path = Path(path)
    text = _read(path)
    check = _Checker(str(path))
    data = check.mapping(_parse(path, text), "", allow_none=False)
    check.keys(data, TOP_KEYS, "top level")
    name = check.text(data["name"], "name")
    if not valid_name(name):
        raise check.fail("name", f"{name!r}: valid: {NAME_RULE}")
    task = check.value("task", data["task"], "task")
    fixed = check.overrides(data.get("fixed"), "fixed", NOT_VARIABLE)
    fixed_note = {k: f"{k} is already in fixed" for k, _ in fixed}
    axes = check.value_lists(data.get("axes"), "axes", {**NOT_VARIABLE, **fixed_note})
    in_axes = {k: f"{k} is already an axis" for k, _ in axes}
    zipped = check.value_lists(data.get("zip"), "zip", {**NOT_VARIABLE, **fixed_note, **in_axes}, distinct=False)
    _lengths_match(check, zipped)
    in_zip = {k: f"{k} is already in zip" for k, _ in zipped}
    space = check.tune(data, {**NOT_VARIABLE, **fixed_note, **in_axes, **in_zip})
    tune = tuple((key, tuple(values)) for key, values in space.items())
    lists = dict(axes + zipped)
    seeds, profile_seeds = check.seeds(data["seeds"]), check.profile_seeds(data["profiles"])
    grid = Grid(path=str(path), text=text, name=name, question=check.text(data["question"], "question"),
                task=task, claims=check.claims(data, lists), fixed=fixed, axes=axes,
                zipped=zipped, seeds=seeds,
                profiles=check.profiles(data["profiles"], set(lists) | {k for k, _ in tune}),
                profile_seeds=profile_seeds, tune=tune,
                tune_bounds=tuple(space.bounds.items()), tune_choice=space.choice,
                order_seed=check.order_seed(data.get("order_seed", 0)))
    profiles = check.mapping(data["profiles"], "profiles", allow_none=False)
    grid = replace(grid, profile_tune_seeds=rounds.tune_seeds(profiles, grid.seeds_of, check.fail))
    grid = replace(grid, profile_judge_steps=rounds.judge_steps(profiles, grid.steps_of, dict(grid.profile_tune_seeds),
                                                                grid.seeds_of, check.fail))
    _size_within_bounds(check, grid)
    rounds.check_tune_seeds_apply(grid, check.fail)
    for claim in grid.claims:
        if len(claim.canonical_text()) > MAX_CLAIM_TEXT:
            raise check.fail(f"claim {claim.id[:60]}", f"{len(claim.canonical_text())} characters in all; valid: "
                                                        f"at most {MAX_CLAIM_TEXT}")
    for profile in grid.profile_names:
        grid.expand(profile)
    return grid



def grids_with_profile(profile: str, paths: list[str]) -> list[str]:
    """The grid files among `paths` that define `profile` (a suite runs the grids that have it)."""
    return [p for p in paths if profile in load_grid(p).profile_names]


if __name__ == "__main__":   # make ablations: python -m charrnn.grid.spec PROFILE FILE... prints those that define it
    import sys
    print(" ".join(grids_with_profile(sys.argv[1], sys.argv[2:])))
