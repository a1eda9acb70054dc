"""Integration tests of synth; what the subject's tests check and their sources: tests/support/synth.py."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from spstudy import synth
from spstudy.inputs import reference
from spstudy.inputs.contract import ETHNIC_TO_CENSUS5
from spstudy.inputs.extracts import load_extracts
from spstudy.inputs.params import load_parameters
from tests.support import ROOT
from tests.support.synth import (  # noqa: F401 (fixtures)
    DATA_END,
    DATA_START,
    REF_END,
    REF_START,
    SHIPPED,
    SMALL,
    STUDY,
    TRUTH,
    Z,
    _band_prob,
    _expected_by_borough,
    _sums,
    _weighted_persons,
    _z,
    shipped,
    small,
    truth,
)

pytestmark = pytest.mark.integration


def test_same_seed_identical_files_and_different_seed_differs(small, tmp_path):
    out, _, _ = small
    first = _sums(out / "extracts")
    synth.generate(tmp_path / "again", **SMALL)
    assert _sums(tmp_path / "again") == first
    synth.generate(tmp_path / "other", **{**SMALL, "seed": 8})
    other = _sums(tmp_path / "other")
    for name in ("persons.parquet", "referrals.parquet", "activity.parquet", "wellbeing.parquet"):
        assert other[name] != first[name], name
    assert other["workforce.csv"] == first["workforce.csv"]  # workforce is not random


def test_chunking_changes_layout_not_content(tmp_path):
    params = yaml.safe_load((ROOT / "parameters" / "synth.yaml").read_text())
    params["output"]["block_persons"] = 5000
    pfile = tmp_path / "synth.yaml"
    pfile.write_text(yaml.safe_dump(params))
    kw = dict(seed=3, scale=0.01, pool_fraction=0.3, params_path=pfile)
    synth.generate(tmp_path / "one", **kw)
    s = synth.generate(tmp_path / "parts", chunk_persons=10000, **kw)
    assert (tmp_path / "parts" / "activity").is_dir() and len(list((tmp_path / "parts" / "activity").glob("part-*.parquet"))) >= 2
    p = load_parameters("ncl")
    a, b = load_extracts(p, tmp_path / "one"), load_extracts(p, tmp_path / "parts")
    keys = {"persons": ["person_id"], "referrals": ["referral_id"], "activity": ["person_id", "activity_date", "setting"],
            "wellbeing": ["referral_id", "timepoint", "item"]}
    for t, k in keys.items():
        x = a.table(t).sort_values(k).reset_index(drop=True)
        y = b.table(t).sort_values(k).reset_index(drop=True)
        pd.testing.assert_frame_equal(x, y, check_dtype=False)
    assert s["row_counts"]["persons"] == len(a.persons)


def test_small_extract_passes_loader_and_accounts_for_rows(small):
    _, s, ex = small
    led = ex.ledger.to_frame()
    excl = led[(led["step"] == "rows excluded") & (led["rows"] > 0)]
    # the loader excludes the referrals dated before the study period (on purpose) and repeated
    # same-day activity rows (the loader's one-event-per-person-day rule; Poisson days can repeat)
    assert set(excl["rule"]) <= {"referral_outside_study_period", "activity_exact_duplicate"}
    n_prior = s["truth"]["referred_before_the_study_period_in_sample"]
    assert int(excl.loc[excl["rule"] == "referral_outside_study_period", "rows"].sum()) == n_prior > 0
    dup = int(excl.loc[excl["rule"] == "activity_exact_duplicate", "rows"].sum())
    assert dup < 0.03 * s["row_counts"]["activity"]
    for t, n in s["row_counts"].items():
        assert len(ex.table(t)) == n - {"referrals": n_prior, "activity": dup}.get(t, 0)


def test_elective_negative_control_and_referrals_before_the_study_period(small):
    """Elective admissions (the evaluation's negative control) are written at about the stated
    level with no planted effect; referrals dated before the study period belong to people in the
    comparator sample, are excluded by the loader and are kept on Extracts.referred_ever."""
    out, s, ex = small
    assert set(ex.activity["setting"]) == {"gp", "ae", "elective"}
    t = json.loads((out / "truth" / "truth.json").read_text())
    assert t["negative_control"]["planted_rate_ratio"] == 1.0
    p = _weighted_persons(ex, 1.0)
    s0 = p["registration_start"].clip(lower=DATA_START)
    e0 = p["registration_end"].fillna(DATA_END).clip(upper=DATA_END)
    py = float((((e0 - s0).dt.days + 1).clip(lower=0) / 365.25).sum())
    rate = (ex.activity["setting"] == "elective").sum() / py
    assert 0.10 < rate < 0.18, rate
    raw = pd.read_parquet(out / "extracts" / "referrals.parquet")
    before = raw[pd.to_datetime(raw["referral_date"]) < REF_START]
    assert len(before) == s["truth"]["referred_before_the_study_period_in_sample"]
    assert set(before["person_id"]) <= ex.referred_ever
    assert not set(before["person_id"]) & set(ex.referrals["person_id"])
    # about 0.9 of a year's volume (pool fraction 1 here), less people also referred in the period
    assert 0.5 < len(before) / len(ex.referrals) < 1.0
    assert (pd.to_datetime(before["referral_date"]) >= REF_START - pd.DateOffset(months=12)).all()


def test_extract_info_and_truth_written(small):
    out, s, _ = small
    info = json.loads((out / "extracts" / "extract_info.json").read_text())
    assert info["seed"] == 7 and info["scale"] == 0.03 and info["pool_fraction"] == 1.0
    assert info["generator_version"] == synth.load_synth_params().generator_version
    assert "sample" in info["sample_design"]["non_referred"].lower()
    t = json.loads((out / "truth" / "truth.json").read_text())
    assert t["planted_effect"]["gp_rate_ratio"] == 0.88 and t["planted_effect"]["ae_rate_ratio"] == 0.90
    assert not (out / "extracts" / "truth.json").exists()


def test_sex_age_ethnicity_proficiency_match_census_by_borough(small):
    _, _, ex = small
    p = ex.persons
    p = p[~p["person_id"].isin(ex.referrals["person_id"])].copy()   # GP-record persons (referred have SP records)
    wards = reference.wards().set_index("ward22_code")["borough_code"]
    p["borough"] = p["ward22_code"].map(wards)
    exp = _expected_by_borough()
    failures = []
    for b, g in p.groupby("borough"):
        e = exp[b]
        n = len(g)
        z = _z((g["sex"] == "F").mean(), e["female"], n)
        if z > Z:
            failures.append((b, "female", z))
        # age on 31 Dec of the reference year = year - birth_year; ages at the reference date (synth.yaml
        # population.age_reference_date) are `shift` years younger
        ref = synth.load_synth_params().population.age_reference_date
        shift = ((pd.Timestamp(ref.year, 12, 31) - pd.Timestamp(ref)).days + 1) / 365.25
        a = ref.year - g["birth_year"].astype(int)
        for lo, hi in ((0, 16), (16, 30), (30, 50), (50, 65), (65, 80), (80, 200)):
            pe = _band_prob(e["age"], lo - shift, hi - shift)
            z = _z(((a >= lo) & (a < hi)).mean(), pe, n)
            if z > Z:
                failures.append((b, f"age {lo}-{hi}", z))
        coded = g["ethnicity"].dropna()
        coded = coded[coded != "Z"].map(ETHNIC_TO_CENSUS5)
        for grp, pe in e["eth"].items():
            z = _z((coded == grp).mean(), pe, len(coded))
            if z > Z:
                failures.append((b, grp, z))
        prof = g["english_proficiency"].dropna()
        for cat, pe in e["prof"].items():
            # 0.005 allowance: the generator caps P(not English | ethnicity) at 0.97 (about 0.3% of people)
            se = math.sqrt(pe * (1 - pe) / len(prof))
            if abs((prof == cat).mean() - pe) > Z * se + 0.005:
                failures.append((b, cat, (prof == cat).mean(), pe))
    assert not failures, failures


def test_language_and_interpreter_consistent_with_proficiency(small):
    _, _, ex = small
    p = ex.persons.dropna(subset=["english_proficiency"])
    eng = p["english_proficiency"] == "main_english"
    assert (p.loc[eng, "main_language"] == "English").all()
    assert (p.loc[~eng, "main_language"] != "English").all()
    assert not p.loc[eng, "interpreter_needed"].astype(bool).any()
    poor = p["english_proficiency"].isin(["not_well", "not_at_all"])
    assert p.loc[poor, "interpreter_needed"].astype(bool).mean() > 0.4
    assert p.loc[p["ethnicity"] == "K", "main_language"].isin(["English", "Bengali", "Other"]).all()
    # language columns are recorded together or not at all
    q = ex.persons
    assert (q["main_language"].isna() == q["english_proficiency"].isna()).all()
    assert (q["main_language"].isna() == q["interpreter_needed"].isna()).all()
    assert (q["ethnicity"] == "Z").any()


def test_practices_within_borough_and_registration_varies(small):
    _, _, ex = small
    p = ex.persons
    gp = reference.gp_practices().set_index("practice_code")["borough_code"]
    wards = reference.wards().set_index("ward22_code")["borough_code"]
    assert (p["practice_code"].map(gp) == p["ward22_code"].map(wards)).all()
    lk = reference.lsoa21_lookup().set_index("lsoa21_code")["ward22_code"]
    assert (p["lsoa21_code"].map(lk) == p["ward22_code"]).all()
    assert (p["registration_start"] < DATA_START).mean() > 0.6
    assert 0.02 < (p["registration_start"] >= DATA_START).mean() < 0.4
    ended = p["registration_end"].notna()
    assert 0.05 < ended.mean() < 0.5
    died = p["registration_end_reason"] == "died"
    old = (2023 - p["birth_year"]) >= 80
    assert died[old].mean() > 5 * died[~old].mean()


def test_gp_and_ae_rates_calibrated(shipped):
    info = json.loads((SHIPPED / "extract_info.json").read_text())
    p = _weighted_persons(shipped, info["pool_fraction"])
    ds, de = DATA_START, DATA_END
    s = p["registration_start"].clip(lower=ds)
    e = p["registration_end"].fillna(de).clip(upper=de)
    py = ((e - s).dt.days + 1).clip(lower=0) / 365.25
    cnt = shipped.activity.groupby(["person_id", "setting"]).size().unstack(fill_value=0)
    c = p[["person_id"]].join(cnt, on="person_id").fillna(0)
    gp = float((c["gp"] * p["w"]).sum() / (py * p["w"]).sum())
    ae = float((c["ae"] * p["w"]).sum() / (py * p["w"]).sum())
    assert 5.0 <= gp <= 6.0, gp
    assert 0.35 <= ae <= 0.45, ae
    # over-dispersion: variance of pre-referral-period GP counts far above the mean among the non-referred
    y = shipped.activity[(shipped.activity.setting == "gp") & (shipped.activity.activity_date < REF_START)]
    full = p[(~p["referred"]) & (p["registration_start"] < ds) & p["registration_end"].isna()]
    k = full[["person_id"]].join(y.groupby("person_id").size().rename("k"), on="person_id").fillna(0)["k"]
    assert k.var() > 2 * k.mean()
    # older people use more GP appointments
    age = 2023 - full["birth_year"]
    assert k[age.to_numpy() >= 75].mean() > 1.5 * k[(age.to_numpy() >= 25) & (age.to_numpy() < 45)].mean()


def test_regression_to_the_mean_in_referred(shipped):
    a = shipped.activity[shipped.activity.setting == "gp"].merge(
        shipped.referrals[["person_id", "referral_date"]], on="person_id")
    d = (a["activity_date"] - a["referral_date"]).dt.days
    n = len(shipped.referrals)
    pre_1_3 = ((d < 0) & (d >= -91)).sum() / n / 91
    pre_7_12 = ((d < -182) & (d >= -365)).sum() / n / 183
    assert pre_1_3 > 1.2 * pre_7_12, (pre_1_3, pre_7_12)


def test_referral_volumes_match_targets(shipped, small):
    P = synth.load_synth_params()
    got = shipped.referrals["provider"].value_counts()
    for s in P.referrals.services:
        n = got.get(s.name, 0)
        assert abs(n - s.annual_referrals) <= Z * math.sqrt(s.annual_referrals) + 0.02 * s.annual_referrals, (s.name, n)
    by_b = shipped.referrals["borough_code"].value_counts()
    targets = {"E09000003": 8029, "E09000007": 1876, "E09000010": 1282, "E09000014": 10703, "E09000019": 3500}
    for b, t in targets.items():
        assert abs(by_b[b] - t) < 0.03 * t, (b, by_b[b], t)
    # Enfield Care Network PCN has no social prescribing provision (review p.38-39)
    assert not (shipped.referrals["pcn_code"] == "U80019").any()
    # volumes are absolute: the small extract (scale 0.03, pool 1) has 3% of them
    _, s, ex = small
    assert abs(len(ex.referrals) - 0.03 * len(shipped.referrals)) < Z * math.sqrt(0.03 * len(shipped.referrals))
    assert len(ex.referrals) == ex.referrals["person_id"].nunique()
    # referral dates in the study period, dates in order
    r = shipped.referrals
    assert r["referral_date"].between(REF_START, REF_END).all()
    assert ((r["outcome"] == "seen") == r["first_contact_date"].notna()).all()
    assert (r["closure_date"].dropna() >= r.loc[r["closure_date"].notna(), "referral_date"]).all()


def test_dna_rates_by_source(shipped):
    r = shipped.referrals
    dna = r.groupby("source")["outcome"].apply(lambda x: (x == "dna").mean())
    assert abs(dna["gp"] - 0.29) < 0.02, dna            # Barnet 29% (review p.31), applied to GP referrals
    assert dna["self"] < 0.10 and dna["self"] < dna["gp"] / 3
    assert (r["outcome"] == "declined").mean() > 0.02
    seen = r[r["outcome"] == "seen"]
    assert (seen["contacts"] >= 1).all() and (r.loc[r["outcome"] != "seen", "contacts"] == 0).all()
    lw = seen[seen["provider"] != "Age UK Camden (care navigation)"]
    assert abs(lw["onward_referrals"].mean() - 2.5) < 0.15   # 1,625 for 660 patients (review p.37)
    wait = (seen["first_contact_date"] - seen["referral_date"]).dt.days
    assert 5 <= wait.median() <= 28


def test_closure_rules(shipped):
    r = shipped.referrals
    seen = r[r["outcome"] == "seen"]
    har = seen[seen["provider"] == "Public Voice London"]
    dur = (har["closure_date"] - har["first_contact_date"]).dt.days
    assert (dur.dropna() <= 84).all()                     # up to 12 weeks (review p.44)
    other = seen[seen["borough_code"] != "E09000014"]
    assert other["closure_date"].isna().any()             # open-ended: some still open at the data cut
    assert ((other["closure_date"] - other["first_contact_date"]).dt.days > 84).mean() > 0.2


def test_reason_mix(shipped):
    r = shipped.referrals
    parts = r["reasons"].str.split(";")
    n = parts.str.len()
    assert n.between(1, 3).all() and 0.45 < (n == 1).mean() < 0.65
    assert (parts.map(lambda x: len(set(x)) == len(x))).all()
    ex = r.assign(reason=parts).explode("reason")
    top = ex.groupby("borough_code")["reason"].agg(lambda x: x.value_counts().index[0])
    # the first-listed "most common reason" in the review for each borough
    assert top["E09000003"] == "mental_health"            # Barnet p.31
    assert top["E09000014"] == "housing"                  # Haringey p.46
    assert top["E09000019"] in ("money", "housing")       # Islington p.51: benefits, housing
    assert set(ex["reason"]) == {"housing", "money", "mental_health", "isolation", "carers", "lifestyle"}


def test_inequity_planted_and_detectable(shipped):
    """Referral odds given observed need are lower for Black and Asian residents and poor English speakers."""
    import statsmodels.api as sm

    info = json.loads((SHIPPED / "extract_info.json").read_text())
    p = _weighted_persons(shipped, info["pool_fraction"])
    wards = reference.wards().set_index("ward22_code")["borough_code"]
    p = p[(p["ward22_code"].map(wards) != "E09000019")]            # Islington referral forms lack ethnicity
    p = p[p["registration_start"] < DATA_START]
    p = p[p["ethnicity"].notna() & (p["ethnicity"] != "Z") & p["english_proficiency"].notna()]
    p = p[(2023 - p["birth_year"]) >= 18]
    prior = shipped.activity[(shipped.activity.setting == "gp")
                             & (shipped.activity.activity_date >= REF_START - pd.DateOffset(years=1))
                             & (shipped.activity.activity_date < REF_START)]
    p = p.join(prior.groupby("person_id").size().rename("prior_gp"), on="person_id").fillna({"prior_gp": 0})
    imd = reference.imd2025().set_index("lsoa21_code")["imd2025_imd_score"]
    X = pd.DataFrame({
        "log_prior_gp": np.log1p(p["prior_gp"].to_numpy(dtype=float)),
        "imd": p["lsoa21_code"].map(imd).to_numpy(dtype=float) / 10,
        "female": (p["sex"] == "F").to_numpy(dtype=float),
    })
    age = (2023 - p["birth_year"]).to_numpy(dtype=float)
    for lo in (30, 50, 65, 80):
        X[f"age{lo}"] = (age >= lo).astype(float)
    grp = p["ethnicity"].map(ETHNIC_TO_CENSUS5).to_numpy()
    for g in ("Asian", "Black"):
        X[g] = (grp == g).astype(float)
    X["poor_english"] = p["english_proficiency"].isin(["not_well", "not_at_all"]).to_numpy(dtype=float)
    X = sm.add_constant(X)
    y = p["referred"].to_numpy(dtype=float)
    fit = sm.GLM(y, X, family=sm.families.Binomial(), freq_weights=p["w"].to_numpy()).fit()
    # freq_weights overstate precision for the sampled non-referred; use a conservative bound on the estimate
    for term in ("Asian", "Black", "poor_english"):
        assert fit.params[term] < math.log(0.9), (term, fit.params[term])
    assert fit.params["log_prior_gp"] > 0


def test_recording_gaps_by_borough(shipped):
    r = shipped.referrals.drop_duplicates("person_id")[["person_id", "borough_code"]].merge(shipped.persons, on="person_id")
    eth_missing = r.groupby("borough_code")["ethnicity"].apply(lambda x: x.isna().mean())
    assert eth_missing["E09000019"] > 0.7                 # Islington referral form records no ethnicity (review p.51)
    assert eth_missing.drop("E09000019").max() < 0.2
    lang_missing = r.groupby("borough_code")["main_language"].apply(lambda x: x.isna().mean())
    assert lang_missing["E09000007"] > 0.6                # Camden does not routinely record language
    assert lang_missing.drop("E09000007").max() < 0.5


def test_wellbeing_instruments_attrition_and_items(shipped):
    w = shipped.wellbeing
    r = shipped.referrals.set_index("referral_id")
    w = w.join(r[["borough_code", "outcome", "first_contact_date", "closure_date"]], on="referral_id")
    assert (w["outcome"] == "seen").all()
    inst = {b: set(g["instrument"]) for b, g in w.groupby("borough_code")}
    assert inst["E09000003"] == {"ons4"} and inst["E09000014"] == {"wemwbs"} and inst["E09000010"] == {"swemwbs"}
    n_items = w.groupby(["referral_id", "timepoint", "instrument"]).size()
    assert set(n_items.xs("wemwbs", level="instrument")) == {14}
    assert set(n_items.xs("swemwbs", level="instrument")) == {7}
    assert set(n_items.xs("ons4", level="instrument")) == {4}
    base = w[w["timepoint"] == "baseline"]
    fu = w[w["timepoint"] == "follow_up"]
    assert (base["measurement_date"] == base["first_contact_date"]).all()
    assert (fu["measurement_date"] == fu["closure_date"]).all()
    ret = fu["referral_id"].nunique() / base["referral_id"].nunique()
    assert 0.25 < ret < 0.45                               # a minority return the follow-up
    assert set(fu["referral_id"]) <= set(base["referral_id"])


def test_truth_file_holds_planted_values_and_estimands(truth):
    P = synth.load_synth_params()
    pe = truth["planted_effect"]
    assert pe["gp_rate_ratio"] == P.effect.gp_rate_ratio == 0.88
    assert pe["ae_rate_ratio"] == P.effect.ae_rate_ratio == 0.90
    assert pe["wellbeing_mean_shift"]["wemwbs_total"] == 3.0
    su = truth["service_use"]
    assert 0.55 < su["share_seen"] < 0.8
    for setting, rr in (("gp", 0.88), ("ae", 0.90)):
        for w in ("6m", "12m"):
            d = su[setting][w]
            assert d["att_rate_ratio_seen_from_first_contact"] == pytest.approx(rr, abs=1e-9)
            # from the referral date the effect starts only at first contact: slightly diluted
            assert rr < d["att_rate_ratio_seen"] < rr + 0.03
            assert d["att_rate_ratio_seen"] < d["itt_rate_ratio_referred"] < 1
            assert d["itt_rate_ratio_referred"] == pytest.approx(d["itt_rate_ratio_from_share_seen"], abs=0.02)
            # the naive before/after overstates the effect (regression to the mean)
            assert d["naive_before_after_ratio_seen"] < d["att_rate_ratio_seen"] - 0.03
            assert d["naive_before_after_ratio_seen_without_effect"] < 1
    wem = truth["wellbeing"]["wemwbs"]["wemwbs_total"]
    assert wem["att_all_seen_with_baseline"] == pytest.approx(3.0, abs=0.5)
    assert wem["att_responders"] > wem["att_all_seen_with_baseline"]    # informative attrition
    assert wem["naive_change_responders"] > wem["att_responders"]      # natural recovery adds to the naive change
    ls = truth["wellbeing"]["ons4"]["ons4_life_satisfaction"]
    assert ls["att_all_seen_with_baseline"] == pytest.approx(0.8, abs=0.15)
    vol = truth["referral_volumes"]
    raw = pd.read_parquet(SHIPPED / "referrals.parquet")
    in_period = pd.to_datetime(raw["referral_date"]) >= REF_START
    assert sum(v["realised"] for v in vol.values()) == int(in_period.sum())
    assert int((~in_period).sum()) == truth["referred_before_the_study_period_in_sample"] > 0


def test_workforce_from_review(shipped):
    wf = shipped.workforce
    gp = reference.gp_practices()
    assert set(wf["pcn_code"].dropna()) <= set(gp["pcn_code"])
    review = pd.read_csv(reference.reference_dir() / "ncl_sp_workforce_review_2024.csv")
    tot = review[(review["role"] == "link_worker") & review["employer"].str.startswith("all employers (total")
                 & review["borough_code"].str.startswith("E09")]
    lw = wf[wf["role"] == "link_worker"].groupby("borough_code")["fte"].sum()
    for _, row in tot.dropna(subset=["headcount_or_fte"]).iterrows():
        assert lw[row["borough_code"]] == pytest.approx(float(row["headcount_or_fte"])), row["borough_name"]
    assert lw["E09000014"] == pytest.approx(13)           # Public Voice 11 + North West PCN 1 + Bridge Renewal 1 (p.43)
    enf = wf[(wf["borough_code"] == "E09000010") & (wf["role"] == "link_worker")].set_index("pcn_code")["fte"]
    assert enf["U58312"] == 4 and enf["U80019"] == 0      # Enfield Unity 4; Enfield Care Network none (p.38-39)


def test_shipped_sample_checksums_size_and_info(shipped):
    lines = (SHIPPED / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        h, name = line.split("  ", 1)
        listed[name] = h
    files = _sums(SHIPPED)
    files.pop("SHA256SUMS")
    assert listed == files
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert total < 25 * 1024 * 1024
    info = json.loads((SHIPPED / "extract_info.json").read_text())
    assert (info["seed"], info["scale"], info["pool_fraction"]) == (7, 1.0, 0.25)
    assert info["parameters_sha256"] == hashlib.sha256((ROOT / "parameters" / "synth.yaml").read_bytes()).hexdigest(), \
        "parameters/synth.yaml changed since the shipped sample was generated: regenerate it"
    assert info["row_counts"]["referrals"] == len(shipped.referrals) + info["sample_design"]["referred_before_the_study_period_in_sample"]
    assert 20_000 < len(shipped.referrals) < 30_000


def test_shipped_sample_regenerates_byte_identical(tmp_path):
    synth.generate(tmp_path, seed=7, scale=1.0, pool_fraction=0.25)
    assert _sums(tmp_path) == _sums(SHIPPED)

