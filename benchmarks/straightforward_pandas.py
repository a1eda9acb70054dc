"""Straightforward pandas baselines for the benchmark (benchmarks/run.py). Not used by spstudy.

These are the implementations an analyst would write first, against which the benchmark reports
the spstudy steps' speed. Each returns the same shape of result as the spstudy step it stands in
for, so that the benchmark can check that both give the same answer.

* :func:`count_windows` - window counting: read activity into pandas, merge it to the index rows
  on ``person_id``, compute day offsets, keep events within follow-up, then filter to each window
  and ``groupby().size()``. Exposure days = days of the window inside follow-up. Output: the wide
  table of :func:`spstudy.analyses.evaluation.count_windows` (one row per index_id;
  ``<setting>_<window>_events`` and ``<window>_days``).
* :func:`match_naive` - propensity score from statsmodels' ``Logit`` on dummy-coded covariates,
  then greedy 1:1 nearest-neighbour matching without replacement on the logit, exact on the
  strata, caliper 0.2 SD, treated in descending score order (MatchIt's ``m.order = "largest"``),
  by an all-pairs search: every treated unit scans every control (O(n_treated x n_controls)).
  Run on the first ``max_treated`` treated units in matching order and extrapolated linearly
  (each scan costs the same) - the benchmark labels the figure as extrapolated.
* :func:`effects_naive` - the matched difference in differences of
  :func:`spstudy.analyses.evaluation.effects` (rates per 1,000 person-years, cluster bootstrap over
  matched sets, Poisson GLM ratio of rate ratios with cluster-robust errors) with the bootstrap
  written as a loop that resamples matched sets and re-aggregates with pandas each time. Run
  with ``boot_run`` replicates and extrapolated to ``boot`` (labelled as such).

Units: days for offsets and exposure, rates per 1,000 person-years (365.25 days per year).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

DAYS_PER_YEAR = 365.25
SETTINGS = ("gp", "ae")


# ---------------------------------------------------------------------------------------------
# Window counting
# ---------------------------------------------------------------------------------------------


def count_windows(activity_path, index: pd.DataFrame, windows, settings=SETTINGS) -> tuple[pd.DataFrame, dict]:
    """Events and exposure per index row and window, the obvious pandas way.

    ``activity_path``: Parquet file or folder (person_id, activity_date, setting). ``index``:
    index_id, person_id, index_date, follow_start, follow_end (datetimes). ``windows``: (name,
    start_day, end_day), inclusive offsets from index_date. An event counts in a window when
    index_date + start_day <= date <= index_date + end_day and follow_start <= date <= follow_end
    (the rules of :mod:`spstudy.methods.engine`). Returns (wide table, {"read_seconds": ...}).

    Dates are read as datetime64 (``date_as_object=False``), which is the fast way to read them;
    the default (Python ``date`` objects) would make this baseline several times slower.
    """
    t0 = time.perf_counter()
    act = pd.read_parquet(activity_path, columns=["person_id", "activity_date", "setting"],
                          to_pandas_kwargs={"date_as_object": False})
    read_s = time.perf_counter() - t0
    ix = index[["index_id", "person_id", "index_date", "follow_start", "follow_end"]]
    m = act.merge(ix, on="person_id", how="inner")
    m = m[(m["activity_date"] >= m["follow_start"]) & (m["activity_date"] <= m["follow_end"])]
    m["day"] = (m["activity_date"] - m["index_date"]).dt.days
    out = pd.DataFrame({"index_id": ix["index_id"].to_numpy()})
    for name, lo, hi in windows:
        w = m[(m["day"] >= lo) & (m["day"] <= hi)]
        c = w.groupby(["index_id", "setting"]).size().unstack(fill_value=0)
        for s in settings:
            col = c[s] if s in c.columns else pd.Series(dtype="int64")
            out[f"{s}_{name}_events"] = col.reindex(out["index_id"], fill_value=0).to_numpy()
        start = np.maximum(ix["follow_start"], ix["index_date"] + pd.Timedelta(days=lo))
        end = np.minimum(ix["follow_end"], ix["index_date"] + pd.Timedelta(days=hi))
        out[f"{name}_days"] = ((end - start).dt.days + 1).clip(lower=0).to_numpy()
    return out, {"read_seconds": read_s}


def same_counts(a: pd.DataFrame, b: pd.DataFrame) -> tuple[bool, str]:
    """Whether two wide count tables hold the same numbers (columns in any order)."""
    if set(a.columns) != set(b.columns):
        return False, f"columns differ: {sorted(set(a.columns) ^ set(b.columns))[:6]}"
    cols = sorted(a.columns)
    x = a[cols].sort_values("index_id").reset_index(drop=True).astype("int64")
    y = b[cols].sort_values("index_id").reset_index(drop=True).astype("int64")
    if x.shape != y.shape:
        return False, f"shapes differ: {x.shape} vs {y.shape}"
    diff = (x.to_numpy() != y.to_numpy()).sum()
    return bool(diff == 0), f"{int(diff)} cells differ of {x.size}"


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------


def propensity_logit(data: pd.DataFrame, treatment: str, covariates: list[str]) -> np.ndarray:
    """Linear predictor (log-odds) of statsmodels' Logit of treatment on dummy-coded covariates."""
    import statsmodels.api as sm

    X = pd.get_dummies(data[covariates], drop_first=True, dtype=float)
    X = sm.add_constant(X, has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.Logit(data[treatment].to_numpy(dtype=float), X.to_numpy(dtype=float)).fit(disp=0, maxiter=100)
    return X.to_numpy(dtype=float) @ fit.params


def match_naive(data: pd.DataFrame, covariates: list[str], exact: list[str], caliper_sd: float = 0.2,
                max_treated: int | None = None, time_budget: float | None = None) -> dict:
    """Propensity score + all-pairs greedy 1:1 nearest-neighbour matching (see module docstring).

    Matches treated units in descending logit order until all are done, ``max_treated`` are
    done or ``time_budget`` seconds have passed; returns the seconds for the score, for the
    matching loop, how many treated were processed of how many, the extrapolated total and the
    pairs made (treated index_id -> control index_id).
    """
    t0 = time.perf_counter()
    logit = propensity_logit(data, "treated", covariates)
    ps_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    treated = data["treated"].to_numpy() == 1
    strata = data.groupby(exact, sort=True, dropna=False).ngroup().to_numpy()
    width = caliper_sd * float(np.std(logit, ddof=1))
    ids = data["index_id"].to_numpy()
    t_rows = np.flatnonzero(treated)
    t_rows = t_rows[np.argsort(-logit[t_rows], kind="stable")]
    c_rows = np.flatnonzero(~treated)
    c_logit, c_strata = logit[c_rows], strata[c_rows]
    available = np.ones(len(c_rows), dtype=bool)
    pairs = {}
    done = 0
    for i in t_rows:
        d = np.where(available & (c_strata == strata[i]), np.abs(c_logit - logit[i]), np.inf)
        j = int(np.argmin(d))
        if d[j] <= width:
            available[j] = False
            pairs[ids[i]] = ids[c_rows[j]]
        done += 1
        if (max_treated is not None and done >= max_treated) or (
            time_budget is not None and time.perf_counter() - t1 > time_budget
        ):
            break
    loop_s = time.perf_counter() - t1
    n_t = len(t_rows)
    return {"ps_seconds": ps_s, "loop_seconds": loop_s, "treated_done": done, "treated_total": n_t,
            "seconds_extrapolated": ps_s + loop_s * n_t / max(done, 1), "pairs": pairs, "logit": logit}


# ---------------------------------------------------------------------------------------------
# Difference in differences
# ---------------------------------------------------------------------------------------------


def _long(d: pd.DataFrame, pairs: pd.DataFrame, setting: str, months: int, cohort: str, baseline: str) -> pd.DataFrame:
    """Unit x period rows for the DiD, built with merges."""
    if cohort == "per_protocol":
        seen = d.loc[d["seen"] == 1, ["index_id"]].rename(columns={"index_id": "treated_id"})
        pairs = pairs.merge(seen, on="treated_id")
    k = pairs.groupby("subclass")["control_id"].transform("size")
    t = pairs.drop_duplicates("subclass")[["subclass", "treated_id"]].rename(columns={"treated_id": "index_id"})
    c = pairs[["subclass", "control_id"]].rename(columns={"control_id": "index_id"}).assign(weight=1.0 / k)
    units = pd.concat([t.assign(treated=1, weight=1.0), c.assign(treated=0)], ignore_index=True)
    parts = []
    for post, win in ((0, baseline), (1, f"post_{months}m")):
        cols = d[["index_id", f"{setting}_{win}_events", f"{win}_days"]].rename(
            columns={f"{setting}_{win}_events": "events", f"{win}_days": "days"})
        parts.append(units.merge(cols, on="index_id").assign(post=post))
    L = pd.concat(parts, ignore_index=True)
    return L[L["days"] > 0]


def _did_from(L: pd.DataFrame) -> float:
    L = L.assign(we=L["events"] * L["weight"], wd=L["days"] * L["weight"])
    g = L.groupby(["treated", "post"])[["we", "wd"]].sum()
    r = 1000 * DAYS_PER_YEAR * g["we"] / g["wd"]
    return (r.get((1, 1), np.nan) - r.get((1, 0), np.nan)) - (r.get((0, 1), np.nan) - r.get((0, 0), np.nan))


def did_naive(d, pairs, setting, months, cohort="itt", boot=500, boot_run=None, seed=1, baseline="baseline") -> dict:
    """One matched DiD with a pandas bootstrap loop (``boot_run`` replicates actually run)."""
    import statsmodels.api as sm

    L = _long(d, pairs, setting, months, cohort, baseline)
    out = {"setting": setting, "window_months": months, "cohort": cohort, "did_per_1000py": _did_from(L)}
    rng = np.random.default_rng(seed)
    sets = L["subclass"].unique()
    by_set = L.set_index("subclass")
    n_run = boot if boot_run is None else min(boot, boot_run)
    tb = time.perf_counter()
    draws = []
    for _ in range(n_run):
        pick = pd.DataFrame({"subclass": rng.choice(sets, size=len(sets), replace=True)})
        draws.append(_did_from(pick.merge(by_set, left_on="subclass", right_index=True)))
    boot_s = time.perf_counter() - tb
    out["did_lower"], out["did_upper"] = np.nanpercentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan)
    X = pd.DataFrame({"const": 1.0, "treated": L["treated"], "post": L["post"], "treated_post": L["treated"] * L["post"]})
    w = L["weight"].to_numpy()
    kw = {} if np.allclose(w, 1.0) else {"var_weights": w}
    model = sm.GLM(L["events"].to_numpy(), X, family=sm.families.Poisson(), offset=np.log(L["days"].to_numpy() / DAYS_PER_YEAR), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(L["subclass"])[0]})
    out["ratio_of_rate_ratios"] = float(np.exp(fit.params["treated_post"]))
    out["_boot_seconds_run"], out["_boot_run"], out["_boot"] = boot_s, n_run, boot
    return out


def effects_naive(d, pairs, months_list, boot=500, boot_run=None) -> tuple[pd.DataFrame, dict]:
    """The matched DiDs of :func:`spstudy.analyses.evaluation.effects` (main design), naive bootstrap.

    Returns (estimates, timing) where timing has the measured seconds and the seconds
    extrapolated to ``boot`` replicates per estimate."""
    t0 = time.perf_counter()
    rows = [did_naive(d, pairs, s, m, c, boot=boot, boot_run=boot_run)
            for s in SETTINGS for m in months_list for c in ("itt", "per_protocol")]
    total = time.perf_counter() - t0
    boot_run_s = sum(r["_boot_seconds_run"] for r in rows)
    boot_full_s = sum(r["_boot_seconds_run"] * r["_boot"] / max(r["_boot_run"], 1) for r in rows)
    timing = {"seconds_measured": total, "seconds_extrapolated": total - boot_run_s + boot_full_s,
              "boot_run": rows[0]["_boot_run"] if rows else 0, "boot": boot}
    est = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    return est, timing
