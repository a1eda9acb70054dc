"""Known-answer tests of subgroups; what the subject's tests check and their sources: tests/support/subgroups.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spstudy.methods import subgroups as S

pytestmark = pytest.mark.known_answer


def test_wald_equality_two_groups_altman_bland_2003():
    # Altman & Bland (2003) BMJ 326:219, "Interaction revisited": HRT and non-vertebral fractures,
    # RR 0.67 (95% CI 0.46 to 0.98) in women under 60 and 0.88 (0.71 to 1.08) aged 60+.
    # Published: difference of log RRs -0.2726, SE 0.2206, z = -1.24, P = 0.22; ratio of RRs 0.76 (0.49 to 1.17).
    z975 = 1.959964
    b = np.log([0.67, 0.88])
    se = np.array([(np.log(0.98) - np.log(0.46)) / (2 * z975), (np.log(1.08) - np.log(0.71)) / (2 * z975)])
    chi2, df, p = S.wald_equality_test(b, np.diag(se ** 2))
    diff, se_d = b[0] - b[1], np.sqrt(np.sum(se ** 2))
    assert diff == pytest.approx(-0.2726, abs=5e-4) and se_d == pytest.approx(0.2206, abs=5e-4)
    assert df == 1 and chi2 == pytest.approx((diff / se_d) ** 2) and np.sqrt(chi2) == pytest.approx(1.24, abs=0.005)
    assert p == pytest.approx(0.22, abs=0.005)
    assert np.exp(diff) == pytest.approx(0.76, abs=0.005)
    assert np.exp(diff - z975 * se_d) == pytest.approx(0.49, abs=0.005) and np.exp(diff + z975 * se_d) == pytest.approx(1.17, abs=0.005)


def test_holm_adjustment_hand_computed():
    # Holm (1979) Scand J Stat 6:65 step-down: sorted p x (m - i + 1), cumulative maximum, capped at 1
    # (R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm") = 0.05 0.08 0.09 0.09 0.09).
    assert S.holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    from statsmodels.stats.multitest import multipletests  # reference implementation

    p = np.random.default_rng(4).uniform(0, 0.2, 25)
    assert S.holm(p) == pytest.approx(multipletests(p, method="holm")[1], rel=1e-12)
    out = S.holm([0.04, np.nan, 0.01])  # missing p-values are not tests
    assert out[0] == pytest.approx(0.04) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_saturated_poisson_reproduces_cell_ratio():
    # Saturated log-linear model: the MLE reproduces the observed cells (Agresti 2013, s.9.1), so the
    # ratio of rate ratios is (post_T/pre_T) / (post_C/pre_C) on the (weighted) sums.
    d = pd.DataFrame({"index_id": range(8), "treated": [1, 1, 1, 1, 0, 0, 0, 0], "seen": [1] * 4 + [0] * 4,
                      "gp_baseline_events": [4, 6, 5, 5, 3, 3, 4, 2], "baseline_days": 91,
                      "gp_post_6m_events": [6, 8, 7, 9, 8, 6, 7, 7], "post_6m_days": 183})
    pairs = pd.DataFrame({"subclass": [1, 2, 3, 4], "treated_id": [0, 1, 2, 3], "control_id": [4, 5, 6, 7]})
    r = S.fit_ratio_of_rate_ratios(S.did_long(d, pairs, "gp", 6), min_matched_sets=3)
    assert r["status"] == "estimated"
    assert r["ratio_of_rate_ratios"] == pytest.approx((30 / 20) / (28 / 12), rel=1e-9)
    assert r["ratio_of_rate_ratios_lower"] < r["ratio_of_rate_ratios"] < r["ratio_of_rate_ratios_upper"]

