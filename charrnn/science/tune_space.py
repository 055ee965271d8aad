"""A grid's `tune` block, parsed in one place: the grid loader and the stored `grid.yaml` both read it here.

    tune:
      lr: [1.0e-3, 3.0e-3, 1.0e-2]    # a config key (not an axis) -> at least 3 distinct valid values
      choice: per_arm                 # optional: per_arm (default) or per_seed
    tune_bounds:
      lr: [3.0e-4, 3.0e-2]            # a tuned numeric key -> [lower, upper] the axis may grow to

`choice` says what one tuned value is chosen for: `per_arm`, one value per arm (variant) from the
mean validation loss over its seeds, so both arms of a seed pair run at their arm's one value; or
`per_seed`, one per (variant, seed). A problem is a ConfigError, one line naming the key
(`tune.lr: ...`), the bad value and the valid choices. Torch-free.

Which variants the tuned values matter for (`moved_by_tuning`, `speed_only`): the tuned values can
move every metric but speed (tokens/s does not depend on the learning rate). A variant that only
speed claims judge trains once per seed, at the first tuned combination (`charrnn.grid.spec`).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from charrnn import registry
from charrnn.config import ConfigError, check_value, short_repr
from charrnn.science.stats import same_value

MIN_TUNE_VALUES = 3   # a tuned key's values: one inside and one at each edge
CHOICE_KEY = "choice"
CHOICES = ("per_arm", "per_seed")


class TuneSpace(dict):
    """Tuned key -> the values to try, in file order; `bounds`: key -> (lower, upper), the limits
    automatic extension stays within; `choice`: one of CHOICES."""

    def __init__(self, values: Mapping[str, Sequence[Any]] | None = None,
                 bounds: Mapping[str, Sequence[Any]] | None = None, choice: str = CHOICES[0]):
        super().__init__({key: list(v) for key, v in (values or {}).items()})
        self.bounds = {key: tuple(bound) for key, bound in (bounds or {}).items()}
        self.choice = choice

    @property
    def per_seed(self) -> bool:
        return self.choice == "per_seed"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value(key: str, raw: Any, where: str) -> Any:
    try:
        return check_value(key, raw)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _mapping(raw: Any, where: str) -> dict[Any, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {short_repr(raw)}: expected a mapping of key: value")
    return raw


def _choice(raw: Any) -> str:
    if raw not in CHOICES:
        raise ConfigError(f"tune.{CHOICE_KEY}: {short_repr(raw)}: unknown choice; valid: {', '.join(CHOICES)}")
    return raw


def _values(key: Any, values: Any, forbidden: Mapping[str, str]) -> list[Any]:
    where = f"tune.{key}"
    if not isinstance(key, str):
        raise ConfigError(f"tune: key {key!r}: expected a config key name")
    if key in forbidden:
        raise ConfigError(f"{where}: {key} cannot vary here; {forbidden[key]}")
    if not isinstance(values, list):
        raise ConfigError(f"{where}: {short_repr(values)}: expected a list of values, e.g. {key}: [a, b, c]")
    if not values:
        raise ConfigError(f"{where}: empty axis; valid: a list of {MIN_TUNE_VALUES} or more values")
    coerced = [_value(key, v, where) for v in values]
    if len(set(coerced)) != len(coerced):
        raise ConfigError(f"{where}: {values!r}: repeated value; valid: distinct values")
    if len(coerced) < MIN_TUNE_VALUES:
        raise ConfigError(f"{where}: {coerced!r}: {len(coerced)} value(s); valid: at least "
                          f"{MIN_TUNE_VALUES} values, so that the choice can be bracketed")
    return coerced


def _bound(key: Any, bound: Any, tried: Mapping[str, list[Any]]) -> tuple[Any, Any]:
    where = f"tune_bounds.{key}"
    if key not in tried:
        raise ConfigError(f"{where}: {key!r} is not tuned; valid: a key of `tune` ({', '.join(tried) or 'none'})")
    if not isinstance(bound, list) or len(bound) != 2:
        raise ConfigError(f"{where}: {short_repr(bound)}: expected [lower, upper], e.g. {key}: [1.0e-4, 1.0e-1]")
    low, high = (_value(key, v, where) for v in bound)
    if not all(_is_number(v) for v in (low, high, *tried[key])):
        raise ConfigError(f"{where}: {short_repr(bound)}: {key} is not numeric; valid: bounds of a numeric tuned key")
    if not low < high:
        raise ConfigError(f"{where}: {bound!r}: lower >= upper; valid: [lower, upper] with lower < upper")
    outside = [v for v in tried[key] if not low <= v <= high]
    if outside:
        raise ConfigError(f"{where}: {bound!r}: the tuned values {outside!r} lie outside; valid: bounds that "
                          "contain every tuned value")
    return low, high


def parse_tune(tune: Any, bounds: Any = None, forbidden: Mapping[str, str] | None = None) -> TuneSpace:
    """The `tune` and `tune_bounds` blocks of a grid file, checked and coerced (`1e-3` read as text
    becomes 0.001). `forbidden`: key -> why it cannot be tuned (it is an axis, fixed, the seed)."""
    block = dict(_mapping(tune, "tune"))
    choice = _choice(block.pop(CHOICE_KEY)) if CHOICE_KEY in block else CHOICES[0]
    values = {key: _values(key, v, forbidden or {}) for key, v in block.items()}
    if choice != CHOICES[0] and not values:
        raise ConfigError(f"tune.{CHOICE_KEY}: {choice!r} without a tuned key; valid: list a key to tune, "
                          "e.g. lr: [1.0e-3, 3.0e-3, 1.0e-2]")
    limits = {key: _bound(key, b, values) for key, b in _mapping(bounds, "tune_bounds").items()}
    return TuneSpace(values, limits, choice)


def tune_of(definition: Mapping[str, Any] | None) -> TuneSpace:
    """The tune space of a parsed grid file (the stored `grid.yaml`); empty when it tunes nothing."""
    definition = definition or {}
    return parse_tune(definition.get("tune"), definition.get("tune_bounds"))


def judges(claim: Any, values: Mapping[str, Any], every_axis_value: bool = False) -> bool:
    """`claim` judges a variant with these axis `values`: its `where` holds and, with an axis, the
    variant is one of its two arms (any value of the axis with `every_axis_value`: a speed sweep)."""
    return (all(same_value(values.get(key), value) for key, value in claim.where)
            and (every_axis_value or claim.axis is None
                 or any(same_value(values.get(claim.axis), arm) for arm in (claim.value, claim.baseline))))


def moved_by_tuning(claims: Iterable[Any], values: Mapping[str, Any]) -> bool:
    """Some claim on a metric the tuned values can move (all but speed) judges this variant."""
    return any(judges(c, values) for c in claims if not registry.METRICS[c.metric].speed)


def tunes_anything(claims: Iterable[Any]) -> bool:
    """Some claim is on a metric the tuned values can move (every metric but speed)."""
    return any(not registry.METRICS[c.metric].speed for c in claims)


def timed_by(claims: Iterable[Any], values: Mapping[str, Any]) -> bool:
    """Some speed claim's `where` holds for this variant (every value of its axis counts, as the
    page's speed sweep reads them all)."""
    return any(judges(c, values, every_axis_value=True) for c in claims if registry.METRICS[c.metric].speed)


def speed_only(claims: Iterable[Any], values: Mapping[str, Any]) -> bool:
    """Speed claims alone judge this variant (`timed_by`, not `moved_by_tuning`) in a grid where some
    claim on another metric exists: one tuned combination is enough for it. A grid with no such claim
    tunes (and brackets) every variant."""
    claims = list(claims)
    return (tunes_anything(claims) and timed_by(claims, values)
            and not moved_by_tuning(claims, values))
