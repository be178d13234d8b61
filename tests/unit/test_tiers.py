"""The test tiers hide nothing: every test module lives in exactly one tier folder (tests/unit,
tests/parity, tests/e2e; see tests/conftest.py), so `make test-fast` (unit + parity) and
`pytest -m "not e2e"` skip only what is marked e2e, and `make test` runs them all."""

from __future__ import annotations

from collections import Counter

from conftest import TESTS, TIERS, tier_of

WHERE = ("move it (git mv) into the folder of its tier: tests/unit/ (one module's behaviour, in process, seconds), "
         "tests/parity/ (compared with transformers, peft, lm-eval, seqeval, real weights, the authors' code in "
         "tests/reference/ or the golden losses) or tests/e2e/ (the CLI in a subprocess, whole training runs, torchrun, "
         "servers, browsers); a file that mixes goes where its slowest part belongs")


def test_every_test_module_is_in_exactly_one_tier():
    modules = sorted(TESTS.rglob("test_*.py"))
    astray = [str(p.relative_to(TESTS.parent)) for p in modules if tier_of(p) is None]
    assert not astray, f"{', '.join(astray)}: not in a tier; {WHERE}"
    # pytest imports test modules by their file name (rootdir-relative `prepend` mode), so one name
    # in two tiers would be one module: the second would not run.
    twice = [name for name, n in Counter(p.name for p in modules).items() if n > 1]
    assert not twice, f"{twice}: the same file name in two tiers; rename one"
    assert {tier_of(p) for p in modules} == set(TIERS)


def test_each_test_carries_its_tiers_marker(request):
    marks = {m.name for m in request.node.iter_markers()} & set(TIERS)
    assert marks == {"unit"}


def test_a_file_outside_the_tiers_has_no_tier():
    assert tier_of(TESTS / "test_new.py") is None  # in tests/ itself: not in a tier
    assert tier_of(TESTS / "unit" / "more" / "test_x.py") is None  # a tier has no subfolders of tests
    assert tier_of(TESTS / "reference" / "test_x.py") is None
    assert tier_of(TESTS / "e2e" / "test_x.py") == "e2e"
