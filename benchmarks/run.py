#!/usr/bin/env python
"""Benchmark of the service-use evaluation at 1x, 10x and 100x NCL-sample scale (``make benchmark``).

For each scale it generates synthetic extracts (:func:`spstudy.synth.generate`) into a temporary
folder under /tmp and times, each in a FRESH SUBPROCESS (so that peak memory is per step and
includes DuckDB's native memory), the four steps of :func:`spstudy.evaluation.run`:

==========================  ================================================  ============================================
step                        spstudy                                           straightforward pandas baseline
==========================  ================================================  ============================================
window counting             evaluation.count_windows(<Parquet folder>, ...)   merge activity to index, filter, groupby
                            (DuckDB engine, reads Parquet directly)           (benchmarks/straightforward_pandas.py)
comparator pool             evaluation.build_cohort                           the same code (it is pandas already)
matching                    evaluation.match_cohort (PS + greedy NN)          statsmodels Logit + all-pairs greedy NN
                                                                              (subsample of treated, extrapolated)
difference in differences   evaluation.effects (8 DiDs, 500 bootstraps)       same estimates, pandas bootstrap loop
                                                                              (some replicates, extrapolated)
==========================  ================================================  ============================================

plus the full NCL-scale evaluation (synth scale 1.0, pool_fraction 1.0: every registered person),
the full pandas loader on those extracts (timed separately), and the matching scale check
(25,000 treated against 2,000,000 controls, :func:`spstudy.matching.time_large_match`).

Scales ("NCL-sample scale"): 1x = synth scale 0.1 with pool_fraction 0.25 (about 37,000 people and
0.7 million activity rows over the 4-year data period); 10x = scale 1.0; 100x = scale 10.0 (about
70 million rows). See benchmarks/README.md.

Usage::

    .venv/bin/python benchmarks/run.py                 # scales 1,10,100 + NCL evaluation (about 8 min on 2 quiet cores)
    .venv/bin/python benchmarks/run.py --quick         # scales 1,10 + NCL evaluation (about 2 min)
    .venv/bin/python benchmarks/run.py --scales 1 --no-ncl
    .venv/bin/python benchmarks/run.py --readme        # also copy the tables into benchmarks/README.md

Results are printed and written to ``benchmarks/results/latest.md`` (and ``latest.json``). Targets
are measured and reported, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

#: NCL-sample scale: label -> (synth scale, pool_fraction)
BASE_SCALE, BASE_POOL = 0.1, 0.25
NCL_SCALE, NCL_POOL = 1.0, 1.0
SEED = 7
CHUNK_PERSONS = 250_000
BOOT = 500

TARGET_SECONDS = 60.0
TARGET_MB = 4096.0
TARGET_SPEEDUP = 10.0
TARGET_EXPONENT = 1.1  # time ~ rows^b; b <= 1.1 counts as "no worse than linear" (allowing timing noise)


def scale_spec(label: int) -> tuple[float, float]:
    """(synth scale, pool_fraction) of ``label`` x NCL-sample scale."""
    return round(BASE_SCALE * label, 6), BASE_POOL


# =============================================================================================
# Workers (each runs in its own subprocess: python run.py --worker NAME --spec FILE)
# =============================================================================================


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_s() -> float:
    """CPU seconds (user + system, all threads) used by this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _time_count_parts() -> dict:
    """Wrap the engine's DuckDB call and window_counts to split the counting time (diagnostic only:
    uses a private engine function and silently does nothing if it is not there)."""
    from spstudy import engine as eng

    parts: dict[str, float] = {}

    def wrap(name, f):
        def g(*a, **k):
            s = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                parts[name] = parts.get(name, 0.0) + time.perf_counter() - s
        return g

    if hasattr(eng, "_run_duckdb"):
        eng._run_duckdb = wrap("duckdb query", eng._run_duckdb)
    return parts


def _quiet():
    import warnings

    warnings.simplefilter("ignore")


def _read_table(data_dir: str, name: str):
    """A table of the extracts as pandas, date columns as datetime64[ns] (as the loader types them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(data_dir) / name
    if not path.exists():
        path = Path(data_dir) / f"{name}.parquet"
    t = pq.read_table(path)
    for i, f in enumerate(t.schema):
        if pa.types.is_date(f.type):
            t = t.set_column(i, f.name, t[f.name].cast(pa.timestamp("ns")))
    return t.to_pandas()


def _activity_path(data_dir: str) -> str:
    p = Path(data_dir) / "activity"
    return str(p if p.exists() else Path(data_dir) / "activity.parquet")


def _activity_rows(data_dir: str) -> int:
    import pyarrow.dataset as ds

    return ds.dataset(_activity_path(data_dir), format="parquet").count_rows()


def w_generate(spec: dict) -> dict:
    from spstudy import synth

    t0 = time.perf_counter()
    s = synth.generate(spec["data_dir"], seed=spec["seed"], scale=spec["scale"], pool_fraction=spec["pool_fraction"],
                       chunk_persons=CHUNK_PERSONS)
    return {"seconds": time.perf_counter() - t0, "peak_mb": _maxrss_mb(), "row_counts": s["row_counts"],
            "population_frame_persons": s["population_frame_persons"], "bytes_total": s["bytes_total"]}


def w_pool(spec: dict) -> dict:
    """Comparator pool construction: evaluation.build_cohort (persons/referrals read first, untimed)."""
    from types import SimpleNamespace

    from spstudy import evaluation as E
    from spstudy.params import load_parameters

    _quiet()
    p = load_parameters("ncl")
    t0 = time.perf_counter()
    ex = SimpleNamespace(persons=_read_table(spec["data_dir"], "persons"),
                         referrals=_read_table(spec["data_dir"], "referrals"),
                         activity=_activity_path(spec["data_dir"]))
    read_s = time.perf_counter() - t0
    rss0 = _rss_mb()
    c0 = _cpu_s()
    t0 = time.perf_counter()
    index, flow = E.build_cohort(ex, p, "ncl")
    secs = time.perf_counter() - t0
    cpu = _cpu_s() - c0
    peak = _maxrss_mb()
    index.to_pickle(Path(spec["work_dir"]) / "index.pkl")
    n = len(ex.persons)
    return {"seconds": secs, "cpu_seconds": cpu, "peak_mb": peak, "rss_before_mb": rss0, "read_seconds": read_s,
            "throughput": n / secs, "unit": "persons/s", "persons": n, "referrals": len(ex.referrals),
            "index_rows": len(index), "treated": int(index["treated"].sum())}


def w_count(spec: dict) -> dict:
    """Window counting with spec['impl'] in duckdb | pandas_naive | pandas_engine | spark."""
    import pandas as pd

    from spstudy import evaluation as E
    from spstudy.params import load_parameters

    _quiet()
    p = load_parameters("ncl")
    work = Path(spec["work_dir"])
    index = pd.read_pickle(work / "index.pkl")
    windows = E.design_windows(p)
    act = _activity_path(spec["data_dir"])
    n_rows = spec["activity_rows"]
    impl = spec["impl"]
    extra = {}
    parts = _time_count_parts() if impl == "duckdb" else {}
    if impl == "duckdb":
        import duckdb  # noqa: F401  (imported lazily by the engine; keep the import out of the timing)
    rss0 = _rss_mb()
    c0 = _cpu_s()
    t0 = time.perf_counter()
    if impl == "duckdb":
        counts = E.count_windows(act, index, windows, engine="duckdb")
    elif impl == "pandas_engine":
        counts = E.count_windows(act, index, windows, engine="pandas")
    elif impl == "spark":
        from spstudy.engine import spark_session

        spark_session()  # start the JVM before timing: session start-up is reported separately
        extra["spark_startup_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        counts = E.count_windows(act, index, windows, engine="spark")
    elif impl == "pandas_naive":
        import straightforward_pandas as sp

        counts, info = sp.count_windows(act, index, windows)
        extra["read_seconds"] = info["read_seconds"]
    else:
        raise ValueError(f"impl: unknown {impl!r}")
    secs = time.perf_counter() - t0
    cpu = _cpu_s() - c0
    peak = _maxrss_mb()
    if parts:
        q = parts.get("duckdb query", 0.0)
        extra["breakdown"] = {"DuckDB query (incl. Arrow to pandas)": q, "index checks and typing in pandas": secs - q}
    if impl == "duckdb":
        counts.to_pickle(work / "counts.pkl")
    else:
        import straightforward_pandas as sp

        ref = pd.read_pickle(work / "counts.pkl")
        ok, msg = sp.same_counts(counts, ref)
        extra["same_as_duckdb"] = ok
        extra["check"] = msg
    if impl == "spark":
        from spstudy.engine import spark_session

        spark_session().stop()
    return {"seconds": secs, "cpu_seconds": None if impl == "spark" else cpu,  # Spark works in its JVM, not counted here
            "peak_mb": peak, "rss_before_mb": rss0, "throughput": n_rows / secs, "unit": "events/s", "index_rows": len(index), "windows": len(windows), **extra}


def w_match(spec: dict) -> dict:
    """Matching: evaluation.match_cohort (impl spstudy) or the naive all-pairs version."""
    import numpy as np
    import pandas as pd

    from spstudy import evaluation as E
    from spstudy.params import load_parameters

    _quiet()
    p = load_parameters("ncl")
    work = Path(spec["work_dir"])
    features = E.add_features(pd.read_pickle(work / "index.pkl"), pd.read_pickle(work / "counts.pkl"))
    n = len(features)
    rss0 = _rss_mb()
    if spec["impl"] == "spstudy":
        c0 = _cpu_s()
        t0 = time.perf_counter()
        data, res = E.match_cohort(features, p)
        secs = time.perf_counter() - t0
        cpu = _cpu_s() - c0
        peak = _maxrss_mb()
        data.to_pickle(work / "matched.pkl")
        res.pairs.to_pickle(work / "pairs.pkl")
        return {"seconds": secs, "cpu_seconds": cpu, "peak_mb": peak, "rss_before_mb": rss0, "throughput": n / secs, "unit": "units/s",
                "units": n, "treated": int(features["treated"].sum()), "pairs": len(res.pairs)}
    import straightforward_pandas as sp

    m = p.evaluation.matching
    c0 = _cpu_s()
    r = sp.match_naive(features, E.ps_covariates(p), list(m.exact), m.caliper_sd,
                       max_treated=spec.get("max_treated", 2000), time_budget=spec.get("time_budget", 20.0))
    cpu = _cpu_s() - c0
    peak = _maxrss_mb()
    secs = r["seconds_extrapolated"]
    cpu_x = cpu * secs / max(r["ps_seconds"] + r["loop_seconds"], 1e-9)  # extrapolated like the time
    done = list(r["pairs"].items())
    check = f"{r['treated_done']:,} treated run"
    if (work / "pairs.pkl").exists():  # spstudy's matching ran: compare
        pairs = pd.read_pickle(work / "pairs.pkl").set_index("treated_id")["control_id"]
        agree = np.mean([pairs.get(t) == c for t, c in done]) if done else float("nan")
        data = pd.read_pickle(work / "matched.pkl")
        dlogit = float(np.max(np.abs(r["logit"] - data["logit_ps"].to_numpy())))
        check += f"; same control as spstudy for {agree:.1%} of the {len(done):,} matched; max abs logit difference {dlogit:.1e}"
    else:
        check += f", {len(done):,} matched (spstudy's matching did not run: nothing to compare)"
    return {"seconds": secs, "extrapolated": r["treated_done"] < r["treated_total"], "peak_mb": peak, "rss_before_mb": rss0,
            "throughput": n / secs, "unit": "units/s", "ps_seconds": r["ps_seconds"], "loop_seconds_run": r["loop_seconds"],
            "treated_done": r["treated_done"], "treated_total": r["treated_total"],
            "cpu_seconds": cpu_x, "check": check}


def w_did(spec: dict) -> dict:
    """DiD: evaluation.effects (main design, 500 bootstrap replicates) or the naive loop."""
    import numpy as np
    import pandas as pd

    from spstudy import evaluation as E
    from spstudy.params import load_parameters

    _quiet()
    p = load_parameters("ncl")
    work = Path(spec["work_dir"])
    data = pd.read_pickle(work / "matched.pkl")
    pairs = pd.read_pickle(work / "pairs.pkl")
    months = p.evaluation.windows_months
    n_sets = int(pairs["subclass"].nunique())
    rss0 = _rss_mb()
    if spec["impl"] == "spstudy":
        c0 = _cpu_s()
        t0 = time.perf_counter()
        naive, matched = E.effects(data, pairs, months, boot=BOOT)
        secs = time.perf_counter() - t0
        cpu = _cpu_s() - c0
        peak = _maxrss_mb()
        matched.to_pickle(work / "did.pkl")
        return {"seconds": secs, "cpu_seconds": cpu, "peak_mb": peak, "rss_before_mb": rss0, "throughput": n_sets / secs, "unit": "matched sets/s",
                "matched_sets": n_sets, "estimates": len(matched)}
    import straightforward_pandas as sp

    c0 = _cpu_s()
    est, timing = sp.effects_naive(data, pairs, months, boot=BOOT, boot_run=spec.get("boot_run", 20))
    cpu = _cpu_s() - c0
    peak = _maxrss_mb()
    ref = pd.read_pickle(work / "did.pkl")
    k = ["setting", "window_months", "cohort"]
    cmp = est.merge(ref, on=k, suffixes=("", "_ref"))
    d1 = float(np.max(np.abs(cmp["did_per_1000py"] - cmp["did_per_1000py_ref"])))
    d2 = float(np.max(np.abs(cmp["ratio_of_rate_ratios"] - cmp["ratio_of_rate_ratios_ref"])))
    secs = timing["seconds_extrapolated"]
    return {"seconds": secs, "extrapolated": timing["boot_run"] < timing["boot"], "seconds_measured": timing["seconds_measured"],
            "boot_run": timing["boot_run"], "peak_mb": peak, "rss_before_mb": rss0, "throughput": n_sets / secs,
            "unit": "matched sets/s", "cpu_seconds": cpu * secs / max(timing["seconds_measured"], 1e-9),
            "check": f"{timing['boot_run']} of {BOOT} replicates run; point estimates vs spstudy: max abs difference "
                     f"{d1:.1e} (DiD per 1,000 PY), {d2:.1e} (ratio of rate ratios)"}


def w_ncl_eval(spec: dict) -> dict:
    """The whole evaluation (evaluation.run) at NCL scale: persons/referrals read with pandas,
    activity straight from Parquet through the engine. Per-stage seconds by wrapping the stages."""
    from types import SimpleNamespace

    from spstudy import evaluation as E
    from spstudy import matching as M
    from spstudy.params import load_parameters

    _quiet()
    stages: dict[str, float] = {}

    def timed(name, f):
        def g(*a, **k):
            s = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - s
        return g

    for name in ("build_cohort", "count_windows", "add_features", "match_cohort", "effects"):
        setattr(E, name, timed(name, getattr(E, name)))
    M.balance_table = timed("balance_table", M.balance_table)
    p = load_parameters("ncl")
    import duckdb  # noqa: F401  (the engine imports it lazily; keep the import out of the timing)

    rss0 = _rss_mb()
    c0 = _cpu_s()
    t0 = time.perf_counter()
    ex = SimpleNamespace(persons=_read_table(spec["data_dir"], "persons"),
                         referrals=_read_table(spec["data_dir"], "referrals"),
                         activity=_activity_path(spec["data_dir"]))
    stages["read persons, referrals"] = time.perf_counter() - t0
    res = E.run(ex, p, "ncl", engine="duckdb", boot=BOOT)
    secs = time.perf_counter() - t0
    cpu = _cpu_s() - c0
    peak = _maxrss_mb()
    sbs = res["side_by_side"]
    r12 = sbs[(sbs["window_months"] == 12) & (sbs["cohort"] == "itt")].set_index("setting")
    stages["other (run's own code)"] = secs - sum(stages.values())
    return {"seconds": secs, "cpu_seconds": cpu, "peak_mb": peak, "rss_before_mb": rss0, "stages": stages, "persons": len(ex.persons),
            "referrals": len(ex.referrals), "index_rows": len(res["index"]), "treated": int(res["index"]["treated"].sum()),
            "matched_referred": int(r12["n_matched_referred"].iloc[0]),
            "gp_12m_matched_pct": float(r12.loc["gp", "matched_pct_change"]),
            "ae_12m_matched_pct": float(r12.loc["ae", "matched_pct_change"]),
            "throughput": spec["activity_rows"] / secs, "unit": "events/s"}


def w_loader(spec: dict) -> dict:
    """The full pandas loader with contract validation (spstudy.extracts.load_extracts)."""
    from spstudy.extracts import load_extracts
    from spstudy.params import load_parameters

    _quiet()
    p = load_parameters("ncl", overrides={"data": {"extracts_dir": spec["data_dir"]}})
    t0 = time.perf_counter()
    ex = load_extracts(p)
    secs = time.perf_counter() - t0
    return {"seconds": secs, "peak_mb": _maxrss_mb(), "activity_rows": len(ex.activity),
            "throughput": len(ex.activity) / secs, "unit": "activity rows/s"}


def w_large_match(spec: dict) -> dict:
    from spstudy.matching import time_large_match

    r = time_large_match(n_treated=spec["n_treated"], n_control=spec["n_control"])
    return {"seconds": r["seconds"], "peak_mb": _maxrss_mb(), "pairs": r["n_pairs"],
            "throughput": (r["n_treated"] + r["n_control"]) / r["seconds"], "unit": "units/s"}


WORKERS = {"generate": w_generate, "pool": w_pool, "count": w_count, "match": w_match, "did": w_did,
           "ncl_eval": w_ncl_eval, "loader": w_loader, "large_match": w_large_match}


def worker_main(name: str, spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        out = {"status": "ok", **WORKERS[name](spec)}
    except Exception as exc:  # report, do not crash the whole benchmark
        out = {"status": f"failed: {type(exc).__name__}: {exc}"[:300], "traceback": traceback.format_exc()}
    Path(spec["result_path"]).write_text(json.dumps(out, default=float))
    return 0


# =============================================================================================
# Parent: run workers with a memory / time watchdog
# =============================================================================================


def _mem_total_mb() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class Runner:
    def __init__(self, work: Path, mem_limit_mb: float, log):
        self.work, self.mem_limit_mb, self.log = work, mem_limit_mb, log
        self.n = 0
        try:
            import psutil  # noqa: F401

            self.psutil = True
        except ImportError:  # pragma: no cover
            self.psutil = False

    def _tree_rss_mb(self, pid: int) -> float:
        import psutil

        try:
            proc = psutil.Process(pid)
            procs = [proc] + proc.children(recursive=True)
        except psutil.Error:
            return 0.0
        total = 0
        for q in procs:
            try:
                total += q.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def run(self, name: str, spec: dict, timeout: float) -> dict:
        """Run worker ``name`` in a fresh subprocess; kill it (and only it, by its process group)
        past ``timeout`` seconds or the memory limit. Peak memory = max(the worker's own ru_maxrss,
        the polled RSS of its process tree, which includes e.g. Spark's JVM)."""
        self.n += 1
        spec = dict(spec, result_path=str(self.work / f"result_{self.n}.json"))
        spec_path = self.work / f"spec_{self.n}.json"
        spec_path.write_text(json.dumps(spec))
        err_path = self.work / f"stderr_{self.n}.txt"
        env = dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="Agg")
        load_before = os.getloadavg()[0]
        with open(err_path, "w") as err:
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", name, "--spec", str(spec_path)],
                                    cwd=str(ROOT), stdout=err, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            t0 = time.perf_counter()
            polled, status = 0.0, None
            while proc.poll() is None:
                time.sleep(0.05)
                if self.psutil:
                    polled = max(polled, self._tree_rss_mb(proc.pid))
                elapsed = time.perf_counter() - t0
                if polled > self.mem_limit_mb:
                    status = f"stopped: memory above {self.mem_limit_mb / 1024:.0f} GB after {elapsed:.0f} s"
                elif elapsed > timeout:
                    status = f"stopped: still running after {timeout:.0f} s"
                if status:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    break
            wall = time.perf_counter() - t0
        rp = Path(spec["result_path"])
        if status is None and rp.exists():
            out = json.loads(rp.read_text())
        else:
            tail = err_path.read_text()[-400:].strip().splitlines()[-1:] if err_path.exists() else []
            out = {"status": status or f"failed (exit {proc.returncode}): {' '.join(tail)}"}
            if status and status.startswith("stopped: still"):
                out["seconds_lower_bound"] = wall
        out["peak_mb"] = max(out.get("peak_mb", 0.0) or 0.0, polled)
        out["wall_seconds"] = wall
        out["load_before"] = load_before
        if out["status"] != "ok" and "traceback" in out:
            self.log(out["traceback"].strip().splitlines()[-1])
        return out


# =============================================================================================
# Formatting
# =============================================================================================


def _fmt_s(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _fmt_rate(x) -> str:
    if not x or (isinstance(x, float) and math.isnan(x)):
        return "—"
    for div, suf in ((1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.2f}{suf}" if x / div < 10 else f"{x / div:.1f}{suf}" if x / div < 100 else f"{x / div:.0f}{suf}"
    return f"{x:.1f}"


def _fmt_n(x) -> str:
    if x is None:
        return "—"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e4 else f"{x:,}"


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        nproc = os.cpu_count()
    vers = {"python": platform.python_version()}
    for mod in ("pandas", "numpy", "pyarrow", "duckdb", "statsmodels", "scipy", "pyspark", "psutil"):
        try:
            vers[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        commit = commit + (" (working tree modified)" if dirty else "")
    except OSError:  # pragma: no cover
        commit = "unknown"
    return {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "nproc": nproc, "mem_gb": _mem_total_mb() / 1024,
            "cpu": cpu, "os": platform.platform(), "versions": vers, "commit": commit, "load_start": os.getloadavg()[0]}


STEP_NAMES = {"count": "window counting", "pool": "comparator pool", "match": "matching", "did": "difference in differences"}
IMPL_NAMES = {
    ("count", "duckdb"): "spstudy (DuckDB, Parquet)",
    ("count", "pandas_naive"): "straightforward pandas",
    ("count", "pandas_engine"): "spstudy engine='pandas'",
    ("count", "spark"): "spstudy (Spark local[2])",
    ("pool", "spstudy"): "spstudy (pandas)",
    ("match", "spstudy"): "spstudy",
    ("match", "naive"): "naive all-pairs",
    ("did", "spstudy"): "spstudy",
    ("did", "naive"): "naive bootstrap loop",
}
BASELINE = {"count": "pandas_naive", "match": "naive", "did": "naive"}


def _exponent(rows: list[tuple[str, float, float]]) -> dict | None:
    """Growth exponent b in seconds ~ rows^b from (scale label, rows, seconds): least-squares slope of
    log(seconds) on log(rows) over all points, and the slope between each consecutive pair."""
    rows = sorted((r for r in rows if r[1] and r[2] and r[2] > 0), key=lambda r: r[1])
    if len(rows) < 2:
        return None
    pts = [(math.log(n), math.log(s)) for _, n, s in rows]
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if not sxx:
        return None
    b = sum((x - mx) * (y - my) for x, y in pts) / sxx
    pairs = [(f"{rows[i][0]}->{rows[i + 1][0]}", (pts[i + 1][1] - pts[i][1]) / (pts[i + 1][0] - pts[i][0])) for i in range(len(rows) - 1)]
    return {"b": b, "scales": [r[0] for r in rows], "pairs": pairs}


def _exp_text(e: dict) -> str:
    pairs = ", ".join(f"{k} {v:.2f}" for k, v in e["pairs"])
    return f"b = {e['b']:.2f} over {', '.join(e['scales'])}" + (f" (pairwise: {pairs})" if len(e["pairs"]) > 1 else "")


def report(R: dict) -> str:
    m = R["machine"]
    L = [f"# spstudy benchmark ({m['date']})", ""]
    L += [f"Machine: {m['nproc']} cores ({m['cpu']}), {m['mem_gb']:.1f} GB RAM, {m['os']}.  ",
          "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; spstudy commit {m['commit']}.  ",
          f"Command: `{R['command']}`; total run time {R['total_seconds'] / 60:.1f} min. "
          f"1-minute load average: {m['load_start']:.1f} at the start, {R.get('load_end', float('nan')):.1f} at the end "
          f"('load' column: before each step; above {m['nproc']} means other processes competed for the cores).", ""]
    # ---- data sets
    L += ["## Data sets", "",
          "| data set | synth scale | pool_fraction | persons | referrals | activity rows | index rows (referred + pool) | generated in (s) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for lab, d in R["datasets"].items():
        rc = d.get("row_counts", {})
        L.append(f"| {lab} | {d['scale']:g} | {d['pool_fraction']:g} | {_fmt_n(rc.get('persons'))} | {_fmt_n(rc.get('referrals'))} | "
                 f"{_fmt_n(rc.get('activity'))} | {_fmt_n(d.get('index_rows'))} | {_fmt_s(d.get('seconds'))} |")
    L.append("")
    # ---- steps
    if R["steps"]:
        L += ["## Steps", "",
              "Each row ran in a fresh subprocess; peak memory is that process's peak resident set size (MB = 2^20 bytes), "
              "which includes the inputs it loaded before the timed step. Ratio = baseline seconds / spstudy seconds. "
              "`*` = extrapolated (see notes).", "",
              "| scale | activity rows | step | implementation | seconds | CPU s | peak MB | throughput | ratio | load | check |",
              "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in R["steps"]:
            ok = r["status"] == "ok"
            secs = _fmt_s(r.get("seconds")) + ("*" if r.get("extrapolated") else "") if ok else (
                f"> {_fmt_s(r['seconds_lower_bound'])}" if r.get("seconds_lower_bound") else "—")
            ratio = r.get("ratio_text", "")
            note = r.get("check", "") if ok else (r["status"][:160] + (" ..." if len(r["status"]) > 160 else ""))
            if ok and r.get("same_as_duckdb") is True:
                note = "same counts as DuckDB"
                if r.get("spark_startup_seconds") is not None:
                    note += f"; Spark session start-up ({r['spark_startup_seconds']:.0f} s) not included; CPU of the JVM not measured"
            elif ok and r.get("same_as_duckdb") is False:
                note = "COUNTS DIFFER: " + r.get("check", "")
            if ok and r.get("breakdown"):
                note = "; ".join(f"{k} {v:.1f} s" for k, v in r["breakdown"].items())
            L.append(f"| {r['scale']} | {_fmt_n(r['activity_rows'])} | {STEP_NAMES[r['step']]} | {IMPL_NAMES[(r['step'], r['impl'])]} | "
                     f"{secs} | {_fmt_s(r.get('cpu_seconds')) + ('*' if r.get('extrapolated') and r.get('cpu_seconds') else '')} | {r['peak_mb']:,.0f} | "
                     f"{(_fmt_rate(r.get('throughput')) + ' ' + r.get('unit', '')) if ok else '—'} | "
                     f"{ratio} | {r.get('load_before', float('nan')):.1f} | {note.replace('|', '/')} |")
        L.append("")
        L += ["Growth with activity rows (b in seconds ~ rows^b, least squares over the scales run):", ""]
        for k, v in R["exponents"].items():
            L.append(f"- {k}: {_exp_text(v)}" if v is not None else f"- {k}: fewer than two scales completed")
        L.append("")
    # ---- NCL
    if R.get("ncl"):
        n = R["ncl"]
        L += ["## Full NCL-scale evaluation", ""]
        if n["status"] == "ok":
            d = R["datasets"].get("NCL full", {}).get("row_counts", {})
            L += [f"`evaluation.run(ex, params, 'ncl', engine='duckdb', boot={BOOT})` on {n['persons']:,} people, "
                  f"{d.get('activity', 0):,} activity rows (read from Parquet by DuckDB) and {n['referrals']:,} referrals "
                  f"({n['treated']:,} referred people in the cohort, {n['index_rows']:,} index rows, "
                  f"{n['matched_referred']:,} matched); persons and referrals read with pandas inside the timing. "
                  f"Both designs (main and conventional sensitivity) are matched and estimated, as `run` does.", "",
                  f"**{n['seconds']:.1f} s, peak {n['peak_mb']:,.0f} MB** ({_fmt_rate(n['throughput'])} events/s). "
                  f"Matched 12-month ITT change: GP {n['gp_12m_matched_pct']:+.1f}%, A&E {n['ae_12m_matched_pct']:+.1f}%.", "",
                  "| stage | seconds |", "|---|---:|"]
            for k, v in n["stages"].items():
                L.append(f"| {k} | {v:.1f} |")
        else:
            L.append(f"Not completed: {n['status']}")
        L.append("")
        ld = R.get("loader")
        if ld:
            if ld["status"] == "ok":
                L += [f"Full pandas loader with contract validation (`extracts.load_extracts`) on the same extracts, timed separately "
                      f"(not part of the evaluation above): **{ld['seconds']:.1f} s, peak {ld['peak_mb']:,.0f} MB** "
                      f"({ld['activity_rows']:,} activity rows kept).", ""]
            else:
                L += [f"Full pandas loader (`extracts.load_extracts`): {ld['status']} (peak {ld['peak_mb']:,.0f} MB).", ""]
    # ---- large match
    lm = R.get("large_match")
    if lm:
        L += ["## Matching scale check", ""]
        if lm["status"] == "ok":
            L += [f"`matching.time_large_match(25_000, 2_000_000)` (greedy 1:1 nearest neighbour on the logit, 0.2 SD caliper, "
                  f"no replacement): **{lm['seconds']:.2f} s** matching time, {lm['pairs']:,} pairs, peak {lm['peak_mb']:,.0f} MB.", ""]
        else:
            L += [f"Not completed: {lm['status']}", ""]
    # ---- targets
    L += ["## Targets (measured, not asserted)", "", "| target | measured | met? |", "|---|---|---|"]
    for t in R["targets"]:
        L.append(f"| {t['target']} | {t['measured']} | {t['met']} |")
    L += ["", "## Notes", ""] + [f"- {x}" for x in R["notes"]]
    return "\n".join(L) + "\n"


def targets_and_ratios(R: dict) -> None:
    steps = R["steps"]
    by = {(r["scale"], r["step"], r["impl"]): r for r in steps}
    for r in steps:
        if r["impl"] in ("duckdb", "spstudy") and r["step"] in BASELINE:
            b = by.get((r["scale"], r["step"], BASELINE[r["step"]]))
            if b and r["status"] == "ok":
                if b["status"] == "ok":
                    r["ratio"] = b["seconds"] / r["seconds"]
                    r["ratio_text"] = f"{r['ratio']:.1f}x" + ("*" if b.get("extrapolated") else "")
                elif b.get("seconds_lower_bound"):
                    r["ratio"] = b["seconds_lower_bound"] / r["seconds"]
                    r["ratio_text"] = f"> {r['ratio']:.1f}x"
        if r["step"] == "pool":
            r["ratio_text"] = "1x (same code)"
    # growth exponents
    ex = {}
    for step, impl in (("count", "duckdb"), ("pool", "spstudy"), ("match", "spstudy"), ("did", "spstudy"), ("count", "pandas_naive")):
        pts = [(r["scale"], r["activity_rows"], r["seconds"]) for r in steps if r["step"] == step and r["impl"] == impl and r["status"] == "ok"]
        ex[f"{STEP_NAMES[step]}, {IMPL_NAMES[(step, impl)]}"] = _exponent(pts)
    tot = {}
    for r in steps:
        if r["impl"] in ("duckdb", "spstudy") and r["status"] == "ok":
            tot.setdefault(r["scale"], [r["activity_rows"], 0.0, 0])
            tot[r["scale"]][1] += r["seconds"]
            tot[r["scale"]][2] += 1
    pts = [(k, v[0], v[1]) for k, v in tot.items() if v[2] == 4]
    ex["all four spstudy steps together (scales where all four completed)"] = _exponent(pts)
    R["exponents"] = ex
    T = []
    n = R.get("ncl")
    if n:
        rows = R["datasets"].get("NCL full", {}).get("row_counts", {})
        desc = f"{n.get('persons', 0) / 1e6:.2f}M people, {rows.get('activity', 0) / 1e6:.1f}M activity rows, {rows.get('referrals', 0):,} referrals"
        if n["status"] == "ok":
            T.append({"target": f"Full NCL-scale evaluation under {TARGET_SECONDS:.0f} s (2 cores, 24 GB)",
                      "measured": f"{n['seconds']:.1f} s ({desc})", "met": "yes" if n["seconds"] < TARGET_SECONDS else "**no**"})
            T.append({"target": "Full NCL-scale evaluation under 4 GB peak memory",
                      "measured": f"{n['peak_mb']:,.0f} MB", "met": "yes" if n["peak_mb"] < TARGET_MB else "**no**"})
        else:
            T.append({"target": "Full NCL-scale evaluation under 60 s and 4 GB", "measured": n["status"], "met": "**no**"})
    cr = [r for r in steps if r["step"] == "count" and r["impl"] == "duckdb" and "ratio" in r]
    if cr:
        vals = ", ".join(f"{r['scale']}: {r['ratio_text']}" for r in cr)
        ok_all = all(r["ratio"] >= TARGET_SPEEDUP for r in cr)
        T.append({"target": f"Window counting at least {TARGET_SPEEDUP:.0f}x faster than the straightforward pandas baseline",
                  "measured": vals, "met": "yes" if ok_all else ("**no** (not at every scale)" if any(r["ratio"] >= TARGET_SPEEDUP for r in cr) else "**no**")})
    for key in ("window counting, spstudy (DuckDB, Parquet)", "all four spstudy steps together (scales where all four completed)"):
        e = ex.get(key)
        if e is not None:
            T.append({"target": f"Time grows no worse than linearly with activity rows: {key}",
                      "measured": _exp_text(e), "met": "yes" if e["b"] <= TARGET_EXPONENT else "**no**"})
    R["targets"] = T


def update_readme(text: str) -> None:
    path = HERE / "README.md"
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    body = path.read_text()
    if start not in body or end not in body:
        print(f"note: {path} has no {start} ... {end} block; not updated")
        return
    title, block = text.split("\n", 1)
    block = f"Run of {title.split('(')[-1].rstrip(')')}.\n" + block  # the level-1 title becomes a dated line
    block = block.replace("\n## ", "\n### ")
    new = body.split(start)[0] + start + "\n" + block.strip() + "\n" + end + body.split(end, 1)[1]
    path.write_text(new)
    print(f"updated {path}")


# =============================================================================================
# Main
# =============================================================================================


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Benchmark the spstudy evaluation steps against straightforward pandas.")
    ap.add_argument("--scales", default="1,10,100", help="multiples of NCL-sample scale (1x = synth scale 0.1, pool 0.25); default 1,10,100")
    ap.add_argument("--quick", action="store_true", help="scales 1,10 only")
    ap.add_argument("--no-ncl", action="store_true", help="skip the full NCL-scale evaluation and loader")
    ap.add_argument("--no-loader", action="store_true", help="skip timing the full pandas loader on the NCL-scale extracts")
    ap.add_argument("--no-large-match", action="store_true", help="skip the 25,000 x 2,000,000 matching check")
    ap.add_argument("--engine-pandas", action="store_true", help="also time spstudy's own engine='pandas' window counting")
    ap.add_argument("--spark", action="store_true", help="also time window counting on Spark (local[2]; scales up to 10x)")
    ap.add_argument("--out", default=str(HERE / "results" / "latest.md"), help="Markdown results file (a .json sits next to it)")
    ap.add_argument("--data-dir", default=None, help="keep generated extracts here and reuse them on later runs (default: a temp dir, deleted)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--baseline-timeout", type=float, default=300.0, help="seconds before a pandas baseline is stopped (reported as a lower bound)")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds before any other step is stopped")
    ap.add_argument("--mem-limit-gb", type=float, default=None, help="stop a step above this resident memory (default 80%% of RAM)")
    ap.add_argument("--readme", action="store_true", help="copy the results into benchmarks/README.md")
    ap.add_argument("--render", help=argparse.SUPPRESS)  # re-render a results .json (development)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        return worker_main(args.worker, args.spec)
    if args.render:
        R = json.loads(Path(args.render).read_text())
        targets_and_ratios(R)
        text = report(R)
        Path(args.out).write_text(text)
        print(text)
        if args.readme:
            update_readme(text)
        return 0
    scales = [1, 10] if args.quick else [int(s) for s in args.scales.split(",") if s.strip()]
    if any(s <= 0 for s in scales):
        raise SystemExit(f"--scales: positive integers please, got {args.scales!r}")
    T0 = time.perf_counter()

    def log(msg: str) -> None:
        el = time.perf_counter() - T0
        print(f"[{int(el // 60):02d}:{int(el % 60):02d}] {msg}", flush=True)

    mem_limit = (args.mem_limit_gb * 1024) if args.mem_limit_gb else 0.8 * _mem_total_mb()
    keep = args.data_dir is not None
    data_root = Path(args.data_dir) if keep else Path(tempfile.mkdtemp(prefix="spstudy_bench_", dir="/tmp"))
    data_root.mkdir(parents=True, exist_ok=True)
    work_root = Path(tempfile.mkdtemp(prefix="spstudy_bench_work_", dir="/tmp"))
    runner = Runner(work_root, mem_limit, log)
    R = {"machine": machine_info(), "command": " ".join(["benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
         "datasets": {}, "steps": [], "notes": []}
    m = R["machine"]
    log(f"machine: {m['nproc']} cores, {m['mem_gb']:.1f} GB, {m['cpu']}; scales {scales}; data in {data_root}")

    def dataset(label: str, scale: float, pool: float) -> dict | None:
        d = data_root / f"scale{scale:g}_pool{pool:g}_seed{args.seed}"
        info = {"scale": scale, "pool_fraction": pool, "dir": str(d)}
        R["datasets"][label] = info
        ij = d / "extract_info.json"
        if keep and ij.exists():
            meta = json.loads(ij.read_text())
            info.update(row_counts=meta["row_counts"], seconds=None, reused=True)
            log(f"{label}: reusing extracts in {d}")
            return info
        log(f"{label}: generating synth scale {scale:g}, pool_fraction {pool:g} ...")
        r = runner.run("generate", {"data_dir": str(d), "seed": args.seed, "scale": scale, "pool_fraction": pool}, args.timeout)
        if r["status"] != "ok":
            log(f"{label}: generation {r['status']}")
            info["status"] = r["status"]
            return None
        info.update(row_counts=r["row_counts"], seconds=r["seconds"], peak_mb=r["peak_mb"])
        log(f"{label}: {r['row_counts']['persons']:,} persons, {r['row_counts']['activity']:,} activity rows in {r['seconds']:.0f} s")
        return info

    def step(label: str, d: dict, work: Path, step_name: str, impl: str, timeout: float, **extra) -> dict:
        spec = {"data_dir": d["dir"], "work_dir": str(work), "impl": impl, "activity_rows": d["row_counts"]["activity"], **extra}
        log(f"{label}: {STEP_NAMES[step_name]} - {IMPL_NAMES[(step_name, impl)]} ...")
        r = runner.run(step_name, spec, timeout)
        r.update(scale=label, step=step_name, impl=impl, activity_rows=d["row_counts"]["activity"])
        R["steps"].append(r)
        if r["status"] == "ok":
            log(f"{label}: {STEP_NAMES[step_name]} - {IMPL_NAMES[(step_name, impl)]}: {r['seconds']:.2f} s"
                f"{' (extrapolated)' if r.get('extrapolated') else ''}, peak {r['peak_mb']:,.0f} MB"
                + (f"; {r['check']}" if r.get("check") else ""))
        else:
            log(f"{label}: {STEP_NAMES[step_name]} - {IMPL_NAMES[(step_name, impl)]}: {r['status']}")
        return r

    try:
        if not args.no_large_match:
            log("matching scale check: 25,000 treated vs 2,000,000 controls ...")
            R["large_match"] = runner.run("large_match", {"n_treated": 25_000, "n_control": 2_000_000}, args.timeout)
            lm = R["large_match"]
            log(f"matching scale check: {lm.get('seconds', float('nan')):.2f} s, peak {lm['peak_mb']:,.0f} MB ({lm['status']})")

        for s in scales:
            label = f"{s}x"
            sc, pool = scale_spec(s)
            d = dataset(label, sc, pool)
            if d is None:
                continue
            work = work_root / label
            work.mkdir()
            r = step(label, d, work, "pool", "spstudy", args.timeout)
            if r["status"] != "ok":
                continue
            d["index_rows"] = r["index_rows"]
            r = step(label, d, work, "count", "duckdb", args.timeout)
            if r["status"] != "ok":
                continue
            step(label, d, work, "count", "pandas_naive", args.baseline_timeout)
            if args.engine_pandas:
                step(label, d, work, "count", "pandas_engine", args.baseline_timeout)
            if args.spark and s <= 10:
                step(label, d, work, "count", "spark", args.timeout)
            r = step(label, d, work, "match", "spstudy", args.timeout)
            step(label, d, work, "match", "naive", args.baseline_timeout, max_treated=2000, time_budget=20.0)
            if r["status"] == "ok":
                r = step(label, d, work, "did", "spstudy", args.timeout)
                if r["status"] == "ok":
                    step(label, d, work, "did", "naive", args.baseline_timeout, boot_run=20)
            if not keep:
                shutil.rmtree(d["dir"], ignore_errors=True)

        if not args.no_ncl:
            d = dataset("NCL full", NCL_SCALE, NCL_POOL)
            if d is not None:
                log("NCL full: evaluation.run (DuckDB, activity from Parquet) ...")
                n = runner.run("ncl_eval", {"data_dir": d["dir"], "activity_rows": d["row_counts"]["activity"]}, args.timeout)
                R["ncl"] = n
                if n["status"] == "ok":
                    d["index_rows"] = n["index_rows"]
                    log(f"NCL full: {n['seconds']:.1f} s, peak {n['peak_mb']:,.0f} MB")
                else:
                    log(f"NCL full: {n['status']}")
                if not args.no_loader:
                    log("NCL full: full pandas loader with validation (extracts.load_extracts) ...")
                    R["loader"] = runner.run("loader", {"data_dir": d["dir"]}, args.baseline_timeout * 2)
                    ld = R["loader"]
                    log(f"NCL full: loader {ld.get('seconds', float('nan')):.1f} s, peak {ld['peak_mb']:,.0f} MB ({ld['status']})")
                if not keep:
                    shutil.rmtree(d["dir"], ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(data_root, ignore_errors=True)
        shutil.rmtree(work_root, ignore_errors=True)

    R["total_seconds"] = time.perf_counter() - T0
    R["load_end"] = os.getloadavg()[0]
    R["notes"] = [
        f"NCL-sample scale: 1x = synth scale {BASE_SCALE} with pool_fraction {BASE_POOL} (every referred person plus a 25% sample "
        "of the non-referred registered population); Nx = synth scale N x 0.1, same pool_fraction. Activity covers the 4-year "
        "data period of parameters/ncl.yaml. 'NCL full' = synth scale 1.0 with pool_fraction 1.0 (every registered person).",
        "Window counting counts the 12 windows of evaluation.design_windows for every index row (referred people and a "
        "comparator pool of 10 per referred person, as build_cohort draws it). Throughput = activity rows in the extract / seconds.",
        "The straightforward pandas window counting reads the Parquet into pandas inside its timing, as DuckDB does; it reads "
        "dates as datetime64 (the fast way). Its counts are compared cell by cell with DuckDB's ('check').",
        "Comparator pool construction (build_cohort) is pandas in spstudy; its baseline is the same code (ratio 1). Persons "
        "and referrals are read before the timed step.",
        "Naive matching (*): statsmodels Logit propensity score (timed in full) + an all-pairs greedy nearest-neighbour loop "
        "over every control for each treated unit, run for the first 2,000 treated units in matching order (or 20 s) and "
        "extrapolated linearly to all treated. It ignores spstudy's MatchIt details (ties, fallbacks); 'check' shows how "
        "often it picked the same control.",
        f"Naive DiD (*): the 8 matched DiDs of evaluation.effects (GP/A&E x 6/12 months x ITT/per protocol) with the cluster "
        f"bootstrap as a pandas resample-and-merge loop; 20 replicates per estimate were run and the loop time scaled to "
        f"{BOOT}. Point estimates are compared with spstudy's.",
        "Peak memory: the worker's own ru_maxrss (getrusage RUSAGE_SELF, includes DuckDB's native memory) or, if larger, the "
        "polled resident memory of its process tree (catches Spark's JVM). It includes the step's inputs (index, features).",
        f"A step is stopped above {mem_limit / 1024:.0f} GB resident memory, and a pandas baseline after "
        f"{args.baseline_timeout:.0f} s (then its time is a lower bound and the ratio a lower bound).",
        "Timings are single runs, each in a new process (imports done before the timing), with the extracts in the OS file "
        "cache; expect a few % run-to-run noise on a quiet machine, much more when the load average exceeds the cores. "
        "CPU s = user + system CPU seconds of the worker during the step (all threads); less sensitive to competing load.",
        "Window counting breakdown (spstudy rows, 'check' column): the DuckDB query (one wide SQL pass, "
        "engine.window_counts_wide) and the pandas work around it (index checks, typing).",
    ]
    targets_and_ratios(R)
    text = report(R)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(R, indent=1, default=str))
    print()
    print(text)
    print(f"written {out}")
    if args.readme:
        update_readme(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
