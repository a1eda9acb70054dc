"""Known-answer tests of service; what the subject's tests check and their sources: tests/support/service.py."""

from __future__ import annotations

import numpy as np
import pytest

from spstudy.analyses import service

pytestmark = pytest.mark.known_answer


def test_median_interval_is_the_binomial_order_statistic_interval():
    """Campbell MJ, Gardner MJ (1988) BMJ 296:1454-6 (also Altman et al., Statistics with
    Confidence, 2000, ch.5): the 95% interval for a median runs between the order statistics whose
    ranks come from the Binomial(n, 1/2) distribution. For n = 10 the exact ranks are 2 and 9
    (P(X <= 1) = 11/1024 <= 0.025 < P(X <= 2) = 56/1024); for n = 100 the large-sample ranks
    n/2 -/+ 1.96 sqrt(n)/2 (+1) are 40 and 61."""
    x = np.arange(1, 11) * 10.0
    assert service._median_ci(x, 0.95) == (20.0, 90.0)
    y = np.arange(1, 101) * 1.0
    assert service._median_ci(y, 0.95) == (40.0, 61.0)
    lo99, hi99 = service._median_ci(y, 0.99)
    assert lo99 < 40 and hi99 > 61

