"""Unit tests of coded; what the subject's tests check and their sources: tests/support/coded.py."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from spstudy.inputs import coded
from spstudy.inputs.coded import (
    CODELIST_DIR,
    CODELIST_USES,
    CodedExtractError,
    check_codelist,
    load_codelist,
    load_codelists,
    snomed_concept_id_valid,
)
from tests.support import ROOT
from tests.support.coded import KEYS, SHIPPED, _csv, coded_copy, coded_sample, params, sample  # noqa: F401 (fixtures)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("path", sorted(CODELIST_DIR.glob("*.csv")), ids=lambda p: p.stem)
def test_every_shipped_code_list_is_well_formed_and_used(path):
    t = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert check_codelist(t, path.stem) == []
    assert list(t.columns) == list(coded.CODELIST_COLUMNS)
    assert path.stem in CODELIST_USES, f"{path.name} is not read by the importer"
    assert (t.loc[t.code_system == "snomedct", "code"].map(snomed_concept_id_valid)).all()
    assert t["source"].str.len().min() > 10  # every row says where it comes from
    cl = load_codelist(path.stem)
    targets = coded.codelist_targets()[path.stem]
    writable = [x for x in targets if (cl.table.maps_to == x).any()]
    assert all(cl.preferred(x) for x in writable)


def test_importer_reads_exactly_the_shipped_code_lists():
    assert set(CODELIST_USES) == {p.stem for p in CODELIST_DIR.glob("*.csv")}
    lists = load_codelists()
    # every contract code that a coded extract must express has a preferred concept
    for name in ("ethnicity", "activity-setting", "referral-source", "referral-reason", "sex", "english-proficiency"):
        for target in coded.codelist_targets()[name]:
            assert lists[name].preferred(target)


def test_malformed_code_lists_are_refused(tmp_path):
    shutil.copytree(CODELIST_DIR, tmp_path / "lists")
    f = tmp_path / "lists" / "activity-setting.csv"
    t = pd.read_csv(f, dtype=str)
    t.loc[0, "code"] = "185202001"          # bad Verhoeff check digit
    t.loc[1, "maps_to"] = "pharmacy"        # not a contract setting
    t = pd.concat([t, t.iloc[[2]]])          # duplicate code
    t.to_csv(f, index=False)
    with pytest.raises(CodedExtractError) as e:
        load_codelists(tmp_path / "lists")
    msg = str(e.value)
    assert "malformed SNOMED CT concept ids" in msg and "185202001" in msg
    assert "maps_to values not in the contract ['pharmacy']" in msg and "duplicate codes" in msg


def test_extract_specification_lists_every_code_and_file():
    doc = (ROOT / "docs" / "extract_specification.md").read_text()
    assert coded.codelist_tables_markdown() in doc, "regenerate the code-list tables (spstudy.coded.codelist_tables_markdown)"
    for name, spec in coded.CODED_FILES.items():
        assert f"`{name}.csv`" in doc
        for c in spec.required + spec.optional:
            assert f"`{c}`" in doc, (name, c)

