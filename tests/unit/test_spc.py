"""Unit tests of spc; what the subject's tests check and their sources: tests/support/spc.py."""

from __future__ import annotations

import pandas as pd
import pytest

from spstudy.methods.spc import xmr, xmr_figure
from tests.support.spc import _series

pytestmark = pytest.mark.unit


def test_two_of_three_near_limit_same_side():
    base = [10, 10.5] * 6
    s = _series(base + [11.6, 10.6, 11.7] + base)   # two of three beyond 2 sigma (inside 3), all above the mean
    assert s.index[s["special_cause"]].tolist() == [12, 14]
    assert (s.loc[[12, 14], "rule"] == "two of three near limit").all() and (s.loc[[12, 14], "direction"] == "high").all()
    o = _series(base + [11.6, 10.2, 11.7] + base)   # the middle point is below the mean: no signal
    assert not o["special_cause"].any()


def test_groups_are_separate_series_and_bad_input_is_refused():
    d = pd.DataFrame({"borough": ["a"] * 12 + ["b"] * 12, "month": list(range(12)) * 2,
                      "n": list(range(12)) + [5] * 12})
    r = xmr(d, "n", "month", ["borough"])
    assert r.groupby("borough")["mean"].first().to_dict() == {"a": 5.5, "b": 5.0}
    assert r.groupby("borough")["n_points"].first().tolist() == [12, 12]
    with pytest.raises(ValueError, match=r"`data`: missing column\(s\)"):
        xmr(d, "count", "month")
    with pytest.raises(ValueError, match="more than one row per"):
        xmr(d, "n", "month")
    with pytest.raises(ValueError, match="shift_points must be a whole number >= 3"):
        xmr(d, "n", "month", ["borough"], shift_points=2)


def test_figure_is_drawn_from_the_tidy_table_only():
    d = pd.DataFrame({"borough": ["Barnet"] * 12 + ["Camden"] * 12, "month": [f"2023-{m:02d}-01" for m in range(1, 13)] * 2,
                      "n_referrals": list(range(100, 112)) + [50] * 11 + [90]})
    t = xmr(d, "n_referrals", "month", ["borough"])
    fig = xmr_figure(t, "n_referrals", "month", "Referrals per month", "Referrals", series="borough")
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    assert fig.axes[1].get_title() == "Camden"
    with pytest.raises(ValueError, match="pass the output of spstudy.methods.spc.xmr"):
        xmr_figure(d, "n_referrals", "month", "x", "y")



def test_the_published_xmr_view_keeps_its_columns_when_every_series_is_suppressed():
    """Notebook 05's view selects the XmR columns; with every series holding a suppressed month there
    are no rows, but the columns must still be there (it raised a KeyError before)."""
    import numpy as np

    from spstudy.publish import findings

    v = pd.DataFrame({"unit": ["a"] * 3, "geo": ["E09000007"] * 3, "month": ["2023-04", "2023-05", "2023-06"],
                      "n_referrals": [12.0, np.nan, 15.0]})
    out = findings.select_xmr(v)
    assert len(out) == 0 and set(findings.XMR_COLUMNS) <= set(out.columns)
    full = findings.select_xmr(v.assign(n_referrals=[12.0, 10.0, 15.0]))
    assert len(full) == 3 and set(findings.XMR_COLUMNS) <= set(full.columns)
