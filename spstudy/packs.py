"""Batch runner: one evaluation pack per area (NCL and the five boroughs), published as one release.

``spstudy packs [--borough NAME ...] [--jobs N] [--out DIR] [--notebook NN_name ...] [--keep-notebooks]``

1. Every area's parameters are validated before anything runs.
2. Each area's notebooks (``notebooks/NN_*.py``, jupytext) run in order with papermill, each in its
   own process group, areas in parallel up to ``--jobs``. Notebooks record what they publish in a
   private build folder (``<out>/.building-<run id>/``, unique to this run: two runs never touch
   each other's builds).
3. If every notebook succeeded, :mod:`spstudy.release` controls, draws, audits and publishes all the
   areas together; a release that fails the disclosure audit is not moved into ``<out>``.
4. A failed notebook stops its area; the others still run, nothing is published, the summary names
   the cause and the executed notebook is left in ``<out>/<area>.failed/`` (not for publication).
5. Ctrl-C stops the running notebooks within seconds (their process groups are killed), queued
   notebooks never start, nothing is published, and the run exits 130.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import reference
from .params import ParameterError, load_parameters

NOTEBOOKS_DIR = reference.PROJECT_ROOT / "notebooks"


@dataclass
class AreaResult:
    area: str
    ok: bool = True
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    path: Path | None = None


class Interrupted(KeyboardInterrupt):
    pass


def notebooks(names: list[str] | None = None, directory: Path | None = None) -> list[Path]:
    found = sorted((directory or NOTEBOOKS_DIR).glob("[0-9][0-9]_*.py"))
    if names:
        unknown = [n for n in names if not any(p.stem == n or p.name == n for p in found)]
        if unknown:
            raise SystemExit(f"no notebook named {unknown} in {directory or NOTEBOOKS_DIR} (have: {[p.stem for p in found]})")
        found = [p for p in found if p.stem in names or p.name in names]
    return found


def kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return "spstudy" if "spstudy" in KernelSpecManager().find_kernel_specs() else "python3"


def git_commit() -> str:
    try:
        root = reference.PROJECT_ROOT
        c = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
        return c + ("-dirty" if dirty else "")
    except Exception:
        return "unknown"


# ------------------------------------------------------------------------- one notebook, one process

def _worker(argv) -> int:
    """``python -m spstudy.packs --worker IN OUT KERNEL CWD PARAMS_JSON ERR_JSON``: run one notebook."""
    nb_path, out_nb, kernel, cwd, params_json, err_path = argv
    import jupytext
    import papermill as pm

    nb = jupytext.read(nb_path)
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "spstudy (Python 3)", "language": "python"}
    tmp_in = Path(out_nb).with_suffix(".input.ipynb")
    jupytext.write(nb, tmp_in, fmt="ipynb")
    params = json.loads(params_json)
    try:
        for attempt in range(2):
            try:
                pm.execute_notebook(str(tmp_in), out_nb, parameters=params, kernel_name=kernel, cwd=cwd, progress_bar=False,
                                    log_output=False, request_save_on_cell_execute=False)
                return 0
            except (RuntimeError, OSError) as e:  # kernel start race (ZMQ "Address already in use"): retry once
                msg = str(e)
                if attempt == 0 and ("Address already in use" in msg or "Kernel died" in msg or "timed out" in msg.lower()):
                    time.sleep(2)
                    continue
                raise
    except Exception as e:
        ename, evalue = getattr(e, "ename", type(e).__name__), getattr(e, "evalue", str(e))
        Path(err_path).write_text(json.dumps({"ename": ename, "evalue": str(evalue)[-3000:], "type": type(e).__name__}))
        return 1
    finally:
        tmp_in.unlink(missing_ok=True)
    return 0


class Runner:
    def __init__(self, jobs: int):
        self.jobs = max(1, jobs)
        self.stop = threading.Event()
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def run_notebook(self, nb: Path, out_nb: Path, params: dict, kernel: str) -> tuple[bool, str]:
        if self.stop.is_set():
            raise Interrupted()
        err = out_nb.with_suffix(".error.json")
        cmd = [sys.executable, "-m", "spstudy.packs", "--worker", str(nb), str(out_nb), kernel, str(nb.parent),
               json.dumps(params), str(err)]
        with self.lock:
            if self.stop.is_set():
                raise Interrupted()
            p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.procs.add(p)
        try:
            _, stderr = p.communicate()
        finally:
            with self.lock:
                self.procs.discard(p)
        if self.stop.is_set():
            raise Interrupted()
        if p.returncode == 0:
            return True, ""
        if err.exists():
            e = json.loads(err.read_text())
            err.unlink()
            return False, f"{e['ename']}: {e['evalue'].strip().splitlines()[-1] if e['evalue'].strip() else ''}".strip()
        tail = stderr.decode("utf-8", "replace").strip().splitlines()
        return False, (tail[-1] if tail else f"notebook process exited with code {p.returncode}")

    def interrupt(self):
        self.stop.set()
        with self.lock:
            for p in list(self.procs):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)


def run_area(runner: Runner, area: str, build: Path, nbs: list[Path], kernel: str, log) -> AreaResult:
    t0 = time.time()
    res = AreaResult(area)
    base = build / area
    (base / "notebooks").mkdir(parents=True, exist_ok=True)
    for nb in nbs:
        s = time.time()
        ok, why = runner.run_notebook(nb, base / "notebooks" / f"{nb.stem}.ipynb",
                                      {"area": area, "pack_dir": str(base), "notebook": nb.stem}, kernel)
        log(f"  {'ok  ' if ok else 'FAIL'} {area:10s} {nb.stem:34s} {time.time() - s:6.1f}s" + ("" if ok else f"  {why}"))
        if not ok:
            res.ok = False
            res.failures[nb.stem] = why
            break  # later notebooks of this area build on this one
    res.seconds = time.time() - t0
    return res


@contextlib.contextmanager
def _release_lock(out: Path):
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".release.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run(areas: list[str], out: Path, jobs: int = 2, notebook_names: list[str] | None = None, keep_notebooks: bool = False,
        parameters_dir: Path | None = None, extracts_dir: Path | None = None, notebooks_dir: Path | None = None, log=None):
    """Build and publish the packs of ``areas``; returns (list of AreaResult, ReleaseResult or None)."""
    from .release import ReleaseError, publish_release

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    out = Path(out).resolve()
    for a in areas:
        load_parameters(a, parameters_dir)  # every area's parameters, before any notebook runs
    nbdir = Path(notebooks_dir).resolve() if notebooks_dir else NOTEBOOKS_DIR
    nbs = notebooks(notebook_names, nbdir)
    if not nbs:
        raise SystemExit(f"no notebooks found in {nbdir} (expected NN_name.py)")
    out.mkdir(parents=True, exist_ok=True)
    build = out / f".building-{os.getpid()}-{os.urandom(3).hex()}"
    build.mkdir()
    (build / "build.json").write_text(json.dumps({"parameters_dir": str(Path(parameters_dir).resolve()) if parameters_dir else None,
                                                  "extracts_dir": str(Path(extracts_dir).resolve()) if extracts_dir else None}))
    kernel = kernel_name()
    runner = Runner(jobs)
    results: list[AreaResult] = []
    release = None
    old_handler = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        runner.interrupt()
        raise Interrupted()

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        pool = cf.ThreadPoolExecutor(max_workers=runner.jobs)
        try:
            futs = {pool.submit(run_area, runner, a, build, nbs, kernel, log): a for a in areas}
            for f in cf.as_completed(futs):
                results.append(f.result())
        except BaseException:
            runner.interrupt()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        results.sort(key=lambda r: areas.index(r.area))
        if all(r.ok for r in results):
            info = _extract_info(areas[0], parameters_dir, extracts_dir)
            with _release_lock(out):
                try:
                    release = publish_release(build, areas, out, nbdir, info, git_commit(), keep_notebooks=keep_notebooks,
                                              parameters_dir=parameters_dir, progress=lambda s: log(f"  release: {s}"), jobs=jobs)
                except Exception as e:  # a release that cannot be controlled, drawn or audited is not published
                    msg = str(e) if isinstance(e, ReleaseError) else f"{type(e).__name__}: {e}"
                    for r in results:
                        r.ok = False
                        r.failures["release"] = msg
            for r in results:
                r.path = out / r.area if r.ok else None
        else:
            for r in results:
                if not r.ok:
                    failed = out / f"{r.area}.failed"
                    shutil.rmtree(failed, ignore_errors=True)
                    shutil.copytree(build / r.area / "notebooks", failed / "notebooks_not_for_publication")
                    (failed / "README.txt").write_text(
                        f"The build of {r.area} failed and nothing was published. The executed notebooks are here for inspection "
                        "only: they are not disclosure-controlled. Failures:\n" + "".join(f"  {k}: {v}\n" for k, v in r.failures.items()))
                    r.path = failed
    finally:
        if in_main:
            signal.signal(signal.SIGINT, old_handler)
        shutil.rmtree(build, ignore_errors=True)  # only this run's build folder
    return results, release


def _extract_info(area: str, parameters_dir, extracts_dir) -> dict:
    p = load_parameters(area, parameters_dir)
    d = Path(extracts_dir) if extracts_dir else p.extracts_path()
    f = d / "extract_info.json"
    return json.loads(f.read_text()) if f.exists() else {}


def main(argv=None) -> int:
    if argv and argv[0] == "--worker":
        return _worker(argv[1:])
    ap = argparse.ArgumentParser(prog="spstudy packs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--borough", "--area", dest="areas", action="append", choices=reference.AREAS,
                    help="area to build (repeat for several; default: NCL and all five boroughs)")
    ap.add_argument("--jobs", type=int, default=2, help="areas built in parallel (default 2)")
    ap.add_argument("--out", default=str(reference.PROJECT_ROOT / "outputs"), help="output folder (default outputs/)")
    ap.add_argument("--notebook", action="append", help="run only these notebooks (stem, e.g. 01_needs_assessment)")
    ap.add_argument("--parameters", dest="parameters_dir", help="folder of parameter files (default parameters/)")
    ap.add_argument("--extracts", dest="extracts_dir", help="extract folder (default: data.extracts_dir in the parameters)")
    ap.add_argument("--keep-notebooks", action="store_true",
                    help="keep the executed notebooks in each pack, in a folder marked not for publication")
    a = ap.parse_args(argv)
    areas = a.areas or list(reference.AREAS)
    t0 = time.time()
    try:
        results, release = run(areas, Path(a.out), a.jobs, a.notebook, a.keep_notebooks, a.parameters_dir, a.extracts_dir)
    except ParameterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: running notebooks stopped, queued notebooks not started, nothing published", file=sys.stderr)
        return 130
    print(f"\nSummary ({time.time() - t0:.0f} s)")
    for r in results:
        print(f"  {r.area:10s} {'ok' if r.ok else 'FAILED':6s} {r.seconds:6.1f}s  {r.path or ''}")
    shown = set()
    for r in results:
        for nb, err in r.failures.items():
            if (nb, err) in shown:
                continue
            shown.add((nb, err))
            lines = (err or "").splitlines()
            print(f"\n  {r.area} {nb}: " + "\n      ".join(lines[:25]) + ("\n      ..." if len(lines) > 25 else ""))
    if release is not None:
        print("\n" + release.audit.text().splitlines()[0] + "\n" + release.audit.text().splitlines()[1])
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
