"""Unit tests of disclosure; what the subject's tests check and their sources: tests/support/disclosure.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spstudy.publish import audit as A
from spstudy.publish import cells as C
from spstudy.publish import disclosure as D
from tests.support import ROOT
from tests.support.disclosure import CAMDEN, NCL, R, _pcn_with_practices, _problem, _referrals_by_practice

pytestmark = pytest.mark.unit


def test_primary_suppression_and_rounding():
    assert [R.primary(v) for v in (0, 1, 7, 8)] == [False, True, True, False]
    # half up to the nearest 5 (HES/ECDS analysis guide): 8 -> 10, 12 -> 10, 12.5 -> 15, 13 -> 15
    assert [R.round(v) for v in (0, 8, 12, 12.5, 13, 102)] == [0, 10, 10, 15, 15, 100]
    assert R.published_bounds(0) == (0.0, 0.0)
    assert R.published_bounds(10) == (8, 12.5)          # a published 10 is 8..12: 1..7 would be [c]
    assert R.published_bounds(100) == (97.5, 102.5)


def test_weaker_rules_are_refused_without_a_reason(tmp_path):
    import shutil

    from spstudy.inputs.params import ParameterError, load_parameters

    root = ROOT / "parameters"
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


def test_one_precision_per_kind_of_quantity():
    assert D.format_value(1234.0, "count") == "1234"
    assert D.format_value(12.345, "rate") == "12.3" and D.format_value(12.345, "percent") == "12.3"
    assert D.format_value(0.91234, "ratio") == "0.91" and D.format_value(0.0004, "p") == "<0.001"
    assert D.format_value(float("nan"), "rate") == "" and D.format_value(True, "text") == "yes"
    assert D.format_value(-0.0001, "rate") == "0.0"


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


def test_overlapping_reasons_and_subsets_are_inequalities():
    ks = [C.make_key("referrals_svc", {"geo": CAMDEN, "reason": r}) for r in ("housing", "money")]
    rels = C.relations(ks)
    tot = C.make_key("referrals_svc", {"geo": CAMDEN})
    mine = [r for r in rels if r[0] == tot and any("reason" in C.key_str(c) for c in r[1])]
    assert len(mine) == 2 and all(len(ch) == 1 and not exact for _, ch, exact in mine)  # each reason <= all, no sum
    sub = C.make_key("referrals_svc_adults", {"geo": CAMDEN})
    sup = [r for r in C.relations([sub]) if r[0] == C.make_key("referrals_svc", {"geo": CAMDEN})]
    assert sup and sub in sup[0][1] and sup[0][2]  # all referrals = adults + the rest


def test_exposures_name_the_cell_and_where_it_is():
    p = _problem({"T": (20, 20), "a": (5, 5), "b": (9, 9), "c": (1, A.INF)}, [("T", ("a", "b", "c"), True)])
    p.sources = {"c": {"camden/t1"}}
    ex = A.exposures(p, {"c"}, {"T": 20, "a": 5, "b": 9}, 4)
    assert [e.key for e in ex if e.kind == "suppressed"] == ["c"]


def test_every_numeric_column_must_be_declared():
    spec = D.TableSpec("t", "T", {"g": D.Label("Group"), "n": D.Label("N")})
    with pytest.raises(D.DisclosureError, match="holds numbers but is declared as a Label"):
        D.check_table(spec, pd.DataFrame({"g": ["a"], "n": [3]}), "x")
    spec = D.TableSpec("t", "T", {"g": D.Label("Group"), "n": D.Count("N")})
    with pytest.raises(D.DisclosureError, match="negative"):
        D.check_table(spec, pd.DataFrame({"g": ["a"], "n": [-1]}), "x")
    with pytest.raises(D.DisclosureError, match="not in the table"):
        D.check_table(D.TableSpec("t", "T", {"m": D.Count("M")}), pd.DataFrame({"n": [1]}), "x")


def test_protection_is_deterministic():
    pcn, practices = _pcn_with_practices(3)
    vals = {pr: v for pr, v in zip(practices, [3, 9, 41, 12, 5, 33, 60, 2][: len(practices)])}
    a = D.control_release([_referrals_by_practice(vals)], R)[0][0].shown
    b = D.control_release([_referrals_by_practice(vals)], R)[0][0].shown
    pd.testing.assert_frame_equal(a, b)
    assert np.all(a.to_numpy() == b.to_numpy())


def test_cells_that_contradict_their_relations_are_refused():
    """Keys that misdescribe what was counted (a practice count larger than its PCN's) would make the
    attack model wrong: the release refuses them instead of protecting against the wrong model."""
    pcn, practices = _pcn_with_practices(2)
    vals = {pr: 30 for pr in practices}
    vals[pcn] = 30 * len(practices) - 10   # the PCN's count is smaller than its practices' sum
    with pytest.raises(D.DisclosureError, match="do not hold in the data"):
        D.control_release([_referrals_by_practice(vals)], D.Rules(7, 5))


def test_model_age_bands_are_one_list():
    assert list(C.MODEL_AGE_BAND.children[C.ALL]) == ["16-29", "30-44", "45-64", "65-79", "80+"]



def test_reference_rates_are_pooled_past_the_threshold_and_rounded():
    """Expected counts are linear in the stratum rates, so the rates behind them are pooled until
    every stratum holds more than the threshold (7) and the pooled count is rounded to 5 (worked by hand)."""
    bands = pd.DataFrame({"sex": ["F"] * 4 + ["M"] * 3, "age_band": ["0-4", "5-9", "10-14", "15-19", "0-4", "5-9", "10-14"],
                          "referrals": [3, 4, 12, 2, 9, 1, 1], "person_years": [100.0, 100, 100, 100, 50, 50, 50]})
    out = D.pool_strata(bands, R, within="sex", label="age_band")
    # F: 3 + 4 = 7 is not > 7, so 0-4..10-14 pool to 19 (rounded 20); the short run 15-19 (2) joins them: 21 -> 20 over 400
    assert out.loc[out["sex"] == "F", "stratum"].unique().tolist() == ["0-4 to 15-19"]
    assert out.loc[out["sex"] == "F", "rate"].tolist() == pytest.approx([20 / 400] * 4)
    # M: 9 > 7 closes a stratum; the short run after it (1 + 1) joins it: 11 -> 10 over 150
    assert out.loc[out["sex"] == "M", "stratum"].unique().tolist() == ["0-4 to 10-14"]
    assert out.loc[out["sex"] == "M", "rate"].tolist() == pytest.approx([10 / 150] * 3)
    with pytest.raises(D.DisclosureError, match="missing column 'sex'"):
        D.pool_strata(bands.drop(columns="sex"), R, within="sex", label="age_band")


def test_the_study_confidence_level_reaches_recomputed_intervals_labels_and_sentences():
    """study.confidence = 0.90: the publisher recomputes a rate's interval at 90% (stats.crude_rate at
    0.90, PHEindicatormethods phe_rate convention) and labels it '90%'; a sentence says '90% CI'."""
    from spstudy.inputs.params import load_parameters
    from spstudy.methods import stats
    from spstudy.publish import findings
    from spstudy.publish.publisher import Publisher, Tables

    pcn, practices = _pcn_with_practices(2)
    item = _referrals_by_practice({practices[0]: 120, practices[1]: 60})
    raw = item.raw
    area = item.area  # the borough of these practices
    p = load_parameters(area, overrides={"study": {"confidence": 0.9}})
    pub = Publisher(area, "nb", p, "preview")
    assert pub.ci == "90%"
    shown = pub.table("t", raw, "T", dict(item.spec.columns), rows=dict(item.spec.rows))
    assert "Rate: lower 90% limit" in shown.columns and "Rate: upper 90% limit" in shown.columns
    got = pub._preview["t"].values.set_index("code").loc[practices[0], "rate_lower"]
    want = stats.crude_rate([120], [5000], multiplier=1000, confidence=0.9)["rate_lower"].iloc[0]
    assert got == pytest.approx(round(want, 1)) and got > stats.crude_rate([120], [5000], multiplier=1000)["rate_lower"].iloc[0] - 0.05
    t = Tables({}, "camden", "Camden", {"study": {"confidence": 0.9}})
    assert findings.ci(t, 0.71, 0.88) == "90% CI 0.71 to 0.88"
    with pytest.raises(ValueError, match="names its lower limit 'lo'"):
        pub.table("t2", raw, "T", {**item.spec.columns, "rate": D.Rate("Rate", count="referrals", per="registered", lower="lo", upper="hi")},
                  rows=dict(item.spec.rows))


def _hierarchy(seed: int, n_top=4, n_mid=12, n_leaf=14):
    """Totals over totals over leaves (over 600 cells in one group), with random small counts."""
    rng = np.random.default_rng(seed)
    p, suppressed, rounded = A.Problem(), set(), {}

    def publish(k, v, exact=False):
        if exact and not R.primary(v):  # as if an unrounded rate had given the count away
            p.variable(k, v, v)
            rounded[k] = R.round(v)
        elif R.primary(v):
            p.variable(k, *R.suppressed_bounds(True, False))
            suppressed.add(k)
        else:
            p.variable(k, *R.published_bounds(R.round(v)))
            rounded[k] = R.round(v)

    grand = 0
    for t in range(n_top):
        top = 0
        for m in range(n_mid):
            leaves = rng.choice([0, 1, 2, 3, 5, 9, 14, 30], n_leaf, p=[.2, .15, .1, .1, .1, .15, .1, .1])
            kids = [f"l{t}.{m}.{i}" for i in range(n_leaf)]
            if m == 0:  # one set of siblings known exactly but one suppressed leaf: that leaf is pinned
                leaves[0], leaves[1:] = 3, np.maximum(leaves[1:], 8)
            for k, v in zip(kids, leaves):
                publish(k, float(v), exact=m == 0)
            publish(f"m{t}.{m}", float(leaves.sum()), exact=m == 0)
            p.equalities.append((f"m{t}.{m}", tuple(kids), True))
            top += leaves.sum()
        publish(f"t{t}", float(top))
        p.equalities.append((f"t{t}", tuple(f"m{t}.{m}" for m in range(n_mid)), True))
        grand += top
    publish("all", float(grand))
    p.equalities.append(("all", tuple(f"t{t}" for t in range(n_top)), True))
    p.equalities.append(("small", ("s1", "s2"), True))  # and a small group beside it
    for k, v in (("small", 9.0), ("s1", 3.0), ("s2", 6.0)):
        publish(k, v)
    return p, suppressed, rounded


def test_several_lp_models_at_once_give_the_same_verdicts_and_bounds_as_one(monkeypatch):
    """The release solves a large group with LP_THREADS copies of its model (threads): the exposed cells,
    and every exact interval, must be what one model solving everything in order finds."""
    for seed in (1, 2, 3):
        p, sup, rnd = _hierarchy(seed)
        assert len(p.bounds) >= A.PARALLEL_MIN
        got = {}
        for threads in (1, 2):
            monkeypatch.setattr(A, "LP_THREADS", threads)
            ex = A.exposures(p, sup, rnd, R.protection_values)
            exact = A.intervals(p, sorted(sup))
            got[threads] = ([(e.key, e.kind) for e in ex], exact)
        assert got[1][0] == got[2][0]
        assert {k for k, kind in got[1][0] if kind == "suppressed"} >= {f"l{t}.0.0" for t in range(4)}, "built to be exposed"
        assert got[1][1].keys() == got[2][1].keys()
        for k, iv in got[1][1].items():
            assert (iv.lo, iv.hi) == pytest.approx((got[2][1][k].lo, got[2][1][k].hi), abs=1e-6), k


def test_a_few_targets_are_solved_exactly_with_the_same_verdicts_as_the_directions(monkeypatch):
    """Re-checks after a suppression ask about a few cells of a large group: those are solved
    exactly (2 LPs a cell) instead of pushing 16 directions. The exposed cells must be the ones the
    direction search finds, and each interval contains the points the directions reached."""
    p, sup, rnd = _hierarchy(2)
    few = ["l0.0.0", "l1.0.0"] + sorted(sup - {"l0.0.0", "l1.0.0"})[:2] + sorted(rnd)[:1]  # two built to be exposed
    assert {"l0.0.0", "l1.0.0"} <= sup
    calls = []
    push = A._GroupModel.push
    monkeypatch.setattr(A._GroupModel, "push", lambda self, d: calls.append(len(d)) or push(self, d))
    exact = A.exposures(p, sup, rnd, R.protection_values, only=set(few))
    assert not calls, "a group with 5 targets must not push directions"
    monkeypatch.setattr(A, "CERTIFY_ROUNDS", 0)  # so that 5 targets (10 LPs) are more work than the 8 directions
    dirs = A.exposures(p, sup, rnd, R.protection_values, only=set(few))
    assert calls, "the direction search ran"
    assert [(e.key, e.kind) for e in exact] == [(e.key, e.kind) for e in dirs]
    assert {e.key for e in exact} >= {"l0.0.0", "l1.0.0"}


def test_creating_lp_models_from_threads_leaves_stdout_where_it_was():
    """_highs() points file descriptor 1 at /dev/null while HiGHS prints its banner; two threads doing
    that at once used to leave the whole process writing its stdout to /dev/null."""
    import os
    import threading

    before = os.fstat(1)
    ts = [threading.Thread(target=A._highs) for _ in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    after = os.fstat(1)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
