"""Simulation tests of subgroups; what the subject's tests check and their sources: tests/support/subgroups.py."""

from __future__ import annotations

import numpy as np
import pytest

from spstudy.methods import subgroups as S
from tests.support.subgroups import _world

pytestmark = pytest.mark.simulation


def test_interaction_test_under_no_heterogeneity_with_overdispersion():
    # Null world: same effect (0.85) in two groups, over-dispersed counts (NB2 phi = 0.875, which a
    # model-based Poisson variance would ignore). The cluster-robust Wald statistic should be
    # chi-squared with 1 df: mean about 1, about 5% above 3.84. (150 replicates in a benchmark run
    # gave mean 0.95 and 5.3% rejections at 120 sets per group.)
    chis = []
    for s in range(60):
        d, pairs = _world(240, seed=1000 + s, groups={"A": 0.85, "B": 0.85})
        chis.append(S.subgroup_effects(d, pairs, ["group"], settings=("gp",), windows_months=(6,)).interactions["chi2"].iloc[0])
    chis = np.array(chis)
    assert 0.6 < chis.mean() < 1.5
    assert (chis > 3.84).mean() <= 0.15


def test_interaction_test_finds_heterogeneity_and_subgroups_cover_truth():
    d, pairs = _world(1500, seed=21, groups={"A": 0.70, "B": 1.00})
    res = S.subgroup_effects(d, pairs, ["group"], settings=("gp",), windows_months=(6,))
    assert res.interactions["p_interaction"].iloc[0] < 0.01
    e = res.estimates.set_index("subgroup")
    for g, truth in (("A", 0.70), ("B", 1.00)):
        assert e.loc[g, "ratio_of_rate_ratios_lower"] < truth < e.loc[g, "ratio_of_rate_ratios_upper"]

