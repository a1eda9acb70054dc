"""Simulation tests of needs; what the subject's tests check and their sources: tests/support/needs.py."""

import pandas as pd
import pytest

from spstudy.analyses import needs
from spstudy.inputs import reference
from tests.support.needs import AREAS, BOROUGHS, _simulated_world, ind, reference_rates, weights  # noqa: F401 (fixtures)

pytestmark = pytest.mark.simulation


def test_every_pack_gives_a_ward_the_same_ratio_and_finds_the_planted_under_referral(weights):
    # planted: two high-need wards referred at 40% of everyone else's rate (Camden's St Pancras & Somers
    # Town and Enfield's Edmonton Green), plus a Camden ward whose residents are partly referred by an
    # Islington service. Today's bug (a borough's own referrals over the whole NCL population as the
    # reference) put every Camden ward at 400-900 and hid both.
    wards = reference.wards().set_index("ward22_name")
    planted = {wards.loc["St Pancras & Somers Town", "ward22_code"]: 0.4, wards.loc["Edmonton Green", "ward22_code"]: 0.4}
    referrals, persons = _simulated_world(planted)
    cut = needs.need_cut(weights, 0.8)
    prof = {a: needs.ward_needs_profile(reference.area(a), referrals=referrals, reference_rates=reference_rates(referrals, persons), persons=persons, weights=weights)
            for a in AREAS}
    ncl = prof["ncl"].set_index("ward22_code")
    cols = ["referrals", "expected", "referral_ratio", "referral_ratio_lower", "referral_ratio_upper", "funnel", "need_index", "need_rank"]
    for a in BOROUGHS:
        b = prof[a].set_index("ward22_code")
        pd.testing.assert_frame_equal(b[cols], ncl.loc[b.index, cols])
    # the Islington service's referrals of Camden residents count in Camden's wards, in every pack
    cam_residents = persons["ward22_code"].isin(prof["camden"]["ward22_code"])
    assert prof["camden"]["referrals"].sum() == int(cam_residents.sum())
    for a, code in (("camden", wards.loc["St Pancras & Somers Town", "ward22_code"]), ("enfield", wards.loc["Edmonton Green", "ward22_code"])):
        row = prof[a].set_index("ward22_code").loc[code]
        assert row["referral_ratio_upper"] < 100 and row["funnel"].startswith("below")
        out = needs.outreach_candidates(prof[a], need_cut=cut, ratio_below=100)
        assert code in set(out["ward22_code"])
        assert out.loc[out["ward22_code"] == code, "evidence"].item().startswith("significantly")
        ncl_out = needs.outreach_candidates(prof["ncl"], need_cut=cut, ratio_below=100)
        assert out["ward22_code"].tolist() == ncl_out.loc[ncl_out["borough_name"] == reference.area(a).name, "ward22_code"].tolist()
    # un-planted wards scatter around 100: the planted wards are the two lowest, and hardly any other ward is
    # outside the 99.8% limits (0.2% of 105 wards expected by chance)
    assert set(prof["ncl"].nsmallest(2, "referral_ratio")["ward22_code"]) == set(planted)
    others = prof["ncl"][~prof["ncl"]["ward22_code"].isin(planted)]
    assert (others["funnel"].str.contains("99.8")).sum() <= 2

