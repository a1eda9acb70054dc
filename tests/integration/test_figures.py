"""Integration tests of figures; what the subject's tests check and their sources: tests/support/figures.py."""

import pandas as pd
import pytest

from spstudy.analyses import needs
from spstudy.inputs import reference
from spstudy.publish import figures
from tests.support import ROOT
from tests.support.needs import reference_rates

pytestmark = pytest.mark.integration


def test_shipped_funnels_classify_every_point_as_the_tables_do():
    r = pd.read_parquet(ROOT / "data/extracts/referrals.parquet", columns=["person_id", "referral_date", "practice_code"])
    r["referral_date"] = pd.to_datetime(r["referral_date"])
    p = pd.read_parquet(ROOT / "data/extracts/persons.parquet", columns=["person_id", "birth_year", "sex", "ward22_code"])
    from spstudy.inputs.params import load_parameters

    w = load_parameters("ncl").needs.need_index_weights
    for area in ("ncl", "camden", "enfield"):
        for level in ("pcn_code", "practice_code"):
            pr = needs.referral_rates_by_practice(reference.area(area), referrals=r, level=level)
            pts = pr[pr["referrals"] > 0]
            fd = figures.funnel_data(pts, "person_years", "rate", "rate", count="referrals", target=pr["reference_rate"].iloc[0], multiplier=1000)
            assert (fd.points["position"].to_numpy() == pts["funnel"].to_numpy()).all(), (area, level)
            assert (fd.points["funnel"].to_numpy() == pts["funnel"].to_numpy()).all(), (area, level)
        prof = needs.ward_needs_profile(reference.area(area), referrals=r, reference_rates=reference_rates(r, p), persons=p, weights=w)
        fd = figures.funnel_data(prof, "expected", "referral_ratio", "ratio", count="referrals", multiplier=100)
        assert (fd.points["position"].to_numpy() == prof["funnel"].to_numpy()).all(), area

