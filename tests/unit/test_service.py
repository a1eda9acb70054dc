"""Unit tests of service; what the subject's tests check and their sources: tests/support/service.py."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import service
from tests.support.service import _refs

pytestmark = pytest.mark.unit


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


def test_unmet_need_counts_closed_referrals_without_a_connection():
    u = service.unmet_need(_refs()).set_index(["reason", "outcome"])
    # closed: R1 (housing, money; 2 onward), R3 (housing; 0), R4 (mental_health, housing; 1), R5 dna, R6 declined
    assert u.loc[("housing", "seen"), "n_referrals_closed"] == 3 and u.loc[("housing", "seen"), "n_referrals_closed_no_onward"] == 1
    assert u.loc[("money", "all"), "n_referrals_closed"] == 2 and u.loc[("money", "dna"), "share_no_onward"] == 1.0
    assert ("isolation", "seen") not in u.index  # R2 is still open


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


def test_monthly_referrals_are_zero_filled_per_borough():
    m = service.monthly_referrals(_refs(), dt.date(2023, 4, 1), dt.date(2023, 9, 30), ["borough_code"])
    cam = m[m.borough_code == "E09000007"].set_index("month")["n_referrals"]
    assert cam.to_dict() == {"2023-04-01": 2, "2023-05-01": 1, "2023-06-01": 1, "2023-07-01": 0, "2023-08-01": 0, "2023-09-01": 0}
    assert {"mean", "process_limit_upper", "special_cause", "rule"} <= set(m.columns) and m.n_points.eq(6).all()


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

