"""Verbatim copy of spstudy.engine as it was before the speed work (commit f442b29), kept as the
"before" row of the window-counting benchmark (benchmarks/run.py) and as a reference that the
new engine must agree with. Frozen on purpose; not part of the spstudy package. The original
module docstring follows.

Event-level engine: GP and A&E events counted in windows around an index date.

What it does
------------
Two questions the service-use evaluation asks of the activity extract, answered the same
way on three engines:

* :func:`window_counts` - for every index row (a referred person at their referral date, or a
  comparator at a pseudo-index date) and every window (e.g. the 12 months before, the 12 months
  after, each pre-index quarter, the last month), how many GP appointments and A&E attendances
  fell in the window while the person was under follow-up, and how many days of the window
  were under follow-up (the exposure, the denominator of a rate).
* :func:`monthly_series` - the same, by relative month around the index date, summed over the
  index rows of each group, giving events and person-days at risk, so that a rate per 1,000
  person-years (:func:`per_1000_person_years`) can be plotted month by month (an interrupted
  time series / event-study picture).

Engines
-------
``engine='duckdb'`` (default)
    Embedded DuckDB, for a laptop or a VM: reads Parquet directly (paths, globs, lists or a
    directory), or a pandas DataFrame. ``threads`` defaults to the machine's cores and
    ``memory_limit`` (default ``'4GB'``) caps memory; DuckDB spills to ``temp_directory``
    (default: the system temp dir) beyond it.
``engine='spark'``
    Apache Spark through PySpark, for NHS England's secure data environments (Databricks) or any
    cluster. The session comes from :func:`spark_session`, which reuses an active session:

    - On Databricks, do nothing: the notebook's existing ``spark`` is active and is used (or
      pass ``spark=spark`` explicitly). Activity can be a Spark DataFrame, e.g.
      ``activity=spark.table('sde.gp_ae_activity')``, or Parquet paths (``dbfs:/...``,
      ``abfss://...``; globs are resolved by Spark).
    - On another cluster, start the session yourself before the first call, e.g.
      ``spark_session(master='spark://host:7077')`` or ``master='yarn'``, with extra settings
      in ``conf={'spark.executor.memory': '8g'}``.
    - Locally it starts ``local[2]`` with a 2 GB driver, UTC session time zone and 4 shuffle
      partitions (small data, small machine).
``engine='pandas'``
    A straightforward in-memory pandas implementation: the baseline for benchmarks and a third
    check in the equivalence tests. Fine for samples; the whole activity table is read.

DuckDB and Spark run the SAME SQL text (built by :func:`window_counts_sql`). The only
dialect-specific piece is :func:`day_number_sql`, the conversion of a date to a day number
(days since 1970-01-01); every other date comparison is integer arithmetic on day numbers.
The equivalence tests in ``tests/unit/test_engine.py`` run identical queries on all three engines
and require exactly equal results.

Conventions (units and denominators)
------------------------------------
* Day offsets are whole days relative to ``index_date`` (day 0). A window ``(name, start, end)``
  covers offsets ``start..end`` inclusive: ``('pre_12m', -365, -1)`` is the 365 days before the
  index date, ``('post_12m', 0, 364)`` the index date and the 364 days after.
* Follow-up is ``[follow_start, follow_end]`` inclusive (registration start; min of
  registration end or death and the end of the data). Events outside it are not counted.
* ``exposure_days`` = number of days of the window inside follow-up, 0 if none. It is the
  denominator for a rate (events per person-day); a row with ``exposure_days < window length``
  was not observed for the whole window.
* Relative month ``m`` covers day offsets ``t`` with ``30.4375*m <= t < 30.4375*(m+1)``, i.e.
  ``m = floor(t / 30.4375)`` (30.4375 = 365.25/12 = 487/16 exactly, computed in integers so it
  is exact on every engine). Months are 30 or 31 days long; months -12..-1 cover exactly offsets
  -365..-1 (= ``pre_12m``); months 0..11 cover offsets 0..365. See :func:`relative_months`.
* Person-years use 365.25 days per year.
* Each activity row is one event (two GP appointments on one day count twice). Rows with a
  ``setting`` not in ``settings``, a null date or a null person are ignored.
* Output rows are zero-filled: every index row appears for every window x setting, every
  ``by`` group present in the index appears for every month x setting.

Data contract
-------------
activity: ``person_id``, ``activity_date`` (date, or timestamp: the UTC calendar date is used),
``setting`` (``'gp'`` | ``'ae'``). index: ``index_id`` (unique, string or integer),
``person_id``, ``index_date``, ``follow_start``, ``follow_end``, plus pass-through columns used
as ``by`` groups (e.g. ``group``). A person may have several index rows.

Example
-------
>>> from spstudy.methods.engine import window_counts, STANDARD_WINDOWS
>>> counts = window_counts('data/extracts/activity/*.parquet', index_df, STANDARD_WINDOWS)
>>> counts.pivot_table(index='index_id', columns=['window', 'setting'], values='events')
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "DAYS_PER_MONTH",
    "DAYS_PER_YEAR",
    "ENGINES",
    "STANDARD_WINDOWS",
    "day_number_sql",
    "monthly_series",
    "per_1000_person_years",
    "relative_months",
    "spark_session",
    "window_counts",
    "window_counts_sql",
]

ENGINES = ("duckdb", "spark", "pandas")
DIALECTS = ("duckdb", "spark")

#: Days per year for person-years (Julian year).
DAYS_PER_YEAR = 365.25
#: Length of a relative month in days: 365.25 / 12 = 487 / 16 (exact in binary floating point).
DAYS_PER_MONTH = 30.4375
_MONTH_NUM, _MONTH_DEN = 487, 16  # DAYS_PER_MONTH as an exact fraction

#: Windows used by the evaluation (inclusive day offsets relative to the index date).
STANDARD_WINDOWS: tuple[tuple[str, int, int], ...] = (
    ("pre_12m", -365, -1),
    ("pre_q1", -365, -274),
    ("pre_q2", -273, -183),
    ("pre_q3", -182, -92),
    ("pre_q4", -91, -1),
    ("last_month", -30, -1),
    ("post_12m", 0, 364),
)

ACTIVITY_COLUMNS = ("person_id", "activity_date", "setting")
INDEX_COLUMNS = ("index_id", "person_id", "index_date", "follow_start", "follow_end")
_SETTING_RE = re.compile(r"^[A-Za-z0-9_]+$")


# ---------------------------------------------------------------------------------------------
# Dialect shim (the only engine-specific SQL)
# ---------------------------------------------------------------------------------------------

_DAY_NUMBER_SQL = {
    # date_diff counts calendar-day boundaries between the two dates
    "duckdb": "CAST(date_diff('day', DATE '1970-01-01', CAST({expr} AS DATE)) AS INTEGER)",
    # datediff(end, start) = end - start in days
    "spark": "datediff(CAST({expr} AS DATE), DATE '1970-01-01')",
}


def day_number_sql(expr: str, dialect: str) -> str:
    """SQL for the day number of a date expression: whole days since 1970-01-01 (an INTEGER).

    The one dialect-specific piece of the engine. Timestamps are cast to their calendar date
    first (in the session time zone; :func:`spark_session` and the DuckDB connection use UTC).
    """
    if dialect not in _DAY_NUMBER_SQL:
        raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    return _DAY_NUMBER_SQL[dialect].format(expr=expr)


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    return engine


def _check_windows(windows: Sequence) -> list[tuple[str, int, int]]:
    """Validate ``windows`` as (name, start_day, end_day) with integer offsets, start <= end."""
    if isinstance(windows, (str, bytes)) or not isinstance(windows, Sequence) or not windows:
        raise ValueError("windows must be a non-empty list of (name, start_day, end_day) tuples")
    out = []
    for w in windows:
        if not isinstance(w, Sequence) or isinstance(w, (str, bytes)) or len(w) != 3:
            raise ValueError(f"windows: each window must be (name, start_day, end_day), got {w!r}")
        name, lo, hi = w
        if not isinstance(name, str) or not name:
            raise ValueError(f"windows: window name must be a non-empty string, got {name!r}")
        for v in (lo, hi):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"windows: offsets must be integers (days), got {w!r}")
        if lo > hi:
            raise ValueError(f"windows: start_day > end_day in {w!r}")
        if abs(lo) > 100_000 or abs(hi) > 100_000:
            raise ValueError(f"windows: offsets beyond +/-100000 days in {w!r}")
        out.append((name, int(lo), int(hi)))
    names = [w[0] for w in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"windows: duplicate window names {dup}")
    return out


def _check_settings(settings: Sequence[str]) -> tuple[str, ...]:
    if isinstance(settings, str):
        settings = (settings,)
    settings = tuple(settings)
    bad = [s for s in settings if not isinstance(s, str) or not _SETTING_RE.match(s)]
    if not settings or bad:
        raise ValueError(
            "settings must be a non-empty list of setting codes (letters, digits, _), "
            f"offending values: {bad or list(settings)}"
        )
    dup = sorted({s for s in settings if settings.count(s) > 1})
    if dup:
        raise ValueError(f"settings: duplicate values {dup}")
    return settings


def _check_by(by: Sequence[str] | str | None) -> tuple[str, ...]:
    if by is None:
        return ()
    if isinstance(by, str):
        by = (by,)
    by = tuple(by)
    reserved = {"month", "setting", "events", "person_days", "n_at_risk"}
    bad = [b for b in by if not isinstance(b, str) or b in reserved]
    if bad:
        raise ValueError(f"by: column names must be strings and not one of {sorted(reserved)}: {bad}")
    if len(set(by)) != len(by):
        raise ValueError(f"by: duplicate columns {list(by)}")
    return by


def relative_months(months_before: int = 12, months_after: int = 12) -> pd.DataFrame:
    """Relative months ``-months_before .. months_after-1`` with their inclusive day offsets.

    Month ``m`` covers offsets ``t`` with ``30.4375*m <= t < 30.4375*(m+1)`` (``t`` in days from
    the index date), so ``start_day = ceil(30.4375*m)`` and ``end_day = ceil(30.4375*(m+1)) - 1``
    (computed exactly in integers: 30.4375 = 487/16). Returns columns month, start_day, end_day.
    """
    for name, v in (("months_before", months_before), ("months_after", months_after)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 or v > 1200:
            raise ValueError(f"{name} must be an integer in 0..1200, got {v!r}")
    if months_before + months_after == 0:
        raise ValueError("months_before + months_after must be at least 1")
    months = list(range(-int(months_before), int(months_after)))

    def ceil_day(m: int) -> int:
        return -((-_MONTH_NUM * m) // _MONTH_DEN)

    return pd.DataFrame(
        {
            "month": pd.array(months, dtype="int64"),
            "start_day": pd.array([ceil_day(m) for m in months], dtype="int64"),
            "end_day": pd.array([ceil_day(m + 1) - 1 for m in months], dtype="int64"),
        }
    )


def per_1000_person_years(events, person_days):
    """Rate per 1,000 person-years: ``1000 * events / (person_days / 365.25)``.

    NaN where ``person_days`` is 0. Works on scalars, arrays and Series. (Intervals for rates
    belong to the statistics module: Byars / exact Poisson, per the design conventions.)
    """
    events = np.asarray(events, dtype="float64") if not isinstance(events, pd.Series) else events.astype("float64")
    pdays = person_days.astype("float64") if isinstance(person_days, pd.Series) else np.asarray(person_days, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1000.0 * events * DAYS_PER_YEAR / pdays
    return out.where(pdays > 0) if isinstance(out, pd.Series) else np.where(pdays > 0, out, np.nan)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _is_spark_df(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyspark.sql") and hasattr(obj, "createOrReplaceTempView")


def _as_path_list(source: Any, arg: str) -> list[str] | None:
    """Return a list of path strings if ``source`` is a path / glob / list of them, else None."""
    if isinstance(source, (str, os.PathLike)):
        return [os.fspath(source)]
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return [os.fspath(s) for s in source]
    if isinstance(source, (list, tuple)):
        raise ValueError(f"{arg}: a list must hold Parquet paths (str or Path), got {source!r}")
    return None


def _expand_local(paths: list[str], arg: str) -> list[str]:
    """Expand globs and directories to a sorted list of local Parquet files (pandas engine)."""
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            hits = sorted(glob.glob(os.path.join(p, "**", "*.parquet"), recursive=True))
        elif glob.has_magic(p):
            hits = sorted(glob.glob(p, recursive=True))
        else:
            hits = [p] if os.path.exists(p) else []
        if not hits:
            raise ValueError(f"{arg}: no Parquet files found at {p!r}")
        files.extend(hits)
    return files


def _duckdb_paths(paths: list[str]) -> list[str]:
    return [os.path.join(p, "**", "*.parquet") if os.path.isdir(p) else p for p in paths]


def _missing(columns: Sequence[str], required: Sequence[str], arg: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"{arg}: missing required columns {missing}; found {list(columns)}")


def _dates_to_date32(s: pd.Series, arg: str, col: str) -> pa.Array:
    """Convert a pandas column of dates / timestamps / ISO 8601 strings to an Arrow date32 array.

    tz-aware timestamps are converted to UTC first; times of day are dropped (floor to date).
    Strings must be ISO 8601 ('2021-02-01'); other formats raise a ValueError.
    """
    try:
        if isinstance(s.dtype, pd.ArrowDtype) and pa.types.is_date(s.dtype.pyarrow_dtype):
            return pa.array(s).cast(pa.date32())
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        elif not pd.api.types.is_datetime64_dtype(s.dtype):
            # ISO 8601 only: '01/02/2021' is ambiguous (UK day-first vs US month-first)
            s = pd.to_datetime(s, format="ISO8601")
            if isinstance(s.dtype, pd.DatetimeTZDtype):
                s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    except (ValueError, TypeError, pd.errors.ParserError) as exc:
        raise ValueError(f"{arg}: column {col!r} is not a date column ({exc})") from exc
    days = s.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    return pa.array(days, from_pandas=True, type=pa.date32())


def _activity_frame_to_arrow(activity: pd.DataFrame) -> pa.Table:
    _missing(activity.columns, ACTIVITY_COLUMNS, "activity")
    return pa.table(
        {
            "person_id": pa.array(activity["person_id"], from_pandas=True),
            "activity_date": _dates_to_date32(activity["activity_date"], "activity", "activity_date"),
            "setting": pa.array(activity["setting"], from_pandas=True),
        }
    )


class _Index:
    """The validated index table, ready for any engine.

    ``table`` (Arrow) has index_id, person_id, d0, fs, fe (int32 day numbers) and the ``by``
    columns renamed g0, g1, ... (so the SQL never needs to quote user column names).
    """

    def __init__(self, index: Any, by: tuple[str, ...]):
        if isinstance(index, pd.DataFrame):
            df = index
        elif _is_spark_df(index):
            df = _spark_to_pandas(index)
        else:
            paths = _as_path_list(index, "index")
            if paths is None:
                raise ValueError(
                    f"index must be a pandas DataFrame or Parquet path(s), got {type(index).__name__}"
                )
            df = pq.read_table(_expand_local(paths, "index")).to_pandas()
        _missing(df.columns, INDEX_COLUMNS + by, "index")
        self.by = by
        self.n = len(df)
        for col in ("index_id", "person_id"):
            nulls = df[col].isna()
            if nulls.any():
                raise ValueError(f"index: column {col!r} has {int(nulls.sum())} null value(s)")
        ids = df["index_id"]
        if not (pd.api.types.is_integer_dtype(ids.dtype) or pd.api.types.is_string_dtype(ids.dtype)):
            raise ValueError(f"index: index_id must be integer or string, got dtype {ids.dtype}")
        if pd.api.types.is_string_dtype(ids.dtype) and not ids.map(lambda v: isinstance(v, str)).all():
            raise ValueError("index: index_id mixes strings and non-strings; use one type")
        dup = ids[ids.duplicated()].unique().tolist()
        if len(dup):
            raise ValueError(f"index: index_id must be unique, duplicated: {dup[:10]}")
        self.index_id_dtype = ids.dtype
        days = {}
        for col, short in (("index_date", "d0"), ("follow_start", "fs"), ("follow_end", "fe")):
            arr = _dates_to_date32(df[col], "index", col)
            if arr.null_count:
                bad = ids[np.asarray(arr.is_null())].tolist()[:10]
                raise ValueError(f"index: column {col!r} has null/unparseable dates for index_id {bad}")
            days[short] = arr.cast(pa.int32())
        backwards = np.asarray(pc.greater(days["fs"], days["fe"]))
        if backwards.any():
            bad = ids[backwards].tolist()[:10]
            raise ValueError(f"index: follow_start is after follow_end for index_id {bad}")
        cols = {
            "index_id": pa.array(ids, from_pandas=True),
            "person_id": pa.array(df["person_id"], from_pandas=True),
            **days,
        }
        self.by_dtypes = {}
        for k, b in enumerate(by):
            col = df[b]
            self.by_dtypes[b] = col.dtype
            if isinstance(col.dtype, pd.CategoricalDtype):
                col = col.astype(col.cat.categories.dtype)
            cols[f"g{k}"] = pa.array(col, from_pandas=True)
        self.table = pa.table(cols)
        self.persons = pc.unique(self.table["person_id"])


def _type_kind(t: Any) -> str:
    """'string', 'integer' or another label, for an Arrow type or a Spark DataType."""
    if isinstance(t, pa.DataType):
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return "string"
        return "integer" if pa.types.is_integer(t) else str(t)
    name = t.typeName()  # Spark DataType
    if name in ("string", "varchar", "char"):
        return "string"
    return "integer" if name in ("long", "integer", "short", "byte") else name


def _check_person_types(act_type: Any, idx_type: Any) -> None:
    if _type_kind(act_type) != _type_kind(idx_type):
        raise ValueError(
            f"person_id types differ: activity has {act_type}, index has {idx_type}; "
            "cast one so they match"
        )


# ---------------------------------------------------------------------------------------------
# The shared SQL
# ---------------------------------------------------------------------------------------------


def window_counts_sql(
    dialect: str,
    windows: Sequence[tuple[int, int]],
    settings: Sequence[str],
    n_by: int = 0,
    index_view: str = "idx_in",
    activity_view: str = "activity_in",
) -> str:
    """The SQL (one text for DuckDB and Spark) giving events and exposure per index row.

    Inputs: ``index_view`` with index_id, person_id, d0, fs, fe (day numbers, see
    :func:`day_number_sql`) and g0..g{n_by-1}; ``activity_view`` with person_id, activity_date,
    setting. ``windows`` is a list of inclusive (start_day, end_day) offsets, referred to by their
    position ``w``; settings by their position ``s``. Output columns: index_id, w, s, g0.., events,
    exposure_days (BIGINT). Every index row x window x setting appears (zero-filled).

    Plan: (1) semi-join activity to the persons in the index and keep only wanted settings;
    (2) equi-join on person_id with a range filter on the dates (within follow-up and within the
    span of all windows); (3) range-join the offsets to the small window table and count;
    (4) left-join the counts onto the index x window x setting grid, which also carries exposure.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    settings = _check_settings(settings)
    win_rows = ", ".join(f"({k}, {int(lo)}, {int(hi)})" for k, (lo, hi) in enumerate(windows))
    st_rows = ", ".join(f"({k})" for k in range(len(settings)))
    set_list = ", ".join(f"'{s}'" for s in settings)
    set_case = " ".join(f"WHEN '{s}' THEN {k}" for k, s in enumerate(settings))
    lo_min = min(int(lo) for lo, _ in windows)
    hi_max = max(int(hi) for _, hi in windows)
    g_idx = "".join(f", g{k}" for k in range(n_by))
    g_grid = "".join(f", i.g{k}" for k in range(n_by))
    g_out = "".join(f", g.g{k}" for k in range(n_by))
    day = day_number_sql("activity_date", dialect)
    return f"""
WITH idx AS (
    SELECT index_id, person_id, d0, fs, fe{g_idx} FROM {index_view}
),
win AS (
    SELECT * FROM (VALUES {win_rows}) AS wt(w, lo, hi)
),
st AS (
    SELECT * FROM (VALUES {st_rows}) AS stt(s)
),
act AS (
    SELECT person_id, {day} AS d, CASE setting {set_case} END AS s
    FROM {activity_view}
    WHERE setting IN ({set_list})
      AND person_id IN (SELECT person_id FROM idx)
),
hit AS (
    SELECT i.index_id, a.s, a.d - i.d0 AS t
    FROM act a
    JOIN idx i ON a.person_id = i.person_id
    WHERE a.d >= i.fs AND a.d <= i.fe
      AND a.d >= i.d0 + ({lo_min}) AND a.d <= i.d0 + ({hi_max})
),
ev AS (
    SELECT h.index_id, wn.w, h.s, COUNT(*) AS events
    FROM hit h
    JOIN win wn ON h.t >= wn.lo AND h.t <= wn.hi
    GROUP BY h.index_id, wn.w, h.s
),
grid AS (
    SELECT i.index_id, wn.w, st.s{g_grid},
           GREATEST(0, LEAST(i.fe, i.d0 + wn.hi) - GREATEST(i.fs, i.d0 + wn.lo) + 1) AS exposure_days
    FROM idx i CROSS JOIN win wn CROSS JOIN st
)
SELECT g.index_id, g.w, g.s{g_out},
       CAST(COALESCE(e.events, 0) AS BIGINT) AS events,
       CAST(g.exposure_days AS BIGINT) AS exposure_days
FROM grid g
LEFT JOIN ev e ON e.index_id = g.index_id AND e.w = g.w AND e.s = g.s
"""


def window_counts_wide_sql(
    dialect: str,
    windows: Sequence[tuple[int, int]],
    settings: Sequence[str],
    index_view: str = "idx_in",
    activity_view: str = "activity_in",
) -> str:
    """The same counts as :func:`window_counts_sql`, one row per index row (wide form).

    Columns: index_id, ``e_<s>_<w>`` (events of setting position s in window position w) and
    ``x_<w>`` (exposure days of window w). Counting is done by conditional aggregation over the
    events that fall in any window, so no index x window x setting grid is built: this is what
    lets it scale to millions of index rows. One text for DuckDB and Spark (day shim only).
    """
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    settings = _check_settings(settings)
    set_list = ", ".join(f"'{s}'" for s in settings)
    set_case = " ".join(f"WHEN '{s}' THEN {k}" for k, s in enumerate(settings))
    lo_min = min(int(lo) for lo, _ in windows)
    hi_max = max(int(hi) for _, hi in windows)
    day = day_number_sql("activity_date", dialect)
    sums = ",\n           ".join(
        f"SUM(CASE WHEN s = {k} AND t >= {int(lo)} AND t <= {int(hi)} THEN 1 ELSE 0 END) AS e_{k}_{w}"
        for w, (lo, hi) in enumerate(windows) for k in range(len(settings)))
    outs = ",\n       ".join(
        [f"CAST(COALESCE(a.e_{k}_{w}, 0) AS BIGINT) AS e_{k}_{w}" for w in range(len(windows)) for k in range(len(settings))]
        + [f"CAST(GREATEST(0, LEAST(i.fe, i.d0 + ({int(hi)})) - GREATEST(i.fs, i.d0 + ({int(lo)})) + 1) AS BIGINT) AS x_{w}"
           for w, (lo, hi) in enumerate(windows)])
    return f"""
WITH idx AS (
    SELECT index_id, person_id, d0, fs, fe FROM {index_view}
),
act AS (
    SELECT person_id, {day} AS d, CASE setting {set_case} END AS s
    FROM {activity_view}
    WHERE setting IN ({set_list})
),
hit AS (
    SELECT i.index_id, a.s, a.d - i.d0 AS t
    FROM act a
    JOIN idx i ON a.person_id = i.person_id
    WHERE a.d >= i.fs AND a.d <= i.fe
      AND a.d >= i.d0 + ({lo_min}) AND a.d <= i.d0 + ({hi_max})
),
agg AS (
    SELECT index_id,
           {sums}
    FROM hit
    GROUP BY index_id
)
SELECT i.index_id,
       {outs}
FROM idx i
LEFT JOIN agg a ON a.index_id = i.index_id
"""


def _monthly_sql(per_row_sql: str, n_by: int) -> str:
    """Aggregate the per-index-row query by group, month and setting (same text both dialects)."""
    g = "".join(f"g{k}, " for k in range(n_by))
    return f"""
SELECT {g}w, s,
       CAST(SUM(events) AS BIGINT) AS events,
       CAST(SUM(exposure_days) AS BIGINT) AS person_days,
       CAST(SUM(CASE WHEN exposure_days > 0 THEN 1 ELSE 0 END) AS BIGINT) AS n_at_risk
FROM ({per_row_sql}) per_row
GROUP BY {g}w, s
"""


# ---------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _run_duckdb(
    sql_for, activity: Any, idx: _Index, threads: int | None, memory_limit: str, temp_directory: str | None
) -> pa.Table:
    import duckdb

    if temp_directory is None:
        temp_directory = os.path.join(tempfile.gettempdir(), "spstudy_duckdb")
    con = duckdb.connect(
        config={
            "threads": int(threads or _default_threads()),
            "memory_limit": str(memory_limit),
            "temp_directory": temp_directory,
        }
    )
    try:
        try:
            con.execute("SET TimeZone = 'UTC'")
        except duckdb.Error:  # pragma: no cover - ICU not built in
            pass
        con.register("idx_in", idx.table)
        if isinstance(activity, pd.DataFrame):
            con.register("activity_in", _activity_frame_to_arrow(activity))
        else:
            paths = _as_path_list(activity, "activity")
            if paths is None:
                raise ValueError(
                    "activity must be a pandas DataFrame or Parquet path(s) for engine='duckdb', "
                    f"got {type(activity).__name__}"
                )
            plist = ", ".join("'" + p.replace("'", "''") + "'" for p in _duckdb_paths(paths))
            try:
                con.execute(f"CREATE VIEW activity_in AS SELECT * FROM read_parquet([{plist}])")
                cols = [r[0] for r in con.execute("DESCRIBE activity_in").fetchall()]
            except duckdb.Error as exc:
                raise ValueError(f"activity: cannot read Parquet {paths!r}: {exc}") from exc
            _missing(cols, ACTIVITY_COLUMNS, "activity")
        act_type = con.sql("SELECT person_id FROM activity_in LIMIT 0").to_arrow_table().schema.field(0).type
        _check_person_types(act_type, idx.table.schema.field("person_id").type)
        return con.sql(sql_for("duckdb", "idx_in", "activity_in")).to_arrow_table()
    finally:
        con.close()


_PANDAS3_WARNING = "PySpark does not yet fully support pandas"


def spark_session(master: str = "local[2]", app_name: str = "spstudy", conf: dict | None = None):
    """Return the active Spark session, or start one.

    Reuse: if a session is already active (Databricks' ``spark``, or one you started), it is
    returned unchanged and ``master``/``conf`` are ignored. Otherwise a session is built with
    ``master`` (``'local[2]'``; a cluster URL such as ``'spark://host:7077'``, ``'yarn'`` or
    ``'k8s://...'`` to use a cluster) and these defaults, each overridable through ``conf``:
    ``spark.driver.memory=2g``, ``spark.sql.session.timeZone=UTC`` (dates of timestamps are
    taken in UTC), Arrow transfer on, and for local masters 4 shuffle partitions, no UI and a
    loopback driver address.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = {
        "spark.driver.memory": "2g",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    if master.startswith("local"):
        settings.update(
            {
                "spark.sql.shuffle.partitions": "4",
                "spark.ui.enabled": "false",
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.ui.showConsoleProgress": "false",
            }
        )
    settings.update({str(k): str(v) for k, v in (conf or {}).items()})
    builder = SparkSession.builder.master(master).appName(app_name)
    for k, v in settings.items():
        builder = builder.config(k, v)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS3_WARNING, category=FutureWarning)
        session = builder.getOrCreate()
    if master.startswith("local"):
        # Spark logs a harmless FileNotFoundException stack trace for every glob path it
        # checks for a streaming-sink metadata folder; keep local notebooks readable.
        session.sparkContext.setLogLevel("ERROR")
    return session


def _spark_from_arrow(spark, table: pa.Table):
    try:
        return spark.createDataFrame(table)  # Spark >= 4.0 takes Arrow directly
    except (TypeError, ValueError, AttributeError):  # pragma: no cover - Spark 3.x
        return spark.createDataFrame(table.to_pandas())


def _spark_to_arrow(sdf) -> pa.Table:
    if hasattr(sdf, "toArrow"):
        return sdf.toArrow()
    return pa.Table.from_pandas(sdf.toPandas(), preserve_index=False)  # pragma: no cover - Spark 3.x


def _spark_to_pandas(sdf) -> pd.DataFrame:
    return _spark_to_arrow(sdf).to_pandas()


def _run_spark(sql_for, activity: Any, idx: _Index, spark) -> pa.Table:
    with warnings.catch_warnings():
        # PySpark warns about pandas >= 3 on conversions; this path moves data through Arrow.
        warnings.filterwarnings("ignore", message=_PANDAS3_WARNING, category=FutureWarning)
        spark = spark if spark is not None else spark_session()
        if _is_spark_df(activity):
            act_df = activity
        elif isinstance(activity, pd.DataFrame):
            act_df = _spark_from_arrow(spark, _activity_frame_to_arrow(activity))
        else:
            paths = _as_path_list(activity, "activity")
            if paths is None:
                raise ValueError(
                    "activity must be a pandas or Spark DataFrame or Parquet path(s) for "
                    f"engine='spark', got {type(activity).__name__}"
                )
            try:
                act_df = spark.read.parquet(*paths)
            except Exception as exc:  # AnalysisException: path does not exist
                raise ValueError(f"activity: cannot read Parquet {paths!r}: {exc}") from exc
        _missing(act_df.columns, ACTIVITY_COLUMNS, "activity")
        act_df = act_df.select(*ACTIVITY_COLUMNS)
        _check_person_types(act_df.schema["person_id"].dataType, idx.table.schema.field("person_id").type)
        tag = uuid.uuid4().hex[:12]
        idx_view, act_view = f"spstudy_idx_{tag}", f"spstudy_act_{tag}"
        _spark_from_arrow(spark, idx.table).createOrReplaceTempView(idx_view)
        act_df.createOrReplaceTempView(act_view)
        try:
            return _spark_to_arrow(spark.sql(sql_for("spark", idx_view, act_view)))
        finally:
            spark.catalog.dropTempView(idx_view)
            spark.catalog.dropTempView(act_view)


def _pandas_activity(activity: Any, idx: _Index, settings: tuple[str, ...]) -> pd.DataFrame:
    """Activity for the pandas engine: person_id, d (day number), s (setting position).

    Straightforward: read the whole table, then keep wanted settings and index persons.
    """
    if isinstance(activity, pd.DataFrame):
        table = _activity_frame_to_arrow(activity)
    else:
        paths = _as_path_list(activity, "activity")
        if paths is None:
            raise ValueError(
                "activity must be a pandas DataFrame or Parquet path(s) for engine='pandas', "
                f"got {type(activity).__name__}"
            )
        files = _expand_local(paths, "activity")
        schema = pq.read_schema(files[0])
        _missing(schema.names, ACTIVITY_COLUMNS, "activity")
        table = pq.read_table(files, columns=list(ACTIVITY_COLUMNS))
        table = table.set_column(
            1, "activity_date", table["activity_date"].cast(pa.date32())
        )
    _check_person_types(table.schema.field("person_id").type, idx.table.schema.field("person_id").type)
    df = pd.DataFrame(
        {
            "person_id": table["person_id"].to_pandas(),
            "d": table["activity_date"].cast(pa.int32()).to_pandas(),
            "setting": table["setting"].to_pandas(),
        }
    )
    df = df[df["setting"].isin(settings) & df["person_id"].isin(idx.persons.to_pandas()) & df["d"].notna()]
    df["s"] = df["setting"].map({s: k for k, s in enumerate(settings)}).astype("int64")
    df["d"] = df["d"].astype("int64")
    return df[["person_id", "d", "s"]]


def _run_pandas(activity: Any, idx: _Index, windows, settings, n_by: int) -> pd.DataFrame:
    """Per-index-row events and exposure in plain pandas (mirrors :func:`window_counts_sql`)."""
    act = _pandas_activity(activity, idx, settings)
    ix = idx.table.to_pandas()
    for c in ("d0", "fs", "fe"):
        ix[c] = ix[c].astype("int64")
    m = act.merge(ix[["index_id", "person_id", "d0", "fs", "fe"]], on="person_id", how="inner")
    m = m[(m["d"] >= m["fs"]) & (m["d"] <= m["fe"])]
    t = m["d"] - m["d0"]
    counts = []
    for w, (lo, hi) in enumerate(windows):
        sel = m[(t >= lo) & (t <= hi)]
        c = sel.groupby(["index_id", "s"]).size().rename("events").reset_index()
        c["w"] = w
        counts.append(c)
    ev = pd.concat(counts, ignore_index=True)
    win = pd.DataFrame({"w": range(len(windows)), "lo": [lo for lo, _ in windows], "hi": [hi for _, hi in windows]})
    st = pd.DataFrame({"s": range(len(settings))})
    gcols = [f"g{k}" for k in range(n_by)]
    grid = ix[["index_id", "d0", "fs", "fe", *gcols]].merge(win, how="cross").merge(st, how="cross")
    upper = np.minimum(grid["fe"], grid["d0"] + grid["hi"])
    lower = np.maximum(grid["fs"], grid["d0"] + grid["lo"])
    grid["exposure_days"] = np.maximum(0, upper - lower + 1).astype("int64")
    out = grid.merge(ev, on=["index_id", "w", "s"], how="left")
    out["events"] = out["events"].fillna(0).astype("int64")
    return out[["index_id", "w", "s", *gcols, "events", "exposure_days"]]


def _execute(activity, idx: _Index, windows, settings, engine, monthly: bool, options: dict) -> pd.DataFrame:
    """Run the per-row query (or its monthly aggregation) on the chosen engine; pandas out."""
    n_by = len(idx.by) if monthly else 0
    bounds = [(lo, hi) for _, lo, hi in windows]

    def sql_for(dialect: str, index_view: str, activity_view: str) -> str:
        per_row = window_counts_sql(dialect, bounds, settings, n_by, index_view, activity_view)
        return _monthly_sql(per_row, n_by) if monthly else per_row

    if engine in ("duckdb", "spark"):
        res = _run_sql(sql_for, activity, idx, engine, options)
    else:
        res = _run_pandas(activity, idx, bounds, settings, n_by)
        if monthly:
            gcols = [f"g{k}" for k in range(n_by)]
            res = res.assign(n_at_risk=(res["exposure_days"] > 0).astype("int64"))
            res = (
                res.groupby([*gcols, "w", "s"], dropna=False, sort=False)
                .agg(events=("events", "sum"), person_days=("exposure_days", "sum"), n_at_risk=("n_at_risk", "sum"))
                .reset_index()
            )
    return res


def _run_sql(sql_for, activity, idx: _Index, engine: str, options: dict) -> pd.DataFrame:
    """Run ``sql_for(dialect, index_view, activity_view)`` on DuckDB or Spark; pandas out."""
    if engine == "duckdb":
        return _run_duckdb(sql_for, activity, idx, options.get("threads"), options.get("memory_limit", "4GB"),
                           options.get("temp_directory")).to_pandas()
    return _run_spark(sql_for, activity, idx, options.get("spark")).to_pandas()


def _options(engine, threads, memory_limit, temp_directory, spark) -> dict:
    if spark is not None and engine != "spark":
        raise ValueError(f"spark= was given but engine={engine!r}; use engine='spark'")
    return {"threads": threads, "memory_limit": memory_limit, "temp_directory": temp_directory, "spark": spark}


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def window_counts(
    activity: Any,
    index: Any,
    windows: Sequence[tuple[str, int, int]] = STANDARD_WINDOWS,
    engine: str = "duckdb",
    settings: Sequence[str] = ("gp", "ae"),
    *,
    threads: int | None = None,
    memory_limit: str = "4GB",
    temp_directory: str | None = None,
    spark: Any = None,
) -> pd.DataFrame:
    """Events and exposure per index row, window and setting (long form).

    Parameters
    ----------
    activity : pandas DataFrame, Parquet path / glob / directory / list of them, or (Spark
        engine only) a Spark DataFrame; columns person_id, activity_date, setting.
    index : pandas DataFrame or Parquet path(s); columns index_id (unique), person_id,
        index_date, follow_start, follow_end.
    windows : list of (name, start_day, end_day): inclusive day offsets from index_date.
    engine : 'duckdb' | 'spark' | 'pandas'.
    settings : setting codes to count, in output order.
    threads, memory_limit, temp_directory : DuckDB resources (threads default: all cores).
    spark : SparkSession to use (default :func:`spark_session`).

    Returns
    -------
    DataFrame with columns index_id, window, setting, events (int64: activity rows of that
    setting with index_date+start_day <= date <= index_date+end_day and
    follow_start <= date <= follow_end), exposure_days (int64: days of the window inside
    [follow_start, follow_end], 0 if none). One row per index row x window x setting, sorted by
    index_id, then window and setting in the order given.
    """
    engine = _check_engine(engine)
    windows = _check_windows(windows)
    settings = _check_settings(settings)
    options = _options(engine, threads, memory_limit, temp_directory, spark)
    idx = _Index(index, ())
    if idx.n == 0:
        res = pd.DataFrame({"index_id": [], "w": [], "s": [], "events": [], "exposure_days": []})
    else:
        res = _execute(activity, idx, windows, settings, engine, False, options)
    out = pd.DataFrame(
        {
            "index_id": res["index_id"].astype(idx.index_id_dtype),
            "_w": res["w"].astype("int64"),
            "_s": res["s"].astype("int64"),
            "events": res["events"].astype("int64"),
            "exposure_days": res["exposure_days"].astype("int64"),
        }
    )
    out = out.sort_values(["index_id", "_w", "_s"], kind="mergesort", ignore_index=True)
    names = np.array([w[0] for w in windows], dtype=object)
    setting_names = np.array(settings, dtype=object)
    out.insert(1, "window", pd.Series(names[out["_w"].to_numpy()], dtype="str"))
    out.insert(2, "setting", pd.Series(setting_names[out["_s"].to_numpy()], dtype="str"))
    return out.drop(columns=["_w", "_s"])


def window_counts_wide(
    activity: Any,
    index: Any,
    windows: Sequence[tuple[str, int, int]] = STANDARD_WINDOWS,
    engine: str = "duckdb",
    settings: Sequence[str] = ("gp", "ae"),
    *,
    threads: int | None = None,
    memory_limit: str = "4GB",
    temp_directory: str | None = None,
    spark: Any = None,
) -> pd.DataFrame:
    """:func:`window_counts` in wide form: one row per index row, sorted by index_id, with
    ``<setting>_<window>_events`` and ``<window>_days`` columns (same counting rules).

    DuckDB and Spark run :func:`window_counts_wide_sql`; the pandas engine pivots its long result.
    Use this for large index tables (the comparator pool): it never materialises the
    index x window x setting grid.
    """
    engine = _check_engine(engine)
    windows = _check_windows(windows)
    settings = _check_settings(settings)
    options = _options(engine, threads, memory_limit, temp_directory, spark)
    idx = _Index(index, ())
    ev_cols = [f"{s}_{w[0]}_events" for w in windows for s in settings]
    day_cols = [f"{w[0]}_days" for w in windows]
    if idx.n == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in ["index_id", *ev_cols, *day_cols]})
    bounds = [(lo, hi) for _, lo, hi in windows]
    if engine == "pandas":
        long = window_counts(activity, index, windows, "pandas", settings)
        ev = long.pivot_table(index="index_id", columns=["setting", "window"], values="events", aggfunc="sum", sort=False)
        ev.columns = [f"{s_}_{w_}_events" for s_, w_ in ev.columns]
        ex = long[long["setting"] == settings[0]].pivot_table(index="index_id", columns="window", values="exposure_days", aggfunc="sum", sort=False)
        ex.columns = [f"{w_}_days" for w_ in ex.columns]
        out = ev.join(ex).reset_index()[["index_id", *ev_cols, *day_cols]]
        return out.sort_values("index_id", kind="mergesort", ignore_index=True)

    def sql_for(dialect: str, index_view: str, activity_view: str) -> str:
        return window_counts_wide_sql(dialect, bounds, settings, index_view, activity_view)

    res = _run_sql(sql_for, activity, idx, engine, options)
    rename = {f"e_{k}_{w}": f"{settings[k]}_{windows[w][0]}_events" for w in range(len(windows)) for k in range(len(settings))}
    rename.update({f"x_{w}": f"{windows[w][0]}_days" for w in range(len(windows))})
    res = res.rename(columns=rename)
    res["index_id"] = res["index_id"].astype(idx.index_id_dtype)
    for c in ev_cols + day_cols:
        res[c] = res[c].astype("int64")
    return res[["index_id", *ev_cols, *day_cols]].sort_values("index_id", kind="mergesort", ignore_index=True)


def monthly_series(
    activity: Any,
    index: Any,
    months_before: int = 12,
    months_after: int = 12,
    by: Sequence[str] | str | None = ("group",),
    engine: str = "duckdb",
    settings: Sequence[str] = ("gp", "ae"),
    *,
    threads: int | None = None,
    memory_limit: str = "4GB",
    temp_directory: str | None = None,
    spark: Any = None,
) -> pd.DataFrame:
    """Events and person-days at risk by relative month, summed over index rows by group.

    Relative month m = floor(t / 30.4375) for day offset t from index_date, for
    m = -months_before .. months_after-1 (see :func:`relative_months` for the day ranges).
    Counting rules are those of :func:`window_counts` (events only within follow-up).

    Returns
    -------
    DataFrame with the ``by`` columns, month (int64), setting, events (int64), person_days
    (int64: sum over index rows of the month's days inside follow-up: the denominator), and
    n_at_risk (int64: index rows with at least one day of the month in follow-up). Every ``by``
    group present in the index appears for every month x setting. Sorted by the ``by`` columns
    (missing values last), month, then setting in the order given. The rate per 1,000
    person-years is ``per_1000_person_years(events, person_days)``.
    """
    engine = _check_engine(engine)
    settings = _check_settings(settings)
    by = _check_by(by)
    options = _options(engine, threads, memory_limit, temp_directory, spark)
    months = relative_months(months_before, months_after)
    windows = [(str(m), int(lo), int(hi)) for m, lo, hi in months.itertuples(index=False)]
    idx = _Index(index, by)
    gcols = [f"g{k}" for k in range(len(by))]
    if idx.n == 0:
        res = pd.DataFrame({c: [] for c in [*gcols, "w", "s", "events", "person_days", "n_at_risk"]})
    else:
        res = _execute(activity, idx, windows, settings, engine, True, options)
    out = pd.DataFrame({b: res[g].astype(idx.by_dtypes[b]) for b, g in zip(by, gcols)})
    out["month"] = months["month"].to_numpy()[res["w"].astype("int64").to_numpy()]
    out["_s"] = res["s"].astype("int64").to_numpy()
    for c in ("events", "person_days", "n_at_risk"):
        out[c] = res[c].astype("int64").to_numpy()
    out = out.sort_values([*by, "month", "_s"], kind="mergesort", na_position="last", ignore_index=True)
    out.insert(len(by) + 1, "setting", pd.Series(np.array(settings, dtype=object)[out["_s"].to_numpy()], dtype="str"))
    return out.drop(columns=["_s"])
