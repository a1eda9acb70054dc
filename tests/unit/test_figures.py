"""Unit tests of figures; what the subject's tests check and their sources: tests/support/figures.py."""

import os
import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest

from spstudy.analyses import needs
from spstudy.inputs import reference
from spstudy.publish import figures
from tests.support import ROOT
from tests.support.figures import _practices

pytestmark = pytest.mark.unit


def test_funnel_refuses_values_in_the_wrong_units():
    d = _practices()
    per_person = d["referrals"].sum() / d["person_years"].sum()
    with pytest.raises(ValueError, match="plotted units"):
        figures.funnel_data(d, "person_years", "rate", "rate", count="referrals", target=per_person, multiplier=1000)
    with pytest.raises(ValueError, match="check the multiplier"):
        figures.funnel_data(d, "person_years", "rate", "rate", count="referrals", multiplier=100)
    with pytest.raises(ValueError, match="count"):
        figures.funnel_data(d, "person_years", "rate", "rate", multiplier=1000)
    with pytest.raises(ValueError, match="centred on 1 x multiplier"):
        figures.funnel_data(d.assign(ratio=100.0, expected=d["referrals"]), "expected", "ratio", "ratio", target=1, multiplier=100)


def test_proportion_funnel_target_is_pooled_not_a_mean_of_proportions():
    d = pd.DataFrame({"n": [10.0, 1000.0], "x": [9, 100]})
    d["pct"] = 100 * d["x"] / d["n"]
    fd = figures.funnel_data(d, "n", "pct", "proportion", count="x", multiplier=100)
    assert fd.target == pytest.approx(100 * 109 / 1010)  # not (90 + 10) / 2 = 50


def test_the_figure_draws_exactly_the_limits_it_exposes():
    d = _practices()
    fig = figures.funnel_plot(d, "person_years", "rate", "rate", "t", "x", "y", count="referrals", multiplier=1000, label="name")
    fd = figures.funnel_data(d, "person_years", "rate", "rate", count="referrals", multiplier=1000, label="name")
    lines = {ln.get_gid(): ln for ln in fig.axes[0].get_lines() if ln.get_gid()}
    for side, level in (("lower", "95"), ("upper", "95"), ("lower", "99.8"), ("upper", "99.8")):
        c = f"limit_{level}_{side}"
        np.testing.assert_allclose(lines[f"funnel_{side}_{level}"].get_ydata(), fd.limits[c])
        np.testing.assert_allclose(lines[f"funnel_{side}_{level}"].get_xdata(), fd.limits["x"])
    assert lines["funnel_target"].get_ydata()[0] == pytest.approx(fd.target)
    matplotlib.pyplot.close(fig)


def test_ratio_scale_is_log_symmetric_and_never_negative():
    b = figures.ratio_breaks(100)
    np.testing.assert_allclose(b, [50, 100 / 1.5, 80, 100 / 1.1, 110, 125, 150, 200])
    np.testing.assert_allclose(b * b[::-1], 100 ** 2)  # symmetric in the ratio: 50 <-> 200, 80 <-> 125
    cls = figures.ratio_classes([0, 49.9, 50, 95, 100, 109.9, 199, 200, 900, np.nan])
    labels = figures.ratio_class_labels(100)
    assert cls.iloc[0] == labels[0] == "below 50" and cls.iloc[2] == "50 to 67"
    assert cls.iloc[3] == cls.iloc[4] == cls.iloc[5] == labels[4] == "91 to 110 (about as expected)"
    assert cls.iloc[7] == cls.iloc[8] == "200 and above" and pd.isna(cls.iloc[9])
    with pytest.raises(ValueError, match="ratios must be >= 0"):
        figures.ratio_classes([-1, 100])


def test_ratio_map_legend_and_alt_text_come_from_the_values():
    wards = needs.ward_indicators(reference.area("camden"))[["ward22_code", "ward22_name"]]
    vals = wards.assign(referral_ratio=np.linspace(440, 860, len(wards)))  # every Camden ward far above 100 (today's bug)
    fig = figures.choropleth(vals, "referral_ratio", "camden", "t", "Observed / expected x 100", center=100)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts[0] == "200 and above" and texts[-1] == "below 50"
    nums = [float(x) for t in texts for x in t.replace("(about as expected)", "").split() if x.replace(".", "").isdigit()]
    assert min(nums) >= 0  # no negative ratios anywhere on the scale (the old colour bar ran to -600)
    assert not [a for a in fig.axes if a.get_label() == "<colorbar>"]
    alt = figures.describe_ratio_map(vals, "referral_ratio", "Camden")
    assert "0 below 91" in alt and f"{len(wards)} at 110 or above" in alt and "from 440 to 860" in alt
    matplotlib.pyplot.close(fig)


def test_importing_figures_leaves_the_backend_to_the_user():
    code = "import matplotlib; matplotlib.use('svg'); import spstudy.publish.figures; print(matplotlib.get_backend())"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert out.stdout.strip().lower() == "svg"  # JupyterLab's inline backend is kept the same way

