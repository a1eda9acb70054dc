"""Extract loaders: every breach of the data contract gets a clear error naming file, column and rows;
allowed exclusions are counted in the ledger; nothing is dropped silently."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import tiny_tables, write_tables

from spstudy.inputs.extracts import ExtractError, load_extracts
from spstudy.inputs.params import load_parameters


@pytest.fixture(scope="module")
def params():
    return load_parameters("camden")


@pytest.fixture(scope="module")
def strict():
    return load_parameters("camden", overrides={"data": {"exclude_rules": []}})


@pytest.mark.unit
def test_valid_extract_loads_typed_csv_and_parquet(tiny, params):
    tables, d = tiny
    for fmt in ("csv", "parquet"):
        ex = load_extracts(params, write_tables(tables, d / fmt, fmt))
        assert len(ex.persons) == 4 and len(ex.referrals) == 3 and len(ex.activity) == 5
        assert str(ex.referrals["referral_date"].dtype).startswith("datetime64")
        assert ex.persons["interpreter_needed"].tolist()[:2] == [False, True]
        assert pd.isna(ex.persons.loc[2, "ethnicity"])  # not recorded stays missing, not 'Z'
        led = ex.ledger.to_frame()
        read = led[led.step == "rows read"].set_index("table")["rows"].sort_index()
        kept = led[led.step == "rows kept"].set_index("table")["rows"].sort_index()
        assert read.equals(kept)


def _expect(tables, d, params, match, **kw):
    write_tables(tables, d)
    with pytest.raises(ExtractError, match=match) as e:
        load_extracts(params, d, **kw)
    return str(e.value)


@pytest.mark.unit
def test_missing_and_misspelt_column(tiny, params):
    t, d = tiny
    t["persons"] = t["persons"].rename(columns={"ethnicity": "ethnicty"})
    msg = _expect(t, d, params, r"persons.csv: column 'ethnicity': required column\(s\) missing")
    assert "'ethnicty' looks like a misspelling of 'ethnicity'" in msg


@pytest.mark.unit
def test_wrong_type_names_rows_and_values(tiny, params):
    t, d = tiny
    t["referrals"]["contacts"] = t["referrals"]["contacts"].astype(object)
    t["referrals"].loc[1, "contacts"] = "three"
    msg = _expect(t, d, params, r"referrals.csv: column 'contacts': not a whole number in 1 row\(s\); first rows \(1 = first data row\): 2")
    assert "'three'" in msg


@pytest.mark.unit
def test_unknown_code(tiny, params):
    t, d = tiny
    t["persons"].loc[0, "ethnicity"] = "Q"
    _expect(t, d, params, r"persons.csv: column 'ethnicity': unknown code .*first data row\): 1; values: 'Q'")
    t = tiny_tables()
    t["referrals"].loc[2, "reasons"] = "housing;parking"
    _expect(t, d, params, r"referrals.csv: column 'reasons': unknown code")


@pytest.mark.unit
def test_ward_or_practice_not_in_reference(tiny, params):
    t, d = tiny
    t["persons"].loc[3, "ward22_code"] = "E05999999"
    _expect(t, d, params, r"persons.csv: column 'ward22_code': code not in the reference data .* 4")
    t = tiny_tables()
    t["referrals"].loc[0, "practice_code"] = "Z99999"
    _expect(t, d, params, r"referrals.csv: column 'practice_code': code not in the reference data")


@pytest.mark.unit
def test_impossible_and_future_dates(tiny, params):
    t, d = tiny
    t["activity"].loc[0, "activity_date"] = "2023-02-30"
    _expect(t, d, params, r"activity.csv: column 'activity_date': not a valid date .*'2023-02-30'")
    t = tiny_tables()
    t["referrals"].loc[0, "closure_date"] = "2030-01-01"
    _expect(t, d, params, r"referrals.csv: column 'closure_date': date in the future", today=pd.Timestamp("2026-01-01").date())


@pytest.mark.unit
def test_closure_before_referral(tiny, params):
    t, d = tiny
    t["referrals"].loc[1, "closure_date"] = "2023-01-01"
    _expect(t, d, params, r"referrals.csv: column 'closure_date': closure before referral in 1 row\(s\).*: 2")


@pytest.mark.unit
def test_duplicate_ids(tiny, params):
    t, d = tiny
    t["persons"].loc[3, "person_id"] = "P1"
    _expect(t, d, params, r"persons.csv: column 'person_id': duplicate identifiers in 2 row\(s\).*: 1, 4")


@pytest.mark.unit
def test_referral_for_unknown_person(tiny, params):
    t, d = tiny
    t["referrals"].loc[2, "person_id"] = "P404"
    _expect(t, d, params, r"referrals.csv: column 'person_id': referral for a person not in persons .*'P404'")


@pytest.mark.unit
def test_empty_file_and_header_only(tiny, params):
    t, d = tiny
    write_tables(t, d)
    (d / "wellbeing.csv").write_text("")
    with pytest.raises(ExtractError, match=r"wellbeing.csv: file is empty"):
        load_extracts(params, d)
    (d / "wellbeing.csv").write_text(",".join(t["wellbeing"].columns) + "\n")
    with pytest.raises(ExtractError, match=r"wellbeing.csv: file has a header but no data rows"):
        load_extracts(params, d)


@pytest.mark.unit
def test_file_that_is_not_what_it_claims(tiny, params):
    t, d = tiny
    write_tables(t, d)
    (d / "activity.csv").unlink()
    (d / "activity.parquet").write_text("person_id,activity_date,setting\nP1,2023-01-01,gp\n")
    with pytest.raises(ExtractError, match=r"activity.parquet: not a Parquet file"):
        load_extracts(params, d)
    (d / "activity.parquet").unlink()
    (d / "activity.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary")
    with pytest.raises(ExtractError, match=r"activity.csv: (not UTF-8|not a well-formed CSV|column)"):
        load_extracts(params, d)


@pytest.mark.unit
def test_missing_table_and_two_files_for_one_table(tiny, params):
    t, d = tiny
    write_tables(t, d)
    (d / "activity.csv").unlink()
    with pytest.raises(ExtractError, match=r"activity.\(parquet\|csv\): file not found"):
        load_extracts(params, d)
    write_tables(t, d)
    t["workforce"].to_parquet(d / "workforce.parquet")
    with pytest.raises(ExtractError, match="more than one file for table 'workforce'"):
        load_extracts(params, d)


@pytest.mark.unit
def test_outside_study_period_fails_when_not_allowed(tiny, strict):
    t, d = tiny
    t["referrals"].loc[0, "referral_date"] = "2022-05-01"
    t["referrals"].loc[0, "first_contact_date"] = "2022-05-10"
    t["wellbeing"]["measurement_date"] = "2022-06-01"
    _expect(t, d, strict, r"referrals.csv: column 'referral_date': referral date outside the study period .*rule 'referral_outside_study_period'")


@pytest.mark.unit
def test_exclusions_are_counted_in_the_ledger(tiny, params):
    t, d = tiny
    t["referrals"].loc[0, "referral_date"] = "2022-05-01"
    t["referrals"].loc[0, "first_contact_date"] = "2022-05-10"
    t["wellbeing"]["measurement_date"] = "2022-06-01"
    t["activity"].loc[0, "activity_date"] = "2021-01-01"   # before data_start
    t["activity"].loc[4, "activity_date"] = "2020-06-01"   # P4 registered 2021: outside period first
    t["activity"].loc[3, "activity_date"] = "2019-06-01"   # P3 registered 2020
    ex = load_extracts(params, write_tables(t, d))
    led = ex.ledger.to_frame()
    exc = led[led.step == "rows excluded"].set_index(["table", "rule"])["rows"]
    assert exc[("referrals", "referral_outside_study_period")] == 1
    assert exc[("wellbeing", "referral_outside_study_period")] == 8
    assert exc[("activity", "activity_outside_data_period")] == 3
    assert len(ex.referrals) == 2 and len(ex.activity) == 2 and len(ex.wellbeing) == 0
    ex.ledger.check_balanced()


@pytest.mark.unit
def test_activity_outside_registration(tiny, params):
    t, d = tiny
    t["activity"].loc[2, "activity_date"] = "2025-02-01"  # P2 left 2024-12-31
    ex = load_extracts(params, write_tables(t, d))
    led = ex.ledger.to_frame()
    assert led.loc[led.rule == "activity_outside_registration", "rows"].item() == 1


@pytest.mark.unit
def test_wellbeing_score_out_of_range_and_wrong_instrument(tiny, params):
    t, d = tiny
    t["wellbeing"].loc[0, "score"] = 11
    _expect(t, d, params, r"wellbeing.csv: column 'score': out of range|score out of the item's range")
    t = tiny_tables()
    t["wellbeing"].loc[1, "instrument"] = "wemwbs"
    _expect(t, d, params, r"wellbeing.csv: column 'item': item does not belong to the instrument")


@pytest.mark.unit
def test_seen_without_first_contact_and_registration_logic(tiny, params):
    t, d = tiny
    t["referrals"].loc[0, "first_contact_date"] = None
    _expect(t, d, params, r"first_contact_date': missing for a referral whose outcome is 'seen'")
    t = tiny_tables()
    t["persons"].loc[1, "registration_end_reason"] = None
    _expect(t, d, params, r"registration_end_reason': must be given exactly when registration_end is given")


@pytest.mark.unit
def test_data_dictionary_matches_contract():
    from pathlib import Path

    from spstudy.inputs.contract import data_dictionary_markdown

    doc = Path(__file__).resolve().parent.parent / "docs" / "data_dictionary.md"
    assert doc.read_text() == data_dictionary_markdown(), "regenerate docs/data_dictionary.md from spstudy.inputs.contract"


# ------------------------------------------------------------------------------------------------
# Validation that real exports need, each fault injected into a copy of a sample of the shipped data
# ------------------------------------------------------------------------------------------------

import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from spstudy.inputs.extracts import looks_like_nhs_number, nhs_number_valid, sample_extract  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "extracts"


@pytest.fixture(scope="module")
def shipped_sample(tmp_path_factory):
    if not (SHIPPED / "persons.parquet").exists():
        pytest.skip("shipped synthetic extract not present (make synth)")
    return sample_extract(SHIPPED, tmp_path_factory.mktemp("sample"), n_persons=2000, seed=3, referred_fraction=0.3)


@pytest.fixture
def copy(shipped_sample, tmp_path):
    d = tmp_path / "extract"
    shutil.copytree(shipped_sample, d)
    return d


def _read(d, name):
    return pd.read_parquet(d / f"{name}.parquet")


def _write(d, name, df):
    df.to_parquet(d / f"{name}.parquet", index=False)


def _error(params, d) -> ExtractError:
    with pytest.raises(ExtractError) as e:
        load_extracts(params, d)
    return e.value


@pytest.mark.known_answer
def test_nhs_number_modulus_11_known_answers():
    """NHS Data Dictionary, NHS NUMBER (Modulus 11 check); 943 476 5919 is the example number used
    in NHS Digital's documentation and test data; changing its check digit makes it invalid; a
    number whose check value is 10 is never valid."""
    assert looks_like_nhs_number(["9434765919", "943 476 5919", "943-476-5919"]).all()
    assert not looks_like_nhs_number(["9434765918", "P9434765919", "94347659190", "943476591", None, ""]).any()
    assert looks_like_nhs_number(pd.Series([9434765919, 9434765918])).tolist() == [True, False]
    # 123456789x: 1*10+2*9+...+9*2 = 210 = 11*19 + 1 -> check 10 -> no valid check digit exists
    assert not nhs_number_valid(np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, d] for d in range(10)])).any()


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
def test_nhs_numbers_as_activity_person_ids(copy, params):
    a = _read(copy, "activity")
    a.loc[[0, 1], "person_id"] = "9434765919"
    _write(copy, "activity", a)
    e = _error(params, copy)
    cols = {(b.column, b.problem.split(" (")[0]) for b in e.breaches}
    assert ("person_id", "values look like NHS numbers") in cols
    assert ("person_id", "activity for a person not in persons") in cols


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
def test_optional_tables_may_be_absent(copy, params):
    (copy / "wellbeing.parquet").unlink()
    (copy / "workforce.csv").unlink()
    ex = load_extracts(params, copy)
    assert len(ex.wellbeing) == 0 and len(ex.workforce) == 0
    assert list(ex.wellbeing.columns) == ["referral_id", "timepoint", "instrument", "item", "score", "measurement_date"]
    notes = ex.ledger.to_frame()
    assert (notes.note == "optional table not supplied: an empty table is used").sum() == 2
    ex.ledger.check_balanced()
