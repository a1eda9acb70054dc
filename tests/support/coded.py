"""The coded tests (tests/*/test_coded.py): shared inputs, helpers and fixtures.

Coded extracts in, contract tables out: code lists, the importer, the synthetic coded extract and
the round trip coded -> contract -> the same tables on a sample of the shipped data.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from spstudy.inputs.coded import (
    export_coded_events,
)
from spstudy.inputs.extracts import sample_extract
from spstudy.inputs.params import load_parameters
from tests.support import SHIPPED

KEYS = {"persons": ["person_id"], "referrals": ["referral_id"], "activity": ["person_id", "activity_date", "setting"],
        "wellbeing": ["referral_id", "timepoint", "item"], "workforce": ["borough_code", "pcn_code", "role", "employer"]}


@pytest.fixture(scope="module")
def params():
    return load_parameters("ncl")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    if not (SHIPPED / "persons.parquet").exists():
        pytest.skip("shipped synthetic extract not present (make synth)")
    return sample_extract(SHIPPED, tmp_path_factory.mktemp("contract"), n_persons=3000, seed=5, referred_fraction=0.4)


@pytest.fixture(scope="module")
def coded_sample(sample, tmp_path_factory):
    return export_coded_events(sample, tmp_path_factory.mktemp("coded"))


@pytest.fixture
def coded_copy(coded_sample, tmp_path):
    d = tmp_path / "coded"
    shutil.copytree(coded_sample, d)
    return d


def _csv(d, name):
    return pd.read_csv(d / f"{name}.csv", dtype=str, keep_default_na=False, na_values=[""])


# ------------------------------------------------------------------------------------ code lists


# ----------------------------------------------------------------------------------- round trip


# ------------------------------------------------------------------------------- importer rules


