"""Integration tests of disclosure; what the subject's tests check and their sources: tests/support/disclosure.py."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from spstudy.publish import disclosure as D
from tests.support.disclosure import R, _pcn_with_practices, _referrals_by_practice, _slug

pytestmark = pytest.mark.integration


def test_a_lone_small_practice_cannot_be_recovered_from_its_pcn():
    pcn, practices = _pcn_with_practices(3)
    vals = {practices[0]: 4, practices[1]: 12, practices[2]: 40}
    for pr in practices[3:]:
        vals[pr] = 30
    vals[pcn] = sum(vals.values())
    it = _referrals_by_practice(vals)
    out, prot = D.control_release([it], D.Rules(7, 1))   # no rounding: only suppression protects
    shown = out[0].shown.set_index("code")
    assert shown.loc[practices[0], "referrals"] == D.SUPPRESSED
    assert (shown["referrals"] == D.SUPPRESSED).sum() >= 2  # a second cell, or the total, hides the first
    assert shown.loc[practices[0], "rate"] == D.SUPPRESSED and shown.loc[practices[0], "rate_lower"] == D.SUPPRESSED


def test_rates_are_computed_from_the_published_count():
    pcn, practices = _pcn_with_practices(2)
    it = _referrals_by_practice({practices[0]: 123, practices[1]: 58})
    out, _ = D.control_release([it], R)
    v = out[0].values.set_index("code")
    assert v.loc[practices[0], "referrals"] == 125 and v.loc[practices[0], "rate"] == pytest.approx(25.0)  # 125 / 5000, not 123
    from spstudy.methods import stats

    ci = stats.crude_rate([125], [5000], multiplier=1000)
    assert v.loc[practices[0], "rate_lower"] == pytest.approx(round(float(ci["rate_lower"].iloc[0]), 1))


def test_the_same_cell_in_two_packs_is_suppressed_in_both_and_must_agree():
    pcn, practices = _pcn_with_practices(2)
    slug = _slug(pcn)
    a = _referrals_by_practice({practices[0]: 3, practices[1]: 50}, area=slug)
    b = _referrals_by_practice({practices[0]: 3, practices[1]: 50}, area="ncl")
    out, _ = D.control_release([a, b], R)
    assert out[0].shown.loc[0, "referrals"] == out[1].shown.loc[0, "referrals"] == D.SUPPRESSED
    c = _referrals_by_practice({practices[0]: 4, practices[1]: 50}, area="ncl")
    with pytest.raises(D.DisclosureError, match="computed twice with different values"):
        D.control_release([_referrals_by_practice({practices[0]: 3, practices[1]: 50}, area=slug), c], R)


def test_a_rate_ratio_and_percentages_follow_their_counts():
    df = pd.DataFrame({"group": ["White", "Asian", "Black"], "referrals": [400.0, 6.0, 90.0], "py": [40000.0, 9000.0, 12000.0]})
    spec = D.TableSpec("g", "G", {"group": D.Label("Group"), "referrals": D.Count("Referrals", measure="referrals_res"),
                                  "py": D.Public("Person-years", "person_years"),
                                  "rr": D.RateRatio("RR", count="referrals", per="py", key="group", reference="White", lower="rr_lower", upper="rr_upper")},
                       rows={"group": "ethnicity"})
    out, _ = D.control_release([D.Item("camden", "nb", spec, df)], R)
    v, s = out[0].values, out[0].shown
    assert s.loc[1, "rr"] == D.SUPPRESSED and v.loc[0, "rr"] == pytest.approx(1.0) and math.isnan(v.loc[0, "rr_lower"])
    assert v.loc[2, "rr"] == pytest.approx(round((90 / 12000) / (400 / 40000), 2))

