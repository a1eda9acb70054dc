"""Known-answer tests of figures; what the subject's tests check and their sources: tests/support/figures.py."""

import numpy as np
import pytest
from scipy import stats as st

from spstudy.methods import stats
from spstudy.publish import figures
from tests.support.figures import _practices

pytestmark = pytest.mark.known_answer


def test_rate_funnel_limits_surround_the_target_in_the_plotted_units():
    d = _practices()
    target = 1000 * d["referrals"].sum() / d["person_years"].sum()  # per 1,000, the plotted units
    # the notebook's call (target per 1,000, multiplier 1,000) used to divide the target by 1,000 twice
    fd = figures.funnel_data(d, "person_years", "rate", "rate", count="referrals", target=target, multiplier=1000, label="name")
    lim = fd.limits
    assert fd.target == pytest.approx(target)
    assert (lim["limit_99.8_lower"] < target).all() and (lim["limit_99.8_upper"] > target).all()
    # Spiegelhalter (2005, Stat Med 24:1185) Poisson funnel: for large expected counts the limits tend to
    # target +/- z sqrt(target / multiplier / n) x multiplier (z = 1.96 at 95%)
    big = lim.iloc[-1]
    half = st.norm.ppf(0.975) * np.sqrt(target / 1000 / big["x"]) * 1000
    assert big["limit_95_upper"] - target == pytest.approx(half, rel=0.05)
    assert target - big["limit_95_lower"] == pytest.approx(half, rel=0.05)
    # and exactly what spstudy.stats gives (PHEindicatormethods calculate_funnel_limits, statistic = "rate")
    ref = stats.funnel_limits_rate(lim["x"], target, multiplier=1000)
    np.testing.assert_allclose(lim["limit_99.8_upper"], ref["limit_99.8_upper"])

