"""Dates in the parameter files: impossible dates, reversed periods and a data period that does not
cover the evaluation's windows stop with a ParameterError naming the file and key, not a traceback."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from spstudy.inputs import project
from spstudy.inputs.params import ParameterError, load_parameters, required_data_period

PARAMETERS_DIR = project.parameters_dir()

pytestmark = pytest.mark.unit


def _write(tmp_path, camden_text: str):
    (tmp_path / "ncl.yaml").write_text((PARAMETERS_DIR / "ncl.yaml").read_text())
    (tmp_path / "camden.yaml").write_text("area: camden\n" + camden_text)
    return tmp_path


def test_impossible_calendar_date_names_file_and_key(tmp_path):
    d = _write(tmp_path, "study:\n  referral_start: 2023-02-30\n")
    with pytest.raises(ParameterError) as e:
        load_parameters("camden", d)
    msg = str(e.value)
    assert "camden.yaml: key 'study.referral_start'" in msg and "'2023-02-30'" in msg


def test_impossible_date_in_overrides_is_a_parameter_error():
    with pytest.raises(ParameterError, match=r"<overrides>: key 'study.data_end'.*'2025-13-01'"):
        load_parameters("camden", overrides={"study": {"data_end": "2025-13-01"}})


def test_referral_end_before_referral_start(tmp_path):
    d = _write(tmp_path, "study:\n  referral_start: 2024-04-01\n  referral_end: 2023-03-31\n")
    with pytest.raises(ParameterError, match=r"camden.yaml: key 'study'.*referral_end must not be before referral_start \(referral_end 2023-03-31, referral_start 2024-04-01\)"):
        load_parameters("camden", d)


def test_data_period_not_covering_the_windows(tmp_path):
    # one year of activity before the first referral: too short for the event study's 24 months
    d = _write(tmp_path, "study:\n  data_start: 2022-04-01\n")
    with pytest.raises(ParameterError) as e:
        load_parameters("camden", d)
    msg = str(e.value)
    assert "does not cover the windows the evaluation needs" in msg and "study.data_start <= 2021-04-01" in msg
    d = _write(tmp_path, "study:\n  data_end: 2024-12-31\n")
    with pytest.raises(ParameterError, match=r"study.data_end >= 2025-03-30"):
        load_parameters("camden", d)


def test_required_period_matches_the_shipped_study_design():
    p = load_parameters("ncl")
    e = p.evaluation
    need = required_data_period(p.study.referral_start, p.study.referral_end, e.windows_months, e.matching_window_months,
                                e.placebo_shift_months, event_study_months_before=e.event_study_months_before)
    # the event study's 24 months before referral = 730 days (the placebo, 3 months earlier with its
    # 12-month matching window, needs 456); 12-month post window = days 0..364
    assert need["days_before"] == 730 and need["days_after"] == 364
    assert need["data_start"] == dt.date(2021, 4, 1) == p.study.data_start
    assert need["data_end"] == dt.date(2025, 3, 30) <= p.study.data_end
    # shorter windows need less
    short = required_data_period(p.study.referral_start, p.study.referral_end, [6], (-6, -4), 3)
    assert short["days_before"] == 365 and short["days_after"] == 182


def test_shipped_files_still_load_and_schema_lists_the_duplicate_rule():
    for area in ("ncl", "barnet", "islington"):
        assert "activity_exact_duplicate" in load_parameters(area).data.exclude_rules
    schema = yaml.safe_load((PARAMETERS_DIR / "schema.json").read_text())
    assert "activity_exact_duplicate" in str(schema)
