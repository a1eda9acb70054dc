"""One way out: how a notebook publishes tables, figures and findings into a pack.

A notebook calls :func:`start` with its papermill parameters and gets a :class:`Context` holding the
validated parameters, the loaded extracts and a :class:`Publisher`. Everything the pack shows goes
through the publisher:

* :meth:`Publisher.table` runs disclosure control (:mod:`spstudy.disclosure`) and writes the table
  as CSV with its metadata; the notebook displays the controlled version.
* :meth:`Publisher.figure` saves a PNG with its alt text and the controlled data behind it.
* :meth:`Publisher.finding` records a plain-English finding (generated from the numbers).

The pack builder (:mod:`spstudy.packs`) renders HTML and Excel from these artefacts only, so a raw
table cannot reach a pack. Artefacts are written under ``<pack_dir>/artefacts/<notebook>/`` in the
order published; interactive runs write to ``outputs/interactive/<area>/``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import reference
from .disclosure import ControlledTable, control
from .params import Parameters, load_parameters

SLUG = re.compile(r"^[a-z0-9_]+$")


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return repr(round(v, 10))
    return str(v)


def write_csv(df: pd.DataFrame, path: Path):
    """Deterministic CSV: fixed float formatting, no index, LF line endings."""
    df.to_csv(path, index=False, lineterminator="\n", float_format="%.6g")


COUNT_IN_TEXT = re.compile(r"\b(n|N)\s*=\s*([0-9][0-9,]*)")


def sanitise_figure_counts(fig, threshold: int, rounding_base: int) -> int:
    """Disclosure control for figure text: every ``n=1,234`` in titles, legends, labels and
    annotations is replaced by its published form (suppressed 1..threshold, else rounded).
    Returns the number of labels changed."""
    from .disclosure import safe_label

    changed = 0
    texts = list(fig.findobj(match=lambda o: hasattr(o, "get_text") and hasattr(o, "set_text")))
    for t in texts:
        old = t.get_text()
        if not isinstance(old, str) or "=" not in old:
            continue
        new = COUNT_IN_TEXT.sub(lambda m: f"{m.group(1)}={safe_label(int(m.group(2).replace(',', '')), threshold, rounding_base)}", old)
        if new != old:
            t.set_text(new)
            changed += 1
    return changed


class Publisher:
    def __init__(self, out_dir: Path, notebook: str, params: Parameters):
        self.dir = Path(out_dir) / "artefacts" / notebook
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.iterdir():  # a re-run replaces, never mixes
            old.unlink()
        self.notebook = notebook
        self.params = params
        self.order = 0
        self.index_path = self.dir / "index.jsonl"

    def _record(self, entry: dict):
        self.order += 1
        entry = {"order": self.order, "notebook": self.notebook, **entry}
        with open(self.index_path, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")

    def section(self, title: str, text: str = ""):
        """A heading (and optional paragraph) in the pack's report."""
        self._record({"kind": "section", "title": title, "text": text})

    def finding(self, text: str):
        """A key finding in plain English (shown in the pack's summary and in its section)."""
        self._record({"kind": "finding", "text": text})

    def text(self, text: str):
        """A paragraph of interpretation."""
        self._record({"kind": "text", "text": text})

    def table(
        self,
        name: str,
        df: pd.DataFrame,
        title: str,
        counts: list[str] | tuple[str, ...] = (),
        derived: dict[str, list[str]] | None = None,
        groups: list[list[str]] | None = None,
        notes: str = "",
        source: str = "",
        round_counts: bool = True,
    ) -> pd.DataFrame:
        """Disclosure-control ``df`` and publish it; returns the table as published (``[c]`` shown)."""
        if not SLUG.match(name):
            raise ValueError(f"table name {name!r} must be lower-case letters, digits and underscores")
        d = self.params.disclosure
        ct: ControlledTable = control(df, counts, d.threshold, d.rounding_base, derived, groups, round_counts)
        shown = ct.display()
        write_csv(shown, self.dir / f"{name}.csv")
        self._record({
            "kind": "table", "name": name, "title": title, "file": f"{name}.csv", "counts": list(counts),
            "notes": notes, "source": source, "n_suppressed": ct.n_suppressed, "suppression_note": ct.note(),
            "log": ct.log, "rows": len(shown), "columns": list(shown.columns),
        })
        return shown

    def figure(self, name: str, fig, title: str, alt: str, data: pd.DataFrame | None = None, counts=(), derived=None, groups=None):
        """Save ``fig`` as PNG with alt text; ``data`` (the numbers behind it) is published as a table too."""
        if not alt or len(alt) < 20:
            raise ValueError(f"figure {name!r} needs descriptive alt text (at least 20 characters)")
        path = self.dir / f"{name}.png"
        sanitise_figure_counts(fig, self.params.disclosure.threshold, self.params.disclosure.rounding_base)
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None, "Title": title})
        entry = {"kind": "figure", "name": name, "title": title, "file": path.name, "alt": alt}
        if data is not None:
            self.table(f"{name}_data", data, f"Data for figure: {title}", counts=counts, derived=derived, groups=groups)
            entry["data"] = f"{name}_data.csv"
        self._record(entry)
        return fig


@dataclass
class Context:
    area: str
    notebook: str
    params: Parameters
    out_dir: Path
    publisher: Publisher

    @functools.cached_property
    def extracts(self):
        from .extracts import load_extracts

        ex = load_extracts(self.params)
        write_csv(ex.ledger.to_frame(), self.work_dir / "ledger.csv")
        return ex

    @property
    def borough_codes(self) -> list[str]:
        return reference.borough_codes(self.area)

    @property
    def area_name(self) -> str:
        return reference.area_name(self.area)

    @property
    def work_dir(self) -> Path:
        """Intermediate results shared between notebooks of one pack (not published)."""
        p = self.out_dir / "work"
        p.mkdir(parents=True, exist_ok=True)
        return p


def start(area: str = "ncl", notebook: str = "interactive", pack_dir: str | None = None, parameters_dir: str | None = None) -> Context:
    """Validate the notebook's parameters and set up its publisher.

    ``pack_dir`` is injected by the batch run; interactively it defaults to ``outputs/interactive/<area>``.
    """
    params = load_parameters(area, parameters_dir)
    out = Path(pack_dir) if pack_dir else reference.PROJECT_ROOT / "outputs" / "interactive" / area
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "spstudy"
    return Context(area=area, notebook=notebook, params=params, out_dir=out, publisher=Publisher(out, notebook, params))


def read_artefacts(pack_dir: Path) -> list[dict]:
    """All artefact records of a pack, notebook by notebook in publication order."""
    out = []
    for idx in sorted((Path(pack_dir) / "artefacts").glob("*/index.jsonl")):
        out.extend(json.loads(line) for line in idx.read_text().splitlines() if line.strip())
    return out
