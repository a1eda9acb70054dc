"""The needs tests (tests/*/test_needs.py): shared inputs, helpers and fixtures.

Needs assessment: ward indicators from the census, the need index, referral rates and ratios
and workforce coverage, checked against their sources, by construction, on a simulated world with a
planted under-referral, and on the shipped (synthetic) extract against what the generator planted.
"""

import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import needs
from spstudy.inputs.params import load_parameters
from tests.support import ROOT

AREAS = ("ncl", "barnet", "camden", "enfield", "haringey", "islington")


def reference_rates(referrals, persons, years: float = 1.0) -> pd.DataFrame:
    """The age-sex reference rates unpooled and unrounded (each band its own stratum), for tests of the
    arithmetic; a pack uses the publisher's pooled, rounded ones (tests/unit/test_disclosure.py)."""
    return needs.reference_referral_rates(referrals, persons, years).assign(stratum=lambda d: d["age_band"])
BOROUGHS = AREAS[1:]


@pytest.fixture(scope="module")
def ind():
    return needs.ward_indicators()


@pytest.fixture(scope="module")
def weights():
    return load_parameters("ncl").needs.need_index_weights


# ------------------------------------------------------------------------------ referral ratios

def _simulated_world(multipliers: dict[str, float], seed: int = 11, base_rate: float = 0.012):
    """Referrals drawn as Poisson(population x base rate x age weight x ward multiplier) in every NCL
    ward-age-sex stratum: the true ratio of a ward is 100 x its multiplier / the NCL-wide mean."""
    rng = np.random.default_rng(seed)
    pop = needs.ward_population_age_sex()
    age_w = pd.Series(np.linspace(0.3, 1.6, len(needs.AGE_BANDS)), index=needs.AGE_BANDS)
    lam = pop["population"] * base_rate * pop["age_band"].map(age_w) * pop["ward22_code"].map(multipliers).fillna(1.0)
    n = rng.poisson(lam.to_numpy())
    rows = pop.loc[np.repeat(pop.index, n), ["ward22_code", "borough_code", "age_band", "sex"]].reset_index(drop=True)
    lower = rows["age_band"].str.extract(r"^(\d+)")[0].astype(int)
    persons = pd.DataFrame({"person_id": [f"P{i}" for i in range(len(rows))], "birth_year": 2023 - lower - 2,
                            "sex": rows["sex"], "ward22_code": rows["ward22_code"]})
    # every referral is taken by the service of the borough where the person lives, except that a tenth
    # of Camden residents are referred by an Islington service (a practice across the border)
    service = rows["borough_code"].where(~((rows["borough_code"] == "E09000007") & (rng.random(len(rows)) < 0.1)), "E09000019")
    referrals = pd.DataFrame({"referral_id": [f"R{i}" for i in range(len(rows))], "person_id": persons["person_id"],
                              "referral_date": pd.Timestamp("2023-10-01"), "borough_code": service.to_numpy()})
    return referrals, persons


def _shipped():
    """The shipped synthetic extract's referrals and persons (read directly: only the columns needed)."""
    r = pd.read_parquet(ROOT / "data/extracts/referrals.parquet", columns=["referral_id", "person_id", "referral_date", "borough_code", "practice_code"])
    r["referral_date"] = pd.to_datetime(r["referral_date"])
    p = pd.read_parquet(ROOT / "data/extracts/persons.parquet", columns=["person_id", "birth_year", "sex", "ward22_code"])
    return r, p


# --------------------------------------------------------------------------------- workforce


