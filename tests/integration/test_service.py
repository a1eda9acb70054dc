"""Integration tests of service; what the subject's tests check and their sources: tests/support/service.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from spstudy.analyses import service
from tests.support import ROOT

pytestmark = pytest.mark.integration


def test_shipped_ncl_service_figures_are_sane():
    from spstudy.inputs.extracts import load_extracts, sample_extract
    from spstudy.inputs.params import load_parameters

    shipped = ROOT / "data" / "extracts"
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

