"""Integration tests of needs; what the subject's tests check and their sources: tests/support/needs.py."""

import json

import pandas as pd
import pytest

from spstudy.analyses import needs
from spstudy.inputs import reference
from spstudy.inputs.params import load_parameters
from tests.support import ROOT
from tests.support.needs import AREAS, BOROUGHS, _shipped, _simulated_world, ind, reference_rates, weights  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration


def test_shipped_packs_agree_ward_by_ward_and_recover_the_planted_referral_volumes(weights):
    referrals, persons = _shipped()
    prm = load_parameters("ncl")
    years = ((prm.study.referral_end - prm.study.referral_start).days + 1) / 365.25
    cut = needs.need_cut(weights, prm.needs.outreach_need_quantile)
    prof = {a: needs.ward_needs_profile(reference.area(a), referrals=referrals, reference_rates=reference_rates(referrals, persons, years), persons=persons, weights=weights, years=years)
            for a in AREAS}
    ncl = prof["ncl"].set_index("ward22_code")
    cols = [c for c in prof["camden"].columns if c not in ("ward22_code", "need_rank_in_area")]
    for a in BOROUGHS:
        b = prof[a].set_index("ward22_code")
        pd.testing.assert_frame_equal(b[cols], ncl.loc[b.index, cols])
    belsize = prof["camden"].set_index("ward22_name").loc["Belsize"]
    # was 507.6 in the Camden pack (borough reference rates), the NCL value in the NCL pack; 35.6 on generator 1.2.0 data
    assert belsize["referral_ratio"] == pytest.approx(35.64, abs=0.05)
    # What the generator planted (parameters/synth.yaml referrals.services; realised volumes in data/truth/truth.json):
    # each borough's referrals per resident of its population frame, relative to NCL's. The borough's standardised
    # ratio (sum of observed / sum of expected over its wards) must recover it, in the borough's own pack.
    import yaml

    synth = yaml.safe_load((ROOT / "parameters/synth.yaml").read_text())
    truth = json.loads((ROOT / "data/truth/truth.json").read_text())
    frame = json.loads((ROOT / "data/extracts/extract_info.json").read_text())["population_frame_by_borough"]
    realised = {}
    for s in synth["referrals"]["services"]:
        realised[s["borough"]] = realised.get(s["borough"], 0) + truth["referral_volumes"][s["name"]]["realised"]
    ncl_rate = sum(realised.values()) / sum(frame.values())
    for a in BOROUGHS:
        planted = 100 * realised[a] / frame[a] / ncl_rate
        srr = 100 * prof[a]["referrals"].sum() / prof[a]["expected"].sum()
        assert srr == pytest.approx(planted, rel=0.08), a  # age-sex standardisation moves it a little
        out = needs.outreach_candidates(prof[a], need_cut=cut, ratio_below=prm.needs.outreach_referral_ratio_below)
        ncl_out = needs.outreach_candidates(prof["ncl"], need_cut=cut, ratio_below=prm.needs.outreach_referral_ratio_below)
        assert out["ward22_code"].tolist() == ncl_out.loc[ncl_out["borough_name"] == reference.area(a).name, "ward22_code"].tolist()
        if planted < 60:  # Camden (PCN-employed link workers' caseloads not simulated) and Enfield (one PCN with no provision)
            assert len(out) > 0 and (out["referral_ratio_upper"] < 100).all(), a
        if planted > 150:  # Haringey: referred at twice the NCL rate, no ward is under-referred
            assert len(out) == 0, a
        if a in ("camden", "enfield"):  # every ward of an under-served borough lies below the 99.8% limit
            assert (prof[a]["funnel"] == "below 99.8% limit").all(), a


def test_practice_and_pcn_rates_are_classified_against_one_reference_in_every_pack():
    referrals, _ = _shipped()
    for level in ("practice_code", "pcn_code"):
        ncl = needs.referral_rates_by_practice(reference.area("ncl"), referrals=referrals, level=level).set_index(level)
        # reference: all referrals at NCL practices / all NCL registered patients (per 1,000 per year)
        gp = reference.gp_practices()
        assert ncl["reference_rate"].iloc[0] == pytest.approx(1000 * len(referrals) / gp["registered_patients"].sum())
        assert ncl["referrals"].sum() == len(referrals)
        for a in ("camden", "enfield"):
            b = needs.referral_rates_by_practice(reference.area(a), referrals=referrals, level=level).set_index(level)
            cols = ["referrals", "rate", "rate_lower", "rate_upper", "funnel", "reference_rate"]
            pd.testing.assert_frame_equal(b[cols], ncl.loc[b.index, cols])
    bad = referrals.head(3).assign(practice_code="Z99999")
    with pytest.raises(ValueError, match="practice_code.*3 referrals at practices not in the NCL practice list"):
        needs.referral_rates_by_practice(reference.area("camden"), referrals=bad)


def test_pcn_coverage_counts_every_post_once_and_allocates_borough_wide_providers():
    wf = pd.read_csv(ROOT / "data/extracts/workforce.csv", dtype={"pcn_code": str})
    units = needs.review_link_worker_units()
    pcn = needs.pcn_coverage(wf, reference.area("ncl"), 1.0, units=units)
    # every link-worker post counted once: borough sums equal the review's borough figures (25, 16, 7, 13, 15.5)
    by = pcn.groupby("borough_name")["link_workers"].sum()
    assert by.to_dict() == pytest.approx({"Barnet": 25, "Camden": 16, "Enfield": 7, "Haringey": 13, "Islington": 15.5})
    b = pcn[pcn["borough_name"] == "Barnet"].set_index("pcn_name")
    # Age UK Barnet (22, the 6 PCNs other than PCN5, review p.27) pro rata to registered patients (assumption A13)
    six = b.drop(index="BARNET 5 PCN")
    assert (six["link_workers"] > 0).all() and six["link_workers"].sum() == pytest.approx(22)
    assert b.loc["BARNET 3 PCN", "link_workers"] == pytest.approx(22 * 120645 / six["registered_patients"].sum())
    assert b.loc["BARNET 5 PCN", "link_workers"] == 3 and b.loc["BARNET 5 PCN", "link_workers_allocated"] == 0
    e = pcn[pcn["borough_name"] == "Enfield"]
    assert (e["unit"] == "headcount").all()
    edm = e[e["pcn_code"].isna()]
    assert len(edm) == 1 and edm["link_workers"].item() == 1 and "Edmonton" in edm["pcn_name"].item()
    assert e.loc[e["pcn_name"] == "ENFIELD CARE NETWORK PCN", "link_workers"].item() == 0  # "no social prescribing provision" (p.39)
    # a borough's pack shows the same rows as the NCL pack
    cam = needs.pcn_coverage(wf, reference.area("camden"), 1.0, units=units)
    pd.testing.assert_frame_equal(cam.reset_index(drop=True), pcn[pcn["borough_name"] == "Camden"].reset_index(drop=True))
    assert list(pcn.columns) == needs.PCN_COVERAGE_COLUMNS
    assert (needs.pcn_coverage(wf, reference.area("ncl"), 1.0)["unit"] == "FTE").all()  # the data contract's meaning without the review's units


def test_workforce_extract_is_what_the_generator_writes():
    from spstudy import synth
    from spstudy.synth.tables import _workforce_frame

    expected = _workforce_frame(synth.load_synth_params())
    shipped = pd.read_csv(ROOT / "data/extracts/workforce.csv", dtype={"pcn_code": str}, keep_default_na=False)
    shipped["fte"] = shipped["fte"].astype(float)
    pd.testing.assert_frame_equal(shipped, expected.assign(fte=expected["fte"].astype(float)), check_dtype=False)
