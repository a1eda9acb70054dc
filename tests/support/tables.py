"""A tiny hand-made extract in the data contract (CSV), for loader tests: five small valid tables
using real NCL ward, LSOA, practice and PCN codes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spstudy.inputs import reference


def tiny_tables() -> dict[str, pd.DataFrame]:
    """Five small valid tables using real NCL ward, LSOA, practice and PCN codes."""
    lk = reference.lsoa21_lookup()
    lsoa = lk[lk["borough_code"] == "E09000007"].iloc[0]
    gp = reference.gp_practices()
    prac = gp[gp["borough_code"] == "E09000007"].iloc[0]
    persons = pd.DataFrame({
        "person_id": ["P1", "P2", "P3", "P4"],
        "birth_year": [1950, 1980, 1990, 2001],
        "sex": ["F", "M", "F", "M"],
        "ethnicity": ["A", "N", None, "Z"],
        "main_language": ["English", "Somali", None, "English"],
        "english_proficiency": ["main_english", "well", None, "main_english"],
        "interpreter_needed": ["false", "true", None, "false"],
        "lsoa21_code": lsoa["lsoa21_code"],
        "ward22_code": lsoa["ward22_code"],
        "practice_code": prac["practice_code"],
        "registration_start": ["2010-01-01", "2015-06-01", "2020-01-01", "2021-01-01"],
        "registration_end": [None, "2024-12-31", None, None],
        "registration_end_reason": [None, "moved_away", None, None],
    })
    referrals = pd.DataFrame({
        "referral_id": ["R1", "R2", "R3"],
        "person_id": ["P1", "P2", "P3"],
        "referral_date": ["2023-05-01", "2023-09-10", "2024-01-15"],
        "source": ["gp", "self", "gp"],
        "reasons": ["housing;money", "isolation", "mental_health"],
        "borough_code": "E09000007",
        "pcn_code": prac["pcn_code"],
        "practice_code": prac["practice_code"],
        "provider": "Age UK Camden",
        "outcome": ["seen", "dna", "seen"],
        "first_contact_date": ["2023-05-10", None, "2024-01-20"],
        "closure_date": ["2023-08-01", "2023-10-10", None],
        "contacts": [5, 0, 2],
        "onward_referrals": [3, 0, 1],
    })
    activity = pd.DataFrame({
        "person_id": ["P1", "P1", "P2", "P3", "P4"],
        "activity_date": ["2022-06-01", "2023-06-01", "2023-07-01", "2024-02-01", "2024-03-01"],
        "setting": ["gp", "gp", "ae", "gp", "gp"],
    })
    items = ["ons4_life_satisfaction", "ons4_worthwhile", "ons4_happy", "ons4_anxious"]
    wellbeing = pd.DataFrame({
        "referral_id": ["R1"] * 8,
        "timepoint": ["baseline"] * 4 + ["follow_up"] * 4,
        "instrument": "ons4",
        "item": items * 2,
        "score": [3, 4, 3, 8, 6, 6, 5, 5],
        "measurement_date": ["2023-05-10"] * 4 + ["2023-08-01"] * 4,
    })
    workforce = pd.DataFrame({
        "borough_code": ["E09000007"],
        "pcn_code": [None],
        "role": ["link_worker"],
        "fte": [16.0],
        "employer": ["Age UK Camden"],
    })
    return {"persons": persons, "referrals": referrals, "activity": activity, "wellbeing": wellbeing, "workforce": workforce}


def write_tables(tables: dict[str, pd.DataFrame], directory: Path, fmt: str = "csv") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if fmt == "csv":
            df.to_csv(directory / f"{name}.csv", index=False)
        else:
            df.to_parquet(directory / f"{name}.parquet", index=False)
    return directory
