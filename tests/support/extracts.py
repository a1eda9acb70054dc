"""The extracts tests (tests/*/test_extracts.py): shared inputs, helpers and fixtures.

Extract loaders: every breach of the data contract gets a clear error naming file, column and rows;
allowed exclusions are counted in the ledger; nothing is dropped silently.
"""

from __future__ import annotations

import pandas as pd
import pytest

from spstudy.inputs.extracts import ExtractError, load_extracts
from spstudy.inputs.params import load_parameters
from tests.support.tables import write_tables


@pytest.fixture(scope="module")
def params():
    return load_parameters("camden")


@pytest.fixture(scope="module")
def strict():
    return load_parameters("camden", overrides={"data": {"exclude_rules": []}})


def _expect(tables, d, params, match, **kw):
    write_tables(tables, d)
    with pytest.raises(ExtractError, match=match) as e:
        load_extracts(params, d, **kw)
    return str(e.value)


# ------------------------------------------------------------------------------------------------
# Validation that real exports need, each fault injected into a copy of a sample of the shipped data
# ------------------------------------------------------------------------------------------------

import shutil  # noqa: E402

from spstudy.inputs.extracts import sample_extract  # noqa: E402
from tests.support import SHIPPED


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


