#!/usr/bin/env python
"""Benchmarks of spstudy's heavy steps against their competitors, in one table (``make benchmark``).

Every measurement runs in a FRESH SUBPROCESS (so that peak memory belongs to one step and
includes DuckDB's and Arrow's native memory), repeated ``--repeats`` times with the
implementations interleaved (so that competing load on a shared machine hits all of them
alike); the table gives the median and the minimum wall-clock seconds and the ratio of each
competitor's median to spstudy's median measured in the same run.

==============================  ==========================================  =================================================
step                            spstudy                                     competitors
==============================  ==========================================  =================================================
window counting (1x, 10x,       ``evaluation.count_windows`` = engine       spstudy before the speed work (legacy_engine.py),
100x NCL-sample scale)          ``window_counts_wide`` on DuckDB, reading   polars (polars_competitor.py), straightforward
                                the activity Parquet                        pandas (straightforward_pandas.py; not at 100x
                                                                            unless --pandas-100x: it needs ~12 GB)
matching 25,000 x 2,000,000     ``matching.nearest_neighbour_match``        spstudy before (legacy_matching.py), R MatchIt
(score given; 1:1 and exact)    (greedy 1:1, 0.2 SD caliper on the logit)   >= 4.5.4 when Rscript has it (matchit_bench.R)
propensity score + matching     ``matching.propensity_score`` + the above   spstudy before, R MatchIt ``distance = "glm"``
import time                     ``import spstudy.methods.engine`` / ``.matching``   (heavy modules loaded are listed)
==============================  ==========================================  =================================================

Scales ("NCL-sample scale"): 1x = ``synth.generate(scale=0.1, pool_fraction=0.25)`` (about
37,000 people, 0.7 million activity rows, 25,000 index rows); 10x = scale 1.0 (7 million rows);
100x = scale 10.0 (70 million rows). See benchmarks/README.md.

Usage::

    python benchmarks/run.py                    # the default: all steps, scales 1,10,100, 3 repeats (~10 min)
    python benchmarks/run.py --scales 1,10      # skip 100x (the largest data set: ~3 min of generation)
    python benchmarks/run.py --quick            # scales 1,10, one repeat, smaller PS problem (development)
    python benchmarks/run.py --spark            # also window counting on Spark local[2] (1x, 10x)
    python benchmarks/run.py --pandas-100x      # also the pandas baseline at 100x (~12 GB, ~1 min per run)
    python benchmarks/run.py --evaluation       # also the full NCL-scale evaluation.run (one run)

Results are printed and written to ``benchmarks/results/`` (git-ignored): ``benchmark-<date>.md``
and ``.csv`` plus ``latest.md`` / ``latest.csv`` / ``latest.json``. Targets are measured and
reported, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

BASE_SCALE, BASE_POOL = 0.1, 0.25  # 1x NCL-sample scale: synth scale, pool_fraction
NCL_SCALE, NCL_POOL = 1.0, 1.0
SEED = 7
CHUNK_PERSONS = 250_000
MATCH_SEED = 1
N_TREATED, N_CONTROL = 25_000, 2_000_000
MATCHIT_MIN = (4, 5, 4)  # Debian's 4.5.1 ignores the caliper on the score scale: never compare with it

TARGET_POLARS = 1.0       # polars seconds / spstudy seconds at 10x: at least as fast
TARGET_PANDAS = 10.0      # pandas seconds / spstudy seconds at 10x
TARGET_EXPONENT = 1.1     # seconds ~ rows^b from 10x to 100x: b <= 1.1 is "no worse than linear" (timing noise)
TARGET_MATCH_S = 2.5      # matching 25,000 x 2,000,000
TARGET_MATCHIT = 10.0     # MatchIt seconds / spstudy seconds
TARGET_BOROUGH_PACK_S = 25.0  # spstudy packs --borough camden --jobs 2 (as issue 15 sets it), shipped data
TARGET_SIX_PACKS_S = 90.0     # spstudy packs --jobs 2 (all six packs and the release audit), shipped data


def scale_spec(label: int) -> tuple[float, float]:
    """(synth scale, pool_fraction) of ``label`` x NCL-sample scale."""
    return round(BASE_SCALE * label, 6), BASE_POOL


# =============================================================================================
# Workers (each runs in its own subprocess: python run.py --worker NAME --spec FILE)
# =============================================================================================


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _rss_mb() -> float:
    """Current resident memory of this process (MB)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _quiet() -> None:
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


def w_prepare(spec: dict) -> dict:
    """Generate the synthetic extracts and the cohort's index rows (evaluation.cohort)."""
    from types import SimpleNamespace

    from spstudy import synth
    from spstudy.analyses import evaluation as E
    from spstudy.inputs import reference
    from spstudy.inputs.params import load_parameters

    _quiet()
    t0 = time.perf_counter()
    s = synth.generate(spec["data_dir"], seed=spec["seed"], scale=spec["scale"], pool_fraction=spec["pool_fraction"],
                       chunk_persons=CHUNK_PERSONS)
    gen_s = time.perf_counter() - t0
    ex = SimpleNamespace(persons=_read_table(spec["data_dir"], "persons"), referrals=_read_table(spec["data_dir"], "referrals"),
                         activity=_activity_path(spec["data_dir"]))
    index = E.cohort(ex.persons, ex.referrals, reference.WHOLE_REGION, E.design_from_parameters(load_parameters("ncl"))).index
    index.to_parquet(Path(spec["data_dir"]) / "bench_index.parquet")
    return {"seconds": gen_s, "peak_mb": _maxrss_mb(), "row_counts": s["row_counts"], "index_rows": len(index)}


def _same_frame(a, b) -> tuple[bool, str]:
    """Exact equality of two wide count tables: same columns (any order), dtypes int64, values."""
    if set(a.columns) != set(b.columns):
        return False, f"columns differ: {sorted(set(a.columns) ^ set(b.columns))[:6]}"
    cols = list(b.columns)
    x = a[cols].sort_values("index_id", kind="mergesort").reset_index(drop=True)
    y = b[cols].sort_values("index_id", kind="mergesort").reset_index(drop=True)
    if x.shape != y.shape:
        return False, f"shapes differ: {x.shape} vs {y.shape}"
    n_diff = int((x.to_numpy() != y.to_numpy()).sum())
    return n_diff == 0, "identical" if n_diff == 0 else f"{n_diff} of {x.size} cells differ"


def w_count(spec: dict) -> dict:
    """Window counting: spec['impl'] in spstudy | before | polars | pandas | spark."""
    import pandas as pd

    from spstudy.analyses import evaluation as E
    from spstudy.inputs.params import load_parameters

    _quiet()
    d = Path(spec["data_dir"])
    index = pd.read_parquet(d / "bench_index.parquet")
    windows = E.design_windows(E.design_from_parameters(load_parameters("ncl")))
    act = _activity_path(str(d))
    impl = spec["impl"]
    cols = ["index_id", "person_id", "index_date", "follow_start", "follow_end"]
    extra: dict = {}
    # imports and (for Spark) session start-up stay out of the timing
    if impl in ("spstudy", "spark"):
        import duckdb  # noqa: F401

        from spstudy.methods import engine  # noqa: F401
    elif impl == "before":
        import duckdb  # noqa: F401
        import legacy_engine
    elif impl == "polars":
        import polars  # noqa: F401
        import polars_competitor
    elif impl == "pandas":
        import straightforward_pandas
    if impl == "spark":
        from spstudy.methods.engine import spark_session

        t0 = time.perf_counter()
        spark_session()
        extra["spark_startup_seconds"] = time.perf_counter() - t0
        extra["poll_peak"] = True  # the JVM's memory is not in this process's ru_maxrss
    extra["inputs_mb"] = _rss_mb()
    c0, t0 = _cpu_s(), time.perf_counter()
    if impl == "spstudy":
        out = E.count_windows(act, index, windows, engine="duckdb")
    elif impl == "spark":
        out = E.count_windows(act, index, windows, engine="spark")
    elif impl == "before":
        out = legacy_engine.window_counts_wide(act, index[cols], windows, engine="duckdb")
    elif impl == "polars":
        out, info = polars_competitor.count_windows(act, index, windows)
        extra["polars_native_seconds"] = info["native_seconds"]
    elif impl == "pandas":
        out, info = straightforward_pandas.count_windows(act, index, windows)
    else:
        raise ValueError(f"impl: unknown {impl!r}")
    secs, cpu = time.perf_counter() - t0, _cpu_s() - c0
    peak = _maxrss_mb()
    ref = d / "bench_counts_spstudy.parquet"
    if impl == "spstudy":
        if not ref.exists():
            out.to_parquet(ref)
        same, msg = _same_frame(out, pd.read_parquet(ref))
    else:
        same, msg = _same_frame(out, pd.read_parquet(ref)) if ref.exists() else (None, "no spstudy result to compare")
    if impl == "spark":
        from spstudy.methods.engine import spark_session

        spark_session().stop()
        cpu = None  # Spark works in its JVM
    return {"seconds": secs, "cpu_seconds": cpu, "peak_mb": peak, "same": same, "check": msg,
            "index_rows": len(index), "windows": len(windows), **extra}


def _match_data(n_treated: int, n_control: int, seed: int, covariates: bool):
    """Synthetic matching problem. Scores only: logit ~ N(-3, 1.2) treated, N(-4, 1.2) controls
    and a random stratum (80 levels). With covariates (for the propensity score): age, sex,
    IMD quintile, ethnic group, 8 prior-use rates (gamma, higher for the treated) and a PCN
    (40 levels): 12 covariates, 19 model columns, the shape of the evaluation's design."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_treated + n_control
    t = np.r_[np.ones(n_treated, dtype=np.int8), np.zeros(n_control, dtype=np.int8)]
    ids = np.arange(n, dtype=np.int64)
    if not covariates:
        logit = np.concatenate([rng.normal(-3, 1.2, n_treated), rng.normal(-4, 1.2, n_control)])
        return pd.DataFrame({"id": ids, "treat": t, "ps": 1 / (1 + np.exp(-logit)), "stratum": rng.integers(0, 80, n)})
    df = pd.DataFrame({"id": ids, "treat": t, "age": rng.integers(18, 95, n).astype(float),
                       "sex": rng.choice(["F", "M"], n), "imd_q": rng.choice(list("12345"), n),
                       "ethnic_group": rng.choice(["Asian", "Black", "Mixed", "Other", "White"], n)})
    for j in range(8):
        df[f"r{j}"] = rng.gamma(1 + t * 0.5, 1.0, n)
    df["pcn"] = rng.integers(0, 40, n).astype(str)
    return df


PS_COVARIATES = ["age", "sex", "imd_q", "ethnic_group"] + [f"r{j}" for j in range(8)]


def _pairs_of(res) -> "object":
    import pandas as pd

    return pd.DataFrame({"treated": res.pairs["treated_id"].astype(str), "control": res.pairs["control_id"].astype(str)})


def _same_pairs(a, b) -> tuple[bool, str]:
    ka = set(zip(a["treated"], a["control"]))
    kb = set(zip(b["treated"], b["control"]))
    if ka == kb:
        return True, f"identical {len(ka):,} pairs"
    return False, f"{len(ka ^ kb):,} pairs differ ({len(ka):,} vs {len(kb):,})"


def w_match(spec: dict) -> dict:
    """Matching on a given score (spec['ps'] False) or propensity score + matching (True);
    spec['impl'] in spstudy | before | matchit."""
    import numpy as np
    import pandas as pd

    _quiet()
    with_ps = spec["with_ps"]
    df = _match_data(spec["n_treated"], spec["n_control"], spec["seed"], with_ps)
    exact = spec["exact"] or None
    work = Path(spec["work_dir"])
    impl = spec["impl"]
    extra: dict = {}
    if impl == "matchit":
        inp = work / f"matchit_in_{'ps' if with_ps else 'score'}.csv"
        if not inp.exists():
            df.to_csv(inp, index=False)
        outp = work / f"matchit_pairs_{spec['key']}.csv"
        cmd = ["Rscript", str(HERE / "matchit_bench.R"), str(inp), str(outp), "ps" if with_ps else "score",
               ",".join(exact or []), ",".join(PS_COVARIATES)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        info = json.loads(r.stdout.strip().splitlines()[-1])
        pairs = pd.read_csv(outp, dtype=str)
        secs, extra["matchit_version"], extra["rscript_wall_seconds"] = info["seconds"], info["version"], wall
        peak, extra["poll_peak"] = None, True  # the R process's memory is polled by the parent
    else:
        if impl == "spstudy":
            from spstudy.methods import matching as M
        else:
            import legacy_matching as M
        extra["inputs_mb"] = _rss_mb()
        c0, t0 = _cpu_s(), time.perf_counter()
        d = df
        if with_ps:
            ps = M.propensity_score(df, "treat", PS_COVARIATES)
            d = df.assign(ps=ps["ps"].to_numpy())
            extra["ps_seconds"] = time.perf_counter() - t0
            np.save(work / f"ps_{impl}.npy", ps["ps"].to_numpy())
        res = M.nearest_neighbour_match(d, "treat", "ps", k=1, caliper=0.2, caliper_scale="sd", distance="logit",
                                        replace=False, exact=exact, order="largest", id_col="id")
        secs = time.perf_counter() - t0
        extra["cpu_seconds"] = _cpu_s() - c0
        peak = _maxrss_mb()
        pairs = _pairs_of(res)
        if with_ps:
            other = work / f"ps_{'before' if impl == 'spstudy' else 'spstudy'}.npy"
            if other.exists():
                extra["ps_bit_identical"] = bool(np.array_equal(np.load(other), ps["ps"].to_numpy()))
    ref = work / f"pairs_{spec['key']}_before.parquet"
    if impl == "before" and not ref.exists():
        pairs.to_parquet(ref)
    if ref.exists():
        same, msg = _same_pairs(pairs, pd.read_parquet(ref))
        if impl == "before":
            same, msg = True, f"{len(pairs):,} pairs (the reference)"
        if extra.get("ps_bit_identical") is not None:
            msg += "; scores bit-identical" if extra["ps_bit_identical"] else "; SCORES DIFFER"
    else:
        same, msg = None, f"{len(pairs):,} pairs (before not run)"
    return {"seconds": secs, "peak_mb": peak, "same": same, "check": msg, "pairs": len(pairs), **extra}


def w_import(spec: dict) -> dict:
    """Import time of one module, and which heavy modules it pulls in."""
    t0 = time.perf_counter()
    __import__(spec["module"])
    secs = time.perf_counter() - t0
    heavy = [m for m in ("pyspark", "statsmodels", "matplotlib", "duckdb", "polars", "scipy", "pyarrow")
             if m in sys.modules]
    return {"seconds": secs, "peak_mb": _maxrss_mb(), "heavy_loaded": heavy}


def w_ncl_eval(spec: dict) -> dict:
    """The whole evaluation (evaluation.run) at full NCL scale, activity read by DuckDB."""
    from types import SimpleNamespace

    from spstudy.analyses import evaluation as E
    from spstudy.inputs import reference
    from spstudy.inputs.params import load_parameters

    _quiet()
    p = load_parameters("ncl")
    import duckdb  # noqa: F401

    t0 = time.perf_counter()
    ex = SimpleNamespace(persons=_read_table(spec["data_dir"], "persons"), referrals=_read_table(spec["data_dir"], "referrals"),
                         activity=_activity_path(spec["data_dir"]))
    res = E.run(ex, E.design_from_parameters(p), reference.WHOLE_REGION, engine="duckdb", boot=500)
    return {"seconds": time.perf_counter() - t0, "peak_mb": _maxrss_mb(), "index_rows": len(res.units),
            "persons": len(ex.persons), "same": None, "check": ""}


def w_packs(spec: dict) -> dict:
    """``spstudy packs`` on the shipped synthetic extract, as a user runs it (``--borough camden --jobs 2``
    or all six with ``--jobs 2``), into a temporary folder; ``same`` compares, for the six-pack
    release, every file the golden record of the release test lists (tests/data/release_golden.sha256)."""
    import hashlib

    root = HERE.parent
    out = Path(spec["work_dir"]) / f"packs-{os.getpid()}"
    cmd = [str(Path(sys.executable).parent / "spstudy"), "packs", "--jobs", str(spec["jobs"]), "--out", str(out)]
    for a in spec["areas"]:
        cmd += ["--borough", a]
    env = {**os.environ, "SPSTUDY_PROJECT": str(root), "PYTHONHASHSEED": "0"}
    t0, c0 = time.perf_counter(), os.times()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    secs, c1 = time.perf_counter() - t0, os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"spstudy packs failed ({proc.returncode}): {proc.stderr[-500:]}")
    golden = [ln.split("  ", 1) for ln in (root / "tests" / "data" / "release_golden.sha256").read_text().splitlines() if ln.strip()]
    want = [(h, f) for h, f in golden if f.split("/", 1)[0] in spec["areas"]]
    bad = [f for h, f in want if not (out / f).exists() or hashlib.sha256((out / f).read_bytes()).hexdigest() != h]
    shutil.rmtree(out, ignore_errors=True)
    check = f"{len(want) - len(bad)} of {len(want)} files of the recorded six-pack release byte-identical" + (f"; differ: {bad[:3]}" if bad else "")
    whole = len(spec["areas"]) == 6
    if not whole:  # disclosure control is release-wide: a one-pack release protects its cells on its own
        check += " (a one-pack release is controlled on its own, so it need not equal the six-pack release; not judged)"
    return {"seconds": secs, "cpu_seconds": (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system),
            "peak_mb": None, "same": (not bad) if whole else None, "check": check}


WORKERS = {"packs": w_packs, "prepare": w_prepare, "count": w_count, "match": w_match, "import": w_import, "ncl_eval": w_ncl_eval}


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
        """Run worker ``name`` in a fresh subprocess; stop it (its own process group only) past
        ``timeout`` seconds or the memory limit. Peak memory = max(the worker's ru_maxrss, the
        polled RSS of its process tree, which includes Spark's JVM and Rscript)."""
        self.n += 1
        spec = dict(spec, result_path=str(self.work / f"result_{self.n}.json"))
        spec_path = self.work / f"spec_{self.n}.json"
        spec_path.write_text(json.dumps(spec))
        err_path = self.work / f"stderr_{self.n}.txt"
        env = dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(
            [str(ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]))
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
        rp = Path(spec["result_path"])
        if status is None and rp.exists():
            out = json.loads(rp.read_text())
        else:
            tail = err_path.read_text()[-400:].strip().splitlines()[-1:] if err_path.exists() else []
            out = {"status": status or f"failed (exit {proc.returncode}): {' '.join(tail)}"}
        # the worker's own peak (taken when its timed step ends, before any checking); the polled
        # process-tree peak only for workers whose memory lives in child processes (JVM, R)
        if out.get("poll_peak") or not out.get("peak_mb"):
            out["peak_mb"] = max(out.get("peak_mb") or 0.0, polled)
        out["load_before"] = load_before
        if out["status"] != "ok" and "traceback" in out:
            self.log(out["traceback"].strip().splitlines()[-1])
        return out


# =============================================================================================
# Environment probes
# =============================================================================================


def matchit_available() -> tuple[bool, str]:
    """Whether Rscript with MatchIt >= 4.5.4 is on PATH (and a note saying why not)."""
    if shutil.which("Rscript") is None:
        return False, "MatchIt skipped: no `Rscript` on PATH (install R and MatchIt >= 4.5.4 from CRAN to compare)"
    try:
        r = subprocess.run(["Rscript", "-e", 'cat(as.character(packageVersion("MatchIt")))'], capture_output=True,
                           text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"MatchIt skipped: Rscript failed ({exc})"
    v = r.stdout.strip()
    if r.returncode != 0 or not re.match(r"^\d+(\.\d+)*$", v):
        return False, "MatchIt skipped: Rscript has no MatchIt package (install MatchIt >= 4.5.4 from CRAN)"
    if tuple(int(x) for x in v.split(".")[:3]) < MATCHIT_MIN:
        return False, (f"MatchIt skipped: version {v} found, {'.'.join(map(str, MATCHIT_MIN))} or later needed "
                       "(4.5.1, as packaged by Debian, ignores the caliper on the score scale)")
    return True, f"MatchIt {v}"


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
    for mod in ("pandas", "numpy", "pyarrow", "duckdb", "polars", "pyspark", "psutil"):
        try:
            vers[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        commit = commit + (" (working tree modified)" if dirty else "")
    except OSError:  # pragma: no cover
        commit = "unknown"
    return {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "nproc": nproc, "mem_gb": _mem_total_mb() / 1024,
            "cpu": cpu, "os": platform.platform(), "versions": vers, "commit": commit, "load_start": os.getloadavg()[0],
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset")}


# =============================================================================================
# Formatting
# =============================================================================================


def _fmt_s(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def _fmt_n(x) -> str:
    if x is None:
        return "—"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e4 else f"{x:,}"


def _exponent(points: list[tuple[str, float, float]]) -> dict | None:
    """Growth exponent b in seconds ~ rows^b: least-squares slope of log(seconds) on log(rows) and
    the slope between each consecutive pair of scales."""
    pts = sorted((p for p in points if p[1] and p[2] and p[2] > 0), key=lambda p: p[1])
    if len(pts) < 2:
        return None
    xy = [(math.log(n), math.log(s)) for _, n, s in pts]
    mx = sum(x for x, _ in xy) / len(xy)
    my = sum(y for _, y in xy) / len(xy)
    sxx = sum((x - mx) ** 2 for x, _ in xy)
    b = sum((x - mx) * (y - my) for x, y in xy) / sxx
    pairs = [(f"{pts[i][0]}->{pts[i + 1][0]}", (xy[i + 1][1] - xy[i][1]) / (xy[i + 1][0] - xy[i][0])) for i in range(len(pts) - 1)]
    return {"b": b, "scales": [p[0] for p in pts], "pairs": pairs}


def summarise(R: dict) -> None:
    """Medians, minima and ratios per (step, data, implementation); growth exponents; targets."""
    groups: dict[tuple, list[dict]] = {}
    for m in R["measurements"]:
        groups.setdefault((m["step"], m["data"], m["impl"]), []).append(m)
    rows = []
    for (step, data, impl), ms in groups.items():
        ok = [m for m in ms if m["status"] == "ok"]
        secs = [m["seconds"] for m in ok]
        row = {"step": step, "data": data, "impl": impl, "label": ms[0]["label"], "runs": len(ok), "of": len(ms),
               "median_s": statistics.median(secs) if secs else None, "min_s": min(secs) if secs else None,
               "cpu_s": statistics.median(c) if (c := [m["cpu_seconds"] for m in ok if m.get("cpu_seconds") is not None]) else None,
               "peak_mb": max((m["peak_mb"] or 0) for m in ms) or None,
               "inputs_mb": max((m.get("inputs_mb") or 0) for m in ms) or None,
               "same": None if not ok else (all(m.get("same") for m in ok) if all(m.get("same") is not None for m in ok) else None),
               "check": ok[-1].get("check", "") if ok else ms[-1]["status"], "extra": {k: v for k, v in (ok[-1] if ok else ms[-1]).items()
                                                                                     if k in ("polars_native_seconds", "ps_seconds", "spark_startup_seconds",
                                                                                              "matchit_version", "heavy_loaded", "rows", "index_rows")}}
        if ok and "polars_native_seconds" in ok[0]:
            row["extra"]["polars_native_median_s"] = statistics.median(m["polars_native_seconds"] for m in ok)
        if ok and "ps_seconds" in ok[0]:
            row["extra"]["ps_median_s"] = statistics.median(m["ps_seconds"] for m in ok)
        rows.append(row)
    base = {(r["step"], r["data"]): r for r in rows if r["impl"] == "spstudy"}
    for r in rows:  # matching: 'before' wrote the reference pairs, so it agrees with spstudy iff spstudy agrees with it
        b = base.get((r["step"], r["data"]))
        if r["impl"] == "before" and r["step"].startswith(("matching", "propensity")) and b:
            r["same"], r["check"] = b["same"], ""
    for r in rows:
        b = base.get((r["step"], r["data"]))
        r["ratio"] = (r["median_s"] / b["median_s"]) if (b and r["median_s"] and b["median_s"] and r["impl"] != "spstudy") else None
    R["rows"] = rows
    # growth with activity rows (window counting)
    ex, ex_cpu = {}, {}
    for impl in sorted({r["impl"] for r in rows if r["step"] == "window counting"}):
        for out, key in ((ex, "median_s"), (ex_cpu, "cpu_s")):
            pts = [(r["data"].split(":")[0], R["datasets"][r["data"].split(":")[0]]["row_counts"]["activity"], r[key])
                   for r in rows if r["step"] == "window counting" and r["impl"] == impl and r[key]]
            out[impl] = _exponent(pts)
    R["exponents"], R["exponents_cpu"] = ex, ex_cpu
    # targets
    T = []
    by = {(r["step"], r["data"].split(":")[0], r["impl"]): r for r in rows}
    sp10, pl10, pd10 = (by.get(("window counting", "10x", i)) for i in ("spstudy", "polars", "pandas"))
    if sp10 and pl10 and pl10["ratio"]:
        T.append(("Window counting at 10x at least as fast as polars", f"polars / spstudy = {pl10['ratio']:.2f}x "
                  f"({_fmt_s(pl10['median_s'])} s vs {_fmt_s(sp10['median_s'])} s)", pl10["ratio"] >= TARGET_POLARS))
    if sp10 and pd10 and pd10["ratio"]:
        T.append((f"Window counting at 10x at least {TARGET_PANDAS:.0f}x the straightforward pandas baseline",
                  f"pandas / spstudy = {pd10['ratio']:.1f}x ({_fmt_s(pd10['median_s'])} s vs {_fmt_s(sp10['median_s'])} s)",
                  pd10["ratio"] >= TARGET_PANDAS))
    for what, exs in (("wall-clock", ex), ("CPU", ex_cpu)):
        e = exs.get("spstudy")
        if e:
            last = e["pairs"][-1]
            T.append((f"Window counting {what} time grows no worse than linearly with activity rows (10x to 100x)",
                      f"b = {e['b']:.2f} over {', '.join(e['scales'])}; pairwise " + ", ".join(f"{k} {v:.2f}" for k, v in e["pairs"]),
                      (last[1] <= TARGET_EXPONENT) if "100x" in e["scales"] else None))
    for key, label in (("matching (score given), 1:1", "1:1, caliper"), ("matching (score given), 1:1 exact", "1:1, caliper, exact strata")):
        r = next((x for x in rows if x["step"] == key and x["impl"] == "spstudy"), None)
        if r and r["median_s"]:
            T.append((f"Matching 25,000 x 2,000,000 ({label}) under {TARGET_MATCH_S} s", f"{_fmt_s(r['median_s'])} s",
                      r["median_s"] < TARGET_MATCH_S))
        mi = next((x for x in rows if x["step"] == key and x["impl"] == "matchit" and x["ratio"]), None)
        if mi:
            T.append((f"Matching ({label}) at least {TARGET_MATCHIT:.0f}x MatchIt", f"MatchIt / spstudy = {mi['ratio']:.1f}x",
                      mi["ratio"] >= TARGET_MATCHIT))
    for data, limit in (("Camden pack, --jobs 2", TARGET_BOROUGH_PACK_S), ("six packs, --jobs 2", TARGET_SIX_PACKS_S)):
        r = by.get(("pack build", data, "spstudy"))
        if r and r["median_s"]:
            T.append((f"`spstudy packs` {data.replace('Camden pack', '--borough camden').replace('six packs', 'all six packs')} "
                      f"under {limit:.0f} s, same bytes", f"{_fmt_s(r['median_s'])} s; {r['check']}",
                      r["median_s"] < limit and r["same"] is not False))
    R["targets"] = [{"target": t, "measured": m, "met": {True: "yes", False: "**no**", None: "not measured (run 100x)"}[ok]}
                    for t, m, ok in T]


IMPL_LABEL = {"spstudy": "spstudy", "before": "spstudy before (f442b29)", "polars": "polars", "pandas": "pandas (straightforward)",
              "spark": "spstudy on Spark local[2]", "matchit": "R MatchIt"}


def table_rows(R: dict) -> list[dict]:
    out = []
    for r in R["rows"]:
        same = {True: "yes", False: "**NO**", None: "—"}[r["same"]]
        out.append({
            "step": r["step"], "data": r["data"], "implementation": r["label"],
            "median s": _fmt_s(r["median_s"]), "min s": _fmt_s(r["min_s"]), "CPU s": _fmt_s(r["cpu_s"]),
            "runs": f"{r['runs']}/{r['of']}",
            "x spstudy's time": "—" if r["step"] == "import time" else "1" if r["impl"] == "spstudy" else (
                f"{r['ratio']:.2f}" if r["ratio"] else "—"),
            "peak MB": f"{r['peak_mb']:,.0f}" if r["peak_mb"] else "—",
            "of which inputs MB": f"{r['inputs_mb']:,.0f}" if r.get("inputs_mb") else "—",
            "same result": same, "notes": _notes(r),
        })
    return out


def _notes(r: dict) -> str:
    x = r["extra"]
    bits = []
    if "polars_native_median_s" in x:
        bits.append(f"{_fmt_s(x['polars_native_median_s'])} s to the polars frame (median), rest is to_pandas")
    if "ps_median_s" in x:
        bits.append(f"propensity score {_fmt_s(x['ps_median_s'])} s")
    if "spark_startup_seconds" in x:
        bits.append(f"session start-up {x['spark_startup_seconds']:.0f} s not included; the first query of a new session includes Spark's warm-up")
    if "matchit_version" in x:
        bits.append(f"MatchIt {x['matchit_version']}")
    if "heavy_loaded" in x:
        bits.append("loads " + (", ".join(x["heavy_loaded"]) if x["heavy_loaded"] else "none of pyspark/statsmodels/matplotlib/duckdb/polars/scipy/pyarrow"))
    if r["check"] and r["check"] not in ("identical",):
        bits.append(r["check"])
    return "; ".join(bits).replace("|", "/")


def report(R: dict) -> str:
    m = R["machine"]
    L = [f"# spstudy benchmark ({m['date']})", ""]
    L += [f"Machine: {m['nproc']} cores ({m['cpu']}), {m['mem_gb']:.1f} GB RAM, {m['os']}; OPENBLAS_NUM_THREADS={m['blas_threads']}.  ",
          "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; spstudy commit {m['commit']}.  ",
          f"Command: `{R['command']}`; total {R['total_seconds'] / 60:.1f} min; 1-minute load average {m['load_start']:.1f} "
          f"at the start, {R.get('load_end', float('nan')):.1f} at the end (above {m['nproc']}: other processes competed).", ""]
    if R["datasets"]:
        L += ["Data sets (synthetic NCL, `synth.generate`; index rows = referred people + comparator pool):", "",
              "| data | synth scale | pool_fraction | persons | activity rows | index rows |", "|---|---:|---:|---:|---:|---:|"]
        for lab, d in R["datasets"].items():
            rc = d.get("row_counts", {})
            L.append(f"| {lab} | {d['scale']:g} | {d['pool_fraction']:g} | {_fmt_n(rc.get('persons'))} | {_fmt_n(rc.get('activity'))} | "
                     f"{_fmt_n(d.get('index_rows'))} |")
        L.append("")
    rows = table_rows(R)
    L += ["## Results", "",
          f"Each measurement is a fresh process; {R['repeats']} runs per implementation, interleaved. `x spstudy's time` = the "
          "implementation's median / spstudy's median in this run (above 1: spstudy is faster). CPU s = median user + "
          "system CPU seconds of the worker process (all its threads; not for Spark's JVM or R). Peak MB = the largest peak "
          "resident memory of the runs when the timed step ends (MB = 2^20 bytes; for Spark and R the polled peak of the "
          "process tree), including the resident memory before the step (imports and inputs: `of which inputs MB`). `same result` = "
          "exactly the same output as spstudy (window counts: every cell; matching: the same (treated, control) pairs).", ""]
    cols = list(rows[0].keys()) if rows else []
    L += ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if c in ("median s", "min s", "CPU s", "x spstudy's time", "peak MB", "of which inputs MB") else "---" for c in cols) + "|"]
    for r in rows:
        L.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    L.append("")
    if R["exponents"]:
        L += ["Growth of window-counting time with activity rows (b in seconds ~ rows^b; medians; b = 1 is linear):", ""]
        for impl, e in R["exponents"].items():
            c = R["exponents_cpu"].get(impl)
            if e:
                L.append(f"- {IMPL_LABEL.get(impl, impl)}: wall b = {e['b']:.2f} over {', '.join(e['scales'])}"
                         + (" (pairwise " + ", ".join(f"{k} {v:.2f}" for k, v in e["pairs"]) + ")" if len(e["pairs"]) > 1 else "")
                         + (f"; CPU b = {c['b']:.2f}" + (" (pairwise " + ", ".join(f"{k} {v:.2f}" for k, v in c["pairs"]) + ")"
                                                          if len(c["pairs"]) > 1 else "") if c else ""))
        L.append("")
    L += ["## Targets (measured, not asserted)", "", "| target | measured | met? |", "|---|---|---|"]
    for t in R["targets"]:
        L.append(f"| {t['target']} | {t['measured']} | {t['met']} |")
    L += ["", "## Notes", ""] + [f"- {x}" for x in R["notes"]]
    return "\n".join(L) + "\n"


def write_csv(R: dict, path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["date", "machine", "step", "data", "implementation", "median_seconds", "min_seconds", "runs",
                    "ratio_to_spstudy", "peak_mb", "same_result", "notes"])
        mach = f"{R['machine']['nproc']} cores {R['machine']['cpu']}, {R['machine']['mem_gb']:.1f} GB"
        for r in R["rows"]:
            w.writerow([R["machine"]["date"], mach, r["step"], r["data"], r["label"],
                        "" if r["median_s"] is None else f"{r['median_s']:.4f}", "" if r["min_s"] is None else f"{r['min_s']:.4f}",
                        r["runs"], "" if r["ratio"] is None else f"{r['ratio']:.3f}", "" if not r["peak_mb"] else f"{r['peak_mb']:.0f}",
                        {True: "yes", False: "no", None: ""}[r["same"]], _notes(r)])


def update_readme(text: str) -> None:
    path = HERE / "README.md"
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    body = path.read_text()
    if start not in body or end not in body:
        print(f"note: {path} has no {start} ... {end} block; not updated")
        return
    title, block = text.split("\n", 1)
    block = f"Run of {title.split('(')[-1].rstrip(')')}.\n" + block.replace("\n## ", "\n### ")
    path.write_text(body.split(start)[0] + start + "\n" + block.strip() + "\n" + end + body.split(end, 1)[1])
    print(f"updated {path}")


# =============================================================================================
# Main
# =============================================================================================


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Benchmark spstudy's window counting and matching against their competitors.")
    ap.add_argument("--scales", default="1,10,100", help="window-counting scales, multiples of NCL-sample scale (default 1,10,100)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per implementation and step (default 3; medians reported)")
    ap.add_argument("--quick", action="store_true", help="scales 1,10, one run each, a 250k-control PS problem (development)")
    ap.add_argument("--no-counting", action="store_true", help="skip window counting")
    ap.add_argument("--no-matching", action="store_true", help="skip the matching steps")
    ap.add_argument("--no-imports", action="store_true", help="skip the import-time step")
    ap.add_argument("--no-packs", action="store_true", help="skip the pack builds (one borough pack, all six packs)")
    ap.add_argument("--no-before", action="store_true", help="skip the 'spstudy before' rows (pre-speed-work code)")
    ap.add_argument("--pandas-100x", action="store_true", help="also run the pandas baseline at 100x (about 12 GB)")
    ap.add_argument("--spark", action="store_true", help="also window counting on Spark local[2] (scales up to 10x, one run)")
    ap.add_argument("--evaluation", action="store_true", help="also the full NCL-scale evaluation.run (one run)")
    ap.add_argument("--out-dir", default=str(HERE / "results"), help="where the .md/.csv/.json results go (default benchmarks/results)")
    ap.add_argument("--data-dir", default=None, help="keep generated extracts here and reuse them (default: a temp dir, deleted)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before a run is stopped")
    ap.add_argument("--mem-limit-gb", type=float, default=None, help="stop a run above this resident memory (default 80%% of RAM)")
    ap.add_argument("--readme", action="store_true", help="copy the results into benchmarks/README.md")
    ap.add_argument("--render", help=argparse.SUPPRESS)  # re-render a results .json (development)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


NOTES = [
    "Window counting: the 12 windows of `evaluation.design_windows` (quarters of the year before, last month, the matching "
    "window's quarters, the DiD baseline, 6- and 12-month pre/post; they overlap) for every index row (referred people and a "
    "comparator pool of 10 per referral, as `evaluation.cohort` draws it); the same wide table (`<setting>_<window>_events`, "
    "`<window>_days`, int64) from every implementation, read from the same Parquet folder inside the timing.",
    "spstudy before = the engine and matching code before the speed work, kept verbatim in benchmarks/legacy_engine.py and "
    "benchmarks/legacy_matching.py; its results must be identical.",
    "polars = benchmarks/polars_competitor.py: lazy scan, join, one group_by with a conditional sum per window and setting; "
    "timed to the pandas frame (spstudy returns pandas); the notes give its time to the polars frame.",
    "pandas = benchmarks/straightforward_pandas.py: read_parquet, merge on person_id, filter, one groupby per window.",
    "Matching: synthetic scores (logit N(-3, 1.2) for 25,000 treated, N(-4, 1.2) for 2,000,000 controls; exact strata: 80 "
    "random levels), greedy 1:1 nearest neighbour without replacement on the logit, caliper 0.2 SD, largest score first "
    "(MatchIt `distance = <logit vector>`, `caliper = 0.2`, `m.order = \"largest\"`). Propensity score + matching: 12 "
    "covariates (19 model columns), exact on sex and PCN (MatchIt `distance = \"glm\"`, `link = \"linear.logit\"`); its "
    "time includes the logistic regression. Data are built before the clock starts.",
    "MatchIt runs only when `Rscript` has MatchIt >= 4.5.4 (benchmarks/matchit_bench.R; its time is matchit() alone, "
    "without reading the CSV). Debian's r-cran-matchit 4.5.1 ignores the caliper on the score scale and is never used.",
    "Timings on a shared machine are inflated by competing processes; ratios are measured in the same run with the "
    "implementations interleaved, and medians of the runs are reported. Fresh memory is slow to fault in on this VM, so "
    "steps that allocate a lot (100x) are slower per row than small ones for every implementation.",
]


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        return worker_main(args.worker, args.spec)
    out_dir = Path(args.out_dir)
    if args.render:
        R = json.loads(Path(args.render).read_text())
        summarise(R)
        text = report(R)
        print(text)
        return 0
    scales = [1, 10] if args.quick else [int(s) for s in args.scales.split(",") if s.strip()]
    repeats = 1 if args.quick else max(1, args.repeats)
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
         "datasets": {}, "measurements": [], "repeats": repeats, "notes": list(NOTES)}
    m = R["machine"]
    log(f"machine: {m['nproc']} cores, {m['mem_gb']:.1f} GB, {m['cpu']}; window-counting scales {scales}; {repeats} run(s) each")

    def measure(worker: str, step: str, data: str, impl: str, spec: dict, label: str | None = None) -> dict:
        r = runner.run(worker, spec, args.timeout)
        r.update(step=step, data=data, impl=impl, label=label or IMPL_LABEL.get(impl, impl))
        R["measurements"].append(r)
        if r["status"] == "ok":
            log(f"  {step} [{data}] {r['label']}: {r['seconds']:.3f} s, peak {r['peak_mb']:,.0f} MB"
                + (f"; {r['check']}" if r.get("check") else ""))
        else:
            log(f"  {step} [{data}] {r['label']}: {r['status']}")
        return r

    try:
        # ---- import time ----------------------------------------------------------------
        if not args.no_imports:
            log("import time ...")
            for _ in range(max(repeats, 5)):
                for mod in ("pandas", "spstudy.methods.engine", "spstudy.methods.matching"):
                    measure("import", "import time", f"import {mod}", "spstudy", {"module": mod},
                            label="(floor: pandas itself)" if mod == "pandas" else "spstudy")

        # ---- pack builds (the user's main job) -------------------------------------------------
        if not args.no_packs:
            log("pack builds on the shipped data ...")
            for _ in range(1 if args.quick else min(repeats, 2)):
                measure("packs", "pack build", "Camden pack, --jobs 2", "spstudy", {"areas": ["camden"], "jobs": 2, "work_dir": str(work_root)})
                measure("packs", "pack build", "six packs, --jobs 2", "spstudy",
                        {"areas": ["ncl", "barnet", "camden", "enfield", "haringey", "islington"], "jobs": 2, "work_dir": str(work_root)})

        # ---- matching ---------------------------------------------------------------------
        if not args.no_matching:
            ok_r, note = matchit_available()
            R["notes"].append(note if not ok_r else f"{note} found; compared.")
            log(note)
            impls = ["spstudy"] + ([] if args.no_before else ["before"]) + (["matchit"] if ok_r else [])
            n_c_ps = 250_000 if args.quick else N_CONTROL
            n_t_ps = 3_125 if args.quick else N_TREATED
            cases = [("matching (score given), 1:1", [], False, N_TREATED, N_CONTROL),
                     ("matching (score given), 1:1 exact", ["stratum"], False, N_TREATED, N_CONTROL),
                     ("propensity score + matching, exact", ["sex", "pcn"], True, n_t_ps, n_c_ps)]
            for step, exact, with_ps, n_t, n_c in cases:
                data = f"{n_t:,} x {n_c:,}"
                log(f"{step}: {data} ...")
                key = re.sub(r"[^a-z0-9]+", "_", step)
                order = sorted(impls, key=lambda i: i != "before")  # 'before' first: it writes the reference pairs
                for _ in range(repeats):
                    for impl in order:
                        measure("match", step, data, impl, {"impl": impl, "with_ps": with_ps, "exact": exact, "n_treated": n_t,
                                                            "n_control": n_c, "seed": MATCH_SEED, "work_dir": str(work_root), "key": key})

        # ---- window counting ----------------------------------------------------------------
        if not args.no_counting:
            for s in scales:
                label = f"{s}x"
                sc, pool = scale_spec(s)
                d = data_root / f"scale{sc:g}_pool{pool:g}_seed{args.seed}"
                info = {"scale": sc, "pool_fraction": pool, "dir": str(d)}
                R["datasets"][label] = info
                meta = d / "bench_meta.json"
                if keep and meta.exists():
                    info.update(json.loads(meta.read_text()))
                    log(f"{label}: reusing extracts in {d}")
                else:
                    log(f"{label}: generating synth scale {sc:g}, pool_fraction {pool:g} ...")
                    r = runner.run("prepare", {"data_dir": str(d), "seed": args.seed, "scale": sc, "pool_fraction": pool}, args.timeout * 2)
                    if r["status"] != "ok":
                        log(f"{label}: generation {r['status']}")
                        continue
                    info.update(row_counts=r["row_counts"], index_rows=r["index_rows"], generate_seconds=r["seconds"])
                    meta.write_text(json.dumps({k: info[k] for k in ("row_counts", "index_rows")}))
                    log(f"{label}: {r['row_counts']['activity']:,} activity rows, {r['index_rows']:,} index rows ({r['seconds']:.0f} s)")
                (d / "bench_counts_spstudy.parquet").unlink(missing_ok=True)
                data = f"{label}: {_fmt_n(info['row_counts']['activity'])} rows"
                impls = ["spstudy"] + ([] if args.no_before else ["before"]) + ["polars"]
                if s <= 10 or args.pandas_100x:
                    impls.append("pandas")
                log(f"window counting [{data}] ...")
                for _ in range(repeats):
                    for impl in impls:
                        measure("count", "window counting", data, impl, {"impl": impl, "data_dir": str(d)})
                if args.spark and s <= 10:
                    measure("count", "window counting", data, "spark", {"impl": "spark", "data_dir": str(d)})
                if not keep:
                    shutil.rmtree(d, ignore_errors=True)
            if any(s > 10 for s in scales) and not args.pandas_100x:
                R["notes"].append("The pandas baseline is not run at 100x by default (it needs about 12 GB); use --pandas-100x.")

        # ---- full evaluation ----------------------------------------------------------------
        if args.evaluation:
            d = data_root / f"scale{NCL_SCALE:g}_pool{NCL_POOL:g}_seed{args.seed}"
            log("NCL full: generating ...")
            r = runner.run("prepare", {"data_dir": str(d), "seed": args.seed, "scale": NCL_SCALE, "pool_fraction": NCL_POOL}, args.timeout * 2)
            if r["status"] == "ok":
                R["datasets"]["NCL full"] = {"scale": NCL_SCALE, "pool_fraction": NCL_POOL, "row_counts": r["row_counts"],
                                             "index_rows": r["index_rows"]}
                measure("ncl_eval", "full NCL evaluation (evaluation.run, boot=500)", f"NCL full: {_fmt_n(r['row_counts']['activity'])} rows",
                        "spstudy", {"data_dir": str(d)})
            if not keep:
                shutil.rmtree(d, ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(data_root, ignore_errors=True)
        shutil.rmtree(work_root, ignore_errors=True)

    R["total_seconds"] = time.perf_counter() - T0
    R["load_end"] = os.getloadavg()[0]
    summarise(R)
    text = report(R)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M")
    for name in (f"benchmark-{stamp}", "latest"):
        (out_dir / f"{name}.md").write_text(text)
        write_csv(R, out_dir / f"{name}.csv")
    (out_dir / "latest.json").write_text(json.dumps(R, indent=1, default=str))
    print()
    print(text)
    print(f"written {out_dir / f'benchmark-{stamp}.md'} and .csv (also latest.md, latest.csv, latest.json)")
    if args.readme:
        update_readme(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
