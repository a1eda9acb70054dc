"""Figures: funnel plots draw the limits their tables classify against, in the units of the points;
ratio maps use a scale that cannot go below zero and is symmetric in the ratio; importing the module
leaves the matplotlib backend alone."""

import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from spstudy.analyses import needs
from spstudy.inputs import reference
from spstudy.methods import stats
from spstudy.publish import figures

ROOT = Path(__file__).resolve().parents[1]


def _practices(seed=5, n=40, rate=0.0145):
    rng = np.random.default_rng(seed)
    py = rng.integers(2_000, 25_000, n).astype(float)
    x = rng.poisson(py * rate)
    return pd.DataFrame({"name": [f"P{i}" for i in range(n)], "person_years": py, "referrals": x, "rate": 1000 * x / py})


@pytest.mark.known_answer
def test_rate_funnel_limits_surround_the_target_in_the_plotted_units():
    d = _practices()
    target = 1000 * d["referrals"].sum() / d["person_years"].sum()  # per 1,000, the plotted units
    # the notebook's call (target per 1,000, multiplier 1,000) used to divide the target by 1,000 twice
    fd = figures.funnel_data(d, "person_years", "rate", "rate", count="referrals", target=target, multiplier=1000, label="name")
    lim = fd.limits
    assert fd.target == pytest.approx(target)
    assert (lim["lower_99.8"] < target).all() and (lim["upper_99.8"] > target).all()
    # Spiegelhalter (2005, Stat Med 24:1185) Poisson funnel: for large expected counts the limits tend to
    # target +/- z sqrt(target / multiplier / n) x multiplier (z = 1.96 at 95%)
    big = lim.iloc[-1]
    half = st.norm.ppf(0.975) * np.sqrt(target / 1000 / big["x"]) * 1000
    assert big["upper_95"] - target == pytest.approx(half, rel=0.05)
    assert target - big["lower_95"] == pytest.approx(half, rel=0.05)
    # and exactly what spstudy.stats gives (PHEindicatormethods calculate_funnel_limits, statistic = "rate")
    ref = stats.funnel_limits_rate(lim["x"], target, multiplier=1000)
    np.testing.assert_allclose(lim["upper_99.8"], ref["upper_99.8"])


@pytest.mark.unit
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


@pytest.mark.unit
def test_proportion_funnel_target_is_pooled_not_a_mean_of_proportions():
    d = pd.DataFrame({"n": [10.0, 1000.0], "x": [9, 100]})
    d["pct"] = 100 * d["x"] / d["n"]
    fd = figures.funnel_data(d, "n", "pct", "proportion", count="x", multiplier=100)
    assert fd.target == pytest.approx(100 * 109 / 1010)  # not (90 + 10) / 2 = 50


@pytest.mark.unit
def test_the_figure_draws_exactly_the_limits_it_exposes():
    d = _practices()
    fig = figures.funnel_plot(d, "person_years", "rate", "rate", "t", "x", "y", count="referrals", multiplier=1000, label="name")
    fd = figures.funnel_data(d, "person_years", "rate", "rate", count="referrals", multiplier=1000, label="name")
    lines = {ln.get_gid(): ln for ln in fig.axes[0].get_lines() if ln.get_gid()}
    for c in ("lower_95", "upper_95", "lower_99.8", "upper_99.8"):
        np.testing.assert_allclose(lines[f"funnel_{c}"].get_ydata(), fd.limits[c])
        np.testing.assert_allclose(lines[f"funnel_{c}"].get_xdata(), fd.limits["x"])
    assert lines["funnel_target"].get_ydata()[0] == pytest.approx(fd.target)
    matplotlib.pyplot.close(fig)


@pytest.mark.integration
def test_shipped_funnels_classify_every_point_as_the_tables_do():
    r = pd.read_parquet(ROOT / "data/extracts/referrals.parquet", columns=["person_id", "referral_date", "practice_code"])
    r["referral_date"] = pd.to_datetime(r["referral_date"])
    p = pd.read_parquet(ROOT / "data/extracts/persons.parquet", columns=["person_id", "birth_year", "sex", "ward22_code"])
    from spstudy.inputs.params import load_parameters

    w = load_parameters("ncl").needs.need_index_weights
    for area in ("ncl", "camden", "enfield"):
        for level in ("pcn_code", "practice_code"):
            pr = needs.referral_rates_by_practice(reference.area(area), referrals=r, level=level)
            pts = pr[pr["referrals"] > 0]
            fd = figures.funnel_data(pts, "person_years", "rate", "rate", count="referrals", target=pr["reference_rate"].iloc[0], multiplier=1000)
            assert (fd.points["position"].to_numpy() == pts["funnel"].to_numpy()).all(), (area, level)
            assert (fd.points["funnel"].to_numpy() == pts["funnel"].to_numpy()).all(), (area, level)
        prof = needs.ward_needs_profile(reference.area(area), referrals=r, reference_referrals=r, persons=p, weights=w)
        fd = figures.funnel_data(prof, "expected", "referral_ratio", "ratio", count="referrals", multiplier=100)
        assert (fd.points["position"].to_numpy() == prof["funnel"].to_numpy()).all(), area


@pytest.mark.unit
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


@pytest.mark.unit
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


@pytest.mark.unit
def test_importing_figures_leaves_the_backend_to_the_user():
    code = "import matplotlib; matplotlib.use('svg'); import spstudy.publish.figures; print(matplotlib.get_backend())"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert out.stdout.strip().lower() == "svg"  # JupyterLab's inline backend is kept the same way
