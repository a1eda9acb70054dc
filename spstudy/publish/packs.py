"""Batch runner: one evaluation pack per area (NCL and the five boroughs), published as one release.

``spstudy packs [--borough NAME ...] [--jobs N] [--out DIR] [--notebook NN_name ...] [--keep-notebooks]``

1. Every area's parameters are validated before anything runs.
2. Each area's notebooks (``notebooks/NN_*.py``, jupytext) run in order with papermill, each in its
   own process group, areas in parallel up to ``--jobs``. Notebooks record what they publish in a
   private build folder (``<out>/.building-<run id>/``, unique to this run: two runs never touch
   each other's builds).
3. If every notebook succeeded, :mod:`spstudy.publish.release` controls, draws, audits and publishes all the
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

from spstudy.inputs import project, reference
from spstudy.inputs.params import ParameterError, load_parameters

NOTEBOOKS_DIR: Path | None = None  # None: the project's notebooks/ (tests point the runner elsewhere)


def default_notebooks_dir() -> Path:
    return NOTEBOOKS_DIR or project.notebooks_dir()


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
    found = sorted((directory or default_notebooks_dir()).glob("[0-9][0-9]_*.py"))
    if names:
        unknown = [n for n in names if not any(p.stem == n or p.name == n for p in found)]
        if unknown:
            raise SystemExit(f"no notebook named {unknown} in {directory or default_notebooks_dir()} (have: {[p.stem for p in found]})")
        found = [p for p in found if p.stem in names or p.name in names]
    return found


def kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return "spstudy" if "spstudy" in KernelSpecManager().find_kernel_specs() else "python3"


def git_commit() -> str:
    try:
        root = project.root()
        c = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
        return c + ("-dirty" if dirty else "")
    except Exception:
        return "unknown"


# ------------------------------------------------------------------------- one notebook, one process

def _worker(argv) -> int:
    """``python -m spstudy.publish.packs --worker SPEC_JSON``: run one area's notebooks, in order, in ONE kernel.

    Each notebook gets papermill's injected-parameters cell after its own parameters cell, and starts
    with ``%reset -f`` so it sees a clean namespace (modules stay imported, which is the point: the
    kernel starts and imports once per area, not once per notebook). One JSON line per notebook on
    stdout; the first failure stops the area (later notebooks build on earlier ones)."""
    spec = json.loads(argv[0])
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from papermill.parameterize import parameterize_notebook

    client, cm = None, None
    try:
        for path in spec["notebooks"]:
            t = time.time()
            nb = jupytext.read(path)
            nb.metadata["kernelspec"] = {"name": spec["kernel"], "display_name": "spstudy (Python 3)", "language": "python"}
            stem = Path(path).stem
            for c in nb.cells:
                c.metadata.setdefault("tags", [])
            nb.metadata.setdefault("papermill", {})
            nb = parameterize_notebook(nb, {"area": spec["area"], "pack_dir": spec["pack_dir"], "notebook": stem}, kernel_name=spec["kernel"])
            nb.cells.insert(0, nbformat.from_dict({"cell_type": "code", "source": "%reset -f", "metadata": {"tags": ["spstudy-reset"]},
                                                   "outputs": [], "execution_count": None, "id": "spstudy-reset"}))
            ok, why = True, ""
            if client is None:
                client = NotebookClient(nb, kernel_name=spec["kernel"], timeout=3600, resources={"metadata": {"path": spec["cwd"]}})
                for attempt in range(2):  # kernel start race (ZMQ "Address already in use"): retry once
                    try:
                        cm = client.setup_kernel()
                        cm.__enter__()
                        break
                    except (RuntimeError, OSError):
                        if attempt:
                            raise
                        time.sleep(2)
            client.nb = nb
            try:
                for i, cell in enumerate(nb.cells):
                    if cell.cell_type == "code":
                        client.execute_cell(cell, i)
            except CellExecutionError as e:
                ok, why = False, f"{e.ename}: {str(e.evalue).strip().splitlines()[-1] if str(e.evalue).strip() else ''}".strip()
            nbformat.write(nb, Path(spec["out_dir"]) / f"{stem}.ipynb")
            print(json.dumps({"notebook": stem, "ok": ok, "why": why, "seconds": time.time() - t}), flush=True)
            if not ok:
                return 1
    finally:
        if cm is not None:
            cm.__exit__(None, None, None)
    return 0


class Runner:
    def __init__(self, jobs: int):
        self.jobs = max(1, jobs)
        self.stop = threading.Event()
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def run_area_process(self, spec: dict, log) -> list[dict]:
        """Run one area's notebooks in a worker process group; returns one record per notebook run."""
        if self.stop.is_set():
            raise Interrupted()
        cmd = [sys.executable, "-m", "spstudy.publish.packs", "--worker", json.dumps(spec)]
        with self.lock:
            if self.stop.is_set():
                raise Interrupted()
            p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.procs.add(p)
        records = []
        err_lines: list[str] = []
        t = threading.Thread(target=lambda: err_lines.extend(p.stderr), daemon=True)
        t.start()
        try:
            for line in p.stdout:
                if line.startswith("{"):
                    r = json.loads(line)
                    records.append(r)
                    log(f"  {'ok  ' if r['ok'] else 'FAIL'} {spec['area']:10s} {r['notebook']:34s} {r['seconds']:6.1f}s"
                        + ("" if r["ok"] else f"  {r['why']}"))
            p.wait()
            t.join(timeout=5)
        finally:
            with self.lock:
                self.procs.discard(p)
        if self.stop.is_set():
            raise Interrupted()
        if p.returncode != 0 and not any(not r["ok"] for r in records):
            tail = [x.strip() for x in err_lines if x.strip()]
            records.append({"notebook": "kernel", "ok": False, "why": tail[-1] if tail else f"worker exited with code {p.returncode}",
                            "seconds": 0.0})
        return records

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
    spec = {"area": area, "pack_dir": str(base), "notebooks": [str(n) for n in nbs], "kernel": kernel, "cwd": str(nbs[0].parent),
            "out_dir": str(base / "notebooks")}
    for r in runner.run_area_process(spec, log):
        if not r["ok"]:
            res.ok = False
            res.failures[r["notebook"]] = r["why"]
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
        parameters_dir: Path | None = None, extracts_dir: Path | None = None, notebooks_dir: Path | None = None, log=None,
        keep_build: Path | None = None):
    """Build and publish the packs of ``areas``; returns (list of AreaResult, ReleaseResult or None).
    ``keep_build`` (tests only) copies the private build folder there before it is deleted; it is
    never part of a pack."""
    from spstudy.publish.release import ReleaseError, publish_release

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    with contextlib.suppress(project.ProjectNotFound):  # every kernel finds the same project, whatever its working folder
        os.environ.setdefault(project.ENV, str(project.root()))
    out = Path(out).resolve()
    for a in areas:
        load_parameters(a, parameters_dir)  # every area's parameters, before any notebook runs
    nbdir = Path(notebooks_dir).resolve() if notebooks_dir else default_notebooks_dir()
    nbs = notebooks(notebook_names, nbdir)
    if not nbs:
        raise SystemExit(f"no notebooks found in {nbdir} (expected NN_name.py)")
    out.mkdir(parents=True, exist_ok=True)
    build = out / f".building-{os.getpid()}-{os.urandom(3).hex()}"
    build.mkdir()
    try:
        validated = validate_once(areas, build, parameters_dir, extracts_dir, log)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    (build / "build.json").write_text(json.dumps({"parameters_dir": str(Path(parameters_dir).resolve()) if parameters_dir else None,
                                                  "extracts_dir": str(Path(extracts_dir).resolve()) if extracts_dir else None,
                                                  "validated": validated}))
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
        if keep_build is not None and build.exists():
            shutil.copytree(build, keep_build, dirs_exist_ok=True)
        shutil.rmtree(build, ignore_errors=True)  # only this run's build folder
    return results, release


def validate_once(areas: list[str], build: Path, parameters_dir, extracts_dir, log) -> dict[str, str]:
    """Validate the extract once for the whole build (once per distinct study period and data rules),
    and write it where every notebook of the build reads it: {area: folder}."""
    from spstudy.inputs.extracts import load_extracts, write_validated

    groups: dict[str, list[str]] = {}
    for a in areas:
        p = load_parameters(a, parameters_dir)
        sig = json.dumps({"data": p.to_dict()["data"], "study": p.to_dict()["study"], "extracts": str(extracts_dir)}, sort_keys=True)
        groups.setdefault(sig, []).append(a)
    out = {}
    for i, (sig, group) in enumerate(sorted(groups.items())):
        t = time.time()
        ex = load_extracts(load_parameters(group[0], parameters_dir), extracts_dir)
        d = write_validated(ex, build / f"extract-{i}")
        log(f"  extract validated once for {', '.join(group)} ({time.time() - t:.1f}s)")
        out.update({a: str(d) for a in group})
    return out


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
    ap.add_argument("--out", default=None, help="output folder (default the project's outputs/)")
    ap.add_argument("--notebook", action="append", help="run only these notebooks (stem, e.g. 01_needs_assessment)")
    ap.add_argument("--parameters", dest="parameters_dir", help="folder of parameter files (default parameters/)")
    ap.add_argument("--extracts", dest="extracts_dir", help="extract folder (default: data.extracts_dir in the parameters)")
    ap.add_argument("--keep-notebooks", action="store_true",
                    help="keep the executed notebooks in each pack, in a folder marked not for publication")
    a = ap.parse_args(argv)
    areas = a.areas or list(reference.AREAS)
    t0 = time.time()
    try:
        results, release = run(areas, Path(a.out) if a.out else project.outputs_dir(), a.jobs, a.notebook, a.keep_notebooks, a.parameters_dir, a.extracts_dir)
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
