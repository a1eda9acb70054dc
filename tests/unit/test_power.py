"""Unit tests of power; what the subject's tests check and their sources: tests/support/power.py."""

from __future__ import annotations

import numpy as np
import pytest

from spstudy.methods import power as P

pytestmark = pytest.mark.unit


def test_within_person_covariance_cancels_a_stable_rate():
    # psi = phi (a person's rate never changes): the dispersion cancels from a within-person ratio,
    # leaving the Poisson variance; psi = 0 adds phi twice.
    mu0, mu1 = np.full(500, 1.0), np.full(500, 2.0)
    pois = P.var_log_ratio_of_sums(mu0, mu1)
    assert pois == pytest.approx((1 / 1 + 1 / 2) / 500)
    assert P.var_log_ratio_of_sums(mu0, mu1, dispersion=0.8, frailty_cov=0.8) == pytest.approx(pois)
    assert P.var_log_ratio_of_sums(mu0, mu1, dispersion=0.8, frailty_cov=0.0) == pytest.approx(pois + 2 * 0.8 / 500)


def test_mde_table_by_group_flags_target_and_reads_no_post_events():
    w = P.simulate_matched_counts(400, seed=3, groups={"Camden": 1.0, "Islington": 1.0})
    d, pairs = w.units, w.pairs
    d = d.rename(columns={"group": "borough"})
    d["gp_post_6m_events"] = -999  # outcomes after the index date must never be read
    t = P.minimum_detectable_effects(d, pairs, settings=("gp",), windows_months=(6,), by="borough", target_reductions={"gp": 0.14}).table
    assert t["group"].tolist() == ["Camden", "Islington", "All"]
    assert t["n_matched_sets"].tolist() == [200, 200, 400]
    assert (t["mde_pct_change"] < 0).all() and t.loc[2, "mde_rate_ratio"] > t.loc[0, "mde_rate_ratio"]  # more people, smaller MDE
    assert t["powered_for_target"].tolist() == [bool(x >= 0.86) for x in t["mde_rate_ratio"]]
    assert t.loc[0, "events_baseline_treated"] == int(d.loc[(d.treated == 1) & (d.borough == "Camden"), "gp_baseline_events"].sum())
    with pytest.raises(ValueError, match="power"):
        P.minimum_detectable_effects(d, pairs, settings=("gp",), windows_months=(6,), power=1.2)
    with pytest.raises(ValueError, match="missing column"):
        P.minimum_detectable_effects(d, pairs, settings=("ae",), windows_months=(6,))

