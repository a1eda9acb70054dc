"""The evaluation on simulated worlds of its own (spstudy.worlds, independent of spstudy.synth):
where the matched design holds, where it fails and the trend-adjusted estimator holds, and where
nothing holds and the verdict must say so. Fixed seeds; sizes chosen to fit the suite (about 25
evaluations of 1,500 referred people); benchmarks/evaluation_coverage.py runs many more seeds.

The truth in every world is the ratio of expected counts with and without the planted effect
(rate ratio 0.85 for people seen, ITT about 0.89), computed exactly from the latent rates.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spstudy.analyses import worlds as W
from spstudy.methods import diagnostics as dg

pytestmark = pytest.mark.simulation

DESIGN = W.world_design(cohorts=("itt",), bootstrap_draws=50)
SEEDS = {"null": range(1000, 1010), "trend_selection": range(1000, 1004), "long_crisis": range(1000, 1004),
         "late_shock": range(1000, 1004), "transient_crisis": range(1000, 1002), "heterogeneous": range(1000, 1002)}


@pytest.fixture(scope="module")
def cards() -> pd.DataFrame:
    rows = []
    for name, seeds in SEEDS.items():
        for seed in seeds:
            w = W.simulate_world(name, seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows.append(W.scorecard(w, W.evaluate_world(w, DESIGN)))
    return pd.concat(rows, ignore_index=True)


def _gp(cards, world):
    return cards[(cards["world"] == world) & (cards["setting"] == "gp")]


def test_no_false_positives_under_the_null_beyond_the_nominal_rate(cards):
    """Null world (selection on stable high use, no effect): of the 40 headline 95% intervals (10
    seeds x GP, A&E x 6, 12 months) at most 6 may exclude 1. Under the nominal 5% the chance of 7
    or more is 0.3% (binomial(40, 0.05)); a design with a 20% false-positive rate would fail this
    test 71% of the time. An estimate judged not credible makes no claim."""
    null = cards[cards["world"] == "null"]
    assert len(null) == 40
    fp = int(null["headline_excludes_1"].sum())
    assert stats.binom.sf(6, 40, 0.05) < 0.005
    assert fp <= 6, f"{fp} of 40 headline intervals exclude 1 under the null"
    # and the matched design itself is not biased here
    assert abs(np.log(null["matched_did"]).mean()) < 0.03


def test_trend_selection_main_fails_and_the_trend_adjusted_estimate_covers(cards):
    """People referred because their use has been rising for years (2% a month, going on after
    referral): the matched DiD points the wrong way and misses the truth; the trend-adjusted
    estimator covers it; the verdict never puts the matched DiD forward."""
    g = _gp(cards, "trend_selection")
    assert len(g) == 8
    assert g["matched_did_covers"].sum() <= 1
    assert (g["matched_did"] > g["truth"] * 1.05).all()
    assert g["trend_adjusted_covers"].sum() >= 5
    assert not (g["headline_estimator"] == "matched_did").any()
    assert (g.loc[g["headline_estimator"] == "trend_adjusted", "headline_covers"] == True).all()  # noqa: E712


def test_long_crisis_no_estimator_recovers_the_truth_and_the_verdict_says_so(cards):
    """A crisis that starts 8 months before referral and fades slowly through the follow-up: the
    trend-adjusted estimate is far off, the matched DiD gives different answers for 6 and 12
    months although the truth is the same, and the verdict is 'not credible' every time."""
    g = _gp(cards, "long_crisis")
    assert (g["verdict"] == dg.NOT_CREDIBLE).all()
    for w in (6, 12):
        x = g[g["window_months"] == w]
        assert np.log(x["trend_adjusted"] / x["truth"]).mean() > 0.1
    m6 = g[g["window_months"] == 6].set_index("seed")["matched_did"]
    m12 = g[g["window_months"] == 12].set_index("seed")["matched_did"]
    assert np.log(m6 / m12).mean() > 0.05


def test_shock_just_before_referral_is_caught_and_the_robust_estimate_covers(cards):
    """A shock in the last weeks before referral that spills into the first two months after it:
    the 6-month matched estimate misses; the post-referral transient check fails it and the
    trend-adjusted estimate (first 3 months left out) is put forward and covers the truth."""
    g = _gp(cards, "late_shock")
    six = g[g["window_months"] == 6]
    assert six["matched_did_covers"].sum() <= 1
    assert (g["headline_estimator"] == "trend_adjusted").all()
    assert g["trend_adjusted_covers"].sum() >= 6


@pytest.mark.parametrize("world", ["transient_crisis", "heterogeneous"])
def test_where_the_design_holds_the_matched_estimate_is_put_forward_and_covers(cards, world):
    """A crisis confined to the washout, and an effect that differs by age: the matched DiD is the
    headline and covers the (average) truth."""
    g = _gp(cards, world)
    assert (g["headline_estimator"] == "matched_did").all()
    assert g["matched_did_covers"].sum() >= 3  # of 4 (2 seeds x 2 windows; all four covering has chance 0.81)
    assert abs(np.log(g["matched_did"] / g["truth"]).mean()) < 0.05
