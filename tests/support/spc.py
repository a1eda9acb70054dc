"""Shared inputs, helpers and fixtures of the spc tests (tests/*/test_spc.py)."""

from __future__ import annotations

import pandas as pd

from spstudy.methods.spc import xmr


def _series(values, **kw):
    d = pd.DataFrame({"month": pd.date_range("2021-01-01", periods=len(values), freq="MS"), "n": values})
    return xmr(d, "n", "month", **kw)


