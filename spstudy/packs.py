"""Batch runner: one evaluation pack per borough (and one for NCL).

``spstudy packs [--borough NAME ...] [--jobs N] [--out DIR]`` runs every analysis notebook
(``notebooks/NN_*.py``, jupytext percent format) for each area with papermill, injecting the area
(whose parameters are validated before papermill sees them). Areas run in parallel up to ``--jobs``;
within an area the notebooks run in order (the SROI builds on the evaluation).

A pack is built in a temporary folder and moved into ``<out>/<area>/`` only when every notebook has
succeeded, so an interrupted or failed run never leaves a half-written pack that looks finished; a
failed area is left in ``<out>/<area>.failed/`` for inspection. One failing notebook does not stop
the others; the run prints a summary and exits non-zero.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from . import reference
from .checksums import sha256
from .params import ParameterError, load_parameters
from .publish import read_artefacts, write_csv
from .report import render_html, write_excel

NOTEBOOKS_DIR = reference.PROJECT_ROOT / "notebooks"
KEY_PACKAGES = ["spstudy", "pandas", "numpy", "scipy", "statsmodels", "geopandas", "matplotlib", "seaborn",
                "duckdb", "pyspark", "papermill", "jupytext", "nbconvert", "pyarrow", "pydantic", "xlsxwriter"]


@dataclass
class AreaResult:
    area: str
    ok: bool = True
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    path: Path | None = None


def notebooks(names: list[str] | None = None) -> list[Path]:
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
    if names:
        found = [p for p in found if p.stem in names or p.name in names]
    return found


def kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    return "spstudy" if "spstudy" in specs else "python3"


def git_commit() -> str:
    try:
        root = reference.PROJECT_ROOT
        c = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
        return c + ("-dirty" if dirty else "")
    except Exception:
        return "unknown"


def run_notebook(nb_path: Path, out_nb: Path, parameters: dict, kernel: str, retries: int = 1):
    """Execute one jupytext notebook with papermill; retry once if the kernel fails to start."""
    import jupytext
    import papermill as pm

    nb = jupytext.read(nb_path)
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "spstudy (Python 3)", "language": "python"}
    out_nb = Path(out_nb).resolve()
    tmp_in = out_nb.with_suffix(".input.ipynb")
    jupytext.write(nb, tmp_in, fmt="ipynb")
    try:
        for attempt in range(retries + 1):
            try:
                pm.execute_notebook(str(tmp_in), str(out_nb), parameters=parameters, kernel_name=kernel,
                                    cwd=str(NOTEBOOKS_DIR), progress_bar=False, log_output=False, request_save_on_cell_execute=False)
                return
            except (RuntimeError, OSError) as e:  # kernel start race (ZMQ address in use, kernel died on start)
                if attempt < retries and ("Address already in use" in str(e) or "Kernel died" in str(e) or "timed out" in str(e).lower()):
                    time.sleep(2)
                    continue
                raise
    finally:
        tmp_in.unlink(missing_ok=True)


def _ledger(pack: Path) -> pd.DataFrame | None:
    p = pack / "work" / "ledger.csv"
    return pd.read_csv(p) if p.exists() else None


def build_pack_files(pack: Path, area: str, params, failed: dict[str, str]):
    """Tables (CSV), Excel, HTML and manifest from the artefacts in ``pack``."""
    tables = pack / "tables"
    tables.mkdir(exist_ok=True)
    ledger = _ledger(pack)
    for a in read_artefacts(pack):
        if a["kind"] == "table":
            shutil.copyfile(pack / "artefacts" / a["notebook"] / a["file"], tables / f"{a['notebook']}__{a['file']}")
    if ledger is not None:
        write_csv(ledger, tables / "data_quality_ledger.csv")
    info = _extract_info(params)
    label = f"Extract: {info.get('description', 'user-supplied extract')}" if info else "Extract: user-supplied"
    commit = git_commit()
    html = render_html(pack, area, params.to_dict(), ledger, failed, commit=commit, data_label=label)
    (pack / f"{area}_pack.html").write_text(html)
    write_excel(pack, pack / f"{area}_tables.xlsx", area, ledger)
    write_manifest(pack, area, params, info, commit)


def _extract_info(params) -> dict:
    p = params.extracts_path() / "extract_info.json"
    return json.loads(p.read_text()) if p.exists() else {}


def write_manifest(pack: Path, area: str, params, info: dict, commit: str):
    ex = params.extracts_path()
    inputs = {}
    for base in (ex, reference.reference_dir(), reference.PROJECT_ROOT / "parameters"):
        for f in sorted(base.rglob("*")):
            if f.is_file():
                inputs[str(f.relative_to(reference.PROJECT_ROOT)) if f.is_relative_to(reference.PROJECT_ROOT) else str(f)] = sha256(f)
    versions = {}
    for p in KEY_PACKAGES:
        try:
            versions[p] = version(p)
        except PackageNotFoundError:
            versions[p] = "not installed"
    outputs = {str(f.relative_to(pack)): sha256(f) for f in sorted((pack / "tables").glob("*.csv"))}
    manifest = {
        "area": area,
        "spstudy_version": versions.get("spstudy"),
        "git_commit": commit,
        "python": platform.python_version(),
        "packages": versions,
        "parameters": params.to_dict(),
        "seed": info.get("seed"),
        "extract_info": info,
        "inputs_sha256": inputs,
        "tables_sha256": outputs,
        "reproduce": f"git checkout {commit.removesuffix('-dirty')} && make env && .venv/bin/spstudy packs --borough {area}",
    }
    (pack / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


class Progress:
    """A progress bar over notebook runs showing area, notebook and elapsed time."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="notebook", file=sys.stderr, dynamic_ncols=True, disable=None)
        self.lock = threading.Lock()
        self.t0 = time.time()

    def running(self, area, nb):
        with self.lock:
            self.bar.set_postfix_str(f"{area}: {nb} ({time.time() - self.t0:.0f}s)")

    def done(self, area, nb, ok, secs):
        with self.lock:
            self.bar.update(1)
            self.bar.write(f"  {'ok  ' if ok else 'FAIL'} {area:10s} {nb:34s} {secs:6.1f}s")

    def close(self):
        self.bar.close()


def run_area(area: str, out: Path, nbs: list[Path], kernel: str, progress: Progress | None) -> AreaResult:
    t0 = time.time()
    res = AreaResult(area)
    params = load_parameters(area)
    tmp = out / f".building-{area}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "notebooks").mkdir(parents=True)
    for nb in nbs:
        s = time.time()
        if progress:
            progress.running(area, nb.stem)
        try:
            run_notebook(nb, tmp / "notebooks" / f"{nb.stem}.ipynb",
                         {"area": area, "pack_dir": str(tmp.resolve()), "notebook": nb.stem}, kernel)
            ok = True
        except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
            ok = False
            res.ok = False
            res.failures[nb.stem] = f"{type(e).__name__}: {e}"[-4000:] or traceback.format_exc()
        if progress:
            progress.done(area, nb.stem, ok, time.time() - s)
    try:
        build_pack_files(tmp, area, params, res.failures)
    except Exception as e:
        res.ok = False
        res.failures["pack"] = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    final = out / area if res.ok else out / f"{area}.failed"
    old = out / f".old-{area}-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    if res.ok:
        shutil.rmtree(out / f"{area}.failed", ignore_errors=True)
    res.path = final
    res.seconds = time.time() - t0
    return res


def run(areas: list[str], out: Path, jobs: int = 2, notebook_names: list[str] | None = None) -> list[AreaResult]:
    # kernels inherit this: one BLAS thread each, since up to `jobs` kernels share the cores
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Absolute paths only: papermill's `cwd` changes the working directory of the whole process while
    # a notebook runs, so a relative path used by another thread would point somewhere else.
    out = Path(out).resolve()
    for a in areas:
        load_parameters(a)  # validate every area's parameters before any notebook runs
    nbs = notebooks(notebook_names)
    if not nbs:
        raise SystemExit(f"no notebooks found in {NOTEBOOKS_DIR} (expected NN_name.py)")
    out.mkdir(parents=True, exist_ok=True)
    kernel = kernel_name()
    progress = Progress(len(areas) * len(nbs))
    results = []
    try:
        with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futs = {pool.submit(run_area, a, out, nbs, kernel, progress): a for a in areas}
            for f in cf.as_completed(futs):
                results.append(f.result())
    finally:
        progress.close()
        for p in out.glob(".building-*"):  # interrupted builds never look finished
            shutil.rmtree(p, ignore_errors=True)
    return sorted(results, key=lambda r: areas.index(r.area))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="spstudy packs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--borough", "--area", dest="areas", action="append", choices=reference.AREAS,
                    help="area to build (repeat for several; default: NCL and all five boroughs)")
    ap.add_argument("--jobs", type=int, default=2, help="areas built in parallel (default 2)")
    ap.add_argument("--out", default=str(reference.PROJECT_ROOT / "outputs"), help="output folder (default outputs/)")
    ap.add_argument("--notebook", action="append", help="run only these notebooks (stem, e.g. 01_needs_assessment)")
    a = ap.parse_args(argv)
    areas = a.areas or list(reference.AREAS)
    try:
        results = run(areas, Path(a.out), a.jobs, a.notebook)
    except ParameterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\nSummary")
    for r in results:
        status = "ok" if r.ok else "FAILED"
        print(f"  {r.area:10s} {status:6s} {r.seconds:6.1f}s  {r.path}")
        for nb, err in r.failures.items():
            first = err.strip().splitlines()
            print(f"      {nb}: {first[0] if first else ''}\n      executed notebook: {r.path / 'notebooks' / (nb + '.ipynb')}")
    return 0 if all(r.ok for r in results) else 1
