"""The spc tests (tests/*/test_spc.py): shared inputs, helpers and fixtures.

XmR charts and the Making Data Count special-cause rules (spstudy.spc).
"""

from __future__ import annotations

import pandas as pd

from spstudy.methods.spc import xmr


def _series(values, **kw):
    d = pd.DataFrame({"month": pd.date_range("2021-01-01", periods=len(values), freq="MS"), "n": values})
    return xmr(d, "n", "month", **kw)


