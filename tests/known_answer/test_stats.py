"""Tests for spstudy.stats.

Known answers come from the reference R package PHEindicatormethods (OHID / UKHSA), read through the
stored copy of its CRAN build in the public repository
``r-hub2/some-psychogenic-africanporcupine-PHEindicatormethods`` (package version 2.0.2.9001,
commit 9ba410965ea092796b11ebb9b8a71db6f09be697), whose files match
``ukhsa-collaboration/PHEindicatormethods``:

* [INTRO]  inst/doc/Introduction_to_PHEindicatormethods.html: rendered output of
           phe_proportion / phe_rate for the 8-row example data frame (values printed to 7 s.f.).
* [DSRV]   inst/doc/DSR-vignette.html, section "Calculating DSRs when there are zero deaths in some
           age bands": calculate_dsr output 88 / 860 / 8283.016 (6570.819 to 10289.65).
* [SIIV]   inst/doc/WorkedExamples_phe_sii.html: Example 1 (LE_data, value_type 0, se given,
           1,000 repetitions) and Example 2 (DSR_data, rate, transform = TRUE, 100,000 repetitions).
           Inputs: tests/testthat/LE_testdata.csv and tests/testthat/DSR_testdata.csv (= LE_data and
           DSR_data: the point estimates below reproduce the vignette exactly, which they could not
           with other data).
* [FUNNEL] tests/testthat/testdata_funnel_prop_outputs.csv, testdata_funnel_prop_inputs.csv,
           testdata_funnel_ratio_outputs.csv, testdata_funnel_ratio_inputs.csv,
           testdata_funnel_rate_outputs.csv (expected outputs of calculate_funnel_limits and
           assign_funnel_significance).
* [ESP]    data-raw/LoadTestdata.R (ukhsa-collaboration/PHEindicatormethods): the esp2013 vector.

Other sources are cited where used. A few rows of each fixture are copied, not whole files.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.known_answer
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from spstudy.methods import stats as S

# ------------------------------------------------------------------------------------------------
# ESP2013
# ------------------------------------------------------------------------------------------------

# [ESP] esp2013 <- c(5000,5500,5500,5500,6000,6000,6500,7000,7000,7000,7000,6500,6000,5500,5000,4000,2500,1500,1000)
REF_ESP2013 = [5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000, 7000, 6500, 6000, 5500, 5000, 4000, 2500, 1500, 1000]


def test_esp2013_matches_reference_vector():
    e = S.esp2013()
    assert list(e["population"]) == REF_ESP2013
    assert list(e["age_band"]) == list(S.ESP2013_BANDS)
    assert e["age_band"].iloc[0] == "0-4" and e["age_band"].iloc[-1] == "90+"
    assert e["population"].sum() == 100_000
    assert e["source"].str.contains("Eurostat").all()
    assert list(e["age_lower"]) == list(range(0, 95, 5))


def test_esp2013_returns_a_copy():
    e = S.esp2013()
    e.loc[0, "population"] = -1
    assert S.esp2013().loc[0, "population"] == 5000


# ------------------------------------------------------------------------------------------------
# Wilson
# ------------------------------------------------------------------------------------------------

# Newcombe RG (1998) Two-sided confidence intervals for the single proportion: comparison of seven
# methods. Stat Med 17:857-872, Table I, method 3 (Wilson score, no continuity correction).
NEWCOMBE_TABLE_I = [  # x, n, lower, upper
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]

# [INTRO] df: obs / pop, and phe_proportion(df, obs, pop) value, lowercl, uppercl (95%)
INTRO_OBS = [27, 22, 80, 53, 37, 84, 89, 85]
INTRO_POP = [106, 113, 150, 193, 159, 122, 101, 196]
INTRO_PROP_95 = [
    (0.2547170, 0.1813642, 0.3452262),
    (0.1946903, 0.1322333, 0.2772229),
    (0.5333333, 0.4536625, 0.6113395),
    (0.2746114, 0.2165053, 0.3415146),
    (0.2327044, 0.1738037, 0.3042162),
    (0.6885246, 0.6016542, 0.7638851),
    (0.8811881, 0.8037295, 0.9307128),
    (0.4336735, 0.3662266, 0.5036703),
]
# [INTRO] phe_proportion(df, obs, pop, confidence = 99.8, multiplier = 100, type = "standard")
INTRO_PCT_998 = [
    (25.47170, 14.81031, 40.18735),
    (19.46903, 10.54176, 33.15448),
    (53.33333, 40.92696, 65.34069),
    (27.46114, 18.77465, 38.27289),
    (23.27044, 14.61350, 34.95622),
    (68.85246, 54.93185, 80.03596),
    (88.11881, 74.76217, 94.88987),
    (43.36735, 32.98917, 54.36182),
]


def test_wilson_newcombe_table_i():
    x, n, lo, hi = map(np.array, zip(*NEWCOMBE_TABLE_I))
    out = S.wilson_ci(x, n)
    np.testing.assert_allclose(out["proportion_lower"], lo, atol=5e-5)
    np.testing.assert_allclose(out["proportion_upper"], hi, atol=5e-5)


def test_wilson_matches_phe_proportion_vignette():
    out = S.wilson_ci(INTRO_OBS, INTRO_POP)
    ref = np.array(INTRO_PROP_95)
    np.testing.assert_allclose(out[["proportion", "proportion_lower", "proportion_upper"]].to_numpy(), ref, atol=6e-8)
    assert (out["method"] == "Wilson").all()


def test_wilson_998_percent_matches_vignette():
    out = S.wilson_ci(INTRO_OBS, INTRO_POP, confidence=0.998, multiplier=100)
    np.testing.assert_allclose(out[["proportion", "proportion_lower", "proportion_upper"]].to_numpy(), np.array(INTRO_PCT_998), atol=6e-6)


def test_wilson_boundaries_as_reference():
    out = S.wilson_ci([0, 12], [12, 12])
    assert out["proportion_lower"].iloc[0] == 0.0 and out["proportion_upper"].iloc[1] == 1.0
    # the reference formula at x = n: (2n + z^2 - z^2) / 2 / (n + z^2) = n / (n + z^2)
    z2 = sps.norm.ppf(0.975) ** 2
    assert out["proportion_lower"].iloc[1] == pytest.approx(12 / (12 + z2))
    assert out["proportion_upper"].iloc[0] == pytest.approx(z2 / (12 + z2))


@pytest.mark.parametrize(
    "x, n, match",
    [
        ([1, 2], [0, 5], r"n must be > 0; offending values: 0"),
        ([-1], [5], r"x must be >= 0; offending values: -1"),
        ([6], [5], r"x must be <= n .*\(6, 5\)"),
    ],
)
def test_wilson_bad_input(x, n, match):
    with pytest.raises(ValueError, match=match):
        S.wilson_ci(x, n)


@pytest.mark.parametrize("conf", [0, 1, 95, -0.5, "high"])
def test_confidence_must_be_in_unit_interval(conf):
    with pytest.raises(ValueError, match="confidence"):
        S.wilson_ci([1], [2], confidence=conf)


def test_wilson_nan_propagates():
    out = S.wilson_ci([np.nan, 3], [10, 10])
    assert np.isnan(out["proportion_lower"].iloc[0]) and np.isnan(out["proportion_upper"].iloc[0])
    assert out["proportion_lower"].iloc[1] > 0


# ------------------------------------------------------------------------------------------------
# Byar's, exact Poisson, crude rates
# ------------------------------------------------------------------------------------------------

# [INTRO] phe_rate(df, obs, pop): value, lowercl, uppercl per 100,000 (all counts >= 10: Byars)
INTRO_RATE_95 = [
    (25471.70, 16782.04, 37061.41),
    (19469.03, 12196.90, 29477.68),
    (53333.33, 42288.58, 66378.77),
    (27461.14, 20568.85, 35920.56),
    (23270.44, 16382.37, 32076.16),
    (68852.46, 54917.70, 85245.02),
    (88118.81, 70764.64, 108438.96),
    (43367.35, 34639.24, 53625.01),
]
# [INTRO] phe_rate(df, obs, pop, confidence = 99.8, multiplier = 100)
INTRO_RATE_998 = [
    (25.47170, 12.926737, 44.59202),
    (19.46903, 9.074329, 36.05431),
    (53.33333, 36.773690, 74.46881),
    (27.46114, 17.249087, 41.24758),
    (23.27044, 13.193195, 37.70884),
    (68.85246, 47.933814, 95.39407),
    (88.11881, 62.029689, 120.99575),
    (43.36735, 30.260955, 59.97329),
]


def test_crude_rate_byars_matches_phe_rate_vignette():
    out = S.crude_rate(INTRO_OBS, INTRO_POP, multiplier=100_000)
    np.testing.assert_allclose(out[["rate", "rate_lower", "rate_upper"]].to_numpy(), np.array(INTRO_RATE_95), atol=0.006)
    assert (out["method"] == "Byars").all()


def test_crude_rate_998_matches_phe_rate_vignette():
    out = S.crude_rate(INTRO_OBS, INTRO_POP, multiplier=100, confidence=0.998)
    np.testing.assert_allclose(out[["rate", "rate_lower", "rate_upper"]].to_numpy(), np.array(INTRO_RATE_998), rtol=2e-7, atol=6e-6)


def test_byars_ci_equals_crude_rate_times_denominator():
    b = S.byars_ci(INTRO_OBS)
    r = S.crude_rate(INTRO_OBS, INTRO_POP, multiplier=1)
    np.testing.assert_allclose(b["count_lower"] / np.array(INTRO_POP), r["rate_lower"])
    np.testing.assert_allclose(b["count_upper"] / np.array(INTRO_POP), r["rate_upper"])


def test_byars_lower_undefined_like_reference():
    # PHEindicatormethods byars_lower: 0 * (-Inf)^3 is NaN at x = 0, and negative limits become NA
    b = S.byars_ci([0, 1, 10], confidence=0.998)
    assert np.isnan(b["count_lower"].iloc[0])
    assert np.isnan(b["count_lower"].iloc[1])  # 1 * (1 - 1/9 - 3.09/3)^3 < 0
    assert b["count_lower"].iloc[2] > 0


# [FUNNEL] testdata_funnel_ratio_outputs.csv, rows Observed_events = 1..10. For a whole count O the
# reference's iterative Poisson search (poisson_funnel) returns the exact confidence limits of O:
# lower_2s_exp_events = exact 95% upper limit, upper_2s_exp_events = exact 95% lower limit,
# lower_3s_exp_events / upper_3s_exp_events the same at 99.8%.
EXACT_FIXTURE = [  # O, U95, L95, U998, L998
    (1, 5.571644585, 0.025317898, 9.233410143, 0.001000547),
    (2, 7.224687515, 0.242209467, 11.22886836, 0.04540199),
    (3, 8.767273828, 0.618671905, 13.06224507, 0.190533306),
    (4, 10.24158653, 1.089865762, 14.79414916, 0.42855244),
    (5, 11.6683331, 1.623486324, 16.45474478, 0.739371928),
    (6, 13.0594765, 2.201894435, 18.0616374, 1.107104434),
    (7, 14.42267712, 2.814363736, 19.62617867, 1.520336178),
    (8, 15.76318696, 3.453831154, 21.15619716, 1.970813969),
    (9, 17.08479966, 4.11537405, 22.65737951, 2.452425215),
    (10, 18.39035799, 4.795387629, 24.13397235, 2.960519925),
]


def test_exact_poisson_matches_reference_poisson_search():
    o, u95, l95, u998, l998 = map(np.array, zip(*EXACT_FIXTURE))
    e95 = S.exact_poisson_ci(o, 0.95)
    e998 = S.exact_poisson_ci(o, 0.998)
    # The reference bisects to an absolute resolution of about 1e-7 (dv > 1e-7 in poisson_funnel), so
    # tiny lower limits carry that absolute error: e.g. O = 1 at 99.8% is exactly -ln(0.999) =
    # 0.00100050033 and the fixture says 0.001000547. Hence atol 1e-7 with rtol 1e-5.
    np.testing.assert_allclose(e95["count_upper"], u95, rtol=2e-6)
    np.testing.assert_allclose(e95["count_lower"], l95, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(e998["count_upper"], u998, rtol=2e-6)
    np.testing.assert_allclose(e998["count_lower"], l998, rtol=1e-5, atol=1e-7)
    assert e998["count_lower"].iloc[0] == pytest.approx(-math.log(0.999), rel=1e-9)


def test_exact_poisson_zero_count():
    # Garwood (1936): for x = 0 the lower limit is 0 and the upper solves exp(-mu) = alpha/2
    e = S.exact_poisson_ci([0], 0.95)
    assert e["count_lower"].iloc[0] == 0.0
    assert e["count_upper"].iloc[0] == pytest.approx(-math.log(0.025), rel=1e-10)  # 3.68888


def test_crude_rate_switches_to_exact_below_ten():
    # phe_rate: if_else(x < 10, exact, byars)
    out = S.crude_rate([0, 5, 9, 10], [1000, 1000, 1000, 1000], multiplier=1000)
    assert list(out["method"]) == ["Exact", "Exact", "Exact", "Byars"]
    # 5 events per 1,000: exact limits from the fixture above
    assert out["rate_lower"].iloc[1] == pytest.approx(1.623486324, rel=2e-6)
    assert out["rate_upper"].iloc[1] == pytest.approx(11.6683331, rel=2e-6)
    assert out["rate"].iloc[0] == 0 and out["rate_lower"].iloc[0] == 0
    assert out["rate_upper"].iloc[0] == pytest.approx(-math.log(0.025))


def test_crude_rate_default_multiplier_is_per_1000():
    assert S.crude_rate([20], [4000])["rate"].iloc[0] == pytest.approx(5.0)


@pytest.mark.parametrize(
    "x, n, match",
    [([1], [0], r"n must be > 0; offending values: 0"), ([-2], [10], r"x must be >= 0; offending values: -2")],
)
def test_crude_rate_bad_input(x, n, match):
    with pytest.raises(ValueError, match=match):
        S.crude_rate(x, n)


def test_crude_rate_length_mismatch():
    with pytest.raises(ValueError, match="incompatible lengths"):
        S.crude_rate([1, 2, 3], [10, 20])


# ------------------------------------------------------------------------------------------------
# DSR
# ------------------------------------------------------------------------------------------------

# [DSRV] pops2 / deaths2: no deaths recorded in the 10-14, 15-19 and 20-24 bands (NA -> 0)
DSRV_POP = [30, 35, 35, 35, 40, 40, 45, 50, 50, 50, 60, 60, 70, 75, 70, 60, 20, 20, 15]
DSRV_DEATHS = {0: 1, 5: 1, 25: 1, 30: 1, 35: 3, 40: 3, 45: 3, 50: 3, 55: 10, 60: 10, 65: 10, 70: 10, 75: 8, 80: 8, 85: 8, 90: 8}


def _dsrv_frame(area="A"):
    e = S.esp2013()
    return pd.DataFrame(
        {
            "area": area,
            "age_band": e["age_band"],
            "pop": DSRV_POP,
            "deaths": [DSRV_DEATHS.get(a, np.nan) for a in e["age_lower"]],
        }
    )


def test_dsr_matches_calculate_dsr_vignette():
    out = S.dsr(_dsrv_frame(), count="deaths", population="pop", age_band="age_band")
    row = out.iloc[0]
    assert row["total_count"] == 88 and row["total_pop"] == 860
    assert row["dsr"] == pytest.approx(8283.016, abs=6e-4)
    assert row["dsr_lower"] == pytest.approx(6570.819, abs=6e-4)
    assert row["dsr_upper"] == pytest.approx(10289.65, abs=6e-3)
    assert row["method"] == "Dobson" and row["note"] == ""


def test_dsr_grouped_and_standard_as_column():
    df = pd.concat([_dsrv_frame("A"), _dsrv_frame("B")], ignore_index=True)
    df.loc[df["area"] == "B", "pop"] *= 2  # same counts, double population: half the rate
    out = S.dsr(df, "deaths", "pop", "age_band", by="area")
    assert list(out["area"]) == ["A", "B"]
    assert out["dsr"].iloc[1] == pytest.approx(8283.016 / 2, abs=1e-3)
    # the standard can also be a column of the data (as calculate_dsr's stdpop)
    df["esp"] = np.tile(REF_ESP2013, 2)
    out2 = S.dsr(df, "deaths", "pop", "age_band", standard="esp", by="area")
    pd.testing.assert_frame_equal(out, out2)


def test_dsr_suppressed_below_ten_with_note():
    df = _dsrv_frame()
    df["deaths"] = 0.0
    df.loc[[5, 10, 15], "deaths"] = 3  # total 9
    out = S.dsr(df, "deaths", "pop", "age_band")
    assert out["total_count"].iloc[0] == 9
    assert out[["dsr", "dsr_lower", "dsr_upper"]].isna().all(axis=None)
    assert "total count < 10" in out["note"].iloc[0]
    keep = S.dsr(df, "deaths", "pop", "age_band", suppress_value=False)
    assert keep["dsr"].iloc[0] > 0 and np.isnan(keep["dsr_lower"].iloc[0])
    # the threshold is a parameter
    shown = S.dsr(df, "deaths", "pop", "age_band", min_count=5)
    assert shown["dsr_lower"].iloc[0] < shown["dsr"].iloc[0] < shown["dsr_upper"].iloc[0]


def test_dsr_missing_age_band_is_an_error():
    df = _dsrv_frame().drop(index=3)
    with pytest.raises(ValueError, match=r"missing \['15-19'\]"):
        S.dsr(df, "deaths", "pop", "age_band")


def test_dsr_bad_columns_and_values():
    df = _dsrv_frame()
    with pytest.raises(ValueError, match=r"`count`: missing column\(s\) \['dths'\]"):
        S.dsr(df, "dths", "pop", "age_band")
    bad = df.copy()
    bad.loc[0, "pop"] = 0
    with pytest.raises(ValueError, match=r"column 'pop' must be > 0; offending values: 0"):
        S.dsr(bad, "deaths", "pop", "age_band")
    bad = df.copy()
    bad.loc[0, "age_band"] = "0-5"
    with pytest.raises(ValueError, match=r"age bands not in the standard: \['0-5'\]"):
        S.dsr(bad, "deaths", "pop", "age_band")


# ------------------------------------------------------------------------------------------------
# ISR and expected counts
# ------------------------------------------------------------------------------------------------

# [FUNNEL] testdata_funnel_ratio_inputs.csv (obs, expected, significance), a selection of rows.
# The reference significance is the Byar's (>= 10) / exact (< 10) interval of O, divided by E,
# compared with 1: exactly the interval of calculate_ISRatio.
RATIO_INPUTS = [
    (8, 6.239860227, "Not significant"),
    (151, 106.4429719, "High (0.001)"),
    (159, 232.9329036, "Low (0.001)"),
    (191, 184.0963855, "Not significant"),
    (150, 119.5695496, "High (0.025)"),
    (0, 240.6273499, "Low (0.001)"),
    (101, 126.2973615, "Low (0.025)"),
    (16, 36.38844667, "Low (0.001)"),
    (6, 4.293052052, "Not significant"),
    (27, 26.73002673, "Not significant"),
    (40, 55.14959327, "Low (0.025)"),
    (74, 52.09066592, "High (0.025)"),
    (87, 45.27241505, "High (0.001)"),
    (29, 31.19956966, "Not significant"),
    (28, 37.38816931, "Not significant"),
    (31, 57.81424841, "Low (0.001)"),
    (35, 56.15273544, "Low (0.025)"),
    (25, 55.01760563, "Low (0.001)"),
    (94, 67.43668843, "High (0.025)"),
    (38, 35.36199516, "Not significant"),
    (41, 58.50456621, "Low (0.025)"),
    (48, 64, "Low (0.025)"),
    (43, 71.57123835, "Low (0.001)"),
    (130, 81.9413804, "High (0.001)"),
    (241, 288.6919023, "Low (0.025)"),
    (252, 218.7689904, "High (0.025)"),
    (893, 706.7669173, "High (0.001)"),
    (327, 344.573235, "Not significant"),
    (47, 60.02554278, "Not significant"),
    (39, 50.23183926, "Not significant"),
]
REF_TO_FLAG = {
    "High (0.001)": "above 99.8% limit",
    "High (0.025)": "above 95% limit",
    "Low (0.001)": "below 99.8% limit",
    "Low (0.025)": "below 95% limit",
    "Not significant": "within limits",
}


def test_isr_interval_reproduces_reference_significance():
    o, e, sig = zip(*RATIO_INPUTS)
    r95 = S.indirectly_standardised_ratio(o, e, multiplier=100, confidence=0.95)
    r998 = S.indirectly_standardised_ratio(o, e, multiplier=100, confidence=0.998)
    got = np.select(
        [r998["ratio_lower"] > 100, r95["ratio_lower"] > 100, r998["ratio_upper"] < 100, r95["ratio_upper"] < 100],
        ["High (0.001)", "High (0.025)", "Low (0.001)", "Low (0.025)"],
        default="Not significant",
    )
    assert list(got) == list(sig)


def test_isr_values_and_methods():
    out = S.indirectly_standardised_ratio([5, 50], [4.0, 40.0])
    assert list(out["ratio"]) == [125.0, 125.0]
    assert list(out["method"]) == ["Exact", "Byars"]
    # exact limits of 5 (fixture above) divided by E, x 100
    assert out["ratio_lower"].iloc[0] == pytest.approx(1.623486324 / 4 * 100, rel=2e-6)
    assert out["ratio_upper"].iloc[0] == pytest.approx(11.6683331 / 4 * 100, rel=2e-6)
    with pytest.raises(ValueError, match=r"expected must be > 0; offending values: 0"):
        S.indirectly_standardised_ratio([3], [0])


def test_expected_counts():
    # expected = sum(n_i * x_ref_i / n_ref_i), as calculate_ISRatio's exp_x
    pop = pd.Series({"0-17": 1000, "18-64": 3000, "65+": 500})
    rates = pd.Series({"65+": 0.2, "0-17": 0.01, "18-64": 0.05})  # aligned on labels, any order
    assert S.expected_counts(pop, rates) == pytest.approx(10 + 150 + 100)
    assert S.expected_counts([1000, 3000, 500], [0.01, 0.05, 0.2]) == pytest.approx(260)
    wards = pd.DataFrame({"0-17": [1000, 10], "18-64": [3000, 20], "65+": [500, 30]}, index=["w1", "w2"])
    got = S.expected_counts(wards, rates)
    assert list(got.index) == ["w1", "w2"] and got["w2"] == pytest.approx(0.1 + 1 + 6)
    with pytest.raises(ValueError, match="strata differ"):
        S.expected_counts(pop, rates.drop("65+"))
    with pytest.raises(ValueError, match="must be >= 0"):
        S.expected_counts([-1, 2], [0.1, 0.1])


# ------------------------------------------------------------------------------------------------
# rate and proportion ratios
# ------------------------------------------------------------------------------------------------


def test_rate_ratio_log_normal():
    # Breast cancer after fluoroscopy (Boice & Monson 1977, as tabulated in Rothman & Greenland,
    # Modern Epidemiology): 41 cases in 28,010 person-years exposed, 15 in 19,017 unexposed.
    # RR = 1.8558; SE(log RR) = sqrt(1/41 + 1/15); 90% limits = RR exp(-/+ 1.645 SE).
    out = S.rate_ratio(41, 28010, 15, 19017, confidence=0.90).iloc[0]
    assert out["rate_ratio"] == pytest.approx((41 / 28010) / (15 / 19017))
    assert out["rate_ratio"] == pytest.approx(1.8558, abs=5e-5)
    assert out["rate_ratio_lower"] == pytest.approx(1.1297, abs=5e-5)
    assert out["rate_ratio_upper"] == pytest.approx(3.0485, abs=5e-5)
    # independent implementation: statsmodels' "wald-log" Poisson ratio interval
    from statsmodels.stats.rates import confint_poisson_2indep

    lo, hi = confint_poisson_2indep(41, 28010, 15, 19017, method="wald-log", compare="ratio", alpha=0.10)
    assert (out["rate_ratio_lower"], out["rate_ratio_upper"]) == pytest.approx((lo, hi), rel=1e-9)


def test_proportion_ratio_katz_against_statsmodels():
    from statsmodels.stats.proportion import confint_proportions_2indep

    x1, n1, x2, n2 = np.array([41, 7, 120]), np.array([200, 50, 1000]), np.array([15, 9, 60]), np.array([190, 45, 1500])
    out = S.proportion_ratio(x1, n1, x2, n2)
    for i in range(3):
        lo, hi = confint_proportions_2indep(x1[i], n1[i], x2[i], n2[i], method="log", compare="ratio")
        assert (out["proportion_ratio_lower"].iloc[i], out["proportion_ratio_upper"].iloc[i]) == pytest.approx((lo, hi), rel=1e-9)


def test_ratios_zero_counts_and_bad_input():
    out = S.rate_ratio([0, 3], [100, 100], [4, 0], [100, 100])
    assert out["rate_ratio"].iloc[0] == 0 and np.isinf(out["rate_ratio"].iloc[1])
    assert out[["rate_ratio_lower", "rate_ratio_upper"]].isna().all(axis=None)
    with pytest.raises(ValueError, match=r"n2 must be > 0; offending values: 0"):
        S.rate_ratio([1], [10], [1], [0])
    with pytest.raises(ValueError, match=r"x1 must be <= n1"):
        S.proportion_ratio([11], [10], [1], [10])


# ------------------------------------------------------------------------------------------------
# SII / RII
# ------------------------------------------------------------------------------------------------

# [SIIV] Example 2 input = tests/testthat/DSR_testdata.csv (DSR_data)
DSR_DATA = pd.DataFrame(
    [
        (2010, 1, 1434002, 150.2200205, 147.3194185, 153.1498241), (2010, 2, 1450590, 131.0221747, 128.3676972, 133.7051129),
        (2010, 3, 1453827, 127.4954973, 125.0421198, 129.975513), (2010, 4, 1440980, 130.494241, 128.2469515, 132.7657553),
        (2010, 5, 1457780, 135.4664241, 133.2469515, 137.8657553), (2011, 1, 1445258, 148.4061234, 145.5359227, 151.3052827),
        (2011, 2, 1467772, 131.7211691, 129.0779928, 134.3924424), (2011, 3, 1470806, 125.0341288, 122.6267941, 127.4677057),
        (2011, 4, 1454888, 130.3084574, 128.0909634, 132.549757), (2011, 5, 1457780, 135.4664241, 133.2469515, 137.8657553),
        (2012, 1, 1456919, 146.3620464, 143.5339285, 149.218782), (2012, 2, 1482837, 130.836935, 128.2283616, 133.4731892),
        (2012, 3, 1486250, 123.9613632, 121.5935782, 126.3549356), (2012, 4, 1467811, 129.1611122, 126.9843883, 131.361204),
        (2012, 5, 1457780, 135.4664241, 133.2469515, 137.8657553), (2013, 1, 1471562, 144.6298219, 141.8398707, 147.4480316),
        (2013, 2, 1499928, 130.2174816, 127.6418787, 132.8203233), (2013, 3, 1502931, 123.4222104, 121.0885952, 125.781154),
        (2013, 4, 1481042, 127.5460197, 125.4162627, 129.6986819), (2013, 5, 1457780, 135.4664241, 133.2469515, 137.8657553),
        (2014, 1, 1490242, 144.7302585, 141.9631164, 147.5252412), (2014, 2, 1519238, 128.7774474, 126.2475781, 131.3340493),
        (2014, 3, 1521454, 123.0128932, 120.7189438, 125.3316289), (2014, 4, 1495993, 126.4499704, 124.3638326, 128.5585283),
        (2014, 5, 1457780, 135.4664241, 133.2469515, 137.8657553), (2015, 1, 1508923, 143.8177637, 141.0941843, 146.568661),
        (2015, 2, 1538008, 127.2058426, 124.7351196, 129.7026732), (2015, 3, 1538564, 122.4106945, 120.1654081, 124.6801651),
        (2015, 4, 1509602, 126.3922397, 124.3450367, 128.4613495), (2015, 5, 1457780, 135.4664241, 133.2469515, 137.8657553),
    ],
    columns=["Period", "Quintile", "total_pop", "value", "lowercl", "uppercl"],
)
# [SIIV] Example 2 output: Period, sii, rii, sii_lower95_0, sii_upper95_0, rii_lower95_0, rii_upper95_0
SIIV_EXAMPLE2 = [
    (2010, -14.03684, 0.9010655, -17.95990, -10.126662, 0.8752420, 0.9275826),
    (2011, -12.83196, 0.9086641, -16.72001, -8.917710, 0.8827020, 0.9355915),
    (2012, -11.09234, 0.9199455, -14.91251, -7.257354, 0.8939089, 0.9468622),
    (2013, -10.06041, 0.9266342, -13.85842, -6.255091, 0.9003791, 0.9537227),
    (2014, -10.06085, 0.9263086, -13.84260, -6.302576, 0.9000559, 0.9531717),
    (2015, -8.53077, 0.9368534, -12.23824, -4.816133, 0.9106841, 0.9638401),
]

# [SIIV] Example 1 input = tests/testthat/LE_testdata.csv rows Sex = 1, GeoCode E06000001 / E06000002
LE_DATA = pd.DataFrame(
    {
        "GeoCode": ["E06000001"] * 10 + ["E06000002"] * 10,
        "Decile": list(range(1, 11)) * 2,
        "Pop": [13837, 14519, 14940, 14599, 12311, 13196, 13335, 13388, 13685, 11779,
                21675, 20065, 19750, 24713, 20112, 19618, 22408, 19752, 18939, 19312],
        "LifeExp": [70.56313911, 72.61347473, 75.06710359, 75.20662276, 76.23469045, 75.21801932, 77.09240397,
                    79.84156222, 80.81329918, 82.73763832, 70.54853186, 71.57155734, 72.48698671, 73.51985519,
                    73.14605425, 76.15898712, 78.65444871, 80.56476961, 80.85486627, 79.9711253],
        "SE": [1.133868862, 1.020288759, 1.108685178, 1.485618539, 1.311653285, 1.169033147, 1.306645801, 1.090905616,
               0.979426096, 1.319452272, 0.947488056, 1.043688022, 0.969320245, 1.023567868, 1.006757968, 0.906037647,
               0.724013864, 1.118131371, 0.848327099, 0.94159082],
    }
)
# [SIIV] Example 1 output (1,000 repetitions): GeoCode, sii, sii_lower95_0cl, sii_upper95_0cl
SIIV_EXAMPLE1 = [("E06000001", 11.68886, 9.215442, 14.07460), ("E06000002", 12.54785, 10.579679, 14.57307)]


def _mc_tolerance(width95: float, reps_ref: int, reps_ours: int, level: float = 0.95, k: float = 4.0) -> float:
    """Tolerance for a Monte Carlo percentile limit.

    The q-th sample quantile of N normal draws with SD sigma has standard error
    sqrt(q (1 - q) / N) / phi(z_q) x sigma (asymptotic order-statistic variance). Both the reference
    and our limits are such quantiles from independent draws, so their difference has SD
    sqrt(1/N_ref + 1/N_ours) x sqrt(q (1 - q)) / phi(z_q) x sigma; we allow k = 4 of those SDs.
    sigma is taken from the reference's own 95% interval: (upper - lower) / (2 x 1.96).
    """
    q = (1 - level) / 2
    sigma = width95 / (2 * sps.norm.ppf(0.975))
    sd = math.sqrt(1 / reps_ref + 1 / reps_ours) * math.sqrt(q * (1 - q)) / sps.norm.pdf(sps.norm.ppf(q)) * sigma
    return k * sd


def test_sii_rate_with_transform_matches_vignette_example_2():
    out = S.sii_rii(
        DSR_DATA, value="value", lower="lowercl", upper="uppercl", population="total_pop", quantile="Quintile",
        reps=100_000, seed=20240601, by="Period", value_type="rate", transform=True,
    )
    assert list(out["Period"]) == [r[0] for r in SIIV_EXAMPLE2]
    for (_, sii, rii, slo, shi, rlo, rhi), (_, got) in zip(SIIV_EXAMPLE2, out.iterrows()):
        # point estimates are deterministic: match to the printed precision
        assert got["sii"] == pytest.approx(sii, abs=6e-6)
        assert got["rii"] == pytest.approx(rii, abs=6e-8)
        tol_s = _mc_tolerance(shi - slo, 100_000, 100_000)
        tol_r = _mc_tolerance(rhi - rlo, 100_000, 100_000)
        assert got["sii_lower"] == pytest.approx(slo, abs=tol_s)
        assert got["sii_upper"] == pytest.approx(shi, abs=tol_s)
        assert got["rii_lower"] == pytest.approx(rlo, abs=tol_r)
        assert got["rii_upper"] == pytest.approx(rhi, abs=tol_r)
        # the tolerance is tight enough to matter: about 5% of the SII's standard error
        assert tol_s < 0.05 * (shi - slo) / 3.92 * 5


def test_sii_normal_with_se_matches_vignette_example_1():
    out = S.sii_rii(
        LE_DATA, value="LifeExp", lower=None, upper=None, population="Pop", quantile="Decile",
        confidence=(0.95, 0.998), reps=100_000, seed=7, by="GeoCode", se="SE",
    )
    out95 = out[out["confidence"] == 0.95].reset_index(drop=True)
    assert len(out) == 4 and list(out95["GeoCode"]) == ["E06000001", "E06000002"]
    for (_, sii, lo, hi), (_, got) in zip(SIIV_EXAMPLE1, out95.iterrows()):
        assert got["sii"] == pytest.approx(sii, abs=6e-6)
        tol = _mc_tolerance(hi - lo, 1_000, 100_000)  # the vignette used 1,000 repetitions
        assert got["sii_lower"] == pytest.approx(lo, abs=tol)
        assert got["sii_upper"] == pytest.approx(hi, abs=tol)
    out998 = out[out["confidence"] == 0.998]
    assert (out998["sii_lower"].to_numpy() < out95["sii_lower"].to_numpy()).all()


def test_sii_closed_form_and_rii_definition():
    # A perfectly linear gradient in population rank is recovered exactly: y = 10 + 5 b
    pops = np.array([100, 300, 200, 250, 150.0])
    a = pops / pops.sum()
    b = np.cumsum(a) - a / 2
    df = pd.DataFrame({"q": range(1, 6), "pop": pops, "y": 10 + 5 * b, "se": 0.1})
    out = S.sii_rii(df, "y", None, None, "pop", "q", reps=2000, seed=1, se="se").iloc[0]
    assert out["sii"] == pytest.approx(5.0)
    assert out["rii"] == pytest.approx(15 / 10)
    assert out["sii_lower"] < 5 < out["sii_upper"]
    neg = S.sii_rii(df, "y", None, None, "pop", "q", reps=2000, seed=1, se="se", multiplier=-1).iloc[0]
    assert neg["sii"] == pytest.approx(-5.0) and neg["rii"] == pytest.approx(10 / 15)


def test_sii_reads_limits_at_their_own_level():
    # limits of v +/- z(L) x se carry the same standard error whatever L, so with limits_confidence = L
    # the result equals the se path exactly; reading 90% limits as 95% ones (the reference's assumption)
    # would understate the se by 1.645 / 1.960
    pops = np.array([100, 300, 200, 250, 150.0])
    df = pd.DataFrame({"q": range(1, 6), "pop": pops, "y": [14.0, 12.5, 12.0, 11.0, 10.0], "se": 0.4})
    via_se = S.sii_rii(df, "y", None, None, "pop", "q", reps=4000, seed=3, se="se")
    for level in (0.9, 0.95, 0.99):
        z = S.z_value(level)
        lim = df.assign(lo=df["y"] - z * df["se"], hi=df["y"] + z * df["se"])
        got = S.sii_rii(lim, "y", "lo", "hi", "pop", "q", reps=4000, seed=3, limits_confidence=level)
        np.testing.assert_allclose(got[["sii_lower", "sii_upper"]].to_numpy(), via_se[["sii_lower", "sii_upper"]].to_numpy(), rtol=1e-9)
    wrong = S.sii_rii(df.assign(lo=df["y"] - S.z_value(0.9) * 0.4, hi=df["y"] + S.z_value(0.9) * 0.4), "y", "lo", "hi", "pop", "q",
                      reps=4000, seed=3)
    assert (wrong["sii_upper"] - wrong["sii_lower"]).iloc[0] < (via_se["sii_upper"] - via_se["sii_lower"]).iloc[0]


def test_sii_reproducible_with_seed():
    kw = dict(value="value", lower="lowercl", upper="uppercl", population="total_pop", quantile="Quintile",
              reps=5000, by="Period", value_type="rate")
    a = S.sii_rii(DSR_DATA, seed=11, **kw)
    b = S.sii_rii(DSR_DATA, seed=11, **kw)
    c = S.sii_rii(DSR_DATA, seed=12, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["sii_lower"], c["sii_lower"])


def test_sii_bad_input():
    kw = dict(value="value", lower="lowercl", upper="uppercl", population="total_pop", quantile="Quintile",
              reps=1000, seed=1, by="Period")
    with pytest.raises(ValueError, match=r"group 2011: needs exactly one row for each quantile"):
        S.sii_rii(DSR_DATA.drop(index=7), **kw)
    bad = DSR_DATA.copy()
    bad.loc[0, "total_pop"] = 0
    with pytest.raises(ValueError, match=r"column 'total_pop' must be > 0"):
        S.sii_rii(bad, **kw)
    with pytest.raises(ValueError, match="number of quantiles must be 5 to 100"):
        S.sii_rii(DSR_DATA[DSR_DATA["Quintile"] < 5], **kw)
    with pytest.raises(ValueError, match="value_type"):
        S.sii_rii(DSR_DATA, value_type="ratio", **kw)
    with pytest.raises(TypeError):
        S.sii_rii(DSR_DATA, "value", "lowercl", "uppercl", "total_pop", "Quintile")  # no seed


# ------------------------------------------------------------------------------------------------
# funnel plots
# ------------------------------------------------------------------------------------------------

# [FUNNEL] testdata_funnel_prop_outputs.csv: Population, Lower2s0025limit, Upper2s0025limit,
# Lower3s0001limit, Upper3s0001limit, Baseline (percent; baseline 80.642448)
PROP_FUNNEL = [
    (1, 3.204264, 100, 0, 100),
    (3, 35.933491, 100, 10.150815, 100),
    (18, 62.390093, 98.894803, 51.864359, 100),
    (41, 68.548635, 92.73626, 61.574398, 99.710497),
    (50, 69.691035, 91.593861, 63.375595, 97.909301),
    (139, 74.074227, 87.210669, 70.286478, 90.998418),
    (1008, 78.203374, 83.081521, 76.796814, 84.488082),
    (9998, 79.867989, 81.416907, 79.421375, 81.863521),
    (47766, 80.288128, 80.996768, 80.083799, 81.201097),
    (110000, 80.408963, 80.875933, 80.274317, 81.010578),
]
PROP_BASELINE = 0.80642448


def test_funnel_limits_proportion_match_reference():
    n, lo2, hi2, lo3, hi3 = map(np.array, zip(*PROP_FUNNEL))
    out = S.funnel_limits_proportion(n, PROP_BASELINE, multiplier=100)
    np.testing.assert_allclose(out["limit_95_lower"], lo2, atol=2e-6)
    np.testing.assert_allclose(out["limit_95_upper"], hi2, atol=2e-6)
    np.testing.assert_allclose(out["limit_99.8_lower"], lo3, atol=2e-6)
    np.testing.assert_allclose(out["limit_99.8_upper"], hi3, atol=2e-6)
    np.testing.assert_allclose(out["target"], 80.642448)


# [FUNNEL] testdata_funnel_ratio_outputs.csv: Observed_events, lower_2s_exp_events, lower_2s_isr,
# upper_2s_exp_events, upper_2s_isr, lower_3s_exp_events, lower_3s_isr, upper_3s_exp_events, upper_3s_isr
RATIO_FUNNEL = [
    (1, 5.571644585, 17.94802207, 0.025317898, 3949.774946, 9.233410143, 10.83023482, 0.001000547, 99945.32721),
    (10, 18.39035799, 54.3763205, 4.795387629, 208.5337156, 24.13397235, 41.43536693, 2.960519925, 337.778507),
    (55, 71.59006222, 76.82630563, 41.4335243, 132.742751, 81.99762083, 67.07511687, 34.89470271, 157.6170471),
    (100, 121.6268111, 82.21871402, 81.36400699, 122.9044681, 134.9243187, 74.11562345, 71.92139974, 139.0406755),
    (299, 334.8845596, 89.28449862, 266.0659681, 112.3781452, 356.3855169, 83.89790994, 248.400663, 120.3700491),
    (716, 770.4222128, 92.93605352, 664.5083011, 107.7488421, 802.60414, 89.20960712, 636.1521174, 112.5516964),
]


def test_funnel_limits_ratio_pass_through_reference_points():
    _, e_l2, l2, e_u2, u2, e_l3, l3, e_u3, u3 = map(np.array, zip(*RATIO_FUNNEL))
    np.testing.assert_allclose(S.funnel_limits_ratio(e_l2, multiplier=100)["limit_95_lower"], l2, rtol=2e-6)
    np.testing.assert_allclose(S.funnel_limits_ratio(e_u2, multiplier=100)["limit_95_upper"], u2, rtol=2e-6)
    np.testing.assert_allclose(S.funnel_limits_ratio(e_l3, multiplier=100)["limit_99.8_lower"], l3, rtol=2e-6)
    np.testing.assert_allclose(S.funnel_limits_ratio(e_u3, multiplier=100)["limit_99.8_upper"], u3, rtol=1e-5)


def test_funnel_ratio_lower_limit_is_zero_for_tiny_expected():
    out = S.funnel_limits_ratio([0.5, 3.0, 3.7])
    assert list(out["limit_95_lower"].iloc[:2]) == [0.0, 0.0]  # below -ln(0.025) = 3.689 nothing is low
    assert out["limit_95_lower"].iloc[2] > 0


# [FUNNEL] testdata_funnel_rate_outputs.csv (dsr per 100,000, years_of_data = 3, baseline
# 116.1720835): Events, lower_2s_population_1_year, lower_2s_limit, upper_2s_population_1_year,
# upper_2s_limit, lower_3s_population_1_year, lower_3s_limit, upper_3s_population_1_year, upper_3s_limit
RATE_FUNNEL = [
    (1, 1598.675694, 20.85059119, 7.264481402, 4588.535848, 2649.348525, 12.58170943, 0.287087625, 116108.569),
    (10, 5276.757672, 63.17010446, 1375.943768, 242.2579623, 6924.776769, 48.13632908, 849.4639547, 392.4043292),
    (104, 36157.10817, 95.87787415, 24382.08903, 142.1808715, 40036.31685, 86.58805154, 21608.75072, 160.4288333),
    (1360, 411529.9259, 110.158048, 369759.5622, 122.6021934, 424043.2424, 106.9073359, 358342.3275, 126.5084525),
]
RATE_BASELINE = 116.1720835


def test_funnel_limits_rate_match_reference():
    _, p_l2, l2, p_u2, u2, p_l3, l3, p_u3, u3 = map(np.array, zip(*RATE_FUNNEL))
    years = 3  # the fixture tabulates 1-year populations; the funnel is for a 3-year rate
    f = lambda p: S.funnel_limits_rate(p * years, RATE_BASELINE, multiplier=100_000)  # noqa: E731
    np.testing.assert_allclose(f(p_l2)["limit_95_lower"], l2, rtol=2e-6)
    np.testing.assert_allclose(f(p_u2)["limit_95_upper"], u2, rtol=2e-6)
    np.testing.assert_allclose(f(p_l3)["limit_99.8_lower"], l3, rtol=2e-6)
    np.testing.assert_allclose(f(p_u3)["limit_99.8_upper"], u3, rtol=1e-5)


# [FUNNEL] testdata_funnel_prop_inputs.csv: Area, numerator, denominator, significance (selection;
# every "High (0.025)" and "Low (0.025)" row and a spread of the others)
PROP_INPUTS = [
    ("New Forest PCT", 35078.488, 41980, "High (0.001)"),
    ("Norwich PCT", 24803.6256, 31824, "Low (0.001)"),
    ("South Gloucestershire PCT", 50050.7443, 61921, "Not significant"),
    ("Central Derby PCT", 24648.7596, 30521, "Not significant"),
    ("North East Lincolnshire PCT", 31759.385, 39350, "Not significant"),
    ("Blackburn with Darwen PCT", 29561.6517, 36627, "Not significant"),
    ("Hertsmere PCT", 18550.7595, 22905, "Not significant"),
    ("West Norfolk PCT", 26789.238, 33012, "High (0.025)"),
    ("Wokingham PCT", 31573.5024, 39212, "Not significant"),
    ("Wyre Forest PCT", 22030.9072, 27388, "Not significant"),
    ("North Tees PCT", 36850.0492, 45449, "High (0.025)"),
    ("Mid-Hampshire PCT", 34502.0685, 42485, "High (0.025)"),
    ("Sheffield West PCT", 23910.2469, 29457, "High (0.025)"),
    ("Heywood and Middleton PCT", 14493.3552, 17964, "Not significant"),
    ("East Hampshire PCT", 37216.4698, 45986, "Not significant"),
    ("West of Cornwall PCT", 30453.2129, 37741, "Not significant"),
    ("North Devon PCT", 30277.5312, 37828, "Low (0.025)"),
    ("Exeter PCT", 24866.916, 30929, "Not significant"),
    ("East Devon PCT", 21139.2936, 25992, "High (0.025)"),
    ("Mid Devon PCT", 20759.65, 25750, "Not significant"),
    ("Bracknell Forest PCT", 21306.0303, 26333, "Not significant"),
    ("North Hertfordshire and Stevenage PCT", 38314.0408, 47678, "Not significant"),
    ("South East Hertfordshire PCT", 38045.3716, 46958, "High (0.025)"),
    ("Royston, Buntingford and Bishop's Stortford PCT", 16924.1296, 20776, "High (0.025)"),
    ("Uttlesford PCT", 15524.9934, 19257, "Not significant"),
    ("Hartlepool PCT", 17321.4088, 21587, "Not significant"),
    ("Harlow PCT", 15808.1975, 20597, "Low (0.001)"),
    ("Fylde PCT", 13551.222, 16386, "High (0.001)"),
    ("Bradford City PCT", 18365.4621, 29277, "Low (0.001)"),
    ("Mansfield District PCT", 18986.0, 22000, "High (0.001)"),
    ("North Norfolk PCT", 18504.9982, 22739, "High (0.025)"),
    ("South Tyneside PCT", 29709.0543, 36583, "High (0.025)"),
    ("Taunton Deane PCT", 20781.484, 25672, "Not significant"),
    ("Rowley Regis and Tipton PCT", 13240.9172, 16477, "Not significant"),
    ("Witham, Braintree and Halstead Care Trust", 28537.4507, 35201, "High (0.025)"),
    ("North Birmingham PCT", 36378.5696, 45202, "Not significant"),
    ("Torbay Care Trust", 26882.4969, 32573, "High (0.001)"),
]


def test_funnel_flag_proportion_matches_reference_significance():
    _, x, n, sig = zip(*PROP_INPUTS)
    # the reference compares with the average over all 300+ PCTs in the file: its baseline
    flags = S.funnel_flag(x, n, statistic="proportion", target=PROP_BASELINE)
    assert list(flags) == [REF_TO_FLAG[s] for s in sig]


def test_funnel_flag_ratio_matches_reference_significance():
    o, e, sig = zip(*RATIO_INPUTS)
    assert list(S.funnel_flag(o, e, statistic="ratio")) == [REF_TO_FLAG[s] for s in sig]


def test_funnel_flag_rate_and_defaults():
    # a rate is a ratio against the expected count at the average rate
    x = np.array([30, 50, 80, 200])
    n = np.array([10_000, 10_000, 10_000, 10_000])
    t = x.sum() / n.sum()
    assert list(S.funnel_flag(x, n, statistic="rate")) == list(S.funnel_flag(x, n * t, statistic="ratio"))
    flags = S.funnel_flag([np.nan, 5], [10, 10])
    assert flags.iloc[0] is None
    with pytest.raises(ValueError, match="statistic"):
        S.funnel_flag([1], [2], statistic="dsr")
    with pytest.raises(ValueError, match="numerator must be <= denominator"):
        S.funnel_flag([3], [2])


def test_funnel_limit_inputs_validated():
    with pytest.raises(ValueError, match=r"denominators must be > 0; offending values: 0"):
        S.funnel_limits_proportion([0, 10], 0.5)
    with pytest.raises(ValueError, match="target must be a proportion"):
        S.funnel_limits_proportion([10], 80)
    with pytest.raises(ValueError, match="limits"):
        S.funnel_limits_ratio([10], limits=(0.95, 99.8))


# ------------------------------------------------------------------------------------------------
# index of disparity
# ------------------------------------------------------------------------------------------------


def test_index_of_disparity_formula():
    # Pearcy & Keppel (2002): ID = (sum |r_j - R| / J) / R x 100, hand-computed:
    # rates 10, 20, 30 against R = 20: mean |dev| = 20/3, ID = 33.33%
    assert S.index_of_disparity([10, 20, 30], reference=20) == pytest.approx(100 / 3)
    # best-group reference (Keppel et al. 2005), low is good: R = 10, deviations 0, 10, 20
    assert S.index_of_disparity([10, 20, 30], reference="min") == pytest.approx(100.0)
    # total-population reference: populations 1:1:2 -> R = (10 + 20 + 60) / 4 = 22.5
    assert S.index_of_disparity([10, 20, 30], populations=[1, 1, 2]) == pytest.approx((12.5 + 2.5 + 7.5) / 3 / 22.5 * 100)
    # population-weighted variant: (0.25 x 12.5 + 0.25 x 2.5 + 0.5 x 7.5) / 22.5 x 100
    assert S.index_of_disparity([10, 20, 30], populations=[1, 1, 2], weighted=True) == pytest.approx(
        (0.25 * 12.5 + 0.25 * 2.5 + 0.5 * 7.5) / 22.5 * 100
    )
    assert S.index_of_disparity([7, 7, 7], reference=7) == 0.0


def test_index_of_disparity_bad_input():
    with pytest.raises(ValueError, match="at least 2 groups"):
        S.index_of_disparity([5])
    with pytest.raises(ValueError, match="weighted=True needs populations"):
        S.index_of_disparity([1, 2], weighted=True)
    with pytest.raises(ValueError, match=r"rates must be >= 0; offending values: -1"):
        S.index_of_disparity([-1, 2])
    with pytest.raises(ValueError, match="reference rate must be > 0"):
        S.index_of_disparity([0, 2], reference="min")


# ------------------------------------------------------------------------------------------------
# benchmark comparison
# ------------------------------------------------------------------------------------------------


def test_compare_to_benchmark_fingertips_convention():
    lower = [12, 12, 12, 5, 5, 5, 8, 8, np.nan, 10]
    upper = [15, 15, 15, 9, 9, 9, 12, 12, 12, 12]
    pol = ["high_is_good", "low_is_good", "not_applicable"] * 2 + ["high_is_good", "low_is_good", "high_is_good", "low_is_good"]
    got = S.compare_to_benchmark(lower, upper, 10, pol)
    assert list(got) == [
        "better", "worse", "higher",   # interval wholly above 10
        "worse", "better", "lower",    # wholly below
        "similar", "similar",          # contains 10
        "not compared",                # no interval
        "similar",                     # touching the benchmark counts as similar
    ]
    assert list(S.compare_to_benchmark([1, 3], [2, 4], [np.nan, 2.5], "low_is_good")) == ["not compared", "worse"]


def test_compare_to_benchmark_bad_input():
    with pytest.raises(ValueError, match=r"polarity must be one of .*\['up'\]"):
        S.compare_to_benchmark([1], [2], 1.5, "up")
    with pytest.raises(ValueError, match="lower is above upper"):
        S.compare_to_benchmark([3], [2], 1.5, "high_is_good")


# ------------------------------------------------------------------------------------------------
# property tests
# ------------------------------------------------------------------------------------------------

CONF = st.sampled_from([0.9, 0.95, 0.99, 0.998])


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 100_000), frac=st.floats(0, 1), conf=CONF)
def test_wilson_interval_contains_estimate(n, frac, conf):
    x = round(frac * n)
    r = S.wilson_ci([x], [n], confidence=conf).iloc[0]
    assert 0 <= r["proportion_lower"] <= r["proportion"] <= r["proportion_upper"] <= 1
    if x == 0:
        assert r["proportion_lower"] == 0
    if x == n:
        assert r["proportion_upper"] == 1


@settings(max_examples=150, deadline=None)
@given(x=st.integers(0, 50_000), n=st.floats(1, 1e7), conf=CONF)
def test_rate_and_isr_intervals_contain_estimate(x, n, conf):
    r = S.crude_rate([x], [n], confidence=conf).iloc[0]
    assert 0 <= r["rate_lower"] <= r["rate"] <= r["rate_upper"]
    i = S.indirectly_standardised_ratio([x], [n / 1000], confidence=conf).iloc[0]
    assert i["ratio_lower"] <= i["ratio"] <= i["ratio_upper"]


@settings(max_examples=150, deadline=None)
@given(x=st.integers(1, 20_000), k=st.integers(2, 50), rate=st.floats(1e-4, 0.5), conf=CONF)
def test_interval_widens_as_count_falls_for_fixed_rate(x, k, rate, conf):
    # same rate from fewer events: the relative width (upper - lower) / rate must be larger
    big = S.crude_rate([x * k], [x * k / rate], multiplier=1, confidence=conf).iloc[0]
    small = S.crude_rate([x], [x / rate], multiplier=1, confidence=conf).iloc[0]
    assert (small["rate_upper"] - small["rate_lower"]) / small["rate"] > (big["rate_upper"] - big["rate_lower"]) / big["rate"]


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 10**9), conf=CONF)
def test_zero_count_handled_as_reference(n, conf):
    r = S.crude_rate([0], [n], multiplier=1, confidence=conf).iloc[0]
    assert r["rate"] == 0 and r["rate_lower"] == 0 and r["method"] == "Exact"
    assert r["rate_upper"] * n == pytest.approx(-math.log((1 - conf) / 2), rel=1e-9)
    w = S.wilson_ci([0], [n], confidence=conf).iloc[0]
    assert w["proportion_lower"] == 0 and w["proportion_upper"] > 0


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 400), min_size=19, max_size=19),
    pops=st.lists(st.integers(50, 100_000), min_size=19, max_size=19),
    conf=CONF,
)
def test_dsr_interval_contains_estimate(counts, pops, conf):
    df = pd.DataFrame({"band": S.ESP2013_BANDS, "x": counts, "n": pops})
    r = S.dsr(df, "x", "n", "band", confidence=conf).iloc[0]
    if r["total_count"] < 10:
        assert np.isnan(r["dsr"]) and np.isnan(r["dsr_lower"])
    else:
        assert r["dsr_lower"] <= r["dsr"] <= r["dsr_upper"]


@settings(max_examples=100, deadline=None)
@given(
    x1=st.integers(1, 5000), x2=st.integers(1, 5000), n1=st.floats(10, 1e6), n2=st.floats(10, 1e6), conf=CONF
)
def test_rate_ratio_interval_contains_estimate(x1, x2, n1, n2, conf):
    r = S.rate_ratio([x1], [n1], [x2], [n2], confidence=conf).iloc[0]
    assert r["rate_ratio_lower"] < r["rate_ratio"] < r["rate_ratio_upper"]
    # symmetric on the log scale
    assert math.log(r["rate_ratio_upper"] / r["rate_ratio"]) == pytest.approx(math.log(r["rate_ratio"] / r["rate_ratio_lower"]))


@settings(max_examples=60, deadline=None)
@given(target=st.floats(0.01, 0.99), n=st.integers(5, 10**6))
def test_proportion_funnel_brackets_target_and_narrows(target, n):
    f = S.funnel_limits_proportion([n, 4 * n], target)
    for col in ("limit_95_lower", "limit_99.8_lower"):
        assert (f[col] <= target + 1e-12).all()
    for col in ("limit_95_upper", "limit_99.8_upper"):
        assert (f[col] >= target - 1e-12).all()
    assert f["limit_99.8_lower"].iloc[0] <= f["limit_95_lower"].iloc[0] and f["limit_95_upper"].iloc[0] <= f["limit_99.8_upper"].iloc[0]
    assert (f["limit_95_upper"].iloc[1] - f["limit_95_lower"].iloc[1]) <= (f["limit_95_upper"].iloc[0] - f["limit_95_lower"].iloc[0]) + 1e-12


@settings(max_examples=40, deadline=None)
@given(e=st.floats(0.05, 5000))
def test_ratio_funnel_brackets_one(e):
    f = S.funnel_limits_ratio([e]).iloc[0]
    assert 0 <= f["limit_99.8_lower"] <= f["limit_95_lower"] < 1 < f["limit_95_upper"] <= f["limit_99.8_upper"]
