"""Event-level engine: GP and A&E events counted in windows around an index date.

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

DuckDB and Spark run the SAME SQL text (built by :func:`event_offsets_sql`). The only
dialect-specific piece is :func:`day_number_sql`, the conversion of a date to a day number
(days since 1970-01-01); every other date comparison is integer arithmetic on day numbers.
The equivalence tests in ``tests/unit/test_engine.py`` run identical queries on all three engines
and require exactly equal results.

How the counting is done (DuckDB and Spark): the SQL only joins activity to the index rows (on
person_id, within follow-up and within the span of the windows) and returns, per event that can
count, its index row and its day offset and setting as one integer. The windows, which may
overlap (quarters inside a year), are split into disjoint elementary intervals
(:func:`elementary_intervals`); numpy maps each offset to its interval with a lookup table,
counts events per (index row, interval, setting) and adds up each window's intervals, and
computes exposure days per index row. The cost per event is the same whatever the number of
windows. :func:`window_counts_sql` and :func:`window_counts_wide_sql` are the earlier,
row-level formulations of the same counts (a window table joined to every event, or one
conditional sum per window and setting), kept as references for the equivalence tests.

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

from spstudy.methods.checks import require_columns

__all__ = [
    "DAYS_PER_MONTH",
    "DAYS_PER_YEAR",
    "ENGINES",
    "STANDARD_WINDOWS",
    "day_number_sql",
    "elementary_intervals",
    "event_offsets_sql",
    "monthly_series",
    "per_1000_person_years",
    "relative_months",
    "spark_session",
    "window_counts",
    "window_counts_sql",
    "window_counts_wide",
    "window_counts_wide_sql",
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
    # date - date is the whole number of days between them
    "duckdb": "CAST(CAST({expr} AS DATE) - DATE '1970-01-01' AS INTEGER)",
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
    require_columns(columns, required, arg)


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
            # row position: what event_offsets_sql returns instead of index_id
            "pos": pa.array(np.arange(self.n, dtype=np.int32)),
        }
        self.by_dtypes = {}
        for k, b in enumerate(by):
            col = df[b]
            self.by_dtypes[b] = col.dtype
            if isinstance(col.dtype, pd.CategoricalDtype):
                col = col.astype(col.cat.categories.dtype)
            cols[f"g{k}"] = pa.array(col, from_pandas=True)
        self.table = pa.table(cols)
        self.ids = ids.reset_index(drop=True)
        self.by_frame = df[list(by)].reset_index(drop=True)
        # day numbers as int64 numpy arrays (exposure arithmetic in numpy)
        self.d0, self.fs, self.fe = (days[k].to_numpy().astype(np.int64) for k in ("d0", "fs", "fe"))
        self._order = None

    @property
    def persons(self) -> pa.Array:
        """Distinct person_id values of the index (the pandas engine's semi-join)."""
        return pc.unique(self.table["person_id"])

    @property
    def order(self) -> np.ndarray:
        """Row positions sorted by index_id (unique, so the order is total)."""
        if self._order is None:
            ids = self.table["index_id"]
            if pa.types.is_integer(ids.type):
                v = ids.to_numpy()
                self._order = (np.arange(self.n) if self.n < 2 or bool((v[1:] > v[:-1]).all())
                               else np.argsort(v, kind="stable"))
            else:  # strings: Arrow sorts by UTF-8 bytes = code point order, as Python/pandas do
                self._order = pc.sort_indices(ids).to_numpy()
        return self._order


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

    Reference formulation (the engine itself runs :func:`event_offsets_sql`), kept for the
    equivalence tests and for users who want the index x window x setting grid in SQL.

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

    Reference formulation (the engine itself runs :func:`event_offsets_sql`): kept so that the
    equivalence tests can compare the binned counts with one conditional sum per window and
    setting, and for users who want the whole pivot in SQL.

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


def elementary_intervals(windows: Sequence[tuple[int, int]]) -> tuple[list[int], list[tuple[int, int]]]:
    """Split (possibly overlapping) windows into disjoint elementary intervals ("bins").

    ``windows`` are inclusive (start_day, end_day) offsets. Returns ``(breaks, spans)``: bin k
    covers offsets ``breaks[k] .. breaks[k+1] - 1`` (the breaks are every window's start and
    every window's end + 1, sorted), and window w is the union of bins ``spans[w][0] ..
    spans[w][1] - 1``. So an event's day offset falls in exactly one bin, and its count in a
    window is the sum of its counts over the window's bins. Bins between windows (days no window
    covers) are bins too, used by no window. Example: ``pre_12m`` (-365, -1) and ``pre_q4``
    (-91, -1) give breaks [-365, -91, 0]: bins -365..-92 and -91..-1; pre_12m = bins 0-1,
    pre_q4 = bin 1.
    """
    breaks = sorted({int(lo) for lo, _ in windows} | {int(hi) + 1 for _, hi in windows})
    where = {b: k for k, b in enumerate(breaks)}
    spans = [(where[int(lo)], where[int(hi) + 1]) for lo, hi in windows]
    return breaks, spans


def event_offsets_sql(
    dialect: str,
    first_day: int,
    last_day: int,
    settings: Sequence[str],
    index_view: str = "idx_in",
    activity_view: str = "activity_in",
) -> str:
    """The SQL (one text for DuckDB and Spark) behind every window count: one row per event
    that can count, with its index row and its day offset.

    Inputs: ``index_view`` with pos (row position, INTEGER), person_id, d0, fs, fe (day
    numbers, see :func:`day_number_sql`); ``activity_view`` with person_id, activity_date,
    setting. Output: one row per (index row, activity row) pair with the same person_id, the
    activity's setting in ``settings``, its date inside the index row's follow-up [fs, fe] and
    its day offset t = date - d0 in ``first_day .. last_day``: ``pos`` and ``code`` =
    (t - first_day) * len(settings) + setting position (both INTEGER).

    Plan: each index row's searchable days (follow-up cut to first_day..last_day around its
    index date) are computed once per index row; activity is equi-joined on person_id with that
    day range; each joined row gets one integer. Nothing else is done per event. The caller
    maps each code to its elementary interval (:func:`elementary_intervals`) with a lookup
    table, counts rows per (index row, interval, setting) (``numpy.add.at``), sums each
    window's intervals and computes exposure per index row: the cost does not grow with the
    number of windows, and overlapping windows (quarters inside a year) cost nothing extra. The
    result has one small row per event: fewer values than the wide table it becomes.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    settings = _check_settings(settings)
    for name, v in (("first_day", first_day), ("last_day", last_day)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer (days), got {v!r}")
    if first_day > last_day:
        raise ValueError(f"first_day ({first_day}) is after last_day ({last_day})")
    set_list = ", ".join(f"'{s}'" for s in settings)
    set_case = " ".join(f"WHEN '{s}' THEN {k}" for k, s in enumerate(settings))
    lo, hi = int(first_day), int(last_day)
    day = day_number_sql("activity_date", dialect)
    return f"""
WITH idx AS (
    SELECT pos, person_id, d0, lo, hi
    FROM (
        SELECT pos, person_id, d0,
               GREATEST(fs, d0 + ({lo})) AS lo,
               LEAST(fe, d0 + ({hi})) AS hi
        FROM {index_view}
    ) ix
    WHERE lo <= hi
),
act AS (
    SELECT person_id, {day} AS d, CASE setting {set_case} END AS s
    FROM {activity_view}
    WHERE setting IN ({set_list})
)
SELECT CAST(i.pos AS INTEGER) AS pos,
       CAST((a.d - i.d0 - ({lo})) * {len(settings)} + a.s AS INTEGER) AS code
FROM act a
JOIN idx i ON a.person_id = i.person_id
WHERE a.d >= i.lo AND a.d <= i.hi
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


_BATCH_ROWS = 1 << 20  # rows per Arrow batch when a result is consumed as a stream


def _run_duckdb(
    sql_for, activity: Any, idx: _Index, threads: int | None, memory_limit: str, temp_directory: str | None,
    consume=None,
) -> pa.Table | None:
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
        rel = con.sql(sql_for("duckdb", "idx_in", "activity_in"))
        if consume is None:
            return rel.to_arrow_table()
        # stream: the result is never held whole (one batch at a time)
        reader = rel.to_arrow_reader(_BATCH_ROWS) if hasattr(rel, "to_arrow_reader") else rel.fetch_record_batch(_BATCH_ROWS)
        for batch in reader:
            consume(batch)
        return None
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


def _run_spark(sql_for, activity: Any, idx: _Index, spark, consume=None) -> pa.Table | None:
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
            table = _spark_to_arrow(spark.sql(sql_for("spark", idx_view, act_view)))
            if consume is None:
                return table
            for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
                consume(batch)
            return None
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


def _execute_pandas(activity, idx: _Index, windows, settings, monthly: bool) -> pd.DataFrame:
    """The pandas engine's per-row counts (or their monthly aggregation by group)."""
    n_by = len(idx.by) if monthly else 0
    bounds = [(lo, hi) for _, lo, hi in windows]
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


def _run_sql(sql_for, activity, idx: _Index, engine: str, options: dict, consume=None) -> pa.Table | None:
    """Run ``sql_for(dialect, index_view, activity_view)`` on DuckDB or Spark: an Arrow table
    out, or with ``consume`` each Arrow record batch passed to it in turn (None out)."""
    if engine == "duckdb":
        return _run_duckdb(sql_for, activity, idx, options.get("threads"), options.get("memory_limit", "4GB"),
                           options.get("temp_directory"), consume)
    return _run_spark(sql_for, activity, idx, options.get("spark"), consume)


def _options(engine, threads, memory_limit, temp_directory, spark) -> dict:
    if spark is not None and engine != "spark":
        raise ValueError(f"spark= was given but engine={engine!r}; use engine='spark'")
    return {"threads": threads, "memory_limit": memory_limit, "temp_directory": temp_directory, "spark": spark}


class _Cells:
    """Event counts per index row, elementary interval (bin) and setting, from
    :func:`event_offsets_sql` on DuckDB or Spark. ``counts[b, k]`` is the array (one value per
    index row, in index order) of events of setting k in bin b: contiguous per bin and setting,
    so a window's events are a few vector additions."""

    def __init__(self, activity, idx: _Index, bounds: list[tuple[int, int]], settings: tuple[str, ...],
                 engine: str, options: dict):
        self.breaks, self.spans = elementary_intervals(bounds)
        n_bins, n_set = len(self.breaks) - 1, len(settings)
        first, last = self.breaks[0], self.breaks[-1] - 1

        def sql_for(dialect: str, index_view: str, activity_view: str) -> str:
            return event_offsets_sql(dialect, first, last, settings, index_view, activity_view)

        size = n_bins * n_set * idx.n
        key = np.int32 if size < 2**31 else np.int64
        # code = (t - first) * n_set + s  ->  cell = bin * n_set + s, by a lookup table
        bin_of = np.searchsorted(np.asarray(self.breaks), np.arange(first, last + 1), side="right") - 1
        lut = (bin_of[:, None] * n_set + np.arange(n_set)[None, :]).reshape(-1).astype(key)
        # events per (cell, row); int32 is ample (a person has far fewer than 2^31 events) and
        # add.at with an int32 increment takes numpy's fast path
        flat = np.zeros(size, dtype=np.int32)
        rows, one = key(idx.n), np.int32(1)

        def count(batch: pa.RecordBatch) -> None:
            at = lut[batch.column("code").to_numpy()]
            at *= rows
            at += batch.column("pos").to_numpy()  # flat position: cell * rows + pos
            np.add.at(flat, at, one)

        _run_sql(sql_for, activity, idx, engine, options, consume=count)
        self.counts = flat.reshape(n_bins, n_set, idx.n)

    def window_events(self, w: int, k: int, out: np.ndarray | None = None) -> np.ndarray:
        """Events of setting k in window w per index row (int64): the sum over its bins."""
        a, b = self.spans[w]
        if out is None:
            out = np.empty(self.counts.shape[2], dtype=np.int64)
        np.copyto(out, self.counts[a, k], casting="safe")
        for j in range(a + 1, b):
            out += self.counts[j, k]
        return out


def _exposure(idx: _Index, lo: int, hi: int, out: np.ndarray | None = None,
              scratch: np.ndarray | None = None) -> np.ndarray:
    """Days of window [d0 + lo, d0 + hi] inside follow-up [fs, fe], 0 if none (int64 per row):
    max(0, min(fe, d0 + hi) - max(fs, d0 + lo) + 1), computed in place in ``out``."""
    out = np.empty(idx.n, dtype=np.int64) if out is None else out
    scratch = np.empty(idx.n, dtype=np.int64) if scratch is None else scratch
    np.add(idx.d0, hi, out=out)
    np.minimum(out, idx.fe, out=out)
    np.add(idx.d0, lo, out=scratch)
    np.maximum(scratch, idx.fs, out=scratch)
    np.subtract(out, scratch, out=out)
    out += 1
    np.maximum(out, 0, out=out)
    return out


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
        Windows may overlap (e.g. quarters inside a year).
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

    DuckDB and Spark run :func:`event_offsets_sql` (the join: one small row per event that can
    count), then count events per index row, elementary interval and setting and sum each
    window's intervals in numpy; the pandas engine is the straightforward merge-and-filter
    implementation.
    """
    engine = _check_engine(engine)
    windows = _check_windows(windows)
    settings = _check_settings(settings)
    options = _options(engine, threads, memory_limit, temp_directory, spark)
    idx = _Index(index, ())
    names = np.array([w[0] for w in windows], dtype=object)
    setting_names = np.array(settings, dtype=object)
    n_w, n_s = len(windows), len(settings)
    if idx.n > 0 and engine != "pandas":
        cells = _Cells(activity, idx, [(lo, hi) for _, lo, hi in windows], settings, engine, options)
        order = idx.order
        ev = np.empty((idx.n, n_w, n_s), dtype=np.int64)
        ex = np.empty((idx.n, n_w), dtype=np.int64)
        for w, (_, lo, hi) in enumerate(windows):
            for k in range(n_s):
                ev[:, w, k] = cells.window_events(w, k)
            ex[:, w] = _exposure(idx, lo, hi)
        ev, ex = ev[order], ex[order]
        rep = n_w * n_s
        out = pd.DataFrame({"index_id": idx.ids.iloc[np.repeat(order, rep)].reset_index(drop=True)})
        out["window"] = pd.Series(np.tile(np.repeat(names, n_s), idx.n), dtype="str")
        out["setting"] = pd.Series(np.tile(setting_names, idx.n * n_w), dtype="str")
        out["events"] = ev.reshape(-1)
        out["exposure_days"] = np.repeat(ex.reshape(-1), n_s)
        return out
    if idx.n == 0:
        res = pd.DataFrame({"index_id": [], "w": [], "s": [], "events": [], "exposure_days": []})
    else:
        res = _execute_pandas(activity, idx, windows, settings, False)
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
    ``<setting>_<window>_events`` and ``<window>_days`` columns (int64; same counting rules).

    DuckDB and Spark run :func:`event_offsets_sql` (the join: one small row per event that can
    count), then count events per index row, elementary interval and setting, sum each window's
    intervals and compute exposure days in numpy (the cost does not grow with the number of
    windows); the pandas engine pivots its long result.
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
    if engine == "pandas":
        long = window_counts(activity, index, windows, "pandas", settings)
        ev = long.pivot_table(index="index_id", columns=["setting", "window"], values="events", aggfunc="sum", sort=False)
        ev.columns = [f"{s_}_{w_}_events" for s_, w_ in ev.columns]
        ex = long[long["setting"] == settings[0]].pivot_table(index="index_id", columns="window", values="exposure_days", aggfunc="sum", sort=False)
        ex.columns = [f"{w_}_days" for w_ in ex.columns]
        out = ev.join(ex).reset_index()[["index_id", *ev_cols, *day_cols]]
        return out.sort_values("index_id", kind="mergesort", ignore_index=True)
    cells = _Cells(activity, idx, [(lo, hi) for _, lo, hi in windows], settings, engine, options)
    order = idx.order
    identity = bool(order[0] == 0 and (np.diff(order) == 1).all())
    # every count column is written straight into one (columns x rows) int64 block, which
    # becomes the frame without a copy (pandas keeps a block as columns x rows)
    block = np.empty((len(ev_cols) + len(day_cols), idx.n), dtype=np.int64)
    scratch = np.empty(idx.n, dtype=np.int64)
    other = None if identity else np.empty(idx.n, dtype=np.int64)
    j = 0
    for w in range(len(windows)):
        for k in range(len(settings)):
            if identity:
                cells.window_events(w, k, out=block[j])
            else:
                np.take(cells.window_events(w, k, out=other), order, out=block[j])
            j += 1
    for _, lo, hi in windows:
        if identity:
            _exposure(idx, lo, hi, out=block[j], scratch=scratch)
        else:
            np.take(_exposure(idx, lo, hi, out=other, scratch=scratch), order, out=block[j])
        j += 1
    out = pd.DataFrame(block.T, columns=[*ev_cols, *day_cols], copy=False)
    out.insert(0, "index_id", idx.ids if identity else idx.ids.iloc[order].reset_index(drop=True))
    return out


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
    n_m, n_s = len(windows), len(settings)
    if idx.n > 0 and engine != "pandas":
        cells = _Cells(activity, idx, [(lo, hi) for _, lo, hi in windows], settings, engine, options)
        if by:
            codes = idx.by_frame.groupby(list(by), dropna=False, sort=False).ngroup().to_numpy()
            keys = idx.by_frame.drop_duplicates(ignore_index=True)
        else:
            codes, keys = np.zeros(idx.n, dtype=np.intp), pd.DataFrame(index=range(1))
        n_g = len(keys)
        # months are contiguous and disjoint, so each month is one bin
        assert [b - a for a, b in cells.spans] == [1] * n_m
        ev = np.stack([np.bincount(codes, weights=cells.counts[m, k], minlength=n_g)
                       for m in range(n_m) for k in range(n_s)], axis=1)  # float64 sums of integers < 2^53: exact
        pdays, risk = [], []
        for _, lo, hi in windows:
            x = _exposure(idx, lo, hi)
            pdays.append(np.bincount(codes, weights=x.astype(np.float64), minlength=n_g))
            risk.append(np.bincount(codes, weights=(x > 0).astype(np.float64), minlength=n_g))
        g_rep = np.repeat(np.arange(n_g), n_m * n_s)
        out = pd.DataFrame({b: keys[b].iloc[g_rep].reset_index(drop=True).astype(idx.by_dtypes[b]) for b in by})
        out["month"] = np.tile(np.repeat(months["month"].to_numpy(), n_s), n_g)
        out["_s"] = np.tile(np.arange(n_s), n_g * n_m)
        out["events"] = ev.reshape(-1).astype(np.int64)
        out["person_days"] = np.repeat(np.stack(pdays, axis=1).reshape(-1), n_s).astype(np.int64)
        out["n_at_risk"] = np.repeat(np.stack(risk, axis=1).reshape(-1), n_s).astype(np.int64)
    else:
        if idx.n == 0:
            res = pd.DataFrame({c: [] for c in [*gcols, "w", "s", "events", "person_days", "n_at_risk"]})
        else:
            res = _execute_pandas(activity, idx, windows, settings, True)
        out = pd.DataFrame({b: res[g].astype(idx.by_dtypes[b]) for b, g in zip(by, gcols)})
        out["month"] = months["month"].to_numpy()[res["w"].astype("int64").to_numpy()]
        out["_s"] = res["s"].astype("int64").to_numpy()
        for c in ("events", "person_days", "n_at_risk"):
            out[c] = res[c].astype("int64").to_numpy()
    out = out.sort_values([*by, "month", "_s"], kind="mergesort", na_position="last", ignore_index=True)
    out.insert(len(by) + 1, "setting", pd.Series(np.array(settings, dtype=object)[out["_s"].to_numpy()], dtype="str"))
    return out.drop(columns=["_s"])
