"""The synth tests (tests/*/test_synth.py): shared inputs, helpers and fixtures.

Tests for spstudy.synth: determinism, the data contract, calibration to the census and the review,
and the planted features (regression to the mean, inequity, the known effect).

Known answers here are the REAL reference data the generator is calibrated to (Census 2021 TS008,
TS021 and TS029, ONS mid-2020 ward ages, all in data/reference; see data/reference/SOURCES.md) and the
NCL review 2024 figures (data/reference/ncl_sp_workforce_review_2024.csv; review p.31 Barnet 29% DNA,
p.37 Camden 660 + 1,216 referrals, p.42 Enfield 834 and 328, p.46 Haringey 7,690 in nine months).
Expected census margins are recomputed here from the reference files, independently of the generator.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spstudy import synth
from spstudy.inputs import reference
from spstudy.inputs.extracts import load_extracts
from spstudy.inputs.params import load_parameters
from spstudy.synth import generator
from tests.support import SHIPPED, TRUTH

SMALL = dict(seed=7, scale=0.03, pool_fraction=1.0)
STUDY = generator._study_period()          # study and data periods from parameters/ncl.yaml
DATA_START, DATA_END = pd.Timestamp(STUDY.data_start), pd.Timestamp(STUDY.data_end)
REF_START, REF_END = pd.Timestamp(STUDY.referral_start), pd.Timestamp(STUDY.referral_end)
Z = 4.0  # z bound for "within sampling error" (two-sided p about 6e-5 per comparison)


def _sums(d: Path) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    s = synth.generate(out / "extracts", truth_dir=out / "truth", **SMALL)
    ex = load_extracts(load_parameters("ncl"), out / "extracts")
    return out, s, ex


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "extract_info.json").exists():
        pytest.fail("the shipped sample is missing: run `spstudy synth --out data/extracts --truth data/truth`")
    return load_extracts(load_parameters("ncl"), SHIPPED)


@pytest.fixture(scope="module")
def truth():
    return json.loads(TRUTH.read_text())


def _weighted_persons(ex, pool_fraction):
    p = ex.persons.copy()
    p["referred"] = p["person_id"].isin(ex.referrals["person_id"])
    p["w"] = np.where(p["referred"], 1.0, 1.0 / pool_fraction)
    return p


# ----------------------------------------------------------------------------------- determinism


# ----------------------------------------------------------------------------------- contract


# ----------------------------------------------------------------------------------- census margins

def _expected_by_borough():
    """Census-based expectations per borough computed from the reference files (not from the generator)."""
    wards = reference.census_population()
    n_w = np.rint(wards["residents"] * SMALL["scale"])
    wards = wards.assign(n=n_w)
    cw = reference.census_ward()
    sex = cw[cw["table"] == "TS008"].pivot_table(index="ward22_code", columns="category_code", values="estimate")
    wards["female"] = wards["ward22_code"].map(sex["sex-female"] / sex.sum(axis=1))
    # ethnic group: LSOAs best-fitted to the ward, weighted by their TS021 residents
    eth = reference.ethnicity_lsoa21()
    wg = eth.groupby(["ward22_code", "group"])["residents"].sum().unstack(fill_value=0)
    wg = wg.div(wg.sum(axis=1), axis=0)
    # English proficiency: MSOA TS029 shares carried to LSOAs, then to wards by LSOA residents
    ep = reference.english_proficiency_msoa21()
    cats = {"main_language_english": "main_english", "not_english_can_speak_english_very_well": "very_well",
            "not_english_can_speak_english_well": "well", "not_english_cannot_speak_english_well": "not_well",
            "not_english_cannot_speak_english": "not_at_all"}
    ms = ep[ep["category"].isin(cats)].pivot_table(index="msoa21_name", columns="category", values="residents")
    ms = ms.rename(columns=cats).div(ms.sum(axis=1), axis=0)
    lk = reference.lsoa21_lookup()
    lres = eth.groupby("lsoa21_code")["residents"].sum()
    lk = lk.assign(res=lk["lsoa21_code"].map(lres), msoa=lk["lsoa21_name"].str[:-1])
    lp = ms.reindex(lk["msoa"]).to_numpy() * lk["res"].to_numpy()[:, None]
    wp = pd.DataFrame(lp, columns=ms.columns).groupby(lk["ward22_code"].to_numpy()).sum()
    wp = wp.div(wp.sum(axis=1), axis=0)
    # age: mid-2020 five-year bands by ward, uniform within band
    age = reference.population_ward_age().pivot_table(index="ward22_code", columns="age_band", values="population")
    age = age.div(age.sum(axis=1), axis=0)
    out = {}
    for b, g in wards.groupby("borough_code"):
        w = g.set_index("ward22_code")["n"]
        out[b] = {
            "n": w.sum(),
            "female": float((g["female"] * g["n"]).sum() / g["n"].sum()),
            "eth": (wg.reindex(w.index).mul(w, axis=0).sum() / w.sum()),
            "prof": (wp.reindex(w.index).mul(w, axis=0).sum() / w.sum()),
            "age": (age.reindex(w.index).mul(w, axis=0).sum() / w.sum()),
        }
    return out


def _band_prob(age_shares: pd.Series, lo: float, hi: float) -> float:
    """P(lo <= age < hi) for a piecewise-uniform density over five-year bands (90+ treated as 90-100)."""
    tot = 0.0
    for label, p in age_shares.items():
        a = int(str(label).rstrip("+").split("-")[0])
        b = a + 5 if "-" in str(label) else a + 10
        overlap = max(0.0, min(hi, b) - max(lo, a))
        tot += p * overlap / (b - a)
    return tot


def _z(obs_share, exp_share, n):
    se = math.sqrt(max(exp_share * (1 - exp_share), 1e-9) / n)
    return abs(obs_share - exp_share) / se


# ----------------------------------------------------------------------------------- service use


# ----------------------------------------------------------------------------------- referrals


# ----------------------------------------------------------------------------------- wellbeing and truth


# ----------------------------------------------------------------------------------- workforce


# ----------------------------------------------------------------------------------- shipped sample


# ----------------------------------------------------------------------------------- helpers


