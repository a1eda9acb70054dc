"""Polars competitor for the window-counting benchmark (benchmarks/run.py). Not used by spstudy.

:func:`count_windows` gives the same wide table as :func:`spstudy.analyses.evaluation.count_windows`
(one row per index_id, sorted by it, ``<setting>_<window>_events`` then ``<window>_days``) with
the counting rules of :mod:`spstudy.methods.engine`: an event counts in a window when
index_date + start_day <= date <= index_date + end_day and follow_start <= date <= follow_end.

It is written the way a polars user would write it, lazily end to end so polars can push the
setting filter into the Parquet scan and run the join and aggregation on all cores: scan the
activity Parquet, inner-join the index rows on person_id, keep dates within follow-up and within
the span of all windows, then one ``group_by(index_id)`` with a conditional sum per window and
setting; exposure days from the index dates. The result is collected as a polars DataFrame
(``native_seconds``) and then converted to pandas, the type spstudy returns, so the two results
can be compared cell by cell.
"""

from __future__ import annotations

import time
from pathlib import Path

SETTINGS = ("gp", "ae")


def _scan(activity_path):
    import polars as pl

    p = Path(activity_path)
    src = str(p / "**" / "*.parquet") if p.is_dir() else str(p)
    return pl.scan_parquet(src)


def count_windows(activity_path, index, windows, settings=SETTINGS) -> tuple["object", dict]:
    """Wide window counts with polars. ``index``: pandas DataFrame with index_id, person_id,
    index_date, follow_start, follow_end. Returns (pandas DataFrame, {"native_seconds": time to
    the collected polars frame})."""
    import polars as pl

    t0 = time.perf_counter()
    ix = pl.from_pandas(index[["index_id", "person_id", "index_date", "follow_start", "follow_end"]]).with_columns(
        pl.col("index_date", "follow_start", "follow_end").cast(pl.Date))
    lo_min = min(w[1] for w in windows)
    hi_max = max(w[2] for w in windows)
    act = _scan(activity_path).select("person_id", pl.col("activity_date").cast(pl.Date), "setting").filter(
        pl.col("setting").is_in(list(settings)))
    hits = (
        act.join(ix.lazy(), on="person_id", how="inner")
        .filter((pl.col("activity_date") >= pl.col("follow_start")) & (pl.col("activity_date") <= pl.col("follow_end")))
        .with_columns(t=(pl.col("activity_date") - pl.col("index_date")).dt.total_days())
        .filter((pl.col("t") >= lo_min) & (pl.col("t") <= hi_max))
    )
    aggs = [((pl.col("setting") == s) & (pl.col("t") >= lo) & (pl.col("t") <= hi)).sum().cast(pl.Int64).alias(f"{s}_{n}_events")
            for n, lo, hi in windows for s in settings]
    ev = hits.group_by("index_id").agg(aggs)
    days = [
        (pl.min_horizontal(pl.col("follow_end"), pl.col("index_date") + pl.duration(days=hi))
         - pl.max_horizontal(pl.col("follow_start"), pl.col("index_date") + pl.duration(days=lo)))
        .dt.total_days().add(1).clip(lower_bound=0).cast(pl.Int64).alias(f"{n}_days")
        for n, lo, hi in windows
    ]
    ev_cols = [f"{s}_{n}_events" for n, _, _ in windows for s in settings]
    day_cols = [f"{n}_days" for n, _, _ in windows]
    out = (
        ix.lazy().select("index_id", *days)
        .join(ev, on="index_id", how="left")
        .with_columns(pl.col(ev_cols).fill_null(0))
        .select("index_id", *ev_cols, *day_cols)
        .sort("index_id")
        .collect()
    )
    native = time.perf_counter() - t0
    return out.to_pandas(), {"native_seconds": native}
