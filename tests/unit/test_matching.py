"""Unit tests of matching; what the subject's tests check and their sources: tests/support/matching.py."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spstudy.methods import matching as mt
from tests.support.matching import (
    COVS,
    DATA,
    LEGACY,
    _assert_same_result,
    _compare_with_reference,
    _quiet_match,
    _random_data,
    _tied_data,
    lalonde,  # noqa: F401 (fixtures)
    )

pytestmark = pytest.mark.unit


def test_lalonde_fixture_is_matchits_614_rows():
    df = pd.read_csv(DATA)
    assert df.shape == (614, 10)
    assert df["treat"].sum() == 185
    assert sorted(df["race"].unique()) == ["black", "hispan", "white"]
    assert df["id"].iloc[0] == "NSW1" and df["id"].iloc[-1] == "PSID429"


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("caliper", [None, 0.2, 0.05])
@pytest.mark.parametrize("exact", [False, True])
def test_fast_matching_equals_reference(k, replace, caliper, exact):
    df = _random_data(seed=int(11 * k + 3 * replace + (caliper or 0) * 100 + exact), n_t=120,
                      n_c=300, n_strata=3)
    _compare_with_reference(df, k, caliper, replace, exact)


@pytest.mark.parametrize("order", ["largest", "smallest", "data"])
def test_fast_matching_equals_reference_for_each_order(order):
    df = _random_data(seed=5, n_t=150, n_c=180, n_strata=2)  # scarce controls: order matters
    _compare_with_reference(df, 2, 0.3, False, True, order=order, distance="ps")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_t=st.integers(1, 60), n_c=st.integers(1, 120),
       k=st.integers(1, 3), replace=st.booleans(), exact=st.booleans(),
       caliper=st.sampled_from([None, 0.01, 0.1, 0.5]))
def test_fast_matching_equals_reference_property(seed, n_t, n_c, k, replace, exact, caliper):
    df = _random_data(seed, n_t, n_c, n_strata=3)
    _compare_with_reference(df, k, caliper, replace, exact)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("k, replace", [(1, False), (3, False), (1, True), (3, True)])
@pytest.mark.parametrize("caliper, scale", [(None, "sd"), (0.2, "sd"), (0.02, "raw")])
@pytest.mark.parametrize("exact", [None, ["stratum"], ["stratum", "sex"]])
def test_matches_identical_to_the_pre_speed_implementation(seed, k, replace, caliper, scale, exact):
    """Pairs, weights, subclasses, sample sizes and the unmatched counts are exactly those of
    the implementation before the speed work, with ties (scores rounded to 2 decimals) and
    scarce controls (pool exhaustion without replacement)."""
    df = _tied_data(seed, n_t=150, n_c=400, n_strata=4, decimals=2 if seed == 2 else None)
    kw = dict(k=k, replace=replace, caliper=caliper, caliper_scale=scale, exact=exact, id_col="uid")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = mt.nearest_neighbour_match(df, "treat", "ps", **kw)
        old = LEGACY.nearest_neighbour_match(df, "treat", "ps", **kw)
    _assert_same_result(new, old)


@pytest.mark.parametrize("order", ["largest", "smallest", "data", "random"])
@pytest.mark.parametrize("discard", ["none", "both"])
@pytest.mark.parametrize("distance", ["logit", "ps"])
def test_orders_discard_and_distances_identical_to_the_pre_speed_implementation(order, discard, distance):
    df = _tied_data(11, n_t=200, n_c=260, n_strata=3, decimals=3)  # controls scarce: order matters
    kw = dict(k=2, caliper=0.3, exact=["stratum"], order=order, discard=discard, distance=distance,
              rng=5 if order == "random" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = mt.nearest_neighbour_match(df, "treat", "ps", **kw)
        old = LEGACY.nearest_neighbour_match(df, "treat", "ps", **kw)
    _assert_same_result(new, old)


def test_index_ids_and_edge_cases_identical_to_the_pre_speed_implementation():
    """Ids from a string index; one control only; a stratum without controls; every control
    taken before the last treated unit's turn (MatchIt stops)."""
    df = _tied_data(4, n_t=40, n_c=25, n_strata=2, decimals=None).set_index("uid")
    df.loc[df.index[df["treat"] == 1][:3], "stratum"] = 9  # a stratum with treated only
    one = pd.DataFrame({"treat": [1, 1, 0], "ps": [0.4, 0.6, 0.5]}, index=["a", "b", "c"])
    for data, kw in [(df, dict(k=2, exact=["stratum"], caliper=None)), (df, dict(k=1, caliper=None)),
                     (one, dict(caliper=None)), (one, dict(caliper=None, replace=True, k=2))]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _assert_same_result(mt.nearest_neighbour_match(data, "treat", "ps", **kw),
                                LEGACY.nearest_neighbour_match(data, "treat", "ps", **kw))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_propensity_score_bit_identical_to_the_pre_speed_implementation(seed):
    """Same coefficients and scores to the last bit (so ties and matches cannot move), with
    numeric, binary, boolean, string and Categorical covariates and an exact-matching column."""
    rng = np.random.default_rng(seed)
    n = 3000
    df = pd.DataFrame({
        "age": rng.integers(18, 95, n),
        "rate": rng.gamma(1.0, 1.0, n),
        "flag": rng.integers(0, 2, n),
        "smoker": rng.random(n) < 0.3,
        "imd_q": rng.choice(list("12345"), n),
        "eth": pd.Categorical(rng.choice(["White", "Asian", "Black", "Mixed", "Other"], n),
                              categories=["White", "Asian", "Black", "Mixed", "Other"]),
        "pcn": rng.integers(0, 6, n),
    })
    lin = -2 + 0.02 * df["age"] + 0.4 * df["rate"] + 0.3 * df["flag"] - 0.2 * df["smoker"]
    df["treat"] = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(int)
    covs = ["age", "rate", "flag", "smoker", "imd_q", "eth"]
    fitted = mt.propensity_model(df, "treat", covs, exact=["pcn"])
    new = fitted.scores
    old = LEGACY.propensity_score(df, "treat", covs, exact=["pcn"])
    assert fitted.coefficients == old.attrs["coefficients"]  # the frozen legacy copy still returns them in attrs
    assert np.array_equal(new["ps"].to_numpy(), old["ps"].to_numpy())
    assert np.array_equal(new["logit_ps"].to_numpy(), old["logit_ps"].to_numpy())


def test_weighted_crossprod_bit_identical_over_chunks_and_reused_buffers():
    """Several full chunks and a partial one, buffers reused across calls (as the IRLS loop
    does): the same bits as the plain expression of the pre-speed implementation."""
    rng = np.random.default_rng(3)
    X0 = rng.normal(size=(2500, 7))
    for X in (np.asfortranarray(X0), np.ascontiguousarray(X0)):  # the fit's (column-major) layout, and the other
        buffers: dict = {}
        for _ in range(3):
            w, z = rng.random(2500), rng.normal(size=2500)
            G, g = mt._weighted_crossprod(X, w, z, chunk=700, buffers=buffers)
            G0, g0 = LEGACY._weighted_crossprod(X, w, z, chunk=700)
            assert np.array_equal(G, G0) and np.array_equal(g, g0)
        assert sorted(buffers) == [400, 700]


def test_propensity_errors_identical_to_the_pre_speed_implementation(lalonde):
    bad = [
        (lalonde.assign(sep=np.where(lalonde["treat"] == 1, "a", np.where(lalonde.index % 2 == 0, "a", "b"))),
         COVS + ["sep"]),
        (lalonde.assign(bin=np.where(lalonde["treat"] == 1, 1, lalonde.index % 2)), ["age", "bin"]),
        (lalonde.assign(x=np.where(lalonde["treat"] == 1, 10.0, 0.0) + np.linspace(0, 1, len(lalonde))), ["age", "x"]),
        (lalonde.assign(one=1, two="b"), ["age", "one", "two"]),
    ]
    for df, covs in bad:
        with pytest.raises(ValueError) as new:
            mt.propensity_score(df, "treat", covs)
        with pytest.raises(ValueError) as old:
            LEGACY.propensity_score(df, "treat", covs)
        assert str(new.value) == str(old.value)


def test_strata_codes_identical_to_the_pre_speed_implementation():
    rng = np.random.default_rng(8)
    df = pd.DataFrame({"a": rng.choice(["x", "y", "z"], 500), "b": rng.integers(0, 7, 500),
                       "c": pd.Categorical(rng.choice(["p", "q"], 500))})
    for cols in (["a"], ["a", "b"], ["b", "a", "c"]):
        assert np.array_equal(mt._strata_codes(df, cols), LEGACY._strata_codes(df, cols))
    # 6,000 levels in each of 5 columns: more combinations than one int64 holds (MultiIndex path)
    wide = pd.DataFrame({f"k{j}": rng.permutation(6000) for j in range(5)})
    wide.iloc[:10] = wide.iloc[10:20].to_numpy()  # some repeated combinations
    codes = mt._strata_codes(wide, list(wide.columns))
    assert np.array_equal(codes, LEGACY._strata_codes(wide, list(wide.columns))) and codes.max() == 5989


def test_default_is_austin_caliper_on_the_logit():
    df = _random_data(1, 300, 3000, 1)
    res = _quiet_match(df, "treat", "ps")
    logit = np.log(df["ps"] / (1 - df["ps"]))
    assert res.caliper_width == pytest.approx(0.2 * logit.std(ddof=1))
    np.testing.assert_allclose(res.units["distance"], logit)
    assert (res.pairs["abs_distance"] <= res.caliper_width).all()
    assert res.settings["distance"] == "logit" and res.settings["order"] == "largest"


def test_without_replacement_each_control_used_once_and_weights_att():
    df = _random_data(2, 400, 1500, 4)
    res = _quiet_match(df, "treat", "ps", k=2, exact=["stratum"])
    assert not res.pairs["control_id"].duplicated().any()
    u = res.units
    matched_t = u[(u["treated"] == 1) & (u["weight"] > 0)]
    assert (matched_t["weight"] == 1).all()
    wc = u.loc[(u["treated"] == 0) & (u["weight"] > 0), "weight"]
    assert wc.mean() == pytest.approx(1.0)  # normalised as MatchIt
    # every pair inside one stratum, one matched set per treated unit
    st_ = df["stratum"]
    same = st_[res.pairs["treated_id"]].to_numpy() == st_[res.pairs["control_id"]].to_numpy()
    assert same.all()
    assert res.pairs.groupby("subclass")["treated_id"].nunique().eq(1).all()


def test_row_order_does_not_change_matches():
    df = _random_data(3, 200, 600, 2)
    a = _quiet_match(df, "treat", "ps", k=2, exact=["stratum"]).pairs
    b = _quiet_match(df.sample(frac=1, random_state=9), "treat", "ps", k=2,
                     exact=["stratum"]).pairs
    key = ["treated_id", "control_id", "match_round"]
    pd.testing.assert_frame_equal(a[key].sort_values(key).reset_index(drop=True),
                                  b[key].sort_values(key).reset_index(drop=True))


def test_stratum_without_controls_is_reported():
    df = _random_data(4, 50, 200, 2)
    df.loc[df["treat"] == 1, "stratum"] = np.r_[np.full(45, 0), np.full(5, 7)]
    with pytest.warns(mt.EstimandChangeWarning, match="5 with no controls"):
        res = mt.nearest_neighbour_match(df, "treat", "ps", exact=["stratum"], caliper=None)
    assert res.n_treated_no_controls_in_stratum == 5
    tbl = res.sample_size_table
    assert tbl.loc["Unmatched", "Treated"] == 5
    assert tbl.loc["All"].sum() == len(df)


def test_discard_both_removes_units_outside_common_support():
    df = _random_data(6, 100, 400, 1)
    res = _quiet_match(df, "treat", "ps", caliper=None, discard="both")
    u = res.units
    d, t = u["distance"], u["treated"] == 1
    outside_t = t & ((d < d[~t].min()) | (d > d[~t].max()))
    outside_c = ~t & ((d < d[t].min()) | (d > d[t].max()))
    assert (u["discarded"] == (outside_t | outside_c)).all()
    assert (u.loc[u["discarded"], "weight"] == 0).all()
    tbl = res.sample_size_table
    assert tbl.loc[["Matched", "Unmatched", "Discarded"]].to_numpy().sum() == len(df)


def test_equidistant_controls_go_to_the_lower_score():
    # nn_matchC_vec.cpp: abs(d_left - d_i) <= abs(d_right - d_i) -> the left (lower) one wins
    for rows in ([0.75, 0.5, 0.25], [0.25, 0.5, 0.75]):
        df = pd.DataFrame({"treat": [0, 1, 0], "ps": rows}, index=["a", "b", "c"])
        lower = df.index[df["ps"] == 0.25][0]
        for replace in (False, True):
            res = mt.nearest_neighbour_match(df, "treat", "ps", distance="ps", caliper=None,
                                             replace=replace)
            assert res.pairs["control_id"].tolist() == [lower]


def test_random_order_is_reproducible_with_seed():
    df = _random_data(7, 80, 100, 1)
    a = _quiet_match(df, "treat", "ps", order="random", rng=42).pairs
    b = _quiet_match(df, "treat", "ps", order="random", rng=np.random.default_rng(42)).pairs
    pd.testing.assert_frame_equal(a, b)


def test_larger_problem_is_consistent():
    # 5,000 treated against 200,000 controls (the 25k vs 2M timing is in time_large_match)
    res = mt.time_large_match(n_treated=5_000, n_control=200_000, seed=3, k=2, n_strata=50)
    assert res["n_pairs"] > 9_000


def test_propensity_errors_name_the_columns(lalonde):
    df = lalonde.copy()
    df.loc[3, "educ"] = np.nan
    with pytest.raises(ValueError, match="'educ' \\(1 missing\\)"):
        mt.propensity_score(df, "treat", COVS)
    df = lalonde.copy()
    df["sep"] = np.where(df["treat"] == 1, "a", np.where(df.index % 2 == 0, "a", "b"))
    with pytest.raises(ValueError, match="separation.*sep='b': all 215 units are control"):
        mt.propensity_score(df, "treat", COVS + ["sep"])
    df = lalonde.copy()
    df["x"] = np.where(df["treat"] == 1, 10.0, 0.0) + np.linspace(0, 1, len(df))
    with pytest.raises(ValueError, match="separation.*x: treated range"):
        mt.propensity_score(df, "treat", ["age", "x"])
    with pytest.raises(ValueError, match="constant column"):
        mt.propensity_score(lalonde.assign(one=1), "treat", ["age", "one"])
    with pytest.raises(ValueError, match="coded 0/1"):
        mt.propensity_score(lalonde.assign(treat=lalonde["treat"] + 1), "treat", COVS)
    with pytest.raises(ValueError, match="missing"):
        mt.propensity_score(lalonde, "treat", ["age", "nope"])
    with pytest.raises(ValueError, match="rank deficient"):
        mt.propensity_score(lalonde.assign(age2=lalonde["age"] * 2), "treat", ["age", "age2"])


def test_exact_strata_enter_the_propensity_model(lalonde):
    fitted = mt.propensity_model(lalonde, "treat", ["age", "educ"], exact=["married"])
    assert "married[1]" in fitted.coefficients
    assert fitted.scores.equals(mt.propensity_score(lalonde, "treat", ["age", "educ"], exact=["married"]))


def test_matching_errors(lalonde):
    with pytest.raises(ValueError, match="`k`"):
        mt.nearest_neighbour_match(lalonde, "treat", "ps", k=0)
    with pytest.raises(ValueError, match="`rng`"):
        mt.nearest_neighbour_match(lalonde, "treat", "ps", order="random")
    with pytest.raises(ValueError, match="`order`"):
        mt.nearest_neighbour_match(lalonde, "treat", "ps", order="closest")
    with pytest.raises(ValueError, match="`caliper`"):
        mt.nearest_neighbour_match(lalonde, "treat", "ps", caliper=-1)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        mt.nearest_neighbour_match(lalonde.assign(ps=lalonde["ps"] + 1), "treat", "ps")
    with pytest.raises(ValueError, match="duplicated ids"):
        mt.nearest_neighbour_match(lalonde.assign(id="x"), "treat", "ps", id_col="id")
    df = lalonde.copy()
    df.loc[0, "ps"] = np.nan
    with pytest.raises(ValueError, match="'ps' \\(1 missing\\)"):
        mt.nearest_neighbour_match(df, "treat", "ps")
    with pytest.raises(ValueError, match="`weights` has length"):
        mt.balance_table(lalonde, "treat", COVS, weights=np.ones(3))


def test_love_and_overlap_plots(lalonde):
    import matplotlib.pyplot as plt

    res = _quiet_match(lalonde, "treat", "ps", distance="ps", caliper=None, id_col="id")
    bal = mt.balance_table(lalonde, "treat", ["ps"] + COVS, weights=res.weights)
    fig = mt.love_plot(bal)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Absolute standardised mean difference"
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "ps"
    colours = {matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in ax.collections}
    assert colours == {mt.OKABE_ITO["orange"].lower(), mt.OKABE_ITO["blue"].lower()}
    fig2 = mt.overlap_plot(lalonde, "treat", "ps", matched=res.weights)
    assert len(fig2.axes) == 2
    assert fig2.axes[1].get_title() == "Matched units (weighted)"
    assert fig2.axes[0].get_xlabel() == "Propensity score (ps)"
    plt.close("all")

