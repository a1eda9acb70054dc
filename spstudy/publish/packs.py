"""Batch runner: one evaluation pack per area (NCL and the five boroughs), published as one release.

``spstudy packs [--borough NAME ...] [--jobs N] [--out DIR] [--notebook NN_name ...] [--keep-notebooks]``

1. Every area's parameters are validated before anything runs.
2. ``--jobs`` worker processes (each in its own process group, one kernel each, started while the
   extract is validated) run the notebooks (``notebooks/NN_*.py``, jupytext) with papermill's
   parameter injection. The unit of work is one area's chain of notebooks: a notebook that declares
   ``spstudy: {after: [NN_name]}`` in its header runs after, and in the same kernel as, the one it
   builds on (04 after 03); every other notebook is a chain of its own, so one area's notebooks run
   in parallel too. Notebooks record what they publish in a private build folder
   (``<out>/.building-<run id>/``, unique to this run: two runs never touch each other's builds).
3. If every notebook succeeded, :mod:`spstudy.publish.release` controls, draws, audits and publishes all the
   areas together; a release that fails the disclosure audit is not moved into ``<out>``.
4. A failed notebook stops its area (its chains not yet started never start); the others still run, nothing is published, the summary names
   the cause and the executed notebook is left in ``<out>/<area>.failed/`` (not for publication).
5. Ctrl-C stops the running notebooks within seconds (their process groups are killed), queued
   notebooks never start, nothing is published, and the run exits 130.
"""

from __future__ import annotations

import argparse
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


# ------------------------------------------------------------------------- notebooks, kernels and workers

def chains(nbs: list[Path]) -> list[list[Path]]:
    """The notebooks of one area as independent chains: a notebook that declares in its header
    ``spstudy: {after: [NN_name]}`` runs after (and in the same kernel as) the notebook it builds on;
    every other notebook is a chain of its own, so an area's notebooks can run in parallel. A
    dependency that is not an earlier notebook of the run is an error (running without it would race)."""
    import jupytext

    by_stem = {p.stem: p for p in nbs}
    after: dict[str, list[str]] = {}
    for p in nbs:
        deps = (jupytext.read(p).metadata.get("spstudy") or {}).get("after") or []
        if isinstance(deps, str):
            deps = [deps]
        for d in deps:
            if d not in by_stem:
                have = sorted(q.stem for q in p.parent.glob("[0-9][0-9]_*.py"))
                raise SystemExit(f"{p.name} runs after {d!r} (its header's spstudy: after:), which is "
                                 + ("not selected: add --notebook " + d if d in have else f"not a notebook in {p.parent} (have: {have})"))
            if d >= p.stem:
                raise SystemExit(f"{p.name} runs after {d!r}, which is not an earlier notebook: notebooks run in name order")
        after[p.stem] = list(deps)
    out: list[list[Path]] = []
    placed: dict[str, int] = {}
    for p in nbs:  # notebooks are in name order; a notebook builds only on earlier ones
        deps = after[p.stem]
        targets = {placed[d] for d in deps if d in placed}
        if len(targets) > 1:  # builds on two chains: they become one
            first, *rest = sorted(targets)
            for r in rest:
                out[first].extend(out[r])
                for q in out[r]:
                    placed[q.stem] = first
                out[r] = []
            targets = {first}
        if targets:
            i = targets.pop()
            out[i].append(p)
        else:
            out.append([p])
            i = len(out) - 1
        placed[p.stem] = i
    return [sorted(c) for c in out if c]


#: prefix of the worker's messages on its stdout (anything else there is a kernel's own output)
PROTOCOL = "@@spstudy-worker@@ "

#: modules every notebook imports; a worker's kernel imports them while the extract is validated
WARM_UP = ("import spstudy.publish.publisher, spstudy.publish.charts, spstudy.publish.findings, spstudy.analyses.needs, "
           "spstudy.analyses.equity, spstudy.analyses.evaluation, spstudy.analyses.service, spstudy.analyses.valuation, "
           "spstudy.methods.plan, spstudy.methods.power, spstudy.methods.subgroups, spstudy.methods.wellbeing, statsmodels.api")


def _worker(argv) -> int:
    """``python -m spstudy.publish.packs --worker KERNEL CWD``: one kernel that runs unit after unit.

    The kernel starts, and imports :data:`WARM_UP`, as soon as the worker starts (the build validates
    the extract meanwhile). Then each line on stdin is a unit (JSON: an area and a chain of its
    notebooks), run in order in the same kernel. Each notebook gets papermill's injected-parameters
    cell after its own parameters cell, and starts with ``%reset -f`` so it sees a clean namespace
    (modules stay imported, which is the point: start-up and imports happen once per worker). One
    JSON line per notebook on stdout, then ``{"unit_done": true}``; the first failure in a chain
    stops that chain (its later notebooks build on it)."""
    kernel, cwd = argv[0], argv[1]
    # The workers start while the build validates the extract: a lower priority for them (and the kernel
    # they start) keeps that validation on a core of its own. Once it is done they only share with each other.
    with contextlib.suppress(OSError, AttributeError):
        os.nice(5)
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from papermill.parameterize import parameterize_notebook

    def cell(source, tag):
        return nbformat.from_dict({"cell_type": "code", "source": source, "metadata": {"tags": [tag]}, "outputs": [],
                                   "execution_count": None, "id": tag})

    warm = nbformat.v4.new_notebook()
    warm.cells = [cell(WARM_UP, "spstudy-warm-up")]
    warm.metadata["kernelspec"] = {"name": kernel, "display_name": "spstudy (Python 3)", "language": "python"}
    client = NotebookClient(warm, kernel_name=kernel, timeout=3600, resources={"metadata": {"path": cwd}})
    cm = None
    try:
        for attempt in range(2):  # kernel start race (ZMQ "Address already in use"): retry once
            try:
                cm = client.setup_kernel()
                cm.__enter__()
                break
            except (RuntimeError, OSError):
                if attempt:
                    raise
                time.sleep(2)
        client.execute_cell(warm.cells[0], 0)
        print(PROTOCOL + json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            spec = json.loads(line)
            for path in spec["notebooks"]:
                t = time.time()
                nb = jupytext.read(path)
                nb.metadata["kernelspec"] = {"name": kernel, "display_name": "spstudy (Python 3)", "language": "python"}
                stem = Path(path).stem
                for c in nb.cells:
                    c.metadata.setdefault("tags", [])
                nb.metadata.setdefault("papermill", {})
                nb = parameterize_notebook(nb, {"area": spec["area"], "pack_dir": spec["pack_dir"], "notebook": stem}, kernel_name=kernel)
                nb.cells.insert(0, cell("%reset -f", "spstudy-reset"))
                ok, why = True, ""
                client.nb = nb
                try:
                    for i, c in enumerate(nb.cells):
                        if c.cell_type == "code":
                            client.execute_cell(c, i)
                except CellExecutionError as e:
                    ok, why = False, f"{e.ename}: {str(e.evalue).strip().splitlines()[-1] if str(e.evalue).strip() else ''}".strip()
                nbformat.write(nb, Path(spec["out_dir"]) / f"{stem}.ipynb")
                print(PROTOCOL + json.dumps({"notebook": stem, "ok": ok, "why": why, "seconds": time.time() - t}), flush=True)
                if not ok:
                    break
            print(PROTOCOL + json.dumps({"unit_done": True}), flush=True)
    finally:
        if cm is not None:
            cm.__exit__(None, None, None)
    return 0


class Runner:
    """``jobs`` worker processes (one kernel each, each in its own process group), fed units from one queue."""

    def __init__(self, jobs: int, kernel: str, cwd: Path, log):
        self.jobs = max(1, jobs)
        self.kernel, self.cwd, self.log = kernel, str(cwd), log
        self.stop = threading.Event()
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.RLock()  # also taken by the Ctrl-C handler, which may interrupt a holder
        self.spare: list[subprocess.Popen] = []

    def start_workers(self):
        """Start the workers now: their kernels start and import while the build validates the extract."""
        for _ in range(self.jobs):
            self.spare.append(self._spawn())

    def _spawn(self) -> subprocess.Popen:
        with self.lock:
            if self.stop.is_set():
                raise Interrupted()
            p = subprocess.Popen([sys.executable, "-m", "spstudy.publish.packs", "--worker", self.kernel, self.cwd],
                                 start_new_session=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, bufsize=1)
            p.err_lines = []
            threading.Thread(target=lambda: p.err_lines.extend(p.stderr), daemon=True).start()
            self.procs.add(p)
            return p

    def _read(self, p) -> dict | None:
        for line in p.stdout:  # other lines (a kernel's own output) are not the worker's messages
            if line.startswith(PROTOCOL):
                return json.loads(line[len(PROTOCOL):])
        return None  # the worker ended

    def _died(self, p) -> str:
        p.wait()
        time.sleep(0.2)
        tail = [x.strip() for x in p.err_lines if x.strip()]
        return tail[-1] if tail else f"worker exited with code {p.returncode}"

    def run_units(self, units: list[dict], on_record) -> None:
        """Run every unit; ``on_record(unit, record)`` for each notebook run (and for a worker that died).
        A unit whose area has already failed is skipped."""
        queue = list(units)
        qlock = threading.Lock()
        failed_areas: set[str] = set()

        def next_unit():
            with qlock:
                while queue:
                    u = queue.pop(0)
                    if u["area"] not in failed_areas:
                        return u
                return None

        finished: list[dict] = []  # units that ran to the end (each notebook recorded, or a failure)

        def serve(p):
            try:
                _serve(p)
            except BaseException as e:  # a unit must never vanish without a record: fail its area, stop the build
                if not self.stop.is_set():
                    cur = current.get(threading.get_ident())
                    if cur is not None:
                        on_record(cur, {"notebook": "runner", "ok": False, "why": f"{type(e).__name__}: {e}", "seconds": 0.0})
                        with qlock:
                            failed_areas.add(cur["area"])
                            finished.append(cur)
                    errors.append(e)
                    self.stop.set()

        current: dict = {}
        errors: list = []

        def worker_died(p, u):
            """The worker ended under unit ``u``: fail its area with the worker's last words, start another."""
            on_record(u, {"notebook": "kernel", "ok": False, "why": self._died(p), "seconds": 0.0})
            with qlock:
                failed_areas.add(u["area"])
                finished.append(u)
            with self.lock:
                self.procs.discard(p)
            q = self._spawn()
            return q, self._read(q)

        def _serve(p):
            ready = self._read(p)
            while True:
                if self.stop.is_set():
                    return
                u = next_unit()
                current[threading.get_ident()] = u
                if u is None:
                    break
                if ready is None:  # the worker never started (or died): say why, and start another
                    p, ready = worker_died(p, u)
                    continue
                p.stdin.write(json.dumps(u) + "\n")
                p.stdin.flush()
                while True:
                    r = self._read(p)
                    if r is None:
                        if self.stop.is_set():
                            return
                        p, ready = worker_died(p, u)
                        break
                    if r.get("unit_done"):
                        with qlock:
                            finished.append(u)
                        break
                    on_record(u, r)
                    if not r["ok"]:
                        with qlock:
                            failed_areas.add(u["area"])
            with contextlib.suppress(OSError):
                p.stdin.close()
            p.wait()
            with self.lock:
                self.procs.discard(p)

        workers = [threading.Thread(target=serve, args=(p,), daemon=True) for p in self.spare]
        self.spare = []
        for t in workers:
            t.start()
        for t in workers:
            while t.is_alive():
                t.join(timeout=0.2)
        if errors:
            raise RuntimeError(f"the batch runner failed: {type(errors[0]).__name__}: {errors[0]}") from errors[0]
        if self.stop.is_set():
            raise Interrupted()
        done = {id(u) for u in finished}
        for u in units:  # every unit ran to its end, or its area failed (and the rest of that area was skipped)
            if id(u) not in done and u["area"] not in failed_areas:
                on_record(u, {"notebook": " + ".join(Path(n).stem for n in u["notebooks"]), "ok": False,
                              "why": "never ran (the batch runner lost it)", "seconds": 0.0})

    def close(self):
        with self.lock:
            procs = list(self.procs) + self.spare
        for p in procs:
            with contextlib.suppress(OSError, ValueError):
                p.stdin.close()
        # the kernels shut down in the background while the release starts; ``interrupt`` at the end of
        # the build kills any worker still running

    def interrupt(self):
        self.stop.set()
        with self.lock:
            for p in list(self.procs):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)


def units_of(areas: list[str], build: Path, nbs: list[Path]) -> list[dict]:
    """Every (area, chain) to run, the longest chains of each area first (they start earliest)."""
    cs = sorted(chains(nbs), key=lambda c: (-len(c), c[0].name))
    out = []
    for a in areas:
        base = build / a
        (base / "notebooks").mkdir(parents=True, exist_ok=True)
        for c in cs:
            out.append({"area": a, "pack_dir": str(base), "notebooks": [str(n) for n in c], "out_dir": str(base / "notebooks")})
    return out


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
    runner = Runner(jobs, kernel_name(), nbs[0].parent, log)
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
        runner.start_workers()  # kernels start and import while the extract is validated
        validated = validate_once(areas, build, parameters_dir, extracts_dir, log)
        (build / "build.json").write_text(json.dumps({"parameters_dir": str(Path(parameters_dir).resolve()) if parameters_dir else None,
                                                      "extracts_dir": str(Path(extracts_dir).resolve()) if extracts_dir else None,
                                                      "validated": validated}))
        by_area = {a: AreaResult(a) for a in areas}
        t0 = time.time()

        def on_record(u, r):
            res = by_area[u["area"]]
            res.seconds = time.time() - t0
            log(f"  {'ok  ' if r['ok'] else 'FAIL'} {u['area']:10s} {r['notebook']:34s} {r['seconds']:6.1f}s"
                + ("" if r["ok"] else f"  {r['why']}"))
            if not r["ok"]:
                res.ok = False
                res.failures[r["notebook"]] = r["why"]

        try:
            runner.run_units(units_of(areas, build, nbs), on_record)
        except BaseException:
            runner.interrupt()
            raise
        runner.close()
        results = [by_area[a] for a in areas]
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
        runner.interrupt()  # no worker outlives the build (they have all finished unless something failed)
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
