"""Claims: what a grid expects its runs to show, parsed once when the grid loads.

A grid lists them under `claims:`:

    claims:
      - id: gru_beats_vanilla              # optional; unique in the grid (default derived)
        source: "seed 001: 'gated cells learn faster'"   # the sentence it tests
        metric: val_loss                   # a claim metric of charrnn.registry
        expect: {cell: gru, better_than: vanilla}        # comparison
        # expect: {backend: fused, equivalent_to: loop}  # equivalence
        # expect: {better_than: 1.60}                    # threshold (a reference number)
        # expect: {equivalent_to: 1.60}                  # equals a reference number within ±margin
        margin: 0.01                       # optional ROPE half-width, metric units
        at_least: 1.0                      # optional (comparisons): the effect size the source
                                           # claims; reproduced only beyond it, contradicted when
                                           # the whole interval falls short of it
        where: {layers: 4}                 # optional: judge only these runs
        higher_is_better: false            # optional; default from the registry

Every problem is a `ClaimError`: one line naming the key, the bad value and the valid choices
(the grid loader prefixes the file). Torch-free, MLflow-free.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from charrnn import registry
from charrnn.config import ConfigError, check_value, is_finite_number
from charrnn.config import format_value as _text
from charrnn.config import short_repr as _short

COMPARISON, EQUIVALENCE, THRESHOLD = "comparison", "equivalence", "threshold"
CLAIM_KEYS = ("id", "source", "metric", "expect", "margin", "at_least", "where", "higher_is_better")
REQUIRED_KEYS = ("metric", "expect")
EXPECT_FORMS = ("expected {AXIS: VALUE, better_than: BASELINE}, {AXIS: VALUE, equivalent_to: BASELINE}, "
                "{better_than: NUMBER} or {equivalent_to: NUMBER}")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$")

Pairs = tuple[tuple[str, Any], ...]


class ClaimError(ConfigError):
    """A malformed claim: one line naming the key, the bad value and the valid choices."""


@dataclass(frozen=True)
class Claim:
    """One claim of a grid. `kind`: comparison (`axis=value` beats `axis=baseline`, paired by
    seed), equivalence (they differ by less than `margin`) or threshold (`axis` is None, the runs
    beat the number `baseline`). `where`: the axis values every judged run has."""

    id: str
    metric: str
    kind: str
    axis: str | None
    value: Any
    baseline: Any
    margin: float
    where: Pairs = ()
    higher_is_better: bool = False
    source: str = ""
    at_least: float | None = None   # a comparison's claimed effect size (metric units, > 0)

    @property
    def is_threshold(self) -> bool:
        """Judged against a number (`baseline`), not against a second arm."""
        return self.axis is None

    @property
    def is_equivalence(self) -> bool:
        return self.kind == EQUIVALENCE

    @property
    def expected_sign(self) -> int:
        """Sign of (value − baseline) on the metric if a comparison or threshold claim holds."""
        return 1 if self.higher_is_better else -1

    @property
    def column(self) -> str:
        """The runs-table column the claim is judged on: `val_loss` → `final_val_loss`."""
        return f"final_{self.metric}"

    def where_text(self) -> str:
        return ", ".join(f"{k}={_text(v)}" for k, v in self.where)

    def describe(self) -> str:
        word = "higher" if self.higher_is_better else "lower"
        scope = f" (runs with {self.where_text()})" if self.where else ""
        if self.is_threshold and self.is_equivalence:
            return f"{self.metric} equals {self.baseline:g} within ±{self.margin:g}{scope}"
        if self.is_threshold:
            return f"{self.metric} is {word} than {self.baseline:g}{scope}"
        if self.at_least is not None:
            return (f"{self.axis}={_text(self.value)} gives {self.metric} {word} than "
                    f"{self.axis}={_text(self.baseline)} by at least {self.at_least:g}{scope}")
        if self.is_equivalence:
            return (f"{self.axis}={_text(self.value)} and {self.axis}={_text(self.baseline)} give the same "
                    f"{self.metric} within ±{self.margin:g}{scope}")
        return (f"{self.axis}={_text(self.value)} gives {word} {self.metric} than "
                f"{self.axis}={_text(self.baseline)}{scope}")

    def difference(self) -> str:
        """The quantity the verdict's interval is about."""
        m = self.metric
        if self.is_threshold:
            return f"{m} − {self.baseline:g}"
        return f"{m}({self.axis}={_text(self.value)}) − {m}({self.axis}={_text(self.baseline)})"

    def pairing(self) -> str:
        """How runs become the per-seed values the interval is drawn from."""
        return "per seed, mean over the judged variants" if self.is_threshold else "paired by seed"


# --------------------------------------------------------------------------- parsing


def parse_claims(data: dict[str, Any], lists: dict[str, tuple]) -> tuple[Claim, ...]:
    """The claims of a grid's parsed YAML `data` (its `claims:` list); `lists` maps each axis /
    zip key to its values. Raises ClaimError."""
    raw = data.get("claims")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ClaimError(f"claims: {_short(raw)}: expected a list of claim mappings")
    parsed = [_Parser(f"claims[{i}]", lists).claim(item) for i, item in enumerate(raw)]
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


class _Parser:
    def __init__(self, where: str, lists: dict[str, tuple]):
        self.where, self.lists = where, lists

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
                raise self.fail("", f"missing required key {key!r}")
        metric = self.metric(raw["metric"])
        kind, axis, value, baseline = self.expect(raw["expect"])
        higher = raw.get("higher_is_better", registry.higher_is_better(metric))
        if not isinstance(higher, bool):
            raise self.fail("higher_is_better", f"{higher!r}: expected true or false")
        margin = self.margin(raw.get("margin"), metric, kind)
        at_least = self.at_least(raw.get("at_least"), kind, axis)
        where = self.where_pairs(raw.get("where"), axis)
        source = "" if raw.get("source") is None else str(raw["source"]).strip()
        explicit = raw.get("id") is not None
        cid = self.ident(raw["id"]) if explicit else _default_id(kind, axis, value, baseline, metric, where)
        return Claim(cid, metric, kind, axis, value, baseline, margin, where, higher, source, at_least), explicit

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

    def expect(self, raw: Any) -> tuple[str, str | None, Any, Any]:
        if not isinstance(raw, dict):
            raise self.fail("expect", f"{_short(raw)}: {EXPECT_FORMS}")
        rest = dict(raw)
        forms = [k for k in ("better_than", "equivalent_to") if k in rest]
        if len(forms) != 1 or len(rest) > 2:
            raise self.fail("expect", f"{raw!r}: {EXPECT_FORMS}")
        baseline = rest.pop(forms[0])
        kind = COMPARISON if forms[0] == "better_than" else EQUIVALENCE
        if not rest:
            if not is_finite_number(baseline):
                raise self.fail("expect", f"{forms[0]}={baseline!r}: a claim against a reference number "
                                          f"needs a finite number; {EXPECT_FORMS}")
            return (THRESHOLD if kind == COMPARISON else EQUIVALENCE), None, None, float(baseline)
        (axis, value), = rest.items()
        if axis not in self.lists:
            raise self.fail("expect", f"{axis!r} is not an axis; valid: {', '.join(self.lists) or 'none'}")
        return kind, axis, self.level("expect", axis, value), self.level("expect", axis, baseline)

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

    def margin(self, raw: Any, metric: str, kind: str) -> float:
        if raw is None:
            default = registry.METRICS[metric].margin
            if kind == EQUIVALENCE and default <= 0:
                raise self.fail("margin", f"an equivalence claim on {metric} needs a stated margin; "
                                          "valid: a number > 0 in the metric's units")
            return default
        if not is_finite_number(raw) or raw < 0 or (kind == EQUIVALENCE and raw == 0):
            need = "> 0" if kind == EQUIVALENCE else ">= 0"
            raise self.fail("margin", f"{raw!r}: valid: a finite number {need} in {metric}'s units")
        return float(raw)

    def at_least(self, raw: Any, kind: str, axis: str | None) -> float | None:
        if raw is None:
            return None
        if kind != COMPARISON or axis is None:
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


def _default_id(kind: str, axis: str | None, value: Any, baseline: Any, metric: str, where: Pairs) -> str:
    if axis is None:
        stem = f"{metric}_{'vs' if kind == THRESHOLD else 'eq'}_{baseline:g}"
    else:
        stem = f"{axis}={_text(value)}_{'vs' if kind == COMPARISON else 'eq'}_{_text(baseline)}"
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
