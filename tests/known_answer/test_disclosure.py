"""Known-answer tests of disclosure; what the subject's tests check and their sources: tests/support/disclosure.py."""

from __future__ import annotations

import math

import pytest

from spstudy.publish import audit as A
from spstudy.publish import disclosure as D
from tests.support.disclosure import _problem

pytestmark = pytest.mark.known_answer


def test_lp_interval_by_hand():
    """Hand computation: T = a + b + c with T = 20 and a = 5, b = 9 known exactly and c suppressed:
    c = 6 exactly. With a and b only known to lie in their rounding intervals [2.5, 7.5] and
    [7.5, 12.5] and T in [17.5, 22.5], c can be anything from 1 (its floor) to 12.5."""
    exact = _problem({"T": (20, 20), "a": (5, 5), "b": (9, 9), "c": (1, A.INF)}, [("T", ("a", "b", "c"), True)])
    iv = A.intervals(exact, ["c"])["c"]
    assert (iv.lo, iv.hi, iv.n_integers()) == (6, 6, 1)
    fuzzy = _problem({"T": (17.5, 22.5), "a": (2.5, 7.5), "b": (7.5, 12.5), "c": (1, A.INF)}, [("T", ("a", "b", "c"), True)])
    iv = A.intervals(fuzzy, ["c"])["c"]
    assert iv.lo == pytest.approx(1) and iv.hi == pytest.approx(12.5) and iv.n_integers() == 12


def test_lp_two_way_table_with_two_suppressions():
    """A 2 x 2 table with margins published exactly (a textbook case, e.g. Hundepool et al. 2012,
    Statistical Disclosure Control, ch. 4): suppressing a single interior cell lets it be recovered;
    suppressing a whole 2 x 2 pattern leaves each cell in [max(0, ...), min(margins)]."""
    cells = {"r1": (10, 10), "r2": (12, 12), "c1": (9, 9), "c2": (13, 13), "T": (22, 22),
             "a": (1, A.INF), "b": (1, A.INF), "c": (1, A.INF), "d": (1, A.INF)}
    rels = [("r1", ("a", "b"), True), ("r2", ("c", "d"), True), ("c1", ("a", "c"), True), ("c2", ("b", "d"), True),
            ("T", ("r1", "r2"), True)]
    iv = A.intervals(_problem(cells, rels), ["a", "b", "c", "d"])
    assert (iv["a"].lo, iv["a"].hi) == (1, 8)   # a = 9 - c with c in [1, 8]; b = 10 - a
    only_a = dict(cells, b=(6, 6), c=(5, 5), d=(7, 7))   # a = 4 follows from any one margin
    assert A.intervals(_problem(only_a, rels), ["a"])["a"].n_integers() == 1


def test_protection_values_and_what_a_mark_tells():
    """With threshold 7: a [c] known to be small is 1..7; more than half of those (4) must stay open.
    Two small counts adding up to a small total leave each 1..6 (6 values): protected. Four small
    counts under a small total leave each 1..4: still 4 values; five do not. Hand-computed."""
    R = D.Rules(7, 5)
    assert R.protection_values == 4
    assert R.suppressed_bounds(True) == (1.0, 7.0) and R.suppressed_bounds(False) == (8.0, math.inf)
    p = _problem({"T": (1, 7), "a": (1, 7), "b": (1, 7)}, [("T", ("a", "b"), True)])
    iv = A.intervals(p, ["a"])["a"]
    assert (iv.lo, iv.hi) == (1, 6) and not A.exposures(p, {"T", "a", "b"}, {}, R.protection_values)
    p = _problem({"T": (1, 7), **{c: (1, 7) for c in "abcd"}}, [("T", tuple("abcd"), True)])
    iv = A.intervals(p, ["a"])["a"]
    assert (iv.lo, iv.hi) == (1, 4) and not A.exposures(p, {"T", *"abcd"}, {}, R.protection_values)
    p = _problem({"T": (1, 7), **{c: (1, 7) for c in "abcde"}}, [("T", tuple("abcde"), True)])
    # five small counts under a small total: each 1..3, and the total 5..7: all exposed
    assert {e.key for e in A.exposures(p, {"T", *"abcde"}, {}, R.protection_values)} == set("Tabcde")

