"""Integration tests of extracts; what the subject's tests check and their sources: tests/support/extracts.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spstudy.inputs.extracts import load_extracts
from tests.support.extracts import SHIPPED, _error, _expect, _read, _write, copy, params, shipped_sample, strict  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration


def test_shipped_sample_loads_and_duplicates_are_counted_by_rule(copy, params):
    ex = load_extracts(params, copy)
    led = ex.ledger.to_frame()
    raw = _read(copy, "activity")
    # the generator's same-day appointments carry an event_id, so the shipped data has no exact duplicates
    assert not raw.duplicated().any() and raw.duplicated(["person_id", "activity_date", "setting"]).any()
    assert "activity_exact_duplicate" not in set(led["rule"])
    assert len(ex.activity) == len(raw)
    assert ex.pool_fraction == json.loads((copy / "extract_info.json").read_text())["pool_fraction"]
    ex.ledger.check_balanced()


def test_injected_duplicate_rows_are_excluded_not_added(copy, params, strict):
    raw = _read(copy, "activity")
    before = int(raw.duplicated().sum())
    _write(copy, "activity", pd.concat([raw, raw.iloc[[5, 50, 500]]], ignore_index=True))
    ex = load_extracts(params, copy)
    led = ex.ledger.to_frame()
    assert led.loc[led.rule == "activity_exact_duplicate", "rows"].item() == before + 3
    assert len(ex.activity) == len(raw) - before
    e = _error(strict, copy)
    assert any(b.column == "person_id, activity_date, setting" and "rule 'activity_exact_duplicate'" in b.problem
               and b.n_rows == before + 3 for b in e.breaches)


def test_event_id_keeps_two_appointments_on_one_day(copy, params):
    raw = _read(copy, "activity").drop(columns="event_id")
    n_dup = int(raw.duplicated().sum())
    _write(copy, "activity", raw)  # without the identifier, same-day repeats are duplicates, excluded by the rule
    led = load_extracts(params, copy).ledger.to_frame()
    assert n_dup > 0 and led.loc[led.rule == "activity_exact_duplicate", "rows"].item() == n_dup
    raw["event_id"] = [f"A{i}" for i in range(len(raw))]  # every row a distinct appointment
    _write(copy, "activity", raw)
    ex = load_extracts(params, copy)
    assert len(ex.activity) == len(raw)
    assert "activity_exact_duplicate" not in set(ex.ledger.to_frame()["rule"])


def test_nhs_numbers_refused_in_any_column(copy, params):
    p = _read(copy, "persons")
    p["legacy_ref"] = "x"
    p.loc[[3, 7], "legacy_ref"] = ["9434765919", "943 476 5919"]
    _write(copy, "persons", p)
    r = _read(copy, "referrals")
    r.loc[2, "provider"] = "4010232137"   # a valid NHS number (mod 11) typed into a text field
    r.loc[4, "provider"] = "4010232138"   # 10 digits failing the check: not refused
    _write(copy, "referrals", r)
    e = _error(params, copy)
    hits = {(b.file, b.column): b for b in e.breaches if "look like NHS numbers" in b.problem}
    assert set(hits) == {("persons.parquet", "legacy_ref"), ("referrals.parquet", "provider")}
    assert hits[("persons.parquet", "legacy_ref")].rows == (4, 8) and hits[("referrals.parquet", "provider")].rows == (3,)
    assert "9434765919" not in str(e)  # the identifiers themselves are never echoed


def test_nhs_numbers_as_activity_person_ids(copy, params):
    a = _read(copy, "activity")
    a.loc[[0, 1], "person_id"] = "9434765919"
    _write(copy, "activity", a)
    e = _error(params, copy)
    cols = {(b.column, b.problem.split(" (")[0]) for b in e.breaches}
    assert ("person_id", "values look like NHS numbers") in cols
    assert ("person_id", "activity for a person not in persons") in cols


def test_practice_pcn_borough_and_lsoa_ward_must_agree(copy, params):
    from spstudy.inputs import reference

    gp = reference.gp_practices()
    r = _read(copy, "referrals")
    other_pcn = gp.loc[gp.pcn_code != r.loc[0, "pcn_code"], "pcn_code"].iloc[0]
    r.loc[0, "pcn_code"] = other_pcn
    other_borough = next(b for b in reference.BOROUGHS.borough_code if b != r.loc[1, "borough_code"])
    r.loc[1, "borough_code"] = other_borough
    _write(copy, "referrals", r)
    p = _read(copy, "persons")
    wards = reference.wards().ward22_code
    p.loc[10, "ward22_code"] = wards[wards != p.loc[10, "ward22_code"]].iloc[0]
    _write(copy, "persons", p)
    e = _error(params, copy)
    by = {(b.file, b.column): b for b in e.breaches}
    assert by[("referrals.parquet", "pcn_code")].rows == (1,) and "agree with the practice" in by[("referrals.parquet", "pcn_code")].problem
    assert by[("referrals.parquet", "borough_code")].rows == (2,)
    assert by[("persons.parquet", "ward22_code")].rows == (11,) and "best-fit ward" in by[("persons.parquet", "ward22_code")].problem
    assert len(e.breaches) == 3  # all at once


def test_duplicate_column_names_csv_and_parquet(copy, params):
    a = _read(copy, "activity")
    (copy / "activity.parquet").unlink()
    text = a.head(20).to_csv(index=False).splitlines()
    text[0] = "person_id,activity_date,person_id"
    (copy / "activity.csv").write_text("\n".join(text) + "\n")
    e = _error(params, copy)
    assert "activity.csv: duplicate column names: 'person_id' appears twice" in str(e)
    (copy / "activity.csv").unlink()
    t = pa.table([pa.array(a.person_id.head(5)), pa.array(a.setting.head(5)), pa.array(a.setting.head(5))],
                 names=["person_id", "setting", "Setting "])
    pq.write_table(t, copy / "activity.parquet")
    e = _error(params, copy)
    assert "activity.parquet: duplicate column names: 'setting' and 'Setting ' differ only in case or spaces" in str(e)


def test_timezone_aware_timestamps_become_london_dates(copy, params):
    a = _read(copy, "activity").drop_duplicates()
    p = _read(copy, "persons")
    settled = p.person_id[(pd.to_datetime(p.registration_start) < "2021-01-01") & p.registration_end.isna()]
    d = pd.to_datetime(a["activity_date"])
    a = a[a.person_id.isin(settled) & d.dt.month.isin([6, 7, 8, 12, 1]) & d.between("2021-06-01", "2024-12-31")]
    a = a.reset_index(drop=True)
    d = pd.to_datetime(a["activity_date"])
    # 23:30 UTC on a summer day is 00:30 the next day in London (BST); in winter it is the same day
    a["activity_date"] = (d + pd.Timedelta(hours=23, minutes=30)).dt.tz_localize("UTC")
    _write(copy, "activity", a)
    ex = load_extracts(params, copy)
    summer = (d.dt.month.isin([6, 7, 8])).to_numpy()
    got = ex.activity["activity_date"].to_numpy()
    assert (got[summer] == (d[summer] + pd.Timedelta(days=1)).to_numpy()).all()
    assert (got[d.dt.month.isin([12, 1]).to_numpy()] == d[d.dt.month.isin([12, 1])].to_numpy()).all()
    notes = " ".join(ex.ledger.to_frame()["note"])
    assert "timezone-aware timestamps (UTC) converted to Europe/London calendar dates" in notes


def test_timestamps_with_offsets_in_csv_and_unreadable_ones(copy, params):
    r = _read(copy, "referrals")
    d = pd.to_datetime(r["referral_date"])
    r["referral_date"] = d.dt.strftime("%Y-%m-%d")
    r = r.astype({c: "object" for c in r.columns})
    inside = (d >= pd.Timestamp(params.study.referral_start)).to_numpy()  # the sample also holds referrals before the study period
    summer = int(np.flatnonzero(d.dt.month.eq(7).to_numpy() & inside)[0])
    winter = int(np.flatnonzero(d.dt.month.eq(12).to_numpy() & inside)[0])
    # 23:15 UTC the day before is 00:15 in London in summer (BST); 23:15 Z in winter stays that day
    r.loc[summer, "referral_date"] = (d[summer] - pd.Timedelta(days=1)).strftime("%Y-%m-%dT23:15:00+00:00")
    r.loc[winter, "referral_date"] = d[winter].strftime("%Y-%m-%dT23:15:00Z")
    (copy / "referrals.parquet").unlink()
    r.to_csv(copy / "referrals.csv", index=False)
    ex = load_extracts(params, copy)
    got = ex.referrals.set_index("referral_id")["referral_date"]
    assert got[r.loc[summer, "referral_id"]] == d[summer] and got[r.loc[winter, "referral_id"]] == d[winter]
    assert "2 timestamps with a UTC offset converted to Europe/London" in " ".join(ex.ledger.to_frame()["note"])
    r.loc[2, "referral_date"] = "2023-06-31T10:00:00+01:00"
    r.to_csv(copy / "referrals.csv", index=False)
    e = _error(params, copy)
    assert "referrals.csv: column 'referral_date': not a valid date (expected YYYY-MM-DD) in 1 row(s)" in str(e)


def test_every_breach_in_every_file_is_reported_at_once(copy, params):
    p = _read(copy, "persons")
    p.loc[0, "sex"] = "X"
    p.loc[[1, 2], "ethnicity"] = "Q"
    _write(copy, "persons", p)
    r = _read(copy, "referrals").astype(object)
    r.loc[3, "contacts"] = "many"
    r.loc[4, "outcome"] = "lost"
    (copy / "referrals.parquet").unlink()
    r.to_csv(copy / "referrals.csv", index=False)
    e = _error(params, copy)
    got = {(b.file, b.column, b.rows) for b in e.breaches}
    assert {("persons.parquet", "sex", (1,)), ("persons.parquet", "ethnicity", (2, 3)),
            ("referrals.csv", "contacts", (4,)), ("referrals.csv", "outcome", (5,))} <= got
    assert str(e).startswith("4 problems in 2 file(s) of the extract (all are listed):")
    assert "values: 'Q'" in str(e) and "values: 'many'" in str(e)
    table = e.to_frame()
    assert list(table.columns) == ["file", "column", "problem", "rows", "first_rows", "first_values"] and len(table) == 4


def test_caseload_only_extract_stops_with_the_reason(copy, params):
    r = _read(copy, "referrals")
    p = _read(copy, "persons")
    _write(copy, "persons", p[p.person_id.isin(r.person_id)])
    info = json.loads((copy / "extract_info.json").read_text())
    info.pop("sample_design")
    (copy / "extract_info.json").write_text(json.dumps(info))
    e = _error(params, copy)
    assert "persons holds only people who were referred (the caseload)" in str(e)
    assert "registered people never referred" in str(e) and "Who must be in persons" in str(e)


def test_sample_design_is_validated(copy, params):
    info = json.loads((copy / "extract_info.json").read_text())
    info["pool_fraction"] = 1.5
    (copy / "extract_info.json").write_text(json.dumps(info))
    assert "extract_info.json: column 'pool_fraction': must be a number in (0, 1]" in str(_error(params, copy))
    info["pool_fraction"] = 0.5
    info["sample_design"]["non_referred_weight"] = 2.0
    info["sample_design"]["non_referred_in_sample"] += 1
    (copy / "extract_info.json").write_text(json.dumps(info))
    e = _error(params, copy)
    assert any("non_referred_in_sample" in (b.column or "") and "people with no referral" in b.problem for b in e.breaches)
    (copy / "extract_info.json").write_text("{not json")
    assert "extract_info.json: not valid JSON" in str(_error(params, copy))


def test_optional_tables_may_be_absent(copy, params):
    (copy / "wellbeing.parquet").unlink()
    (copy / "workforce.csv").unlink()
    ex = load_extracts(params, copy)
    assert len(ex.wellbeing) == 0 and len(ex.workforce) == 0
    assert list(ex.wellbeing.columns) == ["referral_id", "timepoint", "instrument", "item", "score", "measurement_date"]
    notes = ex.ledger.to_frame()
    assert (notes.note == "optional table not supplied: an empty table is used").sum() == 2
    ex.ledger.check_balanced()

