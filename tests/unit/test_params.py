"""Parameter files: validated on load, with errors that name the file and key."""

import datetime as dt
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
import yaml

from spstudy.inputs import project
from spstudy.inputs.params import ParameterError, json_schema, load_parameters

PARAMETERS_DIR = project.parameters_dir()
from spstudy.inputs.reference import AREAS


@pytest.mark.parametrize("area", AREAS)
def test_every_shipped_parameter_file_is_valid(area):
    p = load_parameters(area)
    assert p.area == area
    assert p.workforce.target_link_workers_per_10000 == 1.0
    assert p.study.referral_start == dt.date(2023, 4, 1)


def test_published_schema_is_current():
    assert (PARAMETERS_DIR / "schema.json").read_text() == json_schema()
    json.loads(json_schema())


def _write(tmp_path, borough_override: dict, base_override: dict | None = None) -> Path:
    base = yaml.safe_load((PARAMETERS_DIR / "ncl.yaml").read_text())
    if base_override:
        base.update(base_override)
    (tmp_path / "ncl.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "camden.yaml").write_text(yaml.safe_dump({"area": "camden", **borough_override}))
    return tmp_path


def test_unknown_key_names_file_and_key(tmp_path):
    d = _write(tmp_path, {"evaluation": {"windos_months": [6]}})
    with pytest.raises(ParameterError) as e:
        load_parameters("camden", d)
    assert "camden.yaml" in str(e.value) and "evaluation.windos_months" in str(e.value) and "unknown key" in str(e.value)


def test_wrong_type(tmp_path):
    d = _write(tmp_path, {"disclosure": {"threshold": "seven"}})
    with pytest.raises(ParameterError, match=r"camden.yaml: key 'disclosure.threshold'.*integer"):
        load_parameters("camden", d)


def test_negative_window(tmp_path):
    d = _write(tmp_path, {"evaluation": {"windows_months": [-6, 12]}})
    with pytest.raises(ParameterError, match=r"camden.yaml: key 'evaluation.windows_months'.*between 1 and 24"):
        load_parameters("camden", d)


def test_date_range_ending_before_start(tmp_path):
    d = _write(tmp_path, {"study": {"referral_start": dt.date(2024, 4, 1), "referral_end": dt.date(2023, 3, 31)}})
    with pytest.raises(ParameterError, match=r"camden.yaml: key 'study'.*referral_end must not be before referral_start"):
        load_parameters("camden", d)


def test_borough_that_does_not_exist(tmp_path):
    with pytest.raises(ParameterError, match="area 'hackney' does not exist"):
        load_parameters("hackney")
    d = _write(tmp_path, {}, base_override={"area": "hackney"})
    with pytest.raises(ParameterError, match=r"ncl.yaml: key 'area'"):
        load_parameters("ncl", d)


def test_borough_file_must_name_its_own_area(tmp_path):
    d = _write(tmp_path, {})
    (d / "camden.yaml").write_text("area: islington\n")
    with pytest.raises(ParameterError, match="camden.yaml: key 'area': must be 'camden'"):
        load_parameters("camden", d)


def test_weights_must_sum_to_one(tmp_path):
    d = _write(tmp_path, {"needs": {"need_index_weights": {"imd2025_score": 0.9}}})
    with pytest.raises(ParameterError, match="sum to 1"):
        load_parameters("camden", d)


def test_impossible_fraction_and_empty_file(tmp_path):
    d = _write(tmp_path, {"sroi": {"deadweight": 1.5}})
    with pytest.raises(ParameterError, match=r"sroi.deadweight.*less than or equal to 1"):
        load_parameters("camden", d)
    (d / "camden.yaml").write_text("")
    with pytest.raises(ParameterError, match="camden.yaml: file is empty"):
        load_parameters("camden", d)
    (d / "camden.yaml").write_text("area: [camden\n")
    with pytest.raises(ParameterError, match="not valid YAML"):
        load_parameters("camden", d)


def test_override_merges_deeply(tmp_path):
    d = _write(tmp_path, {"evaluation": {"matching": {"k": 3}}})
    p = load_parameters("camden", d)
    assert p.evaluation.matching.k == 3 and p.evaluation.matching.caliper_sd == 0.2
