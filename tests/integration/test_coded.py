"""Integration tests of coded; what the subject's tests check and their sources: tests/support/coded.py."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from spstudy.inputs import coded, contract
from spstudy.inputs.coded import (
    CODELIST_DIR,
    CodedExtractError,
    export_coded_events,
    import_coded_events,
    snomed_concept_id_valid,
)
from spstudy.inputs.extracts import ExtractError, load_extracts
from tests.support.coded import KEYS, SHIPPED, _csv, coded_copy, coded_sample, params, sample  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration


def test_round_trip_coded_to_contract_gives_the_same_tables(sample, coded_sample, tmp_path, params):
    res = import_coded_events(coded_sample, tmp_path / "contract")
    a, b = load_extracts(params, sample), load_extracts(params, res.out_dir)
    for name, key in KEYS.items():
        x = a.table(name).sort_values(key).reset_index(drop=True)
        y = b.table(name).sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(x, y, check_exact=True, obj=name)
        assert len(x) > 0
    assert a.ledger.to_frame().equals(b.ledger.to_frame())
    assert b.pool_fraction == a.pool_fraction
    assert (a.referrals.outcome.value_counts() > 0).all() and set(a.referrals.outcome) == {"seen", "dna", "declined"}
    led = res.ledger
    assert led.loc[led.step == "rows read", "file"].tolist() == ["registrations.csv", "coded_events.csv", "sp_referrals.csv",
                                                                "sp_events.csv", "sp_outcome_measures.csv"]
    assert (tmp_path / "contract" / "import_ledger.csv").exists() and (tmp_path / "contract" / "SHA256SUMS").exists()


def test_export_and_import_are_deterministic(sample, coded_sample, tmp_path):
    again = export_coded_events(sample, tmp_path / "coded_again")
    for f in sorted(coded_sample.glob("*.csv")):
        assert (again / f.name).read_bytes() == f.read_bytes(), f.name
    import_coded_events(coded_sample, tmp_path / "a")
    import_coded_events(coded_sample, tmp_path / "b")
    for name in ("persons.parquet", "referrals.parquet", "activity.parquet", "wellbeing.parquet", "import_ledger.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_export_writes_the_specified_files(coded_sample):
    for name, spec in coded.CODED_FILES.items():
        t = _csv(coded_sample, name)
        assert list(t.columns)[:len(spec.required)] == list(spec.required) or set(spec.required) <= set(t.columns)
    ev = _csv(coded_sample, "coded_events")
    assert ev.concept_id.map(snomed_concept_id_valid).all()  # the GP export holds SNOMED CT concepts only


def test_every_breach_in_the_coded_files_is_reported_at_once(coded_copy):
    reg = _csv(coded_copy, "registrations")
    reg.loc[0, "sex"] = "9"                                  # not specified: not in the contract
    reg.loc[1, "patient_id"] = reg.loc[2, "patient_id"]      # a person twice
    reg.to_csv(coded_copy / "registrations.csv", index=False)
    ev = _csv(coded_copy, "coded_events")
    ev.loc[3, "patient_id"] = "P-unknown"
    ev.loc[4, "event_date"] = "2023-02-30"
    ev.to_csv(coded_copy / "coded_events.csv", index=False)
    spr = _csv(coded_copy, "sp_referrals")
    spr.loc[5, "referral_source"] = "pharmacist"
    spr.loc[6, "referral_reasons"] = "housing;parking"
    spr.to_csv(coded_copy / "sp_referrals.csv", index=False)
    with pytest.raises(CodedExtractError) as e:
        import_coded_events(coded_copy, coded_copy.parent / "out")
    assert isinstance(e.value, ExtractError)
    got = {(b.file, b.column) for b in e.value.breaches}
    assert {("coded_events.csv", "event_date")} <= got  # stage 1 (readable, dates) stops first
    ev.loc[4, "event_date"] = "2023-02-28"
    ev.to_csv(coded_copy / "coded_events.csv", index=False)
    with pytest.raises(CodedExtractError) as e:
        import_coded_events(coded_copy, coded_copy.parent / "out")
    got = {(b.file, b.column, b.rows) for b in e.value.breaches}
    assert {("registrations.csv", "sex", (1,)), ("registrations.csv", "patient_id", (2, 3)),
            ("sp_referrals.csv", "referral_source", (6,)), ("sp_referrals.csv", "referral_reasons", (7,))} <= got
    # the unknown patient, and the events of the person whose registration row was overwritten
    unknown = next(b for b in e.value.breaches if (b.file, b.column) == ("coded_events.csv", "patient_id"))
    assert 4 in unknown.rows and "'P-unknown'" in str(e.value)
    assert "values: 'pharmacist'" in str(e.value)


def test_nhs_numbers_in_a_coded_export_are_refused(coded_copy):
    ev = _csv(coded_copy, "coded_events")
    ev["term"] = "x"
    ev.loc[7, "term"] = "NHS 943 476 5919"  # not the whole value: not an identifier column
    ev.loc[8, "term"] = "943 476 5919"
    ev.to_csv(coded_copy / "coded_events.csv", index=False)
    with pytest.raises(CodedExtractError, match=r"coded_events.csv: column 'term': values look like NHS numbers .* in 1 row\(s\); first rows \(1 = first data row\): 9"):
        import_coded_events(coded_copy, coded_copy.parent / "out")


def test_outcome_needs_contact_or_declined_or_dna(coded_copy):
    spr = _csv(coded_copy, "sp_referrals")
    spe = _csv(coded_copy, "sp_events")
    rid = spe.loc[spe.concept_id == "281399006", "referral_id"].iloc[0]
    spe[spe.referral_id != rid].to_csv(coded_copy / "sp_events.csv", index=False)
    with pytest.raises(CodedExtractError, match="neither an initial contact date nor a declined or did-not-attend event"):
        import_coded_events(coded_copy, coded_copy.parent / "out")
    assert rid in set(spr.referral_id)


def test_totals_must_match_items_and_totals_alone_are_counted(coded_copy):
    om = _csv(coded_copy, "sp_outcome_measures")
    tot = om.index[om.item_code == "885541000000103"]
    om.loc[tot[0], "score"] = str(int(om.loc[tot[0], "score"]) + 1)
    om.to_csv(coded_copy / "sp_outcome_measures.csv", index=False)
    with pytest.raises(CodedExtractError, match="total does not equal the sum of its items"):
        import_coded_events(coded_copy, coded_copy.parent / "out")
    om.loc[tot[0], "score"] = str(int(om.loc[tot[0], "score"]) - 1)
    key = om.loc[tot[1], ["referral_id", "timepoint"]]
    alone = om[~((om.referral_id == key.referral_id) & (om.timepoint == key.timepoint) & om.item_code.str.startswith("wemwbs"))]
    alone.to_csv(coded_copy / "sp_outcome_measures.csv", index=False)
    res = import_coded_events(coded_copy, coded_copy.parent / "out")
    led = res.ledger
    assert led.loc[led.rule == "total_without_items", "rows"].item() == 1


def test_latest_ethnicity_wins_and_unlisted_languages_are_other(coded_copy):
    reg = _csv(coded_copy, "registrations")
    ev = _csv(coded_copy, "coded_events")
    pid = reg.patient_id.iloc[0]
    later = pd.DataFrame({"patient_id": [pid, pid], "concept_id": ["92511000000107", "92521000000101"],
                          "event_date": ["2024-01-01", "2024-01-01"]})          # Chinese and Other on the same latest date
    pd.concat([ev, later]).to_csv(coded_copy / "coded_events.csv", index=False)
    reg.loc[0, "main_language"] = "ur"   # Urdu: not in the list -> Other
    reg.loc[1, "main_language"] = "EN"   # codes are case-insensitive
    reg.to_csv(coded_copy / "registrations.csv", index=False)
    res = import_coded_events(coded_copy, coded_copy.parent / "out")
    p = pd.read_parquet(res.out_dir / "persons.parquet").set_index("person_id")
    assert p.loc[pid, "ethnicity"] == "S" and p.loc[pid, "main_language"] == "Other"
    assert p.loc[reg.patient_id.iloc[1], "main_language"] == "English"
    led = res.ledger
    assert "1 persons have different ethnicity codes on their latest date" in " ".join(led.note)
    assert led.loc[led.rule == "language_not_listed", "note"].item().endswith("ur (1)")


def test_a_new_activity_setting_needs_only_a_code_list_row(coded_copy, tmp_path, monkeypatch):
    """Data-driven: a negative-control setting added to the contract is imported once its
    concepts are rows in activity-setting.csv (no importer code changes)."""
    monkeypatch.setitem(contract.ACTIVITY_SETTINGS, "negative_control", "A contact SP should not change")
    lists = tmp_path / "lists"
    shutil.copytree(CODELIST_DIR, lists)
    f = lists / "activity-setting.csv"
    t = pd.read_csv(f, dtype=str)
    row = {"code": "185242005", "term": "Seen in asthma clinic", "maps_to": "negative_control", "code_system": "snomedct",
           "source": "HL7 UK Core EncounterType v2.1.0 (test row)", "version": "1.0.0", "preferred": "1"}
    pd.concat([t, pd.DataFrame([row])]).to_csv(f, index=False)
    ev = _csv(coded_copy, "coded_events")
    pid = ev.patient_id.iloc[0]
    pd.concat([ev, pd.DataFrame({"patient_id": [pid], "concept_id": ["185242005"], "event_date": ["2023-06-01"]})]).to_csv(
        coded_copy / "coded_events.csv", index=False)
    res = import_coded_events(coded_copy, tmp_path / "out", codelists_dir=lists)
    a = pd.read_parquet(res.out_dir / "activity.parquet")
    assert (a.setting == "negative_control").sum() == 1


def test_sample_design_is_carried_and_a_complete_list_is_fraction_one(coded_copy, tmp_path, params):
    res = import_coded_events(coded_copy, tmp_path / "out")
    info = json.loads((res.out_dir / "extract_info.json").read_text())
    src = json.loads((coded_copy / "extract_info.json").read_text())
    assert info["pool_fraction"] == src["pool_fraction"] and info["code_lists"]["ethnicity"] == "1.0.0"
    (coded_copy / "extract_info.json").unlink()
    res = import_coded_events(coded_copy, tmp_path / "out2")
    info = json.loads((res.out_dir / "extract_info.json").read_text())
    assert info["pool_fraction"] == 1.0 and info["sample_design"]["non_referred_weight"] == 1.0
    assert load_extracts(params, res.out_dir).pool_fraction == 1.0


def test_event_ids_in_the_gp_export_keep_same_day_appointments(coded_copy, tmp_path, params):
    ev = _csv(coded_copy, "coded_events")
    ev["event_id"] = [f"E{i}" for i in range(len(ev))]
    ev.to_csv(coded_copy / "coded_events.csv", index=False)
    res = import_coded_events(coded_copy, tmp_path / "out")
    a = pd.read_parquet(res.out_dir / "activity.parquet")
    assert "event_id" in a.columns and a.event_id.notna().all()
    ex = load_extracts(params, res.out_dir)
    assert "activity_exact_duplicate" not in set(ex.ledger.to_frame().rule) and len(ex.activity) == len(a)

