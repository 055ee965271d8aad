"""Claims: the claim kind, per-seed references, the scope keys and the canonical text."""
import pytest
from claim_support import SCOPE

from charrnn.science.claims import ClaimError, ClaimKind, parse_claims

AXES = {"cell": ("vanilla", "gru")}


def one(**raw):
    return parse_claims({"claims": [{**SCOPE, "metric": "val_loss", **raw}]}, AXES)[0]


@pytest.mark.parametrize("expect,kind", [({"cell": "gru", "better_than": "vanilla"}, ClaimKind.COMPARISON),
                                         ({"cell": "gru", "equivalent_to": "vanilla"}, ClaimKind.EQUIVALENCE),
                                         ({"better_than": 1.6}, ClaimKind.THRESHOLD),
                                         ({"equivalent_to": 1.6}, ClaimKind.EQUAL_TO_REFERENCE)])
def test_one_kind_says_what_a_claim_asserts(expect, kind):
    claim = one(expect=expect)
    assert claim.kind is kind
    assert claim.against_reference == (claim.axis is None) == kind.against_reference
    assert claim.is_equivalence == ("equivalent_to" in expect)


def test_a_per_seed_reference_keeps_each_seeds_number():
    claim = one(expect={"equivalent_to": {1: 1.82, 0: 1.80}})
    assert claim.kind is ClaimKind.EQUAL_TO_REFERENCE and claim.baseline == (("0", 1.80), ("1", 1.82))
    assert claim.reference_of(["1", "0", "7"])[:2] == [1.82, 1.80]
    assert claim.id == "val_loss_eq_per_seed" and "each seed's reference (mean 1.81)" in claim.describe()
    assert "baseline: {0: 1.8, 1: 1.82}" in claim.canonical_text()


def test_a_per_seed_reference_needs_integer_seeds_and_numbers():
    with pytest.raises(ClaimError, match=r"claims\[0\].expect: equivalent_to=\{'a': 1.8\}: a claim against a "
                                         "reference number needs a finite number or {SEED: NUMBER}"):
        one(expect={"equivalent_to": {"a": 1.8}})


def test_scope_and_regime_are_kept_and_part_of_the_canonical_text():
    claim = one(expect={"better_than": 1.6}, tests="extrapolation", regime="  GPU,\n converged ")
    assert (claim.tests, claim.regime) == ("extrapolation", "GPU, converged")
    text = claim.canonical_text()
    assert "tests: extrapolation" in text and "regime: GPU, converged" in text
    assert text == one(expect={"better_than": 1.6}, tests="extrapolation", regime="GPU, converged").canonical_text()
