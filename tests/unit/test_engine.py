"""Tests for spstudy.engine: known answers on a toy, equivalence of DuckDB, Spark and pandas.

Known answers: the toy below is hand-computed from the definitions in the engine's docstring
(inclusive day offsets from the index date; events only inside [follow_start, follow_end];
relative month m = floor(t / 30.4375)). Day offsets are worked out in the comments; 2020 is a
leap year. There is no published reference output for event counting in windows, so the check
against the definitions is hand-made, plus a brute-force oracle (one Python loop per index row)
on the random extract.

Equivalence (as ehrQL does for its query engines): the same queries on DuckDB, Spark (local
mode) and pandas on a random extract with events on every window boundary, before
follow_start and after follow_end, persons with two index rows, an index person with no
events and index rows with a missing group; results must be exactly equal.

Spark tests carry ``@pytest.mark.spark``; they run whenever pyspark and Java are present.
"""

from __future__ import annotations

import os
import shutil

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spstudy.methods import engine as E
from spstudy.methods.engine import (
    STANDARD_WINDOWS,
    day_number_sql,
    monthly_series,
    per_1000_person_years,
    relative_months,
    window_counts,
)

pytestmark = pytest.mark.unit  # hand-computed answers and engine equivalence (no published reference)

FULL_EXPOSURE = {"pre_12m": 365, "pre_q1": 92, "pre_q2": 91, "pre_q3": 91, "pre_q4": 91, "last_month": 30, "post_12m": 365}

# ---------------------------------------------------------------------------------------------
# The 3-person toy
# ---------------------------------------------------------------------------------------------


def toy_activity() -> pd.DataFrame:
    rows = [
        # P1, index 2021-01-01 (index_id 1), follow 2019-06-01..2022-06-30 (covers every window)
        ("P1", "2020-01-01", "gp"),  # t = -366 (2020 is a leap year): outside every window
        ("P1", "2020-01-02", "gp"),  # t = -365: first day of pre_12m and pre_q1; month -12
        ("P1", "2020-12-31", "ae"),  # t = -1: last day of pre_12m, pre_q4, last_month; month -1
        ("P1", "2021-01-01", "gp"),  # t = 0: first day of post_12m; month 0
        ("P1", "2021-01-02", "op"),  # a setting not asked for: ignored
        ("P1", "2021-12-31", "gp"),  # t = 364: last day of post_12m; month 11 (days 335..365)
        ("P1", "2022-01-01", "gp"),  # t = 365: outside post_12m, but in month 11
        # P2, index 2021-03-01 (index_id 2), follow 2020-09-01 (t=-181) .. 2021-06-30 (t=121)
        ("P2", "2020-08-31", "gp"),  # t = -182: before follow_start, not counted
        ("P2", "2020-09-01", "gp"),  # t = -181: first day of follow-up; pre_12m, pre_q3; month -6
        ("P2", "2021-02-15", "ae"),  # t = -14: pre_12m, pre_q4, last_month; month -1
        ("P2", "2021-02-15", "ae"),  # same day again: a second attendance, counted
        ("P2", "2021-06-30", "gp"),  # t = 121: last day of follow-up; post_12m; month 3 (92..121)
        ("P2", "2021-07-01", "gp"),  # after follow_end, not counted
        # P3 has two index rows: 3 (2021-01-01) and 4 (2021-07-01), follow 2015..2030
        ("P3", "2021-03-01", "ae"),  # row 3: t = 59, post_12m, month 1 (31..60);
        #                              row 4: t = -122, pre_12m, pre_q3; last day of month -5
        # P9 is not in the index: ignored
        ("P9", "2021-01-01", "gp"),
    ]
    df = pd.DataFrame(rows, columns=["person_id", "activity_date", "setting"])
    df["activity_date"] = pd.to_datetime(df["activity_date"])
    return df


def toy_index() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "index_id": [1, 2, 3, 4],
            "person_id": ["P1", "P2", "P3", "P3"],
            "index_date": pd.to_datetime(["2021-01-01", "2021-03-01", "2021-01-01", "2021-07-01"]),
            "follow_start": pd.to_datetime(["2019-06-01", "2020-09-01", "2015-01-01", "2015-01-01"]),
            "follow_end": pd.to_datetime(["2022-06-30", "2021-06-30", "2030-01-01", "2030-01-01"]),
            "group": ["sp", "sp", "comparator", "comparator"],
        }
    )


def toy_expected_window_counts() -> pd.DataFrame:
    """Hand-computed expectation for the toy with STANDARD_WINDOWS."""
    names = [w[0] for w in STANDARD_WINDOWS]
    exposure = {
        1: FULL_EXPOSURE,
        # P2: window days inside [-181, 121]: pre_12m -181..-1 = 181; q1, q2 none;
        # q3 -181..-92 = 90; q4 91; last_month 30; post_12m 0..121 = 122
        2: {"pre_12m": 181, "pre_q1": 0, "pre_q2": 0, "pre_q3": 90, "pre_q4": 91, "last_month": 30, "post_12m": 122},
        3: FULL_EXPOSURE,
        4: FULL_EXPOSURE,
    }
    events = {
        (1, "pre_12m", "gp"): 1, (1, "pre_q1", "gp"): 1, (1, "post_12m", "gp"): 2,
        (1, "pre_12m", "ae"): 1, (1, "pre_q4", "ae"): 1, (1, "last_month", "ae"): 1,
        (2, "pre_12m", "gp"): 1, (2, "pre_q3", "gp"): 1, (2, "post_12m", "gp"): 1,
        (2, "pre_12m", "ae"): 2, (2, "pre_q4", "ae"): 2, (2, "last_month", "ae"): 2,
        (3, "post_12m", "ae"): 1,
        (4, "pre_12m", "ae"): 1, (4, "pre_q3", "ae"): 1,
    }  # fmt: skip
    rows = [
        (i, w, s, events.get((i, w, s), 0), exposure[i][w])
        for i in (1, 2, 3, 4)
        for w in names
        for s in ("gp", "ae")
    ]
    out = pd.DataFrame(rows, columns=["index_id", "window", "setting", "events", "exposure_days"])
    return out.astype({"window": "str", "setting": "str"})


# Hand-computed monthly rows: (group, month, setting) -> (events, person_days, n_at_risk)
TOY_MONTHLY = {
    # month -12 = days -365..-335: P1 31 days (gp at -365); P2 not yet followed
    ("sp", -12, "gp"): (1, 31, 1),
    # month -6 = days -182..-153: P1 30 days; P2 from -181: 29 days; P2 gp at -181 (-182 excluded)
    ("sp", -6, "gp"): (1, 59, 2),
    # month -1 = days -30..-1: 30 + 30 days; ae at -1 (P1) and twice at -14 (P2)
    ("sp", -1, "ae"): (3, 60, 2),
    ("sp", -1, "gp"): (0, 60, 2),
    # month 0 = days 0..30: 31 + 31 days; gp at 0 (P1)
    ("sp", 0, "gp"): (1, 62, 2),
    # month 3 = days 92..121: 30 + 30 days (P2's follow-up ends at 121); gp at 121 (P2)
    ("sp", 3, "gp"): (1, 60, 2),
    # month 4 = days 122..152: P1 only
    ("sp", 4, "gp"): (0, 31, 1),
    # month 11 = days 335..365: P1 only, gp at 364 and 365
    ("sp", 11, "gp"): (2, 31, 1),
    # comparators: rows 3 and 4 fully followed; month -5 = days -152..-122 (31 days each)
    ("comparator", -5, "ae"): (1, 62, 2),
    # month 1 = days 31..60 (30 days each); ae at 59 (row 3)
    ("comparator", 1, "ae"): (1, 60, 2),
}


def test_relative_months_known_bounds():
    m = relative_months(12, 12).set_index("month")
    # month m covers ceil(30.4375 m) .. ceil(30.4375 (m+1)) - 1
    assert tuple(m.loc[-12]) == (-365, -335)
    assert tuple(m.loc[-6]) == (-182, -153)
    assert tuple(m.loc[-5]) == (-152, -122)
    assert tuple(m.loc[-1]) == (-30, -1)
    assert tuple(m.loc[0]) == (0, 30)
    assert tuple(m.loc[1]) == (31, 60)
    assert tuple(m.loc[3]) == (92, 121)
    assert tuple(m.loc[11]) == (335, 365)
    # contiguous, 30 or 31 days, and months -12..-1 are exactly pre_12m (-365..-1)
    assert (m["start_day"].to_numpy()[1:] == m["end_day"].to_numpy()[:-1] + 1).all()
    assert set(m["end_day"] - m["start_day"] + 1) == {30, 31}
    assert m.loc[-12, "start_day"] == -365 and m.loc[-1, "end_day"] == -1


@given(st.integers(-5000, 5000))
def test_relative_month_of_day_is_floor(t):
    """Day t lies in month floor(t / 30.4375) (exact: 30.4375 = 487/16 is a binary fraction)."""
    m = int(np.floor(t / E.DAYS_PER_MONTH))
    b = relative_months(-min(m, 0), max(m + 1, 0) + 1).set_index("month")
    assert b.loc[m, "start_day"] <= t <= b.loc[m, "end_day"]


def test_per_1000_person_years():
    assert per_1000_person_years(1, 365.25 * 1000) == pytest.approx(1.0)
    assert per_1000_person_years(10, 365.25) == pytest.approx(10_000.0)
    out = per_1000_person_years(pd.Series([3, 0]), pd.Series([365.25, 0]))
    assert out.iloc[0] == pytest.approx(3000.0) and np.isnan(out.iloc[1])


@pytest.mark.parametrize("engine", ["duckdb", "pandas"])
def test_toy_window_counts_known_answer(engine):
    got = window_counts(toy_activity(), toy_index(), STANDARD_WINDOWS, engine=engine)
    pd.testing.assert_frame_equal(got, toy_expected_window_counts(), check_exact=True)


@pytest.mark.parametrize("engine", ["duckdb", "pandas"])
def test_toy_monthly_known_answer(engine):
    got = monthly_series(toy_activity(), toy_index(), 12, 12, by=("group",), engine=engine)
    assert list(got.columns) == ["group", "month", "setting", "events", "person_days", "n_at_risk"]
    assert len(got) == 2 * 24 * 2  # every group x month x setting
    keyed = got.set_index(["group", "month", "setting"])
    for key, expected in TOY_MONTHLY.items():
        assert tuple(keyed.loc[key]) == expected, key
    totals = got.groupby(["group", "setting"])["events"].sum().to_dict()
    # sp gp: P1 at -365, 0, 364, 365 and P2 at -181, 121 (P1's -366 lies in month -13)
    assert totals == {("sp", "gp"): 6, ("sp", "ae"): 3, ("comparator", "gp"): 0, ("comparator", "ae"): 2}
    # comparators are followed throughout: person-days = 2 x month length
    lengths = relative_months(12, 12).set_index("month")
    comp = keyed.loc["comparator"].xs("gp", level="setting")
    assert (comp["person_days"] == 2 * (lengths["end_day"] - lengths["start_day"] + 1)).all()


def test_toy_timestamps_use_calendar_date():
    """A timestamp late on the last day of a window counts in that window (time dropped)."""
    act = toy_activity()
    act["activity_date"] = act["activity_date"] + pd.Timedelta(hours=23, minutes=59)
    got = window_counts(act, toy_index(), STANDARD_WINDOWS)
    pd.testing.assert_frame_equal(got, toy_expected_window_counts(), check_exact=True)
    utc = toy_activity()
    utc["activity_date"] = utc["activity_date"].dt.tz_localize("UTC").dt.tz_convert("Europe/London")
    pd.testing.assert_frame_equal(window_counts(utc, toy_index(), STANDARD_WINDOWS), toy_expected_window_counts())


def test_toy_string_dates_and_date_objects():
    act = toy_activity()
    act["activity_date"] = act["activity_date"].dt.strftime("%Y-%m-%d")
    idx = toy_index()
    for c in ("index_date", "follow_start", "follow_end"):
        idx[c] = [d.date() for d in idx[c]]
    pd.testing.assert_frame_equal(window_counts(act, idx, STANDARD_WINDOWS), toy_expected_window_counts())


def test_day_number_sql_duckdb_matches_numpy():
    dates = ["1900-03-01", "1969-12-31", "1970-01-01", "2000-02-29", "2020-02-29", "2020-03-01", "2100-02-28"]
    sql = "SELECT " + ", ".join(day_number_sql(f"DATE '{d}'", "duckdb") for d in dates)
    got = duckdb.sql(sql).fetchall()[0]
    expected = tuple(int(x) for x in np.array(dates, dtype="datetime64[D]").astype("int64"))
    assert got == expected
    ts = duckdb.sql("SELECT " + day_number_sql("TIMESTAMP '2020-02-29 23:59:59'", "duckdb")).fetchall()[0][0]
    assert ts == expected[4]
    with pytest.raises(ValueError, match="dialect"):
        day_number_sql("x", "postgres")


# ---------------------------------------------------------------------------------------------
# Random extract with the awkward cases
# ---------------------------------------------------------------------------------------------

EVAL_WINDOWS = list(STANDARD_WINDOWS) + [("day_0", 0, 0), ("pre_2y", -730, -366)]


def make_extract(seed: int = 20240611, n_persons: int = 2000, n_random: int = 24_000):
    """A random extract: (activity, index). ~30,000 events, 540 index rows, 2,000 persons."""
    rng = np.random.default_rng(seed)
    pid = np.array([f"P{i:09d}" for i in range(n_persons)], dtype=object)
    base = np.datetime64("2020-01-01", "D").astype("int64")
    first = rng.choice(n_persons, 500, replace=False)
    d0_first = base + rng.integers(0, 3 * 365, 500)
    # 40 persons have a second index row 100 days later (overlapping windows)
    persons = np.concatenate([first, first[:40]])
    d0 = np.concatenate([d0_first, d0_first[:40] + 100])
    n = len(persons)
    fs = d0 - rng.integers(-60, 900, n)  # some registrations start after the index date
    fe = np.maximum(d0 + rng.integers(-60, 800, n), fs)  # some end before it
    group = rng.choice(np.array(["sp", "comparator"], dtype=object), n)
    group[rng.choice(n, 15, replace=False)] = None  # missing group
    as_date = lambda x: pd.to_datetime(np.asarray(x, dtype="int64").astype("datetime64[D]"))  # noqa: E731
    index = pd.DataFrame(
        {
            "index_id": pd.array([f"I{k:05d}" for k in range(n)], dtype="str"),
            "person_id": pd.array(pid[persons], dtype="str"),
            "index_date": as_date(d0),
            "follow_start": as_date(fs),
            "follow_end": as_date(fe),
            "group": pd.array(group, dtype="str"),
        }
    )
    no_events = pid[first[1]]  # an index person with no activity at all
    # random events over 2017..2024 for all persons
    act_p = rng.integers(0, n_persons, n_random)
    act_d = rng.integers(base - 3 * 365, base + 5 * 365, n_random)
    # boundary events for 150 index rows: each window's edges and one day outside, and
    # the day before follow_start, follow_start, follow_end and the day after it
    edges = sorted({o for _, lo, hi in EVAL_WINDOWS for o in (lo - 1, lo, hi, hi + 1)})
    month_edges = sorted({o for _, lo, hi in relative_months(12, 12).itertuples(index=False) for o in (lo, hi)})
    rows = rng.choice(n, 150, replace=False)
    b_p, b_d = [], []
    for r in rows:
        offs = np.array(edges + month_edges[:: 3 + r % 3])
        ds = np.concatenate([d0[r] + offs, [fs[r] - 1, fs[r], fe[r], fe[r] + 1]])
        b_p.append(np.full(len(ds), persons[r]))
        b_d.append(ds)
    all_p = np.concatenate([act_p, *b_p])
    all_d = np.concatenate([act_d, *b_d])
    setting = rng.choice(np.array(["gp", "ae", "op"], dtype=object), len(all_p), p=[0.8, 0.17, 0.03])
    activity = pd.DataFrame(
        {
            "person_id": pd.array(pid[all_p], dtype="str"),
            "activity_date": as_date(all_d),
            "setting": pd.array(setting, dtype="str"),
        }
    )
    activity = activity[activity["person_id"] != no_events].reset_index(drop=True)
    return activity, index, no_events


@pytest.fixture(scope="module")
def extract():
    return make_extract()


@pytest.fixture(scope="module")
def extract_parquet(extract, tmp_path_factory):
    """The same extract as Parquet: activity split over three files, index as one file."""
    activity, index, _ = extract
    d = tmp_path_factory.mktemp("extract")
    (d / "activity").mkdir()
    tbl = pa.Table.from_pandas(activity, preserve_index=False)
    tbl = tbl.set_column(1, "activity_date", tbl["activity_date"].cast(pa.date32()))
    cuts = np.linspace(0, len(activity), 4).astype(int)
    for k in range(3):
        pq.write_table(tbl.slice(cuts[k], cuts[k + 1] - cuts[k]), d / "activity" / f"part-{k}.parquet")
    index.to_parquet(d / "index.parquet", index=False)
    return d


@pytest.fixture(scope="module")
def reference(extract):
    """DuckDB results on the random extract (DataFrame inputs): the frame other engines must equal."""
    activity, index, _ = extract
    return {
        "window": window_counts(activity, index, EVAL_WINDOWS, engine="duckdb"),
        "monthly": monthly_series(activity, index, 12, 12, by=("group",), engine="duckdb"),
    }


def brute_force_counts(activity: pd.DataFrame, index: pd.DataFrame, windows, settings=("gp", "ae")) -> pd.DataFrame:
    """Oracle straight from the definitions: one loop per index row, window and setting."""
    rows = []
    for r in index.itertuples(index=False):
        mine = activity[activity["person_id"] == r.person_id]
        for name, lo, hi in windows:
            w_lo = r.index_date + pd.Timedelta(days=lo)
            w_hi = r.index_date + pd.Timedelta(days=hi)
            first, last = max(w_lo, r.follow_start), min(w_hi, r.follow_end)
            exposure = max(0, (last - first).days + 1)
            for s in settings:
                d = mine.loc[mine["setting"] == s, "activity_date"]
                n = int(((d >= first) & (d <= last)).sum())
                rows.append((r.index_id, name, s, n, exposure))
    out = pd.DataFrame(rows, columns=["index_id", "window", "setting", "events", "exposure_days"])
    return out.astype({"window": "str", "setting": "str"})


def test_extract_has_the_awkward_cases(extract, reference):
    activity, index, no_events = extract
    assert 28_000 <= len(activity) <= 32_000 and index["person_id"].nunique() == 500
    assert index["person_id"].duplicated().sum() == 40
    assert index["group"].isna().sum() == 15
    assert (index["follow_start"] > index["index_date"]).any()  # late registrations
    assert (index["follow_end"] < index["index_date"]).any()  # follow-up over before index
    wc = reference["window"]
    assert len(wc) == len(index) * len(EVAL_WINDOWS) * 2
    ne = wc[wc["index_id"].isin(index.loc[index["person_id"] == no_events, "index_id"])]
    assert len(ne) and ne["events"].eq(0).all() and ne["exposure_days"].gt(0).any()
    assert wc["events"].sum() > 5000 and (wc["exposure_days"] == 0).any()


def test_duckdb_matches_brute_force_oracle(extract, reference):
    activity, index, no_events = extract
    # the 150 boundary rows are among all rows; check a deterministic sample of 120 rows,
    # plus every row of persons with two index rows and of the person with no events
    twice = index["person_id"][index["person_id"].duplicated()]
    pick = index[index["person_id"].isin(twice) | (index["person_id"] == no_events)]
    pick = pd.concat([pick, index.iloc[::9]]).drop_duplicates("index_id")
    expected = brute_force_counts(activity, pick, EVAL_WINDOWS).sort_values("index_id", kind="mergesort", ignore_index=True)
    got = reference["window"][reference["window"]["index_id"].isin(pick["index_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_pandas_equals_duckdb(extract, reference):
    activity, index, _ = extract
    pd.testing.assert_frame_equal(window_counts(activity, index, EVAL_WINDOWS, engine="pandas"), reference["window"], check_exact=True)
    pd.testing.assert_frame_equal(
        monthly_series(activity, index, 12, 12, by=("group",), engine="pandas"), reference["monthly"], check_exact=True
    )


def test_parquet_inputs_equal_dataframe_inputs(extract_parquet, reference):
    d = extract_parquet
    files = sorted(str(p) for p in (d / "activity").glob("*.parquet"))
    for engine, act in [("duckdb", str(d / "activity" / "*.parquet")), ("duckdb", d / "activity"), ("pandas", files)]:
        got = window_counts(act, d / "index.parquet", EVAL_WINDOWS, engine=engine)
        pd.testing.assert_frame_equal(got, reference["window"], check_exact=True)
    got = monthly_series(str(d / "activity" / "*.parquet"), str(d / "index.parquet"), by="group", engine="duckdb")
    pd.testing.assert_frame_equal(got, reference["monthly"], check_exact=True)


def test_monthly_equals_window_counts_over_month_windows(extract, reference):
    """Monthly series = window_counts with the month windows, summed by group."""
    activity, index, _ = extract
    months = relative_months(12, 12)
    wins = [(f"m{m}", int(lo), int(hi)) for m, lo, hi in months.itertuples(index=False)]
    wc = window_counts(activity, index, wins).merge(index[["index_id", "group"]], on="index_id")
    wc["month"] = wc["window"].str[1:].astype("int64")
    agg = (
        wc.groupby(["group", "month", "setting"], dropna=False)
        .agg(events=("events", "sum"), person_days=("exposure_days", "sum"))
        .reset_index()
    )
    got = reference["monthly"].merge(agg, on=["group", "month", "setting"], how="outer", suffixes=("", "_wc"))
    assert len(got) == len(reference["monthly"])
    assert (got["events"] == got["events_wc"]).all() and (got["person_days"] == got["person_days_wc"]).all()


def test_monthly_no_by_and_two_by_columns(extract):
    activity, index, _ = extract
    index = index.assign(borough=np.where(np.arange(len(index)) % 3 == 0, "Camden", "Barnet"))
    for by in [(), ("group", "borough")]:
        a = monthly_series(activity, index, 6, 3, by=by, engine="duckdb")
        b = monthly_series(activity, index, 6, 3, by=by, engine="pandas")
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert len(monthly_series(activity, index, 6, 3, by=None)) == 9 * 2


def test_windows_partition_adds_up(reference):
    """Quarters q1..q4 tile pre_12m: their events and exposure add up to pre_12m's."""
    wc = reference["window"].set_index(["index_id", "setting", "window"])
    q = wc.loc[(slice(None), slice(None), ["pre_q1", "pre_q2", "pre_q3", "pre_q4"]), :].groupby(level=[0, 1]).sum()
    y = wc.xs("pre_12m", level="window")
    pd.testing.assert_frame_equal(q.sort_index(), y.sort_index())
    length = {name: hi - lo + 1 for name, lo, hi in EVAL_WINDOWS}
    assert (wc["exposure_days"] <= wc.index.get_level_values("window").map(length)).all()


def test_settings_subset_and_order(extract, reference):
    activity, index, _ = extract
    got = window_counts(activity, index, EVAL_WINDOWS, settings=("ae",))
    ref = reference["window"]
    pd.testing.assert_frame_equal(got, ref[ref["setting"] == "ae"].reset_index(drop=True))
    rev = window_counts(activity, index, EVAL_WINDOWS[:2], settings=("ae", "gp"))
    assert list(rev["setting"][:2]) == ["ae", "gp"] and list(rev["window"][:4]) == [EVAL_WINDOWS[0][0]] * 2 + [EVAL_WINDOWS[1][0]] * 2


def test_duckdb_resources_are_parameters(extract, reference):
    activity, index, _ = extract
    got = window_counts(activity, index, EVAL_WINDOWS, threads=1, memory_limit="256MB")
    pd.testing.assert_frame_equal(got, reference["window"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    lo=st.integers(-60, 20),
    width=st.integers(0, 40),
)
def test_engines_agree_with_oracle_on_small_random_inputs(seed, lo, width):
    rng = np.random.default_rng(seed)
    n_idx, n_act = int(rng.integers(1, 6)), int(rng.integers(0, 40))
    base = np.datetime64("2021-01-01", "D")
    d0 = base + rng.integers(0, 30, n_idx)
    fs = d0 + rng.integers(-40, 10, n_idx)
    fe = fs + rng.integers(0, 60, n_idx)
    index = pd.DataFrame(
        {
            "index_id": np.arange(n_idx, dtype="int64"),
            "person_id": [f"P{k}" for k in rng.integers(0, 3, n_idx)],
            "index_date": pd.to_datetime(d0),
            "follow_start": pd.to_datetime(fs),
            "follow_end": pd.to_datetime(fe),
        }
    )
    activity = pd.DataFrame(
        {
            "person_id": pd.array([f"P{k}" for k in rng.integers(0, 4, n_act)], dtype="str"),
            "activity_date": pd.to_datetime(base + rng.integers(-70, 100, n_act)),
            "setting": pd.array(rng.choice(["gp", "ae"], n_act), dtype="str"),
        }
    )
    windows = [("w", lo, lo + width), ("x", -3, 3)]
    expected = brute_force_counts(activity, index, windows)
    for engine in ("duckdb", "pandas"):
        pd.testing.assert_frame_equal(window_counts(activity, index, windows, engine=engine), expected, check_exact=True)


def test_empty_activity_gives_zero_events_with_exposure():
    act = toy_activity().iloc[:0]
    for engine in ("duckdb", "pandas"):
        got = window_counts(act, toy_index(), STANDARD_WINDOWS, engine=engine)
        exp = toy_expected_window_counts().assign(events=0)
        pd.testing.assert_frame_equal(got, exp)


def test_empty_index_gives_empty_frame():
    got = window_counts(toy_activity(), toy_index().iloc[:0], STANDARD_WINDOWS)
    assert list(got.columns) == ["index_id", "window", "setting", "events", "exposure_days"] and got.empty
    got = monthly_series(toy_activity(), toy_index().iloc[:0])
    assert list(got.columns) == ["group", "month", "setting", "events", "person_days", "n_at_risk"] and got.empty


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda a, i: (a.drop(columns="setting"), i), r"`activity`: missing column\(s\) \['setting'\]"),
        (lambda a, i: (a, i.drop(columns="follow_end")), r"`index`: missing column\(s\) \['follow_end'\]"),
        (lambda a, i: (a, i.assign(index_id=[1, 1, 2, 3])), r"index_id must be unique, duplicated: \[1\]"),
        (lambda a, i: (a, i.assign(follow_start=i["follow_end"] + pd.Timedelta(days=1))), "follow_start is after follow_end"),
        (lambda a, i: (a, i.assign(index_date=[pd.NaT, *i["index_date"][1:]])), r"'index_date' has null.*index_id \[1\]"),
        (lambda a, i: (a, i.assign(person_id=[1, 2, 3, 3])), "person_id types differ"),
        (lambda a, i: (a, i.assign(index_id=[1.5, 2.5, 3.5, 4.5])), "index_id must be integer or string"),
        (lambda a, i: (a.assign(activity_date="not a date"), i), "'activity_date' is not a date column"),
        (lambda a, i: (a.assign(activity_date="01/02/2021"), i), "'activity_date' is not a date column.*ISO8601"),
    ],
)
@pytest.mark.parametrize("engine", ["duckdb", "pandas"])
def test_bad_tables_raise(mutate, match, engine):
    act, idx = mutate(toy_activity(), toy_index())
    with pytest.raises(ValueError, match=match):
        window_counts(act, idx, STANDARD_WINDOWS, engine=engine)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"windows": []}, "non-empty list"),
        ({"windows": [("a", 5, 1)]}, "start_day > end_day"),
        ({"windows": [("a", 0, 1), ("a", 2, 3)]}, r"duplicate window names \['a'\]"),
        ({"windows": [("a", 0.5, 1)]}, "offsets must be integers"),
        ({"windows": [("a", 0)]}, "must be \\(name, start_day, end_day\\)"),
        ({"engine": "polars"}, "engine must be one of"),
        ({"settings": ("gp", "a&e")}, r"offending values: \['a&e'\]"),
        ({"settings": ()}, "settings must be a non-empty"),
        ({"spark": object()}, "spark= was given but engine='duckdb'"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    args = {"windows": STANDARD_WINDOWS, **kwargs}
    with pytest.raises(ValueError, match=match):
        window_counts(toy_activity(), toy_index(), **args)


def test_bad_monthly_arguments_and_paths(tmp_path):
    with pytest.raises(ValueError, match="months_before must be an integer"):
        monthly_series(toy_activity(), toy_index(), months_before=-1)
    with pytest.raises(ValueError, match=r"`index`: missing column\(s\) \['borough'\]"):
        monthly_series(toy_activity(), toy_index(), by=("borough",))
    with pytest.raises(ValueError, match="by: column names"):
        monthly_series(toy_activity(), toy_index(), by=("month",))
    with pytest.raises(ValueError, match="no Parquet files found"):
        window_counts(str(tmp_path / "nothing" / "*.parquet"), toy_index(), STANDARD_WINDOWS, engine="pandas")
    with pytest.raises(ValueError, match="activity: cannot read Parquet"):
        window_counts(str(tmp_path / "nothing" / "*.parquet"), toy_index(), STANDARD_WINDOWS, engine="duckdb")
    with pytest.raises(ValueError, match="activity must be a pandas DataFrame or Parquet path"):
        window_counts(42, toy_index(), STANDARD_WINDOWS)


def test_sql_is_one_text_for_both_dialects():
    """The two dialects' SQL differ only in the day-number shim."""
    w, s = [(lo, hi) for _, lo, hi in STANDARD_WINDOWS], ("gp", "ae")
    duck, spark = E.window_counts_sql("duckdb", w, s, 1), E.window_counts_sql("spark", w, s, 1)
    assert duck.replace(day_number_sql("activity_date", "duckdb"), "<DAY>") == spark.replace(
        day_number_sql("activity_date", "spark"), "<DAY>"
    )


# ---------------------------------------------------------------------------------------------
# Spark (local mode): same queries, exactly the same answers
# ---------------------------------------------------------------------------------------------

_JAVA = shutil.which("java") or (os.environ.get("JAVA_HOME") and os.path.exists(os.path.join(os.environ["JAVA_HOME"], "bin", "java")))


@pytest.fixture(scope="module")
def spark():
    if not _JAVA:
        pytest.skip("Spark tests need Java (no `java` on PATH and no JAVA_HOME): install a JDK 17 to run them")
    pytest.importorskip("pyspark", reason="pyspark is not installed")
    session = E.spark_session(master="local[2]", app_name="spstudy-tests")
    yield session
    session.stop()


@pytest.mark.spark
def test_spark_session_settings(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert E.spark_session() is spark  # reuses the active session


@pytest.mark.spark
def test_spark_day_number_shim_matches_duckdb(spark):
    dates = ["1900-03-01", "1969-12-31", "1970-01-01", "2000-02-29", "2020-02-29", "2020-03-01", "2100-02-28"]
    exprs = [f"DATE '{d}'" for d in dates] + ["TIMESTAMP '2020-02-29 23:59:59'"]
    spark_row = spark.sql("SELECT " + ", ".join(day_number_sql(e, "spark") for e in exprs)).collect()[0]
    duck_row = duckdb.sql("SELECT " + ", ".join(day_number_sql(e, "duckdb") for e in exprs)).fetchall()[0]
    assert tuple(spark_row) == duck_row


@pytest.mark.spark
def test_spark_toy_known_answer(spark):
    got = window_counts(toy_activity(), toy_index(), STANDARD_WINDOWS, engine="spark", spark=spark)
    pd.testing.assert_frame_equal(got, toy_expected_window_counts(), check_exact=True)


@pytest.mark.spark
def test_spark_equals_duckdb_on_random_extract(spark, extract, extract_parquet, reference):
    activity, index, _ = extract
    got = window_counts(activity, index, EVAL_WINDOWS, engine="spark", spark=spark)
    pd.testing.assert_frame_equal(got, reference["window"], check_exact=True)
    act_glob = str(extract_parquet / "activity" / "*.parquet")
    got = monthly_series(act_glob, extract_parquet / "index.parquet", 12, 12, by=("group",), engine="spark", spark=spark)
    pd.testing.assert_frame_equal(got, reference["monthly"], check_exact=True)


@pytest.mark.spark
def test_spark_accepts_a_spark_dataframe(spark, extract_parquet, reference):
    sdf = spark.read.parquet(str(extract_parquet / "activity"))
    got = window_counts(sdf, extract_parquet / "index.parquet", EVAL_WINDOWS, engine="spark")
    pd.testing.assert_frame_equal(got, reference["window"], check_exact=True)


def test_wide_form_equals_long_form_on_every_engine():
    """window_counts_wide (one SQL text, conditional aggregation) gives exactly window_counts pivoted."""
    import numpy as np
    import pandas as pd

    from spstudy.methods import engine as E

    rng = np.random.default_rng(5)
    n = 400
    persons = [f"P{i:05d}" for i in range(n)]
    act = pd.DataFrame({"person_id": rng.choice(persons, 20000),
                        "activity_date": pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 1000, 20000), unit="D"),
                        "setting": rng.choice(["gp", "ae", "op"], 20000, p=[0.8, 0.15, 0.05])})
    idx = pd.DataFrame({"index_id": np.arange(n + 30), "person_id": persons + persons[:30],
                        "index_date": pd.Timestamp("2023-06-01") + pd.to_timedelta(rng.integers(0, 300, n + 30), unit="D")})
    idx["follow_start"] = idx["index_date"] - pd.to_timedelta(rng.integers(100, 700, len(idx)), unit="D")
    idx["follow_end"] = idx["index_date"] + pd.to_timedelta(rng.integers(-10, 500, len(idx)), unit="D")
    idx["follow_end"] = idx[["follow_end", "follow_start"]].max(axis=1)
    wins = [("pre", -365, -1), ("post", 0, 364), ("q", -91, -1), ("edge", 0, 0)]
    long = E.window_counts(act, idx, wins, engine="duckdb")
    want = long.pivot_table(index="index_id", columns=["setting", "window"], values="events", aggfunc="sum")
    for engine in ("duckdb", "pandas"):
        wide = E.window_counts_wide(act, idx, wins, engine=engine).set_index("index_id")
        for (s, w), col in want.items():
            assert (wide[f"{s}_{w}_events"] == col).all(), (engine, s, w)
        ex = long[long.setting == "gp"].pivot_table(index="index_id", columns="window", values="exposure_days", aggfunc="sum")
        for w in ex.columns:
            assert (wide[f"{w}_days"] == ex[w]).all(), (engine, w)


# ---------------------------------------------------------------------------------------------
# The binned path (event_offsets_sql + elementary intervals) against the row-level SQL it
# replaced, overlapping windows, boundaries and empty inputs
# ---------------------------------------------------------------------------------------------


def _old_sql_wide(activity, index, windows, settings=("gp", "ae")) -> pd.DataFrame:
    """window_counts_wide through the pre-binning SQL (window_counts_wide_sql: one conditional
    aggregate per window x setting), run on DuckDB: the reference for the new path."""
    idx = E._Index(index, ())
    bounds = [(lo, hi) for _, lo, hi in windows]
    res = E._run_sql(lambda d, iv, av: E.window_counts_wide_sql(d, bounds, settings, iv, av), activity, idx,
                     "duckdb", E._options("duckdb", None, "4GB", None, None)).to_pandas()
    names = {f"e_{k}_{w}": f"{s}_{windows[w][0]}_events" for w in range(len(windows)) for k, s in enumerate(settings)}
    names.update({f"x_{w}": f"{windows[w][0]}_days" for w in range(len(windows))})
    res = res.rename(columns=names)
    res["index_id"] = res["index_id"].astype(idx.index_id_dtype)
    cols = ["index_id", *[f"{s}_{w[0]}_events" for w in windows for s in settings], *[f"{w[0]}_days" for w in windows]]
    return res[cols].astype({c: "int64" for c in cols[1:]}).sort_values("index_id", kind="mergesort", ignore_index=True)


def _old_sql_long(activity, index, windows, settings=("gp", "ae")) -> pd.DataFrame:
    """window_counts through the pre-binning SQL (window_counts_sql: index x window grid)."""
    idx = E._Index(index, ())
    bounds = [(lo, hi) for _, lo, hi in windows]
    res = E._run_sql(lambda d, iv, av: E.window_counts_sql(d, bounds, settings, 0, iv, av), activity, idx,
                     "duckdb", E._options("duckdb", None, "4GB", None, None)).to_pandas()
    out = pd.DataFrame({"index_id": res["index_id"].astype(idx.index_id_dtype), "_w": res["w"], "_s": res["s"],
                        "events": res["events"].astype("int64"), "exposure_days": res["exposure_days"].astype("int64")})
    out = out.sort_values(["index_id", "_w", "_s"], kind="mergesort", ignore_index=True)
    out.insert(1, "window", pd.Series(np.array([w[0] for w in windows], dtype=object)[out["_w"]], dtype="str"))
    out.insert(2, "setting", pd.Series(np.array(settings, dtype=object)[out["_s"]], dtype="str"))
    return out.drop(columns=["_w", "_s"])


# overlapping, nested, identical, one-day, disjoint-with-gaps and out-of-range windows
OVERLAPPING = [
    ("pre_12m", -365, -1), ("pre_q1", -365, -274), ("pre_q4", -91, -1), ("last_month", -30, -1),
    ("match_q1", -365, -275), ("baseline", -183, -92), ("pre_6m", -183, -1), ("same_as_pre_6m", -183, -1),
    ("day_0", 0, 0), ("around", -3, 3), ("post_6m", 0, 182), ("post_12m", 0, 364),
    ("far_future", 2000, 2100), ("pre_2y", -730, -366),
]


def test_elementary_intervals_known_answer():
    breaks, spans = E.elementary_intervals([(-365, -1), (-91, -1), (0, 364)])
    assert breaks == [-365, -91, 0, 365]
    assert spans == [(0, 2), (1, 2), (2, 3)]
    # a gap between windows is a bin used by no window; identical windows share their bins
    breaks, spans = E.elementary_intervals([(-10, -5), (5, 9), (-10, -5)])
    assert breaks == [-10, -4, 5, 10] and spans == [(0, 1), (2, 3), (0, 1)]
    # every day of every window lies in exactly the window's bins
    breaks, spans = E.elementary_intervals([(lo, hi) for _, lo, hi in OVERLAPPING])
    for (_, lo, hi), (a, b) in zip(OVERLAPPING, spans):
        assert breaks[a] == lo and breaks[b] - 1 == hi


def test_new_path_equals_the_row_level_sql_on_the_random_extract(extract):
    activity, index, _ = extract
    wide = E.window_counts_wide(activity, index, OVERLAPPING)
    pd.testing.assert_frame_equal(wide, _old_sql_wide(activity, index, OVERLAPPING), check_exact=True)
    long = window_counts(activity, index, OVERLAPPING)
    pd.testing.assert_frame_equal(long, _old_sql_long(activity, index, OVERLAPPING), check_exact=True)
    pd.testing.assert_frame_equal(long, window_counts(activity, index, OVERLAPPING, engine="pandas"), check_exact=True)


def test_overlapping_windows_match_the_oracle(extract):
    """Nested and overlapping windows (quarters in a year, a window twice, one-day windows)
    against the brute-force definition, including every boundary day of the extract."""
    activity, index, no_events = extract
    twice = index["person_id"][index["person_id"].duplicated()]
    pick = index[index["person_id"].isin(twice) | (index["person_id"] == no_events)]
    pick = pd.concat([pick, index.iloc[::11]]).drop_duplicates("index_id")
    got = window_counts(activity, pick, OVERLAPPING)
    pd.testing.assert_frame_equal(got, brute_force_counts(activity, pick, OVERLAPPING).sort_values(
        "index_id", kind="mergesort", ignore_index=True), check_exact=True)
    wide = E.window_counts_wide(activity, pick, OVERLAPPING).set_index("index_id")
    assert (wide["gp_same_as_pre_6m_events"] == wide["gp_pre_6m_events"]).all()
    assert (wide["far_future_days"] == 0).all() and (wide["gp_far_future_events"] == 0).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_win=st.integers(1, 5))
def test_random_overlapping_windows_match_the_oracle(seed, n_win):
    rng = np.random.default_rng(seed)
    n_idx, n_act = int(rng.integers(1, 6)), int(rng.integers(0, 60))
    base = np.datetime64("2021-01-01", "D")
    d0 = base + rng.integers(0, 30, n_idx)
    fs = d0 + rng.integers(-40, 10, n_idx)
    fe = fs + rng.integers(0, 60, n_idx)
    index = pd.DataFrame({"index_id": pd.array([f"i{k}" for k in rng.permutation(n_idx)], dtype="str"),
                          "person_id": [f"P{k}" for k in rng.integers(0, 3, n_idx)],
                          "index_date": pd.to_datetime(d0), "follow_start": pd.to_datetime(fs),
                          "follow_end": pd.to_datetime(fe)})
    activity = pd.DataFrame({"person_id": pd.array([f"P{k}" for k in rng.integers(0, 4, n_act)], dtype="str"),
                             "activity_date": pd.to_datetime(base + rng.integers(-70, 100, n_act)),
                             "setting": pd.array(rng.choice(["gp", "ae", "op"], n_act), dtype="str")})
    los = rng.integers(-60, 40, n_win)
    windows = [(f"w{j}", int(lo), int(lo + rng.integers(0, 50))) for j, lo in enumerate(los)]
    expected = brute_force_counts(activity, index, windows).sort_values("index_id", kind="mergesort", ignore_index=True)
    pd.testing.assert_frame_equal(window_counts(activity, index, windows), expected, check_exact=True)
    pd.testing.assert_frame_equal(E.window_counts_wide(activity, index, windows),
                                  E.window_counts_wide(activity, index, windows, engine="pandas"), check_exact=True)


def test_wide_empty_inputs_and_people_without_events():
    idx = toy_index()
    # no activity at all: zero events, exposure as usual
    wide = E.window_counts_wide(toy_activity().iloc[:0], idx, STANDARD_WINDOWS)
    ref = E.window_counts_wide(toy_activity(), idx, STANDARD_WINDOWS)
    assert (wide.filter(like="_events") == 0).all().all()
    pd.testing.assert_frame_equal(wide.filter(like="_days"), ref.filter(like="_days"))
    # activity in settings not asked for only
    only_op = toy_activity().assign(setting="op")
    assert (E.window_counts_wide(only_op, idx, STANDARD_WINDOWS).filter(like="_events") == 0).all().all()
    # an index person with no activity rows, and an index row whose follow-up misses every window
    extra = pd.DataFrame({"index_id": [5, 6], "person_id": ["P7", "P1"],
                          "index_date": pd.to_datetime(["2021-01-01", "2021-01-01"]),
                          "follow_start": pd.to_datetime(["2015-01-01", "2023-01-01"]),
                          "follow_end": pd.to_datetime(["2030-01-01", "2023-06-01"])})
    idx2 = pd.concat([idx.drop(columns="group"), extra], ignore_index=True)
    got = E.window_counts_wide(toy_activity(), idx2, STANDARD_WINDOWS).set_index("index_id")
    assert (got.loc[[5, 6]].filter(like="_events") == 0).all().all()
    assert (got.loc[5].filter(like="_days") > 0).all() and (got.loc[6].filter(like="_days") == 0).all()
    pd.testing.assert_frame_equal(got.reset_index(), _old_sql_wide(toy_activity(), idx2, STANDARD_WINDOWS))
    # empty index
    empty = E.window_counts_wide(toy_activity(), idx.iloc[:0], STANDARD_WINDOWS)
    assert empty.empty and list(empty.columns) == list(ref.columns)


def test_output_sorted_by_index_id_whatever_the_input_order(extract):
    activity, index, _ = extract
    shuffled = index.sample(frac=1, random_state=3)
    pd.testing.assert_frame_equal(E.window_counts_wide(activity, shuffled, OVERLAPPING),
                                  E.window_counts_wide(activity, index, OVERLAPPING))
    ints = index.assign(index_id=np.arange(len(index))[::-1].astype("int64")).sample(frac=1, random_state=4)
    got = E.window_counts_wide(activity, ints, OVERLAPPING)
    assert got["index_id"].is_monotonic_increasing and got["index_id"].dtype == "int64"
    pd.testing.assert_frame_equal(got, _old_sql_wide(activity, ints, OVERLAPPING))


def test_monthly_equals_the_row_level_sql(extract, reference):
    """monthly_series (binned) equals the pre-binning SQL (per-row grid aggregated by group)."""
    activity, index, _ = extract
    idx = E._Index(index, ("group",))
    months = relative_months(12, 12)
    bounds = [(int(lo), int(hi)) for _, lo, hi in months.itertuples(index=False)]
    old = E._run_sql(lambda d, iv, av: E._monthly_sql(E.window_counts_sql(d, bounds, ("gp", "ae"), 1, iv, av), 1),
                     activity, idx, "duckdb", E._options("duckdb", None, "4GB", None, None)).to_pandas()
    old = old.rename(columns={"g0": "group"}).assign(month=lambda x: months["month"].to_numpy()[x["w"]])
    got = reference["monthly"].merge(old, on=["group", "month"], how="left", suffixes=("", "_old"))
    got = got[got["setting"] == np.where(got["s"] == 0, "gp", "ae")]
    assert len(got) == len(reference["monthly"])
    for c in ("events", "person_days", "n_at_risk"):
        assert (got[c] == got[f"{c}_old"]).all(), c


def test_event_offsets_sql_is_one_text_for_both_dialects():
    duck = E.event_offsets_sql("duckdb", -365, 364, ("gp", "ae"))
    spark = E.event_offsets_sql("spark", -365, 364, ("gp", "ae"))
    assert duck.replace(day_number_sql("activity_date", "duckdb"), "<DAY>") == spark.replace(
        day_number_sql("activity_date", "spark"), "<DAY>")
    with pytest.raises(ValueError, match="first_day"):
        E.event_offsets_sql("duckdb", 5, 1, ("gp",))


@pytest.mark.spark
def test_spark_wide_and_overlapping_windows_equal_duckdb(spark, extract, extract_parquet):
    activity, index, _ = extract
    got = E.window_counts_wide(activity, index, OVERLAPPING, engine="spark", spark=spark)
    pd.testing.assert_frame_equal(got, E.window_counts_wide(activity, index, OVERLAPPING), check_exact=True)
    act_glob = str(extract_parquet / "activity" / "*.parquet")
    got = window_counts(act_glob, index, OVERLAPPING, engine="spark", spark=spark)
    pd.testing.assert_frame_equal(got, window_counts(activity, index, OVERLAPPING), check_exact=True)
