"""Disclosure control: the rule, the cells and their relations, the linear-programming attacker, and
the release-level protection (spstudy.disclosure, spstudy.cells, spstudy.audit)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spstudy.publish import audit as A
from spstudy.publish import cells as C
from spstudy.publish import disclosure as D

R = D.Rules(7, 5)
CAMDEN, NCL = "E09000007", C.NCL_CODE


def _pcn_with_practices(n=3):
    from spstudy.inputs import reference

    gp = reference.gp_practices()
    pcn = gp.groupby("pcn_code").filter(lambda g: len(g) >= n)["pcn_code"].iloc[0]
    return pcn, list(gp.loc[gp["pcn_code"] == pcn, "practice_code"])


# ------------------------------------------------------------------------------------ the rule

@pytest.mark.unit
def test_primary_suppression_and_rounding():
    assert [R.primary(v) for v in (0, 1, 7, 8)] == [False, True, True, False]
    # half up to the nearest 5 (HES/ECDS analysis guide): 8 -> 10, 12 -> 10, 12.5 -> 15, 13 -> 15
    assert [R.round(v) for v in (0, 8, 12, 12.5, 13, 102)] == [0, 10, 10, 15, 15, 100]
    assert R.published_bounds(0) == (0.0, 0.0)
    assert R.published_bounds(10) == (8, 12.5)          # a published 10 is 8..12: 1..7 would be [c]
    assert R.published_bounds(100) == (97.5, 102.5)


@pytest.mark.unit
def test_weaker_rules_are_refused_without_a_reason(tmp_path):
    import shutil
    from pathlib import Path

    from spstudy.inputs.params import ParameterError, load_parameters

    root = Path(__file__).resolve().parent.parent / "parameters"
    shutil.copytree(root, tmp_path / "p")
    f = tmp_path / "p" / "camden.yaml"
    f.write_text("area: camden\ndisclosure:\n  threshold: 1\n  rounding_base: 1\n")
    with pytest.raises(ParameterError, match="weaker_control_reason"):
        load_parameters("camden", tmp_path / "p")
    f.write_text("area: camden\ndisclosure:\n  threshold: yes\n")      # YAML 'yes' is a boolean, never 1
    with pytest.raises(ParameterError, match="valid integer"):
        load_parameters("camden", tmp_path / "p")
    f.write_text("area: camden\ndisclosure:\n  threshold: 7\n  threshold: 2\n")   # a duplicated key is not 'the last one wins'
    with pytest.raises(ParameterError, match="given twice"):
        load_parameters("camden", tmp_path / "p")
    f.write_text("area: camden\ndisclosure:\n  threshold: 3\n  weaker_control_reason: agreed by the IG lead, DPIA 42\n")
    assert load_parameters("camden", tmp_path / "p").disclosure.threshold == 3


@pytest.mark.unit
def test_one_precision_per_kind_of_quantity():
    assert D.format_value(1234.0, "count") == "1234"
    assert D.format_value(12.345, "rate") == "12.3" and D.format_value(12.345, "percent") == "12.3"
    assert D.format_value(0.91234, "ratio") == "0.91" and D.format_value(0.0004, "p") == "<0.001"
    assert D.format_value(float("nan"), "rate") == "" and D.format_value(True, "text") == "yes"
    assert D.format_value(-0.0001, "rate") == "0.0"


# ---------------------------------------------------------------------------------- the cells

@pytest.mark.unit
def test_keys_are_canonical_and_relations_follow_the_hierarchies():
    assert C.make_key("referrals_svc", {"geo": CAMDEN, "ethnicity": C.ALL}) == C.make_key("referrals_svc", {"geo": CAMDEN})
    pcn, practices = _pcn_with_practices()
    k = C.make_key("referrals_svc", {"geo": practices[0], "ethnicity": "Black"})
    rels = {(p, ch) for p, ch, exact in C.relations([k]) if exact}
    # the practice's PCN is the sum of all its practices (Black), and Black is the sum of its NHS categories
    assert (C.make_key("referrals_svc", {"geo": pcn, "ethnicity": "Black"}),
            tuple(sorted(C.make_key("referrals_svc", {"geo": pr, "ethnicity": "Black"}) for pr in practices))) in rels
    kids = {ch for p, ch in rels if p == C.make_key("referrals_svc", {"geo": NCL})}
    assert tuple(sorted(C.make_key("referrals_svc", {"geo": b}) for b in C.geo_children(NCL, "svc"))) in kids
    # wards belong to residence measures only
    with pytest.raises(C.CellError, match="residence"):
        C.relations([C.make_key("referrals_svc", {"geo": "E05013660"})])


@pytest.mark.unit
def test_overlapping_reasons_and_subsets_are_inequalities():
    ks = [C.make_key("referrals_svc", {"geo": CAMDEN, "reason": r}) for r in ("housing", "money")]
    rels = C.relations(ks)
    tot = C.make_key("referrals_svc", {"geo": CAMDEN})
    mine = [r for r in rels if r[0] == tot and any("reason" in C.key_str(c) for c in r[1])]
    assert len(mine) == 2 and all(len(ch) == 1 and not exact for _, ch, exact in mine)  # each reason <= all, no sum
    sub = C.make_key("referrals_svc_adults", {"geo": CAMDEN})
    sup = [r for r in C.relations([sub]) if r[0] == C.make_key("referrals_svc", {"geo": CAMDEN})]
    assert sup and sub in sup[0][1] and sup[0][2]  # all referrals = adults + the rest


# -------------------------------------------------------------------------------- the attacker

def _problem(cells: dict, rels: list):
    p = A.Problem()
    for k, (lo, hi) in cells.items():
        p.variable(k, lo, hi)
    p.equalities = rels
    return p


@pytest.mark.known_answer
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


@pytest.mark.known_answer
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


@pytest.mark.unit
def test_exposures_name_the_cell_and_where_it_is():
    p = _problem({"T": (20, 20), "a": (5, 5), "b": (9, 9), "c": (1, A.INF)}, [("T", ("a", "b", "c"), True)])
    p.sources = {"c": {"camden/t1"}}
    ex = A.exposures(p, {"c"}, {"T": 20, "a": 5, "b": 9}, 4)
    assert [e.key for e in ex if e.kind == "suppressed"] == ["c"]


# ----------------------------------------------------------------------------- release protection

def _slug(code):
    b = code
    while C.geo_level(b) not in ("borough", "ncl"):
        b = C.geo_parent(b)
    return {v: k for k, v in C._geo()["slug_code"].items()}[b]


def _referrals_by_practice(values: dict[str, float], area=None, measure="referrals_svc"):
    area = area or _slug(next(iter(values)))
    df = pd.DataFrame({"code": list(values), "referrals": list(values.values()), "registered": [5000.0] * len(values)})
    spec = D.TableSpec("t", "T", {"code": D.Label("Code"), "referrals": D.Count("Referrals", measure=measure),
                                   "registered": D.Public("Registered", "count"),
                                   "rate": D.Rate("Rate", count="referrals", per="registered", multiplier=1000, lower="lo", upper="hi")},
                       rows={"code": "geo"})
    return D.Item(area, "nb", spec, df)


@pytest.mark.integration
def test_a_lone_small_practice_cannot_be_recovered_from_its_pcn():
    pcn, practices = _pcn_with_practices(3)
    vals = {practices[0]: 4, practices[1]: 12, practices[2]: 40}
    for pr in practices[3:]:
        vals[pr] = 30
    vals[pcn] = sum(vals.values())
    it = _referrals_by_practice(vals)
    out, prot = D.control_release([it], D.Rules(7, 1))   # no rounding: only suppression protects
    shown = out[0].shown.set_index("code")
    assert shown.loc[practices[0], "referrals"] == D.SUPPRESSED
    assert (shown["referrals"] == D.SUPPRESSED).sum() >= 2  # a second cell, or the total, hides the first
    assert shown.loc[practices[0], "rate"] == D.SUPPRESSED and shown.loc[practices[0], "lo"] == D.SUPPRESSED


@pytest.mark.integration
def test_rates_are_computed_from_the_published_count():
    pcn, practices = _pcn_with_practices(2)
    it = _referrals_by_practice({practices[0]: 123, practices[1]: 58})
    out, _ = D.control_release([it], R)
    v = out[0].values.set_index("code")
    assert v.loc[practices[0], "referrals"] == 125 and v.loc[practices[0], "rate"] == pytest.approx(25.0)  # 125 / 5000, not 123
    from spstudy.methods import stats

    ci = stats.crude_rate([125], [5000], multiplier=1000)
    assert v.loc[practices[0], "lo"] == pytest.approx(round(float(ci["lower"].iloc[0]), 1))


@pytest.mark.integration
def test_the_same_cell_in_two_packs_is_suppressed_in_both_and_must_agree():
    pcn, practices = _pcn_with_practices(2)
    slug = _slug(pcn)
    a = _referrals_by_practice({practices[0]: 3, practices[1]: 50}, area=slug)
    b = _referrals_by_practice({practices[0]: 3, practices[1]: 50}, area="ncl")
    out, _ = D.control_release([a, b], R)
    assert out[0].shown.loc[0, "referrals"] == out[1].shown.loc[0, "referrals"] == D.SUPPRESSED
    c = _referrals_by_practice({practices[0]: 4, practices[1]: 50}, area="ncl")
    with pytest.raises(D.DisclosureError, match="computed twice with different values"):
        D.control_release([_referrals_by_practice({practices[0]: 3, practices[1]: 50}, area=slug), c], R)


@pytest.mark.unit
def test_every_numeric_column_must_be_declared():
    spec = D.TableSpec("t", "T", {"g": D.Label("Group"), "n": D.Label("N")})
    with pytest.raises(D.DisclosureError, match="holds numbers but is declared as a Label"):
        D.check_table(spec, pd.DataFrame({"g": ["a"], "n": [3]}), "x")
    spec = D.TableSpec("t", "T", {"g": D.Label("Group"), "n": D.Count("N")})
    with pytest.raises(D.DisclosureError, match="negative"):
        D.check_table(spec, pd.DataFrame({"g": ["a"], "n": [-1]}), "x")
    with pytest.raises(D.DisclosureError, match="not in the table"):
        D.check_table(D.TableSpec("t", "T", {"m": D.Count("M")}), pd.DataFrame({"n": [1]}), "x")


@pytest.mark.integration
def test_a_rate_ratio_and_percentages_follow_their_counts():
    df = pd.DataFrame({"group": ["White", "Asian", "Black"], "referrals": [400.0, 6.0, 90.0], "py": [40000.0, 9000.0, 12000.0]})
    spec = D.TableSpec("g", "G", {"group": D.Label("Group"), "referrals": D.Count("Referrals", measure="referrals_res"),
                                  "py": D.Public("Person-years", "person_years"),
                                  "rr": D.RateRatio("RR", count="referrals", per="py", key="group", reference="White", lower="l", upper="u")},
                       rows={"group": "ethnicity"})
    out, _ = D.control_release([D.Item("camden", "nb", spec, df)], R)
    v, s = out[0].values, out[0].shown
    assert s.loc[1, "rr"] == D.SUPPRESSED and v.loc[0, "rr"] == pytest.approx(1.0) and math.isnan(v.loc[0, "l"])
    assert v.loc[2, "rr"] == pytest.approx(round((90 / 12000) / (400 / 40000), 2))


@pytest.mark.unit
def test_protection_is_deterministic():
    pcn, practices = _pcn_with_practices(3)
    vals = {pr: v for pr, v in zip(practices, [3, 9, 41, 12, 5, 33, 60, 2][: len(practices)])}
    a = D.control_release([_referrals_by_practice(vals)], R)[0][0].shown
    b = D.control_release([_referrals_by_practice(vals)], R)[0][0].shown
    pd.testing.assert_frame_equal(a, b)
    assert np.all(a.to_numpy() == b.to_numpy())


@pytest.mark.unit
def test_cells_that_contradict_their_relations_are_refused():
    """Keys that misdescribe what was counted (a practice count larger than its PCN's) would make the
    attack model wrong: the release refuses them instead of protecting against the wrong model."""
    pcn, practices = _pcn_with_practices(2)
    vals = {pr: 30 for pr in practices}
    vals[pcn] = 30 * len(practices) - 10   # the PCN's count is smaller than its practices' sum
    with pytest.raises(D.DisclosureError, match="do not hold in the data"):
        D.control_release([_referrals_by_practice(vals)], D.Rules(7, 5))


@pytest.mark.unit
def test_model_age_bands_are_one_list():
    assert list(C.MODEL_AGE_BAND.children[C.ALL]) == ["16-29", "30-44", "45-64", "65-79", "80+"]


@pytest.mark.known_answer
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
