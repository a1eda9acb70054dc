"""Simulation tests of service; what the subject's tests check and their sources: tests/support/service.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import service
from tests.support.service import D

pytestmark = pytest.mark.simulation


def test_median_and_share_intervals_cover_on_skewed_and_tied_waits():
    """Waiting times are skewed and recorded in whole days (ties): the distribution-free median
    interval needs no distribution and stays at or above nominal coverage (it is conservative with
    ties); the Wilson interval for the share within 14 days covers at about 95%."""
    rng = np.random.default_rng(7)
    true_median = np.floor(np.log(2) * 12.0)  # median of floor(Exponential(mean 12))
    true_share = 1 - np.exp(-15 / 12)         # P(floor(E) <= 14)
    cov_m, cov_s = [], []
    for _ in range(300):
        days = np.floor(rng.exponential(12.0, 60))
        lo, hi = service._median_ci(days, 0.95)
        cov_m.append(lo <= true_median <= hi)
        r = pd.DataFrame({"referral_date": D("2023-04-01"), "first_contact_date": D("2023-04-01") + pd.to_timedelta(days, unit="D")})
        t = service.time_between(r, "referral_date", "first_contact_date").iloc[0]
        cov_s.append(t.share_within_14_days_lower <= true_share <= t.share_within_14_days_upper)
    assert np.mean(cov_m) >= 0.94
    assert 0.92 <= np.mean(cov_s) <= 0.98

