"""Unit tests of synth; what the subject's tests check and their sources: tests/support/synth.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from spstudy import synth
from spstudy.synth import draws
from tests.support import ROOT
from tests.support.synth import (  # noqa: F401 (fixtures)
    DATA_END,
    DATA_START,
    REF_END,
    REF_START,
    SHIPPED,
    SMALL,
    STUDY,
    TRUTH,
    Z,
    _band_prob,
    _expected_by_borough,
    _sums,
    _weighted_persons,
    _z,
    shipped,
    small,
    truth,
)

pytestmark = pytest.mark.unit


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        synth.generate(tmp_path, seed=-1)
    with pytest.raises(ValueError, match="scale"):
        synth.generate(tmp_path, scale=0)
    with pytest.raises(ValueError, match="pool_fraction"):
        synth.generate(tmp_path, pool_fraction=1.5)
    params = yaml.safe_load((ROOT / "parameters" / "synth.yaml").read_text())
    params["referrals"]["dna_by_sourse"] = params["referrals"].pop("dna_by_source")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(params))
    with pytest.raises(ValueError, match="dna_by_sourse"):
        synth.load_synth_params(bad)
    params = yaml.safe_load((ROOT / "parameters" / "synth.yaml").read_text())
    params["referrals"]["services"][0]["pcns"] = ["U99999"]
    bad.write_text(yaml.safe_dump(params))
    with pytest.raises(ValueError, match="U99999"):
        synth.generate(tmp_path / "x", scale=0.01, params_path=bad)


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=pd.Timestamp("2000-01-01").date(), max_value=pd.Timestamp("2030-12-31").date()),
       st.integers(min_value=-24, max_value=24))
def test_add_months_matches_pandas(d, k):
    day = np.array([np.datetime64(d, "D").astype(np.int64)])
    got = draws._add_months(day, k)[0]
    want = (pd.Timestamp(d) + pd.DateOffset(months=k)).to_datetime64().astype("datetime64[D]").astype(np.int64)
    assert got == want


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=10), min_size=2, max_size=6).filter(lambda x: sum(x) > 0.1))
def test_categorical_draws_follow_probabilities(w):
    p = np.array(w) / sum(w)
    rng = np.random.default_rng(1)
    n = 20000
    idx = draws._cat(rng, np.tile(draws._cum(p)[None, :], (n, 1)))
    k = np.bincount(idx, minlength=len(p))
    # each count is Binomial(n, p_i): inside its exact central 1 - 2e-7 range (a normal bound fails for tiny p_i,
    # e.g. p = 3.6e-7, where one draw in 20,000 is 140 standard deviations out but has probability 0.007)
    from scipy.stats import binom
    assert np.all((k >= binom.ppf(1e-7, n, p)) & (k <= binom.isf(1e-7, n, p))), (k, n * p)
    assert not np.any(idx[p[idx] == 0])

