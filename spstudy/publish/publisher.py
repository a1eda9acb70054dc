"""One way out: how a notebook publishes tables, figures and findings.

A notebook calls :func:`start` with its namespace and gets a :class:`Context`: the validated
parameters, the area, the extracts and a :class:`Publisher`. Everything a pack shows is *declared*
to the publisher, never formatted by the notebook:

* :meth:`Publisher.table` takes the raw analysis table and a declaration of every column
  (:mod:`spstudy.publish.disclosure` specs: which columns are counts and what they count, which values are
  computed from which count, which are public data);
* :meth:`Publisher.figure` names a drawing function (:mod:`spstudy.publish.charts`) and the published
  table it draws from; the figure and its alt text are made from the controlled table only;
* :meth:`Publisher.finding` names a function (:mod:`spstudy.publish.findings`) that writes a sentence
  from controlled tables only.

In a batch build (``spstudy packs``) the declarations and the raw tables are kept in the build's
private folder, never published. When every area's notebooks have run, :mod:`spstudy.publish.release`
controls all tables of all packs together (the release is the unit of protection), draws the
figures and writes the sentences from the controlled tables, audits the whole release, and only
then moves the packs into place.

Run interactively (JupyterLab), the publisher controls each table on its own and shows the table,
figure and sentence at once, marked as a preview: the release-level protection happens only in a
build.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import functools
import importlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spstudy.inputs import project, reference
from spstudy.inputs.params import ParameterError, Parameters, load_parameters
from spstudy.publish import disclosure as D

SLUG = re.compile(r"^[a-z0-9_]+$")
PRIVATE = "private"


class PublishError(ValueError):
    pass


def callable_path(fn) -> str:
    """``module:qualname`` of a module-level function in spstudy (deferred calls must be importable)."""
    mod, qn = getattr(fn, "__module__", ""), getattr(fn, "__qualname__", "")
    if not mod.startswith("spstudy") or "<" in qn or "." in qn:
        raise PublishError(f"{fn!r}: figures and findings must be module-level functions in the spstudy package "
                           "(so the release can call them on the controlled tables); define it in spstudy.publish.charts or spstudy.publish.findings")
    return f"{mod}:{qn}"


def resolve(path: str):
    mod, qn = path.split(":")
    return getattr(importlib.import_module(mod), qn)


def _jsonable(kw: dict, where: str) -> dict:
    try:
        return json.loads(json.dumps(kw, default=_json_default))
    except TypeError as e:
        raise PublishError(f"{where}: arguments must be plain values (numbers, text, lists, dicts): {e}") from None


def _json_default(o):
    if isinstance(o, (dt.date, dt.datetime)):
        return o.isoformat()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not a plain value")


class Tables:
    """The controlled tables of one pack, as figures and findings see them (numeric, NaN = [c])."""

    def __init__(self, controlled: dict[str, "D.Controlled"], area: str, area_name: str, params: dict, info: dict | None = None):
        self._c = controlled
        self.area, self.area_name, self.params, self.info = area, area_name, params, info or {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        try:
            return self._c[name].values
        except KeyError:
            raise PublishError(f"no published table {name!r} in this pack (tables: {sorted(self._c)})") from None

    def __contains__(self, name: str) -> bool:
        return name in self._c

    @property
    def ci(self) -> str:
        """The pack's confidence level as sentences say it ('95%'; parameters ``study.confidence``)."""
        from spstudy.methods.stats import confidence_label

        try:
            return confidence_label(self.params["study"]["confidence"])
        except KeyError:
            raise PublishError(f"{self.area}: the tables do not say their confidence level (params['study']['confidence'])") from None

    def controlled(self, name: str) -> "D.Controlled":
        return self._c[name]

    def suppressed(self, name: str) -> pd.DataFrame:
        return self._c[name].suppressed


class Publisher:
    """Declares what a notebook publishes. ``mode`` 'build' records privately; 'preview' shows at once."""

    def __init__(self, area: str, notebook: str, params: Parameters, mode: str, private_dir: Path | None = None):
        self.area, self.notebook, self.params, self.mode = area, notebook, params, mode
        self.rules = D.Rules(params.disclosure.threshold, params.disclosure.rounding_base)
        self.order = 0
        self.names: set[str] = set()
        self._preview: dict[str, D.Controlled] = {}
        self.dir = None
        if mode == "build":
            self.dir = Path(private_dir) / PRIVATE / notebook
            self.dir.mkdir(parents=True, exist_ok=True)
            for old in self.dir.rglob("*"):
                if old.is_file():
                    old.unlink()
            (self.dir / "tables").mkdir(exist_ok=True)

    # ------------------------------------------------------------------ recording
    def _record(self, entry: dict):
        self.order += 1
        entry = {"order": self.order, "notebook": self.notebook, **entry}
        if self.mode == "build":
            with open(self.dir / "index.jsonl", "a") as fh:
                fh.write(json.dumps(entry, sort_keys=True, default=_json_default) + "\n")

    def _name(self, name: str):
        if not SLUG.match(name):
            raise PublishError(f"name {name!r} must be lower-case letters, digits and underscores")
        if name in self.names:
            raise PublishError(f"{self.notebook}: {name!r} is published twice")
        self.names.add(name)

    def section(self, title: str, text: str = ""):
        """A heading and a paragraph of fixed text (no numbers from the data: use a finding for those)."""
        self._record({"kind": "section", "title": title, "text": text})
        if self.mode == "preview":
            from IPython.display import Markdown, display

            display(Markdown(f"### {title}\n\n{text}"))

    def document(self, name: str, title: str, markdown: str, files: dict | None = None):
        """A fixed document shown as a section of the pack (e.g. the pre-specified analysis plan) and
        published beside it as files (``files``: file name -> text), e.g. analysis_plan.json."""
        self._name(name)
        self._record({"kind": "document", "name": name, "title": title, "text": markdown, "files": dict(files or {})})
        if self.mode == "preview":
            from IPython.display import Markdown, display

            display(Markdown(f"### {title}\n\n{markdown}"))

    def text(self, text: str):
        """A paragraph of fixed text (method, caveat). Numbers from the data belong in a finding."""
        self._record({"kind": "text", "text": text})
        if self.mode == "preview":
            from IPython.display import Markdown, display

            display(Markdown(text))

    def table(self, name: str, df: pd.DataFrame, title: str, columns: dict, rows: dict | None = None, at: dict | None = None,
              notes: str = "", source: str = "", show: bool = True):
        """Publish ``df`` under disclosure control. ``columns`` declares every column (spstudy.disclosure
        specs); ``rows`` names the columns that place a row in the release's cube (e.g. {"ward22_code": "geo"});
        ``at`` fixes coordinates for the whole table. Returns the table as a reader will see it (preview)."""
        self._name(name)
        level = self.params.study.confidence  # a recomputed interval with no level of its own takes the study's
        columns = {k: dataclasses.replace(c, confidence=level) if isinstance(c, D.DERIVED) and c.confidence is None else c
                   for k, c in columns.items()}
        spec = D.TableSpec(name, title, columns, dict(rows or {}), dict(at or {}), notes, source)
        where = f"{self.area}/{self.notebook}/{name}"
        raw = D.check_table(spec, df, where)
        D.row_keys(spec, raw, self.area, where)  # fail now, not at release time, on unknown codes
        entry = {"kind": "table", "name": name, "title": title, "notes": notes, "source": source, "show": show}
        if self.mode == "build":
            _write_parquet(raw, self.dir / "tables" / f"{name}.parquet")
            entry["spec"] = spec_to_dict(spec)
            self._record(entry)
            return None
        self._record(entry)
        c = D.control_table(spec, raw, self.area, self.rules, self.notebook)
        self._preview[name] = c
        return c.shown.rename(columns={k: v.label for k, v in spec.full_columns().items()}) if show else None

    def view(self, name: str, title: str, of: str, select, columns: list[str], labels: dict | None = None, notes: str = "",
             **kwargs):
        """A published selection of rows of the published table ``of`` (e.g. the wards that meet a rule),
        chosen by ``select(values, **kwargs)`` (a function in spstudy) from the *controlled* values; it may
        add text columns (named in ``labels``) computed from them. No new number is published."""
        self._name(name)
        entry = {"kind": "view", "name": name, "title": title, "of": of, "select": callable_path(select), "columns": list(columns),
                 "labels": dict(labels or {}), "notes": notes, "kwargs": _jsonable(kwargs, f"view {name}"), "show": True}
        self._record(entry)
        if self.mode == "preview":
            c = make_view(entry, self._preview[of])
            self._preview[name] = c
            return c.shown.rename(columns={k: v.label for k, v in c.spec.full_columns().items()})

    def count_as_published(self, x: float) -> float:
        """The value a count has once published (for analyses whose published output is a function of
        counts that are not themselves published, e.g. reference rates behind expected counts)."""
        return self.rules.round(float(x))

    def reference_rates(self, bands: pd.DataFrame) -> pd.DataFrame:
        """Age-sex reference rates (``spstudy.analyses.needs.reference_referral_rates``) made safe to
        publish expected counts from: adjacent age bands pooled within sex and the pooled counts
        rounded under this release's rule (:func:`spstudy.publish.disclosure.pool_strata`)."""
        return D.pool_strata(bands, self.rules, within="sex", label="age_band")

    @property
    def ci(self) -> str:
        """The study's confidence level as labels and sentences say it ('95%'; parameters ``study.confidence``)."""
        from spstudy.methods.stats import confidence_label

        return confidence_label(self.params.study.confidence)

    def figure(self, name: str, caption: str, draw, table: str, alt, **options):
        """A figure drawn by ``draw(values, **options)`` from the published table ``table`` (controlled
        values, NaN where suppressed), with alt text from ``alt(values, **options)``: both functions in spstudy."""
        self._name(name)
        entry = {"kind": "figure", "name": name, "title": caption, "draw": callable_path(draw), "alt": callable_path(alt),
                 "table": table, "options": _jsonable(options, f"figure {name}")}
        self._record(entry)
        if self.mode == "preview":
            from spstudy.publish.charts import render

            t = Tables(self._preview, self.area, reference.area(self.area).name, self.params.to_dict())
            fig, alt_text, _ = render(entry, t)
            return fig

    def finding(self, fn, priority: int = 3, **kwargs):
        """A sentence from ``fn(tables, **kwargs)`` (a function in spstudy.findings) on controlled tables.
        ``priority`` 1 (most important) to 5 orders the pack's key findings (at most seven are shown first)."""
        entry = {"kind": "finding", "fn": callable_path(fn), "priority": int(priority), "kwargs": _jsonable(kwargs, "finding")}
        self._record(entry)
        if self.mode == "preview":
            from IPython.display import Markdown, display

            t = Tables(self._preview, self.area, reference.area(self.area).name, self.params.to_dict())
            try:
                text = fn(t, **kwargs)
            except PublishError as e:  # it reads a table published further down: the build writes it then
                display(Markdown(f"*Finding written in the pack once its tables are published ({e}).*"))
                return None
            if text:
                display(Markdown(f"**Finding:** {text}"))
            return text


def make_view(entry: dict, source: "D.Controlled") -> "D.Controlled":
    """A view (row selection) of a controlled table; its cells keep their keys."""
    import numpy as np

    sel = resolve(entry["select"])(source.values, **entry.get("kwargs", {}))
    idx = list(sel.index)
    extra = [c for c in sel.columns if c not in source.values.columns]
    cols = entry["columns"]
    src_cols = source.spec.full_columns()
    spec_cols = {}
    for c in cols:
        if c in extra:
            lab = entry["labels"].get(c, c)
            spec_cols[c] = D.Public(lab[0], lab[1]) if isinstance(lab, list) else D.Label(lab)
        else:
            s = src_cols[c]
            spec_cols[c] = s if not isinstance(s, (D.Rate, D.Proportion, D.Generated)) else D.Estimate(s.label, fmt=s.kind)
    spec = D.TableSpec(entry["name"], entry["title"], spec_cols, {k: v for k, v in source.spec.rows.items() if k in cols},
                       dict(source.spec.at), entry.get("notes", "") or source.spec.notes, source.spec.source)
    values = pd.DataFrame({c: (sel[c].to_numpy() if c in extra else source.values.loc[idx, c].to_numpy()) for c in cols})
    shown = pd.DataFrame({c: ([D.format_value(v, spec_cols[c].kind) for v in sel[c]] if c in extra else source.shown.loc[idx, c].to_numpy())
                          for c in cols}, dtype=object)
    mask = pd.DataFrame({c: (np.zeros(len(idx), bool) if c in extra else source.suppressed.loc[idx, c].to_numpy()) for c in cols})
    pos = {old: new for new, old in enumerate(idx)}
    keys = {(pos[r], c): k for (r, c), k in source.keys.items() if r in pos and c in cols}
    return D.Controlled(spec, source.area, source.notebook, values, shown, mask, 0, 0, keys)


def _write_parquet(df: pd.DataFrame, path: Path):
    out = df.copy()
    out.attrs = {}
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v) if not isinstance(v, (int, float, bool)) else v)
            kinds = {type(v) for v in out[c].dropna()}
            if len(kinds) > 1:
                out[c] = out[c].map(lambda v: None if v is None else str(v))
    out.to_parquet(path, index=False)


def spec_to_dict(spec: D.TableSpec) -> dict:
    cols = []  # a list, not a mapping: the declared column order survives sorted JSON
    for k, c in spec.columns.items():
        d = {"type": type(c).__name__, **{f: getattr(c, f) for f in c.__dataclass_fields__}}
        if "sources" in d:
            d["sources"] = list(d["sources"])
        cols.append([k, d])
    return {"name": spec.name, "title": spec.title, "columns": cols, "rows": spec.rows, "at": spec.at,
            "notes": spec.notes, "source": spec.source}


def spec_from_dict(d: dict) -> D.TableSpec:
    cols = {}
    for k, c in d["columns"]:
        c = dict(c)
        cls = getattr(D, c.pop("type"))
        if "sources" in c:
            c["sources"] = tuple(c["sources"])
        cols[k] = cls(**c)
    return D.TableSpec(d["name"], d["title"], cols, d["rows"], d["at"], d["notes"], d["source"])


def read_private(pack_private: Path) -> list[dict]:
    """Every declaration of one area's build, notebook by notebook in order."""
    out = []
    for idx in sorted((Path(pack_private) / PRIVATE).glob("*/index.jsonl")):
        out.extend(json.loads(line) for line in idx.read_text().splitlines() if line.strip())
    return out


# ---------------------------------------------------------------------------------- context

NOTEBOOK_PARAMETERS = ("area", "notebook", "pack_dir")
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


@dataclass
class Context:
    """What a notebook works with: the area (scoped once), its parameters, extracts and publisher."""

    area: str
    notebook: str
    params: Parameters
    publisher: Publisher
    build_dir: Path | None = None
    extract_dir: Path | None = None
    parameters_dir: Path | None = None

    validated_dir: Path | None = None

    @property
    def scope(self) -> reference.Area:
        """The area, resolved once: key, name, ONS code and the LAD22 codes of its boroughs."""
        return reference.area(self.area)

    @property
    def area_name(self) -> str:
        return self.scope.name

    @functools.cached_property
    def local(self):
        """The area's rows of the validated extracts, cut once (:class:`spstudy.inputs.extracts.AreaExtracts`;
        ``local.region`` is the whole extract)."""
        from spstudy.inputs.extracts import AreaExtracts

        return AreaExtracts(self.extracts, self.scope)

    @functools.cached_property
    def extracts(self):
        """The validated extracts. In a build they were validated once for every notebook
        (:func:`spstudy.publish.packs.validate_once`) and each table is read only when first used."""
        from spstudy.inputs.extracts import ValidatedExtracts, load_extracts

        ex = ValidatedExtracts(self.validated_dir) if self.validated_dir is not None else load_extracts(self.params, self.extract_dir)
        if self.build_dir is not None:
            p = self.build_dir / PRIVATE / "ledger.csv"
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".ledger-{os.getpid()}.csv")  # notebooks of one area run in parallel: write, then rename
            ex.ledger.to_frame().to_csv(tmp, index=False, lineterminator="\n")
            os.replace(tmp, p)
        return ex

    @property
    def extracts_folder(self) -> Path:
        """The folder of the extract this build reads (``--extracts``, else the parameters' ``data.extracts_dir``)."""
        return Path(self.extract_dir or self.params.extracts_path())

    @functools.cached_property
    def extract_info(self) -> dict:
        """The extract's own metadata (``extract_info.json``), empty if it has none."""
        f = self.extracts_folder / "extract_info.json"
        return json.loads(f.read_text()) if f.exists() else {}

    @functools.cached_property
    def pool_fraction(self) -> float:
        """Sampling fraction of never-referred people in this build's extract (1.0 for a complete one)."""
        from spstudy.inputs.extracts import read_pool_fraction

        return read_pool_fraction(self.extracts_folder)

    @property
    def synthetic(self) -> bool:
        return bool(self.extract_info.get("synthetic"))

    def shared(self, name: str) -> Path:
        """A private folder for results one notebook hands to the next in the same build (never published)."""
        base = (self.build_dir / PRIVATE / "shared" / name) if self.build_dir else None
        if base is None:
            raise PublishError("no build folder: run the notebook in a build, or compute the result in this notebook")
        base.mkdir(parents=True, exist_ok=True)
        return base


def start(namespace: dict | None = None, **given) -> Context:
    """Validate a notebook's parameters and set up its publisher.

    Call as ``ctx = start(globals())`` after the parameters cell. Papermill injects parameters as
    variables; a misspelt one (``-p aera camden``) would otherwise be ignored and the notebook would
    run for the default area, so any injected value that is not a known parameter stops the notebook
    with an error naming it. ``pack_dir`` (set by ``spstudy packs``) makes it a build; without it the
    notebook previews its tables, figures and findings at once.
    """
    ns = dict(namespace or {})
    ns.update(given)
    values = {k: ns.get(k) for k in NOTEBOOK_PARAMETERS}
    for k, v in ns.items():
        if k.startswith("_") or k in NOTEBOOK_PARAMETERS or k in _IPYTHON_NAMES:
            continue
        if isinstance(v, (str, int, float, bool, list, dict, type(None), tuple)) and not callable(v):
            close = difflib.get_close_matches(k, NOTEBOOK_PARAMETERS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(f"unknown notebook parameter {k!r} = {v!r}{hint}; a notebook takes only "
                                 f"{', '.join(NOTEBOOK_PARAMETERS)}; everything else is in parameters/*.yaml")
    area = values["area"] or "ncl"
    notebook = values["notebook"] or "interactive"
    pack_dir = values["pack_dir"]
    build = Path(pack_dir) if pack_dir else None
    pdir = None
    extract_dir = None
    validated = None
    if build is not None:
        cfg = build.parent / "build.json"
        if cfg.exists():
            c = json.loads(cfg.read_text())
            pdir = c.get("parameters_dir")
            extract_dir = c.get("extracts_dir")
            validated = (c.get("validated") or {}).get(area)
    params = load_parameters(area, pdir)
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "spstudy"
    pub = Publisher(area, notebook, params, "build" if build else "preview", build)
    return Context(area=area, notebook=notebook, params=params, publisher=pub, build_dir=build,
                   extract_dir=Path(extract_dir) if extract_dir else None, parameters_dir=Path(pdir) if pdir else project.parameters_dir(),
                   validated_dir=Path(validated) if validated else None)
