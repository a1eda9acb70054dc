"""Service reporting (spstudy.service): hand-checked tables, the distribution-free median interval
against its published construction, intervals on simulated skewed waiting times, and the shipped data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import service

D = pd.Timestamp


def _refs():
    """Six referrals in two boroughs, written so every count can be checked by hand."""
    return pd.DataFrame({
        "referral_id": [f"R{i}" for i in range(1, 7)],
        "person_id": ["P1", "P2", "P3", "P3", "P4", "P5"],
        "referral_date": [D("2023-04-03"), D("2023-04-10"), D("2023-05-01"), D("2023-06-01"), D("2023-06-05"), D("2023-07-01")],
        "source": ["gp", "self", "gp", "gp", "other_agency", "gp"],
        "reasons": ["housing;money", "isolation", "housing", "mental_health;housing", "money", "carers"],
        "borough_code": ["E09000007", "E09000007", "E09000007", "E09000007", "E09000019", "E09000019"],
        "pcn_code": ["U1", "U1", "U2", "U2", "U3", "U3"],
        "practice_code": ["A", "A", "B", "B", "C", "C"],
        "provider": ["Age UK Camden"] * 4 + ["Help on Your Doorstep"] * 2,
        "outcome": ["seen", "seen", "seen", "seen", "dna", "declined"],
        "first_contact_date": [D("2023-04-10"), D("2023-05-08"), D("2023-05-15"), D("2023-06-20"), pd.NaT, pd.NaT],
        "closure_date": [D("2023-07-10"), pd.NaT, D("2023-06-15"), D("2023-08-01"), D("2023-07-01"), D("2023-07-02")],
        "contacts": [5, 2, 3, 4, 0, 0],
        "onward_referrals": [2, 0, 0, 1, 0, 0],
    })


@pytest.mark.unit
def test_waiting_times_by_hand():
    w = service.time_between(_refs(), "referral_date", "first_contact_date", ["borough_code"])
    c = w.set_index("borough_code").loc["E09000007"]
    # days to first contact: 7, 28, 14, 19
    assert c.n_referrals == 4 and c.n_referrals_with_interval == 4
    # nearest-rank quantiles (Hyndman & Fan 1996, definition 1): always an observed value, so a
    # median's decimal part cannot tell how many people there are
    assert c.median_days == 14 and c.q1_days == 7 and c.q3_days == 19
    assert c.n_referrals_within_14_days == 2 and c.share_within_14_days == 0.5
    assert c.n_referrals_within_28_days == 4 and c.share_within_28_days == 1.0 and c.share_within_28_days_upper == 1.0
    i = w.set_index("borough_code").loc["E09000019"]
    assert i.n_referrals == 2 and i.n_referrals_with_interval == 0 and np.isnan(i.share_within_14_days)
    both = service.waiting_times(_refs())
    closure = both[both.interval == "first contact to closure"].iloc[0]
    assert closure.n_referrals_with_interval == 3 and closure.median_days == 42  # 91, 31, 42


@pytest.mark.known_answer
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


@pytest.mark.simulation
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


@pytest.mark.unit
def test_contacts_onward_reasons_sources_by_hand():
    r = _refs()
    c = service.contacts_per_case(r, ["borough_code"]).set_index("borough_code").loc["E09000007"]
    assert c.n_referrals_seen == 4 and c.n_contacts == 14 and c.mean_contacts == 3.5 and c.median_contacts == 3
    assert c.n_referrals_seen_closed == 3 and c.mean_contacts_closed == 4.0
    o = service.onward_referrals_per_person_seen(r).iloc[0]
    assert o.n_people_seen == 3 and o.n_onward_referrals == 3 and o.onward_per_person == 1.0  # P1 2, P2 0, P3 0+1
    assert o.n_people_with_onward == 2 and o.share_with_onward == pytest.approx(2 / 3)
    rs = service.referral_reasons(r).set_index("reason")
    assert rs.loc["housing", "n_referrals_with_reason"] == 3 and rs.loc["housing", "n_referrals"] == 6
    assert rs["share_of_referrals"].sum() > 1 and rs["mean_reasons_per_referral"].iloc[0] == pytest.approx(8 / 6)
    s = service.referral_sources(r).set_index("source")
    assert s.loc["self", "share_of_referrals"] == pytest.approx(1 / 6)
    assert s.loc["gp", "n_referrals_from_source"] == 4 and s.loc["gp", "n_referrals_declined"] == 1
    assert s.loc["gp", "share_declined"] == 0.25 and s.loc["other_agency", "share_dna"] == 1.0


@pytest.mark.unit
def test_unmet_need_counts_closed_referrals_without_a_connection():
    u = service.unmet_need(_refs()).set_index(["reason", "outcome"])
    # closed: R1 (housing, money; 2 onward), R3 (housing; 0), R4 (mental_health, housing; 1), R5 dna, R6 declined
    assert u.loc[("housing", "seen"), "n_referrals_closed"] == 3 and u.loc[("housing", "seen"), "n_referrals_closed_no_onward"] == 1
    assert u.loc[("money", "all"), "n_referrals_closed"] == 2 and u.loc[("money", "dna"), "share_no_onward"] == 1.0
    assert ("isolation", "seen") not in u.index  # R2 is still open


@pytest.mark.unit
def test_caseload_per_fte_against_the_review_benchmark():
    r = _refs()
    wf = pd.DataFrame({"borough_code": ["E09000007", "E09000007", "E09000019"], "pcn_code": [None, "U1", None],
                       "role": ["link_worker", "link_worker", "care_coordinator"], "fte": [0.01, 0.01, 3.0], "employer": ["a", "b", "c"]})
    c = service.caseload_per_fte(r, wf, dt.date(2023, 4, 1), dt.date(2024, 3, 31), dt.date(2023, 6, 30)).set_index("borough_code")
    cam = c.loc["E09000007"]
    # 3 people seen in a 366-day period, 0.02 FTE: 3 / 0.02 * 365.25 / 366
    assert cam.n_people_seen == 3 and cam.annual_caseload_per_fte == pytest.approx(150 * 365.25 / 366)
    assert cam.annual_caseload_per_fte_lower < cam.annual_caseload_per_fte < cam.annual_caseload_per_fte_upper
    assert cam.position == "below" and cam.benchmark_low == 200 and cam.benchmark_high == 250
    # open on 30 June (received by then, not closed): Camden R1 (P1), R2 (P2), R4 (P3); R3 closed on 15 June
    assert cam.n_people_open == 3 and cam.open_caseload_per_fte == pytest.approx(150)
    isl = c.loc["E09000019"]
    assert isl.fte_link_workers == 0 and np.isnan(isl.annual_caseload_per_fte) and isl.position == ""
    assert "p.51" in cam.benchmark_source


@pytest.mark.unit
def test_monthly_referrals_are_zero_filled_per_borough():
    m = service.monthly_referrals(_refs(), dt.date(2023, 4, 1), dt.date(2023, 9, 30), ["borough_code"])
    cam = m[m.borough_code == "E09000007"].set_index("month")["n_referrals"]
    assert cam.to_dict() == {"2023-04-01": 2, "2023-05-01": 1, "2023-06-01": 1, "2023-07-01": 0, "2023-08-01": 0, "2023-09-01": 0}
    assert {"mean", "upper_process_limit", "special_cause", "rule"} <= set(m.columns) and m.n_points.eq(6).all()


@pytest.mark.unit
def test_service_report_levels_and_tidy():
    r = _refs()
    wf = pd.DataFrame({"borough_code": ["E09000007"], "pcn_code": [None], "role": ["link_worker"], "fte": [1.0], "employer": ["a"]})
    rep = service.service_report(r, wf, dt.date(2023, 4, 1), dt.date(2024, 3, 31), dt.date(2024, 3, 31))
    assert set(rep.waiting_times.level) == {"area", "borough", "pcn", "provider"}
    pcn = rep.contacts[rep.contacts.level == "pcn"].set_index("pcn_code")
    assert pcn.loc["U2", "n_referrals_seen"] == 2
    t = rep.tidy()
    assert list(t.columns) == ["table", "level", "borough_code", "pcn_code", "provider", "interval", "reason", "source", "outcome",
                               "month", "measure", "value"]
    assert set(t.table) == {"waiting_times", "contacts", "onward", "caseload", "reasons", "sources", "monthly", "unmet_need"}
    v = t[(t.table == "contacts") & (t.level == "area") & (t.measure == "n_contacts")]["value"].item()
    assert v == 14


@pytest.mark.integration
def test_shipped_ncl_service_figures_are_sane():
    from spstudy.inputs.extracts import load_extracts, sample_extract
    from spstudy.inputs.params import load_parameters

    shipped = Path(__file__).resolve().parent.parent / "data" / "extracts"
    if not (shipped / "persons.parquet").exists():
        pytest.skip("shipped extract not present")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = load_parameters("ncl")
        ex = load_extracts(p, sample_extract(shipped, Path(d), 4000, seed=2, referred_fraction=0.5))
        rep = service.service_report(ex.referrals, ex.workforce, p.study.referral_start, p.study.referral_end, p.study.referral_end)
    w = rep.waiting_times[(rep.waiting_times.level == "area") & (rep.waiting_times.interval == "referral to first contact")].iloc[0]
    assert 0 < w.median_days_lower <= w.median_days <= w.median_days_upper < 60
    assert w.n_referrals_with_interval == (ex.referrals.outcome == "seen").sum()
    s = rep.sources[rep.sources.level == "area"]
    assert s["n_referrals_from_source"].sum() == len(ex.referrals)
    assert len(rep.monthly[rep.monthly.level == "borough"]) == 12 * 5
