"""Known-answer tests of needs; what the subject's tests check and their sources: tests/support/needs.py."""

import pytest

from spstudy.analyses import needs
from tests.support.needs import ind, weights  # noqa: F401 (fixtures)

pytestmark = pytest.mark.known_answer


def test_workforce_coverage_reproduces_the_review_and_flags_enfield():
    cov = needs.workforce_coverage(1.0).set_index("borough_name")
    # NCL Training Hub review (2024): Barnet 25 link workers for 432,182 people (p.27); Islington 15.5 for 263,251 (p.48)
    assert cov.loc["Barnet", "link_workers_per_10000"] == pytest.approx(25 / 432182 * 1e4)
    assert cov.loc["Islington", "link_workers_per_10000"] == pytest.approx(15.5 / 263251 * 1e4)
    # Enfield: 7 link workers for 329,980 residents (Census 2021) = 0.21, not the published 0.026
    assert cov.loc["Enfield", "link_workers_per_10000"] == pytest.approx(0.2121, abs=1e-4)
    assert not cov.loc["Enfield", "published_consistent"]
    assert cov.loc["Camden", "published_consistent"]  # 0.53 is "around 0.5"
    assert cov.loc["Haringey", "link_workers"] == 13  # 11 Public Voice + 1 North West PCN + 1 Bridge Renewal
    assert cov.loc["Enfield", "gap_to_target"] == pytest.approx(329980 / 1e4 - 7)
    # review p.38 / Enfield Borough Plan p.67: "limited to 7 individuals": a headcount, not FTE
    assert cov.loc["Enfield", "link_worker_unit"] == "headcount"
    assert cov.loc["Islington", "care_coordinator_unit"] == "FTE"  # "31.45 (whole time equivalent) Care Coordinators"
    assert not any(c.startswith("fte") for c in cov.columns)


def test_ncl_total_discrepancy_is_flagged():
    t = needs.workforce_totals().set_index("role")
    # review p.13: "a total of 72 SPLWs, 18 health and well-being coaches and 243 care coordinators";
    # borough sections: 25 + 16 + 7 + 13 + 15.5 = 76.5 link workers
    assert t.loc["link_worker", "ncl_stated_total"] == 72 and t.loc["link_worker", "sum_of_boroughs"] == 76.5
    assert t.loc["link_worker", "difference"] == pytest.approx(4.5) and not t.loc["link_worker", "consistent"]
    assert "76.5" in t.loc["link_worker", "flag"] and "72" in t.loc["link_worker", "flag"]
    assert t.loc["care_coordinator", "boroughs_without_figure"] == "Enfield"
    assert "headcount (Enfield)" in t.loc["link_worker", "units"]

