"""The optional keys of a claim that say how it is judged, parsed for `claims._Parser`.

`tests: self-check` with `tolerance:` (an exact check of the harness, outside Holm), `method:`
(t, exact_binomial with `items:`, trainability with `delta:`), `plan:` (planning sd and effect for
the decidability check), `requires:` (converged runs or any) and `profiles:` (the profiles whose
runs judge the claim). Each problem is a ClaimError of one line naming key, value and choices.
"""
from __future__ import annotations

from typing import Any

from charrnn import registry
from charrnn.config import ConfigError, is_finite_number
from charrnn.config import short_repr as _short

SELF_CHECK = "self-check"                  # `tests:` of an exact check of the harness (outside Holm)
REQUIRES = ("converged", "any")
EXACT_BINOMIAL = "exact_binomial"
TRAINABILITY = "trainability"              # Collins et al.: how much of a learning-rate grid trains well
METHODS = ("t", EXACT_BINOMIAL, TRAINABILITY)
QUALITY_METRICS = ("loss", "accuracy", "exact_match")   # a trained model's quality (not speed, not a gap)


class OptionParser:
    """Parsers of the optional keys; the subclass provides `fail(key, message)` and `profile_names`."""

    profile_names: tuple[str, ...] = ()

    def fail(self, key: str, message: str) -> ConfigError:
        raise NotImplementedError

    def delta(self, raw: Any, method: str) -> float:
        if method != TRAINABILITY:
            if raw is not None:
                raise self.fail("delta", f"valid only with method: {TRAINABILITY}")
            return 0.0
        if not is_finite_number(raw) or raw <= 0:
            raise self.fail("delta", f"{raw!r}: valid: a number > 0 in the metric's units (within delta of the "
                                     "arm's best counts as trained well)")
        return float(raw)

    def profiles(self, raw: Any) -> tuple[str, ...]:
        if raw is None:
            return ()
        valid = self.profile_names
        if not isinstance(raw, list) or not raw or any(p not in valid for p in raw):
            raise self.fail("profiles", f"{_short(raw)}: valid: a list of this grid's profiles "
                                        f"({', '.join(valid) or 'none'})")
        return tuple(raw)

    def tolerance(self, raw: Any, check: bool, kind: Any) -> tuple[float, float, str]:
        if not check:
            if raw is not None:
                raise self.fail("tolerance", f"valid only with tests: {SELF_CHECK}")
            return 0.0, 0.0, ""
        if not kind.equivalence:
            raise self.fail("expect", "a self-check states equality: expected {AXIS: VALUE, equivalent_to: BASELINE} "
                                      "or {equivalent_to: NUMBER or {SEED: NUMBER}}")
        valid = "valid: {rtol: NUMBER >= 0, atol: NUMBER >= 0, why: TEXT}, at least one tolerance > 0"
        if not isinstance(raw, dict) or set(raw) - {"rtol", "atol", "why"}:
            raise self.fail("tolerance", f"{_short(raw)}: {valid}")
        rtol, atol = raw.get("rtol", 0.0), raw.get("atol", 0.0)
        if not (is_finite_number(rtol) and is_finite_number(atol)) or min(rtol, atol) < 0 or rtol + atol <= 0:
            raise self.fail("tolerance", f"{_short(raw)}: {valid}")
        return float(rtol), float(atol), " ".join(str(raw.get("why") or "").split())

    def plan(self, raw: Any) -> tuple[float | None, float | None]:
        if raw is None:
            return None, None
        valid = "valid: {sd: NUMBER > 0, effect: NUMBER} in the metric's units"
        if not isinstance(raw, dict) or set(raw) != {"sd", "effect"}:
            raise self.fail("plan", f"{_short(raw)}: {valid}")
        sd, effect = raw["sd"], raw["effect"]
        if not (is_finite_number(sd) and is_finite_number(effect)) or sd <= 0:
            raise self.fail("plan", f"{_short(raw)}: {valid}")
        return float(sd), float(effect)

    def method(self, raw: Any, items: Any, kind: Any, metric: str) -> tuple[str, int]:
        if raw is None or raw == "t":
            if items is not None:
                raise self.fail("items", f"valid only with method: {EXACT_BINOMIAL}")
            return "t", 0
        if raw not in METHODS:
            raise self.fail("method", f"{raw!r}: valid choices: {', '.join(METHODS)}")
        if raw == TRAINABILITY:
            if kind.value != "comparison" or items is not None:
                raise self.fail("method", f"{TRAINABILITY} needs expect: {{AXIS: VALUE, better_than: BASELINE}}")
            return TRAINABILITY, 0
        if kind.value != "threshold" or registry.METRICS[metric].bounds != (0.0, 1.0):
            raise self.fail("method", f"{EXACT_BINOMIAL} needs expect: {{better_than: NUMBER}} on an accuracy "
                                      f"or exact-match metric, not {kind.value} on {metric}")
        if not isinstance(items, int) or isinstance(items, bool) or items < 1:
            raise self.fail("items", f"{items!r}: valid: the test items each seed scores, an integer >= 1")
        return EXACT_BINOMIAL, items

    def requires(self, raw: Any, tests: str, metric: str) -> str:
        if raw is None:                  # a source speaks of trained models: their quality needs convergence
            return "converged" if tests == "source" and metric.endswith(QUALITY_METRICS) else "any"
        if raw not in REQUIRES:
            raise self.fail("requires", f"{raw!r}: valid choices: {', '.join(REQUIRES)}")
        return raw

