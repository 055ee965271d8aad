"""Claims: what a grid expects its runs to show, parsed once when the grid loads.

A grid lists them under `claims:`:

    claims:
      - id: gru_beats_vanilla              # optional; unique in the grid (default derived)
        source: "seed 001: 'gated cells learn faster'"   # the sentence it tests
        tests: source                      # required: source (what the source said) or
                                           # extrapolation (our setting beyond it)
        regime: "GPU, to convergence, 1-layer 256"  # required: the source's setting in a few words
        metric: val_loss                   # a claim metric of charrnn.registry
        expect: {cell: gru, better_than: vanilla}        # comparison
        # expect: {backend: fused, equivalent_to: loop}  # equivalence of two arms
        # expect: {better_than: 1.60}                    # threshold (a reference number)
        # expect: {equivalent_to: 1.60}                  # equals a reference number within ±margin
        # expect: {equivalent_to: {0: 1.8247, 1: 1.8224}}  # equals each seed's own reference value
        margin: 0.01                       # optional ROPE half-width, metric units
        at_least: 1.0                      # optional (comparisons): the effect size the source
                                           # claims; reproduced only beyond it, contradicted when
                                           # the whole interval falls short of it
        where: {layers: 4}                 # optional: judge only these runs
        higher_is_better: false            # optional; default from the registry
        requires: converged                # optional: converged (judged only on runs that stopped
                                           # by patience) or any; default converged for a source
                                           # claim on a trained model's quality, else any
        plan: {sd: 0.02, effect: 0.08}     # optional: planning sd of the per-seed difference and
                                           # the effect the design should decide (decidability)
        profiles: [gpu]                    # optional: judged only on these profiles' runs (a source
                                           # that spoke of a GPU regime is tested where it ran)
        method: exact_binomial             # optional, threshold claims on accuracy / exact match:
        items: 100                         # an exact binomial test over `items` test items per seed
        # method: trainability             # comparisons: the share of the learning-rate grid whose
        # delta: 0.05                      # metric comes within delta of the arm's best (per seed),
                                           # higher is better; margin in fraction units (default 0)

A self-check of the harness (`tests: self-check`) is no science claim: an exact check that every
seed's value equals its reference (a second arm, a number or per-seed numbers, `equivalent_to`)
within a numerical tolerance, `tolerance: {rtol: 1.0e-5, atol: 0, why: "..."}`; no margin, outside
Holm. A claim's Holm family is its scope (`tests:` source or extrapolation).

What a claim is lives in one type, `ClaimKind`: against a second arm or against a reference
number, a direction or an equivalence. Every problem is a `ClaimError`: one line naming the key,
the bad value and the valid choices (the grid loader prefixes the file). Torch-free, MLflow-free.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

from charrnn import registry
from charrnn.config import ConfigError, check_value, is_finite_number
from charrnn.config import format_value as _text
from charrnn.science.claim_options import (EXACT_BINOMIAL, SELF_CHECK, TRAINABILITY,
                                           OptionParser)
from charrnn.science.estimates import Hypothesis
from charrnn.config import short_repr as _short


class ClaimKind(str, Enum):
    """What a claim asserts. Against an arm: runs of `axis=value` are paired by seed with runs of
    `axis=baseline`. Against a reference: each seed's runs are compared with a number (one for
    every seed, or each seed's own)."""

    COMPARISON = "comparison"                   # {AXIS: V, better_than: B}
    EQUIVALENCE = "equivalence"                 # {AXIS: V, equivalent_to: B}
    THRESHOLD = "threshold"                     # {better_than: NUMBER}
    EQUAL_TO_REFERENCE = "equal to reference"   # {equivalent_to: NUMBER or {SEED: NUMBER}}

    @property
    def against_reference(self) -> bool:
        return self in (ClaimKind.THRESHOLD, ClaimKind.EQUAL_TO_REFERENCE)

    @property
    def equivalence(self) -> bool:
        return self in (ClaimKind.EQUIVALENCE, ClaimKind.EQUAL_TO_REFERENCE)


COMPARISON, EQUIVALENCE = ClaimKind.COMPARISON, ClaimKind.EQUIVALENCE
THRESHOLD, EQUAL_TO_REFERENCE = ClaimKind.THRESHOLD, ClaimKind.EQUAL_TO_REFERENCE
SCOPES = ("source", "extrapolation")      # `tests:`: what the source said, or our extension of it
TESTS_CHOICES = SCOPES + (SELF_CHECK,)
CLAIM_KEYS = ("id", "source", "tests", "regime", "metric", "expect", "margin", "at_least", "where",
              "higher_is_better", "tolerance", "requires", "plan", "method", "items", "profiles", "delta")
REQUIRED_KEYS = ("metric", "expect", "tests", "regime")
EXPECT_FORMS = ("expected {AXIS: VALUE, better_than: BASELINE}, {AXIS: VALUE, equivalent_to: BASELINE}, "
                "{better_than: NUMBER}, {equivalent_to: NUMBER} or {equivalent_to: {SEED: NUMBER, ...}}")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$")

Pairs = tuple[tuple[str, Any], ...]


class ClaimError(ConfigError):
    """A malformed claim: one line naming the key, the bad value and the valid choices."""


@dataclass(frozen=True)
class Claim:
    """One claim of a grid; `kind` says what it asserts (see ClaimKind). `baseline`: the second
    arm's level, or the reference: a number, or per-seed numbers as ((seed, number), ...).
    `where`: the axis values every judged run has. `tests`: "source" or "extrapolation";
    `regime`: the source's setting."""

    id: str
    metric: str
    kind: ClaimKind
    axis: str | None
    value: Any
    baseline: Any
    margin: float
    where: Pairs = ()
    higher_is_better: bool = False
    source: str = ""
    at_least: float | None = None   # a comparison's claimed effect size (metric units, > 0)
    tests: str = ""
    regime: str = ""
    rtol: float = 0.0               # self-checks: relative tolerance
    atol: float = 0.0               # self-checks: absolute tolerance
    tolerance_why: str = ""         # self-checks: where the tolerance comes from
    requires: str = "any"           # "converged": judged only on runs that stopped by patience
    plan_sd: float | None = None    # planning sd of the per-seed difference (decidability)
    plan_effect: float | None = None  # the effect the design should decide at plan_sd
    method: str = "t"               # "t" or EXACT_BINOMIAL (threshold claims on accuracy)
    items: int = 0                  # EXACT_BINOMIAL: test items per seed
    profiles: tuple[str, ...] = ()  # judged only on runs of these profiles (empty: every profile)
    delta: float = 0.0              # TRAINABILITY: within delta of the arm's best counts as trained well

    def judged_in(self, profile: str) -> bool:
        return not self.profiles or profile in self.profiles

    @property
    def is_self_check(self) -> bool:
        return self.tests == SELF_CHECK

    @property
    def family(self) -> str | None:
        """The Holm family: the claim's scope ("unscoped" for a claim built without one); None for a
        self-check (outside Holm)."""
        return None if self.is_self_check else self.tests or "unscoped"

    @property
    def against_reference(self) -> bool:
        """Judged against a number (or per-seed numbers), not against a second arm."""
        return self.kind.against_reference

    @property
    def is_equivalence(self) -> bool:
        return self.kind.equivalence

    @property
    def hypothesis(self) -> Hypothesis:
        """What the claim asserts about the mean per-seed difference, for `estimates`."""
        return Hypothesis(self.margin, self.expected_sign, self.is_equivalence, self.at_least)

    @property
    def per_seed_reference(self) -> bool:
        return self.against_reference and isinstance(self.baseline, tuple)

    def reference_of(self, seeds: Any) -> Any:
        """The reference number of each seed (NaN where a per-seed reference has none)."""
        if not self.per_seed_reference:
            return float(self.baseline)
        table = dict(self.baseline)
        return [table.get(str(s), math.nan) for s in seeds]

    @property
    def expected_sign(self) -> int:
        """Sign of (value − baseline) on the metric if a comparison or threshold claim holds (on the
        trainable fraction for a trainability claim: higher is better)."""
        return 1 if self.higher_is_better or self.method == TRAINABILITY else -1

    @property
    def effect_metric(self) -> str:
        """The metric whose units the effect is in: the trainable fraction (a share of the learning-rate
        grid, printed in percentage points) for a trainability claim, else the judged metric."""
        return registry.TRAINABLE_FRACTION if self.method == TRAINABILITY else self.metric

    @property
    def column(self) -> str:
        """The runs-table column the claim is judged on: `val_loss` → `final_val_loss`."""
        return f"final_{self.metric}"

    def where_text(self) -> str:
        return ", ".join(f"{k}={_text(v)}" for k, v in self.where)

    def reference_text(self) -> str:
        if not self.per_seed_reference:
            return f"{self.baseline:g}"
        numbers = [v for _, v in self.baseline]
        return f"each seed's reference (mean {sum(numbers) / len(numbers):g})"

    def describe(self) -> str:
        word = "higher" if self.higher_is_better else "lower"
        scope = f" (runs with {self.where_text()})" if self.where else ""
        kind = self.kind
        if self.method == TRAINABILITY:
            return (f"{self.axis}={_text(self.value)} is easier to train than {self.axis}={_text(self.baseline)}: a "
                    f"larger share of the learning-rate grid reaches {self.metric} within {self.delta:g} of the arm's "
                    f"best{scope}")
        within = (f"within rtol {self.rtol:g} + atol {self.atol:g} (an exact check)" if self.is_self_check
                  else f"within ±{self.margin:g}")
        if kind is EQUAL_TO_REFERENCE:
            return f"{self.metric} equals {self.reference_text()} {within}{scope}"
        if kind is THRESHOLD:
            return f"{self.metric} is {word} than {self.reference_text()}{scope}"
        if kind is EQUIVALENCE:
            return (f"{self.axis}={_text(self.value)} and {self.axis}={_text(self.baseline)} give the same "
                    f"{self.metric} {within}{scope}")
        if self.at_least is not None:
            return (f"{self.axis}={_text(self.value)} gives {self.metric} {word} than "
                    f"{self.axis}={_text(self.baseline)} by at least {self.at_least:g}{scope}")
        return (f"{self.axis}={_text(self.value)} gives {word} {self.metric} than "
                f"{self.axis}={_text(self.baseline)}{scope}")

    def difference(self) -> str:
        """The quantity the verdict's interval is about (a trainability claim's: the arms' trainable fractions)."""
        m = self.effect_metric
        if self.per_seed_reference:
            return f"{m} − the seed's reference"
        if self.against_reference:
            return f"{m} − {self.baseline:g}"
        return f"{m}({self.axis}={_text(self.value)}) − {m}({self.axis}={_text(self.baseline)})"

    def pairing(self) -> str:
        """How runs become the per-seed values the interval is drawn from."""
        if self.per_seed_reference:
            return "per seed against that seed's reference value, mean over the judged variants"
        return "per seed, mean over the judged variants" if self.against_reference else "paired by seed"

    def canonical_text(self) -> str:
        """Every field that decides what the claim asserts, one `key: value` a line: what
        preregistration stores and compares."""
        baseline = ("{" + ", ".join(f"{s}: {v:g}" for s, v in self.baseline) + "}"
                    if self.per_seed_reference else _text(self.baseline))
        fields = {"id": self.id, "kind": self.kind.value, "metric": self.metric, "axis": self.axis or "",
                  "value": "" if self.value is None else _text(self.value), "baseline": baseline,
                  "margin": f"{self.margin:g}", "at_least": "" if self.at_least is None else f"{self.at_least:g}",
                  "where": self.where_text(), "higher_is_better": _text(self.higher_is_better),
                  "tests": self.tests, "regime": self.regime, "source": self.source}
        extra = {"tolerance": f"rtol {self.rtol:g}, atol {self.atol:g}" if self.is_self_check else "",
                 "requires": "" if self.requires == "any" else self.requires,
                 "method": {"t": "", EXACT_BINOMIAL: f"{self.method} over {self.items} items per seed",
                            TRAINABILITY: f"{self.method} within delta {self.delta:g}"}[self.method],
                 "profiles": ", ".join(self.profiles)}
        fields.update({k: v for k, v in extra.items() if v})   # absent when unset: older texts stay equal
        return "\n".join(f"{k}: {v}" for k, v in fields.items())



# --------------------------------------------------------------------------- parsing


def parse_claims(data: dict[str, Any], lists: dict[str, tuple]) -> tuple[Claim, ...]:
    """The claims of a grid's parsed YAML `data` (its `claims:` list); `lists` maps each axis /
    zip key to its values. Raises ClaimError."""
    raw = data.get("claims")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ClaimError(f"claims: {_short(raw)}: expected a list of claim mappings")
    profiles = tuple(data.get("profiles") or {}) if isinstance(data.get("profiles"), dict) else ()
    parsed = [_Parser(f"claims[{i}]", lists, profiles).claim(item) for i, item in enumerate(raw)]
    return _unique_ids(parsed, "claims")


def _unique_ids(claims: list[tuple[Claim, bool]], where: str) -> tuple[Claim, ...]:
    """Explicit ids must be unique; a derived id that repeats gets the metric appended."""
    seen: set[str] = set()
    out = []
    for claim, explicit in claims:
        cid = claim.id
        if not explicit and cid in seen:
            cid = f"{cid}.{claim.metric}"
        if cid in seen:
            raise ClaimError(f"{where}: id {cid!r} repeated; valid: a unique `id:` per claim")
        seen.add(cid)
        out.append(Claim(**{**claim.__dict__, "id": cid}))
    return tuple(out)


class _Parser(OptionParser):
    def __init__(self, where: str, lists: dict[str, tuple], profile_names: tuple[str, ...] = ()):
        self.where, self.lists, self.profile_names = where, lists, profile_names

    def fail(self, key: str, message: str) -> ClaimError:
        return ClaimError(f"{self.where}.{key}: {message}" if key else f"{self.where}: {message}")

    def claim(self, raw: Any) -> tuple[Claim, bool]:
        if not isinstance(raw, dict):
            raise self.fail("", f"{_short(raw)}: expected a mapping with keys {', '.join(CLAIM_KEYS)}")
        for key in raw:
            if key not in CLAIM_KEYS:
                raise self.fail("", f"unknown key {key!r}; valid keys: {', '.join(CLAIM_KEYS)}")
        for key in REQUIRED_KEYS:
            if key not in raw:
                hint = {"tests": f"; valid choices: {', '.join(TESTS_CHOICES)}",
                        "regime": "; valid: the source's setting in a few words"}.get(key, "")
                raise self.fail("", f"missing required key {key!r}{hint}")
        metric = self.metric(raw["metric"])
        kind, axis, value, baseline = self.expect(raw["expect"])
        higher = raw.get("higher_is_better", registry.higher_is_better(metric))
        if not isinstance(higher, bool):
            raise self.fail("higher_is_better", f"{higher!r}: expected true or false")
        tests, regime = self.scope(raw["tests"]), self.regime(raw["regime"])
        check = tests == SELF_CHECK
        if check and "margin" in raw:
            raise self.fail("margin", "a self-check has no margin; valid: tolerance: {rtol: NUMBER, atol: NUMBER}")
        margin = 0.0 if check else self.margin(raw.get("margin"), metric, kind)
        at_least = self.at_least(raw.get("at_least"), kind)
        where = self.where_pairs(raw.get("where"), axis)
        source = "" if raw.get("source") is None else str(raw["source"]).strip()
        rtol, atol, why = self.tolerance(raw.get("tolerance"), check, kind)
        plan_sd, plan_effect = self.plan(raw.get("plan"))
        method, items = self.method(raw.get("method"), raw.get("items"), kind, metric)
        delta = self.delta(raw.get("delta"), method)
        if method == TRAINABILITY and "margin" not in raw:
            margin = 0.0                  # fraction units: the metric's default margin does not apply
        requires = self.requires(raw.get("requires"), tests, metric)
        profiles = self.profiles(raw.get("profiles"))
        explicit = raw.get("id") is not None
        cid = self.ident(raw["id"]) if explicit else _default_id(kind, axis, value, baseline, metric, where)
        return Claim(cid, metric, kind, axis, value, baseline, margin, where, higher, source, at_least,
                     tests, regime, rtol, atol, why, requires, plan_sd, plan_effect, method, items, profiles,
                     delta), explicit

    def scope(self, raw: Any) -> str:
        if raw not in TESTS_CHOICES:
            raise self.fail("tests", f"{raw!r}: valid choices: {', '.join(TESTS_CHOICES)}")
        return raw

    def regime(self, raw: Any) -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise self.fail("regime", f"{_short(raw)}: valid: the source's setting in a few words, e.g. "
                                      "'GPU, trained to convergence, 2-layer 512'")
        return " ".join(raw.split())

    def metric(self, raw: Any) -> str:
        choices = registry.claim_metrics()
        if not isinstance(raw, str) or raw not in choices:
            raise self.fail("metric", f"{raw!r}: unknown metric; valid choices: {', '.join(choices)}")
        return raw

    def ident(self, raw: Any) -> str:
        if not isinstance(raw, str) or not ID_PATTERN.match(raw):
            raise self.fail("id", f"{raw!r}: valid: letters, digits, '_', '.', '=', '-', starting "
                                  "with a letter or digit")
        return raw

    def expect(self, raw: Any) -> tuple[ClaimKind, str | None, Any, Any]:
        if not isinstance(raw, dict):
            raise self.fail("expect", f"{_short(raw)}: {EXPECT_FORMS}")
        rest = dict(raw)
        forms = [k for k in ("better_than", "equivalent_to") if k in rest]
        if len(forms) != 1 or len(rest) > 2:
            raise self.fail("expect", f"{raw!r}: {EXPECT_FORMS}")
        baseline = rest.pop(forms[0])
        if not rest:
            kind = THRESHOLD if forms[0] == "better_than" else EQUAL_TO_REFERENCE
            return kind, None, None, self.reference(forms[0], baseline)
        (axis, value), = rest.items()
        if axis not in self.lists:
            raise self.fail("expect", f"{axis!r} is not an axis; valid: {', '.join(self.lists) or 'none'}")
        kind = COMPARISON if forms[0] == "better_than" else EQUIVALENCE
        return kind, axis, self.level("expect", axis, value), self.level("expect", axis, baseline)

    def reference(self, form: str, raw: Any) -> float | Pairs:
        """A reference number, or {seed: number} (each seed compared with its own reference)."""
        if isinstance(raw, dict) and raw and all(isinstance(s, int) and not isinstance(s, bool)
                                                and is_finite_number(v) for s, v in raw.items()):
            return tuple((str(s), float(v)) for s, v in sorted(raw.items()))
        if not is_finite_number(raw):
            raise self.fail("expect", f"{form}={_short(raw)}: a claim against a reference number needs a "
                                      f"finite number or {{SEED: NUMBER}} with integer seeds; {EXPECT_FORMS}")
        return float(raw)

    def level(self, key: str, axis: str, raw: Any) -> Any:
        """A claim value: valid for `axis` and one of the values the grid gives it."""
        try:
            value = check_value(axis, raw)
        except ConfigError as err:
            raise self.fail(key, str(err)) from None
        if value not in self.lists[axis]:
            raise self.fail(key, f"{axis}={raw!r} is not on the axis; valid: "
                                 f"{', '.join(map(_text, self.lists[axis]))}")
        return value

    def margin(self, raw: Any, metric: str, kind: ClaimKind) -> float:
        if raw is None:
            default = registry.METRICS[metric].margin
            if kind.equivalence and default <= 0:
                raise self.fail("margin", f"an equivalence claim on {metric} needs a stated margin; "
                                          "valid: a number > 0 in the metric's units")
            return default
        if not is_finite_number(raw) or raw < 0 or (kind.equivalence and raw == 0):
            need = "> 0" if kind.equivalence else ">= 0"
            raise self.fail("margin", f"{raw!r}: valid: a finite number {need} in {metric}'s units")
        return float(raw)

    def at_least(self, raw: Any, kind: ClaimKind) -> float | None:
        if raw is None:
            return None
        if kind is not COMPARISON:
            raise self.fail("at_least", "valid only with expect: {AXIS: VALUE, better_than: BASELINE}")
        if not is_finite_number(raw) or raw <= 0:
            raise self.fail("at_least", f"{raw!r}: valid: a finite number > 0 in the metric's units")
        return float(raw)

    def where_pairs(self, raw: Any, claim_axis: str | None) -> Pairs:
        if raw is None:
            return ()
        if not isinstance(raw, dict) or not raw:
            raise self.fail("where", f"{_short(raw)}: expected a mapping of axis: value, e.g. {{layers: 4}}")
        pairs = []
        for axis, value in raw.items():
            if axis not in self.lists or axis == claim_axis:
                valid = [a for a in self.lists if a != claim_axis]
                raise self.fail("where", f"{axis!r} is not an axis it can restrict; valid: "
                                         f"{', '.join(valid) or 'none'}")
            pairs.append((axis, self.level("where", axis, value)))
        return tuple(pairs)


def _default_id(kind: ClaimKind, axis: str | None, value: Any, baseline: Any, metric: str,
                where: Pairs) -> str:
    word = "eq" if kind.equivalence else "vs"
    if kind.against_reference:
        stem = f"{metric}_{word}_" + ("per_seed" if isinstance(baseline, tuple) else f"{baseline:g}")
    else:
        stem = f"{axis}={_text(value)}_{word}_{_text(baseline)}"
    suffix = "".join(f".{k}={_text(v)}" for k, v in where)
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", stem + suffix)


def claims_or_none(data: dict[str, Any] | None, lists: dict[str, tuple],
                   warn: Callable[[str], None] | None = None) -> tuple[Claim, ...]:
    """`parse_claims` for a grid read back from the store: a grid file written under older rules
    gives no claims (and a warning) instead of failing the whole report."""
    try:
        return parse_claims(data or {}, lists)
    except ConfigError as err:
        if warn is not None:
            warn(str(err))
        return ()
