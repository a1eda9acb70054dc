"""The release: every pack of one build controlled together, drawn, written, audited, then published.

Input: a build folder holding, for each area, the private declarations and raw tables its notebooks
recorded (:mod:`spstudy.publish.publisher`, never published). Steps:

1. **Control** every table of every pack as one release (:func:`spstudy.publish.disclosure.control_release`):
   the same cell gets the same value and the same suppression in every pack; linked protection over
   totals, hierarchies, other tables and other packs; derived values from the rounded counts.
2. **Check** that a unit published in several packs (a ward, practice, PCN) shows the same numbers
   in each, and that every figure's marks come from its table.
3. **Write** each pack into a staging folder: tables (CSV), figures (PNG), the disclosure metadata
   the audit needs (``disclosure.json``: what each count cell is, no values).
4. **Audit** the staged release together with any other packs already published in the output
   folder (:func:`spstudy.publish.audit.audit`). A release that fails is not moved into place.
5. **Render** the HTML pack and Excel annex (with the output-checking annex and the audit's
   verdict) and the manifest, then move the packs into the output folder.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from importlib.metadata import distributions, version
from pathlib import Path

import pandas as pd

from spstudy.inputs import project, reference
from spstudy.inputs.checksums import sha256
from spstudy.inputs.params import load_parameters
from spstudy.publish import audit as A
from spstudy.publish import cells as C
from spstudy.publish import charts
from spstudy.publish import disclosure as D
from spstudy.publish.publisher import PRIVATE, Tables, make_view, read_private, resolve, spec_from_dict

MAX_KEY_FINDINGS = 7


class ReleaseError(RuntimeError):
    pass


@dataclass
class Pack:
    area: str
    params: object
    entries: list
    controlled: dict = field(default_factory=dict)      # table name -> Controlled
    figures: dict = field(default_factory=dict)         # figure name -> (png path, alt)
    findings: list = field(default_factory=list)        # (priority, order, notebook, text)
    texts: dict = field(default_factory=dict)           # order -> rendered text for findings in place
    ledger: pd.DataFrame | None = None


def load_items(build: Path, area: str) -> tuple[list, list[D.Item]]:
    base = build / area
    entries = read_private(base)
    items = []
    for e in entries:
        if e["kind"] == "table":
            raw = pd.read_parquet(base / PRIVATE / e["notebook"] / "tables" / f"{e['name']}.parquet")
            items.append(D.Item(area, e["notebook"], spec_from_dict(e["spec"]), raw))
    return entries, items


def _rules(packs: list[Pack]) -> D.Rules:
    rules = {(p.params.disclosure.threshold, p.params.disclosure.rounding_base) for p in packs}
    if len(rules) != 1:
        raise ReleaseError(f"the areas of one release must use the same disclosure rule; got {sorted(rules)}")
    t, b = rules.pop()
    return D.Rules(t, b)


def check_same_across_packs(packs: list[Pack]) -> list[str]:
    """A ward, practice or PCN published in several packs must show the same values in each."""
    problems = []
    seen: dict = {}
    for p in packs:
        for name, c in p.controlled.items():
            geo = [k for k, d in c.spec.rows.items() if d == "geo"]
            if not geo:
                continue
            others = [k for k in c.spec.rows if k not in geo]
            for i in range(len(c.shown)):
                code = str(c.values.at[i, geo[0]])
                if C.geo_level(code) in ("ncl", "borough") and code == C.area_code(p.area):
                    continue  # the pack's own total row
                rid = (name, code) + tuple(str(c.values.at[i, o]) for o in others)
                row = tuple(c.shown.iloc[i].tolist())
                if rid in seen and seen[rid][1] != row:
                    problems.append(f"table {name}, {code}: {seen[rid][0]} shows {seen[rid][1]} but {p.area} shows {row}")
                seen.setdefault(rid, (p.area, row))
    return problems


def read_published(pack_dir: Path) -> "Tables":
    """A published pack's tables as its figures and findings saw them (numbers parsed back from the
    CSVs, [c] and blanks as missing): so a figure or sentence can be redrawn from the pack alone."""
    import numpy as np

    from spstudy.publish import disclosure as D
    from spstudy.publish.publisher import Tables

    pack_dir = Path(pack_dir)
    meta = json.loads((pack_dir / A.AUDIT_FILE).read_text())
    out = {}
    for t in meta["tables"]:
        df = pd.read_csv(pack_dir / t["file"], dtype=str, keep_default_na=False)
        for col, kind in t["kinds"].items():
            if kind == "bool":
                df[col] = df[col].map({"yes": True, "no": False, D.SUPPRESSED: None, "": None})
            elif kind != "text":
                df[col] = pd.to_numeric(df[col].replace({D.SUPPRESSED: np.nan, "": np.nan, "<0.001": "0.0005"}), errors="coerce")
            else:
                df[col] = df[col].astype(object).where(df[col] != "", None)
        out[t["name"].split("/", 1)[1]] = _View(df)
    return Tables(out, meta["area"], reference.area(meta["area"]).name, {"study": {"confidence": meta["confidence"]}})


class _View:
    def __init__(self, values):
        self.values = values


def _notebook_intro(nb: str, notebooks_dir: Path) -> tuple[str, str]:
    """Title and introduction (the question) from the notebook's first Markdown cell."""
    path = notebooks_dir / f"{nb}.py"
    if not path.exists():
        return nb.replace("_", " "), ""
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("# %% [markdown]"):
            if inside:
                break
            inside = True
            continue
        if inside:
            if line.startswith("# %%"):
                break
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
    text = "\n".join(lines).strip()
    title = nb
    if text.startswith("# "):
        title, _, text = text.partition("\n")
        title = title[2:].strip()
    return title, text.strip()


def pack_tables(pack: Pack, info: dict) -> Tables:
    """What a pack's figures and findings read: its controlled tables."""
    return Tables(pack.controlled, pack.area, reference.area(pack.area).name, pack.params.to_dict(), info)


def render_figure(pack: Pack, e: dict, tables: Tables, stage: Path) -> tuple[Path, str]:
    """Draw one figure from its controlled table, check its marks against the table, write the PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    (stage / "figures").mkdir(parents=True, exist_ok=True)
    try:
        fig, alt, drawn = charts.render(e, tables)
    except Exception as ex:
        raise ReleaseError(f"{pack.area}: figure {e['name']} ({e['draw']}) could not be drawn from table {e['table']}: "
                           f"{type(ex).__name__}: {ex}") from ex
    bad = charts.check_marks(fig, drawn, e["name"])
    if bad:
        plt.close(fig)
        raise ReleaseError(f"{pack.area}: figure {e['name']} plots values that are not in its table {e['table']}: "
                           f"{[round(b, 3) for b in bad[:8]]}")
    path = stage / "figures" / f"{e['notebook']}__{e['name']}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None, "Title": e["title"]})
    plt.close(fig)
    return path, alt


def render_findings(pack: Pack, tables: Tables):
    """Every finding of a pack, as a sentence from its controlled tables."""
    for e in pack.entries:
        if e["kind"] == "finding":
            try:
                text = resolve(e["fn"])(tables, **e["kwargs"])
            except Exception as ex:
                raise ReleaseError(f"{pack.area}: finding {e['fn']} failed: {type(ex).__name__}: {ex}") from ex
            pack.texts[(e["notebook"], e["order"])] = text
            if text:
                pack.findings.append((e["priority"], e["notebook"], e["order"], text))


def render_pack(pack: Pack, stage: Path, info: dict):
    """Figures and findings of one pack, from its controlled tables (in this process)."""
    tables = pack_tables(pack, info)
    for e in pack.entries:
        if e["kind"] == "figure":
            pack.figures[e["name"]] = render_figure(pack, e, tables, stage)
    render_findings(pack, tables)


def write_tables(pack: Pack, stage: Path) -> list[dict]:
    """Published CSVs and the disclosure metadata the audit reads."""
    (stage / "tables").mkdir(parents=True, exist_ok=True)
    meta = []
    for name, c in pack.controlled.items():
        f = f"tables/{c.notebook}__{name}.csv"
        c.shown.to_csv(stage / f, index=False, lineterminator="\n")
        cont = {col for col, s in c.spec.columns.items() if isinstance(s, D.Count) and s.continuous}
        cols = c.spec.full_columns()
        kinds = {col: ("bool" if pd.api.types.is_bool_dtype(c.values[col]) else cols[col].kind) for col in c.shown.columns}
        meta.append({"name": f"{c.notebook}/{name}", "file": f, "kinds": kinds, "primary": c.primary, "secondary": c.secondary,
                     "cells": [{"row": r, "column": col, "key": C.key_str(k), **({"continuous": True} if col in cont else {})}
                               for (r, col), k in sorted(c.keys.items())],
                     "derived": D.derived_metadata(c.spec)})
    return meta


_TASKS: list = []  # the zero-argument tasks of the running TaskPool, inherited by its forked workers


def _task(i: int):
    return _TASKS[i]()


class TaskPool:
    """Zero-argument tasks, all queued at once, run in ``jobs`` forked worker processes while this
    process does other work; ``result(i)`` waits for task ``i``. The tasks reach the workers by fork,
    not by pickling; each result is pickled back. Every task's output depends only on the task, never
    on which worker ran it or what it ran before. With ``jobs`` 1 a task runs when its result is asked for."""

    def __init__(self, tasks: list, jobs: int):
        global _TASKS
        self.tasks, self.done, self.pool = tasks, {}, None
        if jobs > 1 and len(tasks) > 1:
            import concurrent.futures as cf
            import multiprocessing as mp

            _TASKS = tasks
            self.pool = cf.ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=mp.get_context("fork"))
            self.futures = [self.pool.submit(_task, i) for i in range(len(tasks))]

    def result(self, i: int):
        if self.pool is not None:
            return self.futures[i].result()
        if i not in self.done:
            self.done[i] = self.tasks[i]()
        return self.done[i]

    def close(self, cancel: bool = False):
        """Wait for the workers; ``cancel`` drops the tasks not yet started (after a failure)."""
        global _TASKS
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=cancel)
            self.pool = None
        _TASKS = []


def _release_tasks(packs: list["Pack"], stage_root: Path, info: dict, rules: D.Rules) -> tuple[list, list, list]:
    """What the release's worker processes do once the tables are controlled: every figure of every
    pack (queued first: the disclosure metadata needs their alt text), then every Excel annex (they
    need only the controlled tables, so they are written while this process audits the release).
    Returns (tasks, the figures' (pack, entry), the Excel tasks' packs)."""
    from spstudy.publish import report

    tables = {p.area: pack_tables(p, info) for p in packs}
    for p in packs:
        (stage_root / p.area / "figures").mkdir(parents=True, exist_ok=True)
    figs = [(p, e) for p in packs for e in p.entries if e["kind"] == "figure"]
    tasks = [lambda p=p, e=e: render_figure(p, e, tables[p.area], stage_root / p.area) for p, e in figs]
    tasks += [lambda p=p: report.write_pack_excel(p, stage_root / p.area, info, rules) for p in packs]
    return tasks, figs, packs


def _stage_pack(p: "Pack", st: Path, info: dict, rules: D.Rules, tables: Tables):
    """Findings, tables, documents and ``disclosure.json`` of one pack whose figures are drawn."""
    st.mkdir(parents=True, exist_ok=True)
    render_findings(p, tables)
    meta = write_tables(p, st)
    for e in p.entries:
        if e["kind"] == "document":
            for fname, text in e.get("files", {}).items():
                (st / fname).write_text(text)
    # what each figure and sentence is drawn from, so anyone can redraw them from the published tables alone
    figures = [{"name": e["name"], "file": f"figures/{e['notebook']}__{e['name']}.png", "draw": e["draw"], "alt": e["alt"],
                "table": f"{p.controlled[e['table']].notebook}/{e['table']}", "options": e["options"], "alt_text": p.figures[e["name"]][1]}
               for e in p.entries if e["kind"] == "figure"]
    finds = [{"notebook": e["notebook"], "fn": e["fn"], "kwargs": e["kwargs"], "text": p.texts.get((e["notebook"], e["order"]))}
             for e in p.entries if e["kind"] == "finding"]
    (st / A.AUDIT_FILE).write_text(json.dumps({"area": p.area, "confidence": p.params.study.confidence,
                                               "rules": {"threshold": rules.threshold, "rounding_base": rules.rounding_base},
                                               "tables": meta, "figures": figures, "findings": finds}, indent=1, sort_keys=True) + "\n")
    return p.findings, p.texts


def _finish_packs(packs: list["Pack"], stage_root: Path, info: dict, rules: D.Rules, rep, commit: str, notebooks_dir: Path,
                  keep_notebooks: bool, build: Path, parameters_dir):
    """The audit's report and the HTML page of every pack, the kept notebooks (the Excel annexes are
    written by the release's workers)."""
    from spstudy.publish import report

    for p in packs:
        st = stage_root / p.area
        (st / "AUDIT.txt").write_text(rep.text() + "\n")
        report.write_html(p, st, info, rules, rep, commit, notebooks_dir)
        if keep_notebooks:
            _copy_notebooks(build / p.area, st)


def publish_release(build: Path, areas: list[str], out: Path, notebooks_dir: Path, info: dict, commit: str,
                    keep_notebooks: bool = False, parameters_dir: Path | None = None, progress=None, jobs: int = 2) -> "ReleaseResult":
    """Control, draw, write, audit and publish every area of a build (see the module docstring)."""
    build, out = Path(build), Path(out)
    import time as _time

    t0 = _time.time()
    if progress:
        say = progress
        progress = lambda s: say(f"{s} ({_time.time() - t0:.0f}s)")  # noqa: E731
    packs = []
    items: list[D.Item] = []
    for a in areas:
        entries, its = load_items(build, a)
        p = Pack(a, load_parameters(a, parameters_dir), entries)
        led = build / a / PRIVATE / "ledger.csv"
        p.ledger = pd.read_csv(led, keep_default_na=False) if led.exists() else None
        packs.append(p)
        items += its
    rules = _rules(packs)
    if progress:
        progress(f"disclosure control of {len(items)} tables in {len(packs)} pack(s)")
    controlled, prot = D.control_release(items, rules)
    by_area = {p.area: p for p in packs}
    for c in controlled:
        by_area[c.area].controlled[c.spec.name] = c
    for p in packs:
        for e in p.entries:
            if e["kind"] == "view":
                v = make_view(e, p.controlled[e["of"]])
                hidden = {k for (r, col), k in v.keys.items() if v.suppressed.at[r, col]}
                v.primary, v.secondary = len(hidden & prot.primary), len(hidden - prot.primary)
                p.controlled[e["name"]] = v
    problems = check_same_across_packs(packs)
    if problems:
        raise ReleaseError("the same unit has different values in different packs:\n  " + "\n  ".join(problems[:20]))
    stage_root = out / f".release-{os.getpid()}-{os.urandom(3).hex()}"
    stage_root.mkdir(parents=True)
    pool = None
    try:
        # figures (then the Excel annexes) in the workers; findings, tables and disclosure metadata here
        if progress:
            progress(f"figures, findings and tables of {len(packs)} pack(s)")
        tasks, figs, excel_packs = _release_tasks(packs, stage_root, info, rules)
        pool = TaskPool(tasks, jobs)
        for i, (p, e) in enumerate(figs):
            p.figures[e["name"]] = pool.result(i)
        for p in packs:
            p.findings, p.texts = _stage_pack(p, stage_root / p.area, info, rules, pack_tables(p, info))
        # audit this release with every other pack already published beside it
        others = [d for d in sorted(out.iterdir()) if d.is_dir() and not d.name.startswith(".") and d.name not in areas
                  and (d / A.AUDIT_FILE).exists()] if out.exists() else []
        for d in others:
            shutil.copytree(d, stage_root / d.name, ignore=shutil.ignore_patterns("*.html", "*.xlsx", "*.png"))
        if progress:
            progress("audit of the whole release (the Excel annexes are written meanwhile)")
        try:
            rep = A.audit(stage_root)
            text = rep.text()
        except A.AuditError as e:
            rep, text = None, f"the audit could not run: {e}"
        for d in others:
            shutil.rmtree(stage_root / d.name)
        if rep is None or not rep.ok:
            pool.close(cancel=True)  # nothing writes into the staged release once it is moved aside
            failed = out / ".failed-release"
            shutil.rmtree(failed, ignore_errors=True)
            (stage_root / "AUDIT.txt").write_text(text + "\n")
            stage_root.rename(failed)
            raise ReleaseError(f"the release failed the disclosure audit and was not published (kept in {failed.name}/ for "
                               f"inspection):\n{text}")
        if progress:
            progress(f"HTML, Excel and manifest of {len(packs)} pack(s)")
        _finish_packs(packs, stage_root, info, rules, rep, commit, notebooks_dir, keep_notebooks, build, parameters_dir)
        for i in range(len(figs), len(tasks)):
            pool.result(i)  # the Excel annexes
        pool.close()
        for p in packs:
            write_manifest(p, stage_root / p.area, info, commit, rep, parameters_dir)
        for p in packs:
            final = out / p.area
            old = out / f".old-{p.area}-{os.getpid()}"
            if final.exists():
                final.rename(old)
            (stage_root / p.area).rename(final)
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(stage_root, ignore_errors=True)
    except BaseException:
        if pool is not None:
            pool.close(cancel=True)
        shutil.rmtree(stage_root, ignore_errors=True)
        raise
    return ReleaseResult(areas, rep, prot)


@dataclass
class ReleaseResult:
    areas: list[str]
    audit: A.AuditReport
    protection: D.Protection


def _copy_notebooks(area_build: Path, st: Path):
    """Executed notebooks, kept only on request, in a folder marked not for publication."""
    import nbformat

    dst = st / "not_for_publication"
    dst.mkdir()
    (dst / "README.txt").write_text(
        "NOT FOR PUBLICATION. These executed notebooks show tables as each notebook previewed them, controlled table by "
        "table but not checked against the rest of the release. Publish only the pack (HTML, Excel, tables).\n")
    for nb in sorted((area_build / "notebooks").glob("*.ipynb")):
        n = nbformat.read(nb, as_version=4)
        n.metadata = {k: v for k, v in n.metadata.items() if k in ("kernelspec", "language_info", "jupytext")}
        for i, cell in enumerate(n.cells):
            cell.id = f"cell-{i:03d}"
            cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
            if cell.cell_type == "code":
                cell.execution_count = None
                if "parameters" in cell.metadata.get("tags", []) or "injected-parameters" in cell.metadata.get("tags", []):
                    cell.source = "\n".join(l for l in cell.source.splitlines() if not l.startswith("pack_dir"))
        text = nbformat.writes(n).replace(str(area_build.parent), "<build>")
        (dst / nb.name).write_text(sanitise_text(text) + ("" if text.endswith("\n") else "\n"))


@functools.lru_cache(maxsize=1)
def _installed_packages() -> list[tuple[str, str]]:
    """(name, version) of every installed distribution (read once per process: the scan takes a while)."""
    return sorted({(d.metadata["Name"], d.version) for d in distributions() if d.metadata["Name"]}, key=lambda t: t[0].lower())


def write_manifest(pack: Pack, st: Path, info: dict, commit: str, rep, parameters_dir):
    root = project.root()
    params = pack.params
    ex = params.extracts_path()
    inputs = {}
    for f in sorted(reference.reference_dir().rglob("*")):
        if f.is_file():
            inputs[f"data/reference/{f.relative_to(reference.reference_dir()).as_posix()}"] = sha256(f)
    pdir = Path(parameters_dir) if parameters_dir else root / "parameters"
    for f in sorted(pdir.glob("*")):
        if f.is_file() and f.suffix in (".yaml", ".json"):
            inputs[f"parameters/{f.name}"] = sha256(f)
    from spstudy.inputs.contract import TABLES

    # A real (non-synthetic) extract's checksums stay on the machine that holds it: a published hash of a
    # person-level file would confirm a leaked copy; a borough can checksum its files where they are held.
    if info.get("synthetic"):
        for t in TABLES:
            for cand in sorted(ex.glob(f"{t}*")):
                if cand.is_file() and cand.name.split(".")[0] == t:
                    inputs[f"extract/{cand.name}"] = sha256(cand)
    if (ex / "extract_info.json").exists():
        inputs["extract/extract_info.json"] = sha256(ex / "extract_info.json")
    lock = root / "requirements.lock"
    files = {}
    for f in sorted(st.rglob("*")):
        if f.is_file() and f.name != "manifest.json":
            files[f.relative_to(st).as_posix()] = sha256(f)
    pkgs = _installed_packages()
    d = params.to_dict()
    manifest = {
        "area": pack.area,
        "spstudy_version": version("spstudy"),
        "git_commit": commit,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "requirements_lock_sha256": sha256(lock) if lock.exists() else None,
        "packages": {n: v for n, v in pkgs},
        "parameters": d,
        "seeds": _seeds(d),
        "extract": extract_description(info),
        "inputs_sha256": inputs,
        "files_sha256": files,
        "disclosure_audit": {"ok": rep.ok, "packs": rep.packs, "suppressed_cells": rep.n_suppressed, "rounded_counts": rep.n_rounded},
        "reproducible": not commit.endswith("-dirty") and commit != "unknown",
        "reproduce": (f"git checkout {commit} && make env && .venv/bin/spstudy packs" if not commit.endswith("-dirty") and commit != "unknown"
                      else f"not reproducible from the repository: built from {'uncommitted changes on top of ' + commit.removesuffix('-dirty') if commit.endswith('-dirty') else 'a copy that is not a git checkout'}"),
    }
    plan = st / "analysis_plan.json"
    if plan.exists():
        manifest["analysis_plan_sha256"] = sha256(plan)
    (st / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


#: What a pack's manifest says about the extract. Exact row counts, population frames and sample
#: design figures are counts that never passed disclosure control (and would difference against
#: the published rounded counts), so they stay in the private build.
EXTRACT_FIELDS = ("synthetic", "description", "generator", "generator_version", "seed", "scale", "parameters_sha256", "study_period",
                  "layout", "extract_sha256")


def extract_description(info: dict) -> dict:
    return {k: info[k] for k in EXTRACT_FIELDS if k in info}


def _seeds(d: dict) -> dict:
    """Every seed in the parameters, by dotted path: keys naming a seed and everything under a ``seeds`` section
    (``sroi.seed``, ``equity.imputation_seed``, ``evaluation.seeds.bootstrap`` ...)."""
    out = {}

    def walk(x, path):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, path + [k])
        elif any("seed" in p for p in path):
            out[".".join(path)] = x

    walk(d, [])
    return out


def _is_nan(v):
    return isinstance(v, float) and math.isnan(v)


def sanitise_text(s: str) -> str:
    """No absolute path or user name leaves in a pack."""
    home = os.path.expanduser("~")
    for p in {str(project.root_or_none() or ""), home, sys.prefix}:
        if p and p != "/":
            s = s.replace(p, "<path>")
    return s
