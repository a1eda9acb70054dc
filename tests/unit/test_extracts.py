"""Unit tests of extracts; what the subject's tests check and their sources: tests/support/extracts.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from spstudy.inputs.extracts import ExtractError, load_extracts, read_pool_fraction
from tests.support import ROOT
from tests.support.extracts import SHIPPED, _error, _expect, _read, _write, copy, params, shipped_sample, strict  # noqa: F401 (fixtures)
from tests.support.tables import tiny_tables, write_tables

pytestmark = pytest.mark.unit


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


def test_missing_and_misspelt_column(tiny, params):
    t, d = tiny
    t["persons"] = t["persons"].rename(columns={"ethnicity": "ethnicty"})
    msg = _expect(t, d, params, r"persons.csv: column 'ethnicity': required column\(s\) missing")
    assert "'ethnicty' looks like a misspelling of 'ethnicity'" in msg


def test_wrong_type_names_rows_and_values(tiny, params):
    t, d = tiny
    t["referrals"]["contacts"] = t["referrals"]["contacts"].astype(object)
    t["referrals"].loc[1, "contacts"] = "three"
    msg = _expect(t, d, params, r"referrals.csv: column 'contacts': not a whole number in 1 row\(s\); first rows \(1 = first data row\): 2")
    assert "'three'" in msg


def test_unknown_code(tiny, params):
    t, d = tiny
    t["persons"].loc[0, "ethnicity"] = "Q"
    _expect(t, d, params, r"persons.csv: column 'ethnicity': unknown code .*first data row\): 1; values: 'Q'")
    t = tiny_tables()
    t["referrals"].loc[2, "reasons"] = "housing;parking"
    _expect(t, d, params, r"referrals.csv: column 'reasons': unknown code")


def test_ward_or_practice_not_in_reference(tiny, params):
    t, d = tiny
    t["persons"].loc[3, "ward22_code"] = "E05999999"
    _expect(t, d, params, r"persons.csv: column 'ward22_code': code not in the reference data .* 4")
    t = tiny_tables()
    t["referrals"].loc[0, "practice_code"] = "Z99999"
    _expect(t, d, params, r"referrals.csv: column 'practice_code': code not in the reference data")


def test_impossible_and_future_dates(tiny, params):
    t, d = tiny
    t["activity"].loc[0, "activity_date"] = "2023-02-30"
    _expect(t, d, params, r"activity.csv: column 'activity_date': not a valid date .*'2023-02-30'")
    t = tiny_tables()
    t["referrals"].loc[0, "closure_date"] = "2030-01-01"
    _expect(t, d, params, r"referrals.csv: column 'closure_date': date in the future", today=pd.Timestamp("2026-01-01").date())


def test_closure_before_referral(tiny, params):
    t, d = tiny
    t["referrals"].loc[1, "closure_date"] = "2023-01-01"
    _expect(t, d, params, r"referrals.csv: column 'closure_date': closure before referral in 1 row\(s\).*: 2")


def test_duplicate_ids(tiny, params):
    t, d = tiny
    t["persons"].loc[3, "person_id"] = "P1"
    _expect(t, d, params, r"persons.csv: column 'person_id': duplicate identifiers in 2 row\(s\).*: 1, 4")


def test_referral_for_unknown_person(tiny, params):
    t, d = tiny
    t["referrals"].loc[2, "person_id"] = "P404"
    _expect(t, d, params, r"referrals.csv: column 'person_id': referral for a person not in persons .*'P404'")


def test_empty_file_and_header_only(tiny, params):
    t, d = tiny
    write_tables(t, d)
    (d / "wellbeing.csv").write_text("")
    with pytest.raises(ExtractError, match=r"wellbeing.csv: file is empty"):
        load_extracts(params, d)
    (d / "wellbeing.csv").write_text(",".join(t["wellbeing"].columns) + "\n")
    with pytest.raises(ExtractError, match=r"wellbeing.csv: file has a header but no data rows"):
        load_extracts(params, d)


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


def test_outside_study_period_fails_when_not_allowed(tiny, strict):
    t, d = tiny
    t["referrals"].loc[0, "referral_date"] = "2022-05-01"
    t["referrals"].loc[0, "first_contact_date"] = "2022-05-10"
    t["wellbeing"]["measurement_date"] = "2022-06-01"
    _expect(t, d, strict, r"referrals.csv: column 'referral_date': referral date outside the study period .*rule 'referral_outside_study_period'")


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


def test_activity_outside_registration(tiny, params):
    t, d = tiny
    t["activity"].loc[2, "activity_date"] = "2025-02-01"  # P2 left 2024-12-31
    ex = load_extracts(params, write_tables(t, d))
    led = ex.ledger.to_frame()
    assert led.loc[led.rule == "activity_outside_registration", "rows"].item() == 1


def test_wellbeing_score_out_of_range_and_wrong_instrument(tiny, params):
    t, d = tiny
    t["wellbeing"].loc[0, "score"] = 11
    _expect(t, d, params, r"wellbeing.csv: column 'score': out of range|score out of the item's range")
    t = tiny_tables()
    t["wellbeing"].loc[1, "instrument"] = "wemwbs"
    _expect(t, d, params, r"wellbeing.csv: column 'item': item does not belong to the instrument")


def test_seen_without_first_contact_and_registration_logic(tiny, params):
    t, d = tiny
    t["referrals"].loc[0, "first_contact_date"] = None
    _expect(t, d, params, r"first_contact_date': missing for a referral whose outcome is 'seen'")
    t = tiny_tables()
    t["persons"].loc[1, "registration_end_reason"] = None
    _expect(t, d, params, r"registration_end_reason': must be given exactly when registration_end is given")


def test_data_dictionary_matches_contract():

    from spstudy.inputs.contract import data_dictionary_markdown

    doc = ROOT / "docs" / "data_dictionary.md"
    assert doc.read_text() == data_dictionary_markdown(), "regenerate docs/data_dictionary.md from spstudy.inputs.contract"



def test_area_extracts_cut_each_table_to_the_area_once():
    from types import SimpleNamespace

    from spstudy.inputs import reference
    from spstudy.inputs.extracts import AreaExtracts

    gp = reference.gp_practices()
    cam = gp.loc[gp["borough_code"] == "E09000007", "practice_code"].iloc[0]
    bar = gp.loc[gp["borough_code"] == "E09000003", "practice_code"].iloc[0]
    region = SimpleNamespace(
        persons=pd.DataFrame({"person_id": ["P1", "P2", "P3"], "practice_code": [cam, bar, cam]}),
        referrals=pd.DataFrame({"referral_id": ["R1", "R2", "R3"], "person_id": ["P1", "P2", "P2"],
                                "borough_code": ["E09000007", "E09000003", "E09000007"]}),
        workforce=pd.DataFrame({"borough_code": ["E09000003", "E09000007"], "fte": [2.0, 3.0]}),
        wellbeing=pd.DataFrame({"referral_id": ["R1", "R2", "R3", "R3"], "score": [1, 2, 3, 4]}))
    local = AreaExtracts(region, reference.area("camden"))
    assert local.referrals["referral_id"].tolist() == ["R1", "R3"]  # by the service's borough, not the person's practice
    assert local.persons["person_id"].tolist() == ["P1", "P3"]       # by the practice's borough
    assert local.workforce["fte"].tolist() == [3.0]
    assert local.wellbeing["score"].tolist() == [1, 3, 4]            # of the area's referrals
    assert local.referrals is local.referrals and local.region is region and len(region.referrals) == 3
    whole = AreaExtracts(region, reference.WHOLE_REGION)
    assert len(whole.referrals) == 3 and len(whole.persons) == 3 and len(whole.wellbeing) == 4


def test_read_pool_fraction(tmp_path):
    assert read_pool_fraction(tmp_path) == 1.0  # a real extract has no extract_info.json
    (tmp_path / "extract_info.json").write_text(json.dumps({"sample_design": {"x": 1}, "pool_fraction": 0.05}))
    assert read_pool_fraction(tmp_path) == 0.05
    (tmp_path / "extract_info.json").write_text(json.dumps({"pool_fraction": 2}))
    with pytest.raises(ValueError, match="pool_fraction"):
        read_pool_fraction(tmp_path)


def test_notebooks_of_one_kernel_share_validated_tables_without_seeing_each_others_changes(tiny, params, tmp_path, monkeypatch):
    """A worker kernel runs notebook after notebook on one validated extract: the second reads nothing
    from disk, and a column one notebook adds or a value it overwrites never reaches the next."""
    from spstudy.inputs import extracts as E

    tables, d = tiny
    v = E.write_validated(load_extracts(params, write_tables(tables, d / "csv", "csv")), tmp_path / "validated")
    monkeypatch.setattr(E, "_SHARED", {})
    reads = []
    real = pd.read_feather
    monkeypatch.setattr(pd, "read_feather", lambda f, *a, **k: (reads.append(Path(f).name), real(f, *a, **k))[1])
    first = E.ValidatedExtracts(v)
    p1 = first.persons
    p1["added"] = 1
    p1.loc[0, "birth_year"] = 1800
    second = E.ValidatedExtracts(v)
    p2 = second.persons
    assert reads == ["persons.arrow"]
    assert "added" not in p2.columns and p2.loc[0, "birth_year"] != 1800
    pd.testing.assert_frame_equal(p2, real(v / "persons.arrow"))
    assert second.referred_ever == first.referred_ever
    made = []
    assert first.derived(("k", 1), lambda: made.append(1) or "coded") == "coded"
    assert second.derived(("k", 1), lambda: made.append(2) or "again") == "coded" and made == [1]  # once per process
    assert second.derived(("k", 2), lambda: made.append(3) or "other") == "other" and made == [1, 3]  # per key
    # another build's folder replaces what was kept
    other = E.write_validated(load_extracts(params, write_tables(tables, d / "csv2", "csv")), tmp_path / "validated2")
    E.ValidatedExtracts(other).persons
    assert reads == ["persons.arrow", "referred_ever.arrow", "persons.arrow"]
    assert {k[0] for k in E._SHARED} == {str(other.resolve())}


@pytest.mark.parametrize("seed", range(4))
def test_exact_duplicates_are_pandas_duplicated(seed):
    """Which activity rows repeat an earlier row (person, date, setting and every non-contract
    column) is what pandas' ``duplicated(keep="first")`` says, whether the file is sorted (only runs
    of equal keys are compared) or not (a full sort), with one or two extra columns and missing values."""
    import numpy as np

    from spstudy.inputs import extracts as X

    rng = np.random.default_rng(seed)
    n = 3000
    a = pd.DataFrame({"person_id": rng.choice([f"P{i}" for i in range(40)], n),
                      "activity_date": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 30, n), unit="D"),
                      "setting": rng.choice(["gp", "ae", "elective"], n)})
    extra = pd.DataFrame({"event_id": rng.choice(["e1", "e2", "e3", None], n), "clinic": rng.choice(["x", "y"], n)})
    persons = pd.Series(sorted(a["person_id"].unique()))
    from spstudy.inputs.contract import ACTIVITY_SETTINGS

    order = a.assign(_s=a["setting"].map({v: i for i, v in enumerate(ACTIVITY_SETTINGS)}))
    for ordered in (True, False):
        idx = order.sort_values(["person_id", "activity_date", "_s"], kind="stable").index if ordered else a.index
        aa, ee = a.loc[idx].reset_index(drop=True), extra.loc[idx].reset_index(drop=True)
        pos = X._positions(aa["person_id"], persons)
        day = aa["activity_date"].to_numpy().astype("datetime64[D]").astype(np.int64)
        key = (pos.astype(np.int64) << 26) | ((day - day.min()) << 8) | (X._positions(aa["setting"], pd.Series(list(ACTIVITY_SETTINGS))) + 1)
        assert bool(np.all(key[1:] >= key[:-1])) == ordered, "the sorted case must take the fast path"
        for cols in (["event_id"], ["event_id", "clinic"]):
            got = X._exact_duplicates(aa, pos, ee[cols])
            want = pd.concat([aa, ee[cols]], axis=1).duplicated(keep="first").to_numpy()
            assert got.sum() > 0 and (got == want).all(), (ordered, cols)
        assert (X._exact_duplicates(aa, pos, None) == aa.duplicated(keep="first").to_numpy()).all()
