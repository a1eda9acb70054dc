"""Pre-specified analysis plan (spstudy.plan): canonical bytes, hash, Markdown, deviations."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pytest

from spstudy.inputs.checksums import sha256
from spstudy.inputs.params import load_parameters
from spstudy.methods import plan as PL

pytestmark = pytest.mark.unit


def _plan(**over):
    p = load_parameters("ncl").to_dict()
    kw = dict(covariates=["age", "sex", "imd_q", "ethnic_group"], seeds={"cohort": 20231, "did_bootstrap": 1},
              subgroups={"factors": ["ethnic_group", "imd_quintile"], "min_matched_sets": 20, "multiplicity": "holm"},
              verdict_rules={"credible": "placebo and pre-trend consistent with 1; all |SMD| < 0.1"})
    kw.update(over)
    return PL.plan_from_parameters(p, **kw)


def test_canonical_json_is_sorted_compact_and_hashes_its_bytes():
    plan = {"b": 1, "a": [1, 2.5, True, None], "c": {"z": "é", "y": (3, 4)}, "d": dt.date(2024, 3, 31), "e": np.int64(7)}
    assert PL.canonical_json(plan) == '{"a":[1,2.5,true,null],"b":1,"c":{"y":[3,4],"z":"é"},"d":"2024-03-31","e":7}'.encode("utf-8")
    assert PL.plan_sha256(plan) == hashlib.sha256(PL.canonical_json(plan)).hexdigest()
    assert PL.plan_sha256(dict(reversed(list(plan.items())))) == PL.plan_sha256(plan)  # key order does not matter
    with pytest.raises(ValueError, match=r"plan\.x: non-finite"):
        PL.canonical_json({"x": float("nan")})
    with pytest.raises(ValueError, match=r"plan\.x\[0\]: value of type set"):
        PL.canonical_json({"x": [{1}]})


def test_same_parameters_same_bytes_and_the_file_hash_is_the_plan_hash(tmp_path):
    a = PL.write_plan(_plan(), tmp_path / "a")
    b = PL.write_plan(_plan(seeds={"did_bootstrap": 1, "cohort": 20231}), tmp_path / "b")
    assert a.sha256 == b.sha256 == sha256(a.json_file)
    assert (tmp_path / "a" / "analysis_plan.json").read_bytes() == (tmp_path / "b" / "analysis_plan.json").read_bytes()
    assert (tmp_path / "a" / "analysis_plan.md").read_bytes() == (tmp_path / "b" / "analysis_plan.md").read_bytes()
    md = (tmp_path / "a" / "analysis_plan.md").read_text()
    assert a.sha256 in md and md.index("## Cohorts") < md.index("## Windows") < md.index("## Seeds")
    assert a.tidy()["sha256"].item() == a.sha256
    assert _plan()["windows"]["washout_months"] == [-3, -1]


def test_deviations_list_every_difference(tmp_path):
    reg = _plan()
    path = tmp_path / "evaluation_plan.json"
    path.write_text(json.dumps(reg, indent=2, sort_keys=False))  # a hand-formatted registered file
    same = PL.deviations(path, _plan())
    assert same.matches and same.table.empty
    cur = _plan(seeds={"cohort": 1, "did_bootstrap": 1, "placebo": 5}, subgroups={"factors": ["ethnic_group"], "min_matched_sets": 20, "multiplicity": "holm"})
    cur["windows"]["post_windows_months"] = [3, 12]
    del cur["power"]
    dev = PL.deviations(path, cur)
    t = dev.table.set_index("path")
    assert not dev.matches and dev.registered_sha256 == PL.plan_sha256(reg)
    assert t.loc["seeds.cohort", "change"] == "changed" and t.loc["seeds.cohort", "registered"] == "20231" and t.loc["seeds.cohort", "current"] == "1"
    assert t.loc["seeds.placebo", "change"] == "added" and t.loc["seeds.placebo", "registered"] == ""
    assert t.loc["power", "change"] == "removed" and t.loc["power", "registered"] == "0.8"
    assert t.loc["windows.post_windows_months[0]", "current"] == "3"
    assert t.loc["subgroups.factors", "registered"] == '["ethnic_group","imd_quintile"]'  # lists of different length: the whole value
    assert len(t) == 5
    assert {"registered_sha256", "current_sha256"} <= set(dev.tidy().columns)


def test_read_plan_rejects_what_is_not_a_plan(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"schema": "other"}')
    with pytest.raises(ValueError, match="not an analysis plan"):
        PL.read_plan(bad)
    bad.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        PL.read_plan(bad)
    with pytest.raises(ValueError, match="seeds.cohort: must be an integer"):
        _plan(seeds={"cohort": "20231"})
