"""Statistical disclosure control: the rule, and the only code that applies it.

Rules (parameters ``disclosure``; defaults follow the NHS Digital HES/ECDS analysis guide and
OpenSAFELY's output checking):

1. **Primary suppression.** A count from 1 to ``threshold`` (default 7) is suppressed, shown ``[c]``
   (the Government Analysis Function's shorthand for confidential). Zero is shown.
2. **Rounding.** Every other count is rounded to the nearest ``rounding_base`` (default 5).
3. **Secondary suppression over the whole release.** A count can come back from a total, a margin,
   a parent area, another table or another area's pack. The publisher knows every published count
   as a cell of a cube (:mod:`spstudy.publish.cells`): its measure and coordinates. From the keys it derives
   every relation between cells, and suppresses further cells until the attacker in
   :mod:`spstudy.publish.audit` (linear programming over everything published, knowing which [c] is a small
   count and which a protecting one) can narrow no suppressed cell to fewer than
   :attr:`Rules.protection_values` values (4 of 1..7 by default) and recover no rounded count exactly.
4. **Derived values are computed from what is published.** Rates, percentages, ratios to an
   expected count, their intervals and funnel-plot flags are recomputed by the publisher from the
   rounded counts (so rate x denominator gives back only the rounded count), and are suppressed
   where their count is. Model estimates (rate ratios, standardised rates, effects) are computed from
   the unrounded data, as HES/ECDS practice allows, and suppressed where any count they rest on is.
5. **One precision per kind of quantity** (:data:`DECIMALS`): counts as whole numbers, rates and
   percentages to one decimal place, ratios to two, and so on, in CSV, Excel and HTML alike.

Analyses never format a count themselves: a notebook declares each table's columns with the specs
below (:class:`Count`, :class:`Rate`, :class:`Proportion`, :class:`Estimate`, :class:`Public`,
:class:`Label`) and hands the raw table to the publisher (:mod:`spstudy.publish.publisher`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spstudy.publish import cells as C

SUPPRESSED = "[c]"

#: Decimal places by kind of quantity (one rule each, everywhere).
DECIMALS = {"count": 0, "integer": 0, "rate": 1, "percent": 1, "ratio": 2, "index": 1, "score": 1, "smd": 2,
            "p": 3, "money": 0, "years": 1, "months": 1, "days": 1, "number": 2, "z": 2, "share": 3, "fte": 1, "per_10000": 2,
            "person_years": 0}
KINDS = tuple(DECIMALS) + ("text",)


class DisclosureError(ValueError):
    """A table cannot be published as declared (undeclared column, unknown category ...)."""


@dataclass(frozen=True)
class Rules:
    threshold: int = 7
    rounding_base: int = 5

    def primary(self, v: float) -> bool:
        return 1 <= v <= self.threshold if not math.isnan(v) else False

    def round(self, v: float) -> float:
        if math.isnan(v) or self.rounding_base <= 1:
            return v
        return math.floor(v / self.rounding_base + 0.5) * self.rounding_base

    def published_bounds(self, r: float, continuous: bool = False) -> tuple[float, float]:
        """What a reader knows of a count published as ``r`` (rounded, not suppressed)."""
        if r == 0:
            return 0.0, 0.0
        h = self.rounding_base / 2 if self.rounding_base > 1 else 0.0
        floor_ = self.threshold if continuous else self.threshold + 1
        return max(r - h, floor_), r + h

    @property
    def protection_values(self) -> int:
        """How many values a suppressed cell must keep open to a reader of the whole release: more than
        half of the small counts 1..threshold (4 of 1..7). The marks themselves say a [c] is small, so
        asking for all of 1..7 would fail whenever two small counts add up to a small total."""
        return (self.threshold + 2) // 2

    def suppressed_bounds(self, primary: bool | None, continuous: bool = False) -> tuple[float, float]:
        """What a reader knows of a suppressed count: a small count (primary) is 1..threshold, a
        count suppressed to protect one (secondary) is more than threshold; unknown: at least 1."""
        lo = 0.0 if continuous else 1.0
        if primary is None:
            return lo, math.inf
        if primary:
            return lo, float(self.threshold)
        return (float(self.threshold) if continuous else self.threshold + 1.0), math.inf

    def note(self) -> str:
        return (f"[c] = suppressed to protect confidentiality: a count between 1 and {self.threshold}, a value computed from one, "
                f"or a count that would let one be recovered from the other published tables. Other counts are rounded to the "
                f"nearest {self.rounding_base}; rates and percentages are computed from the rounded counts.")


def pool_strata(table: pd.DataFrame, rules: Rules, *, within: str, label: str, count: str = "referrals",
                exposure: str = "person_years") -> pd.DataFrame:
    """Rates behind published expected counts, protected: adjacent rows (in the table's order) within
    each ``within`` group are pooled until every pooled stratum holds more than ``rules.threshold`` of
    ``count`` (a last short run joins the stratum before it), each pooled count is rounded as a
    published count is, and ``rate`` = rounded pooled count / pooled ``exposure``.

    Expected counts are linear in the stratum rates, so with enough areas a reader could solve for
    the stratum counts: after pooling and rounding they give back only what a pack could publish.
    Returns the table with ``stratum`` (e.g. '85-89 to 90+') and ``rate`` (per unit of exposure)."""
    for c in (within, label, count, exposure):
        if c not in table.columns:
            raise DisclosureError(f"pool_strata: missing column {c!r} (columns: {list(table.columns)})")
    g = table.reset_index(drop=True).copy()
    strata = {}
    for _, sub in g.groupby(within, sort=True):
        groups, cur, tot = [], [], 0.0
        for i, v in zip(sub.index, sub[count].to_numpy(dtype=float)):
            cur.append(i)
            tot += v
            if tot > rules.threshold:
                groups.append(cur)
                cur, tot = [], 0.0
        if cur:
            if groups:
                groups[-1] += cur
            else:
                groups.append(cur)
        for grp in groups:
            name = f"{g.at[grp[0], label]} to {g.at[grp[-1], label]}" if len(grp) > 1 else str(g.at[grp[0], label])
            strata.update({i: name for i in grp})
    g["stratum"] = pd.Series(strata)
    pooled = g.groupby([within, "stratum"])[[count, exposure]].transform("sum")
    g["rate"] = pooled[count].astype(float).map(rules.round) / pooled[exposure]
    return g


# ----------------------------------------------------------------------------------- column specs

@dataclass(frozen=True)
class Col:
    label: str

    @property
    def kind(self) -> str:  # formatting kind
        return "text"


@dataclass(frozen=True)
class Label(Col):
    """Text: names, codes, categories, notes. Published as is (must not hold counts of people)."""


@dataclass(frozen=True)
class Public(Col):
    """A number that is not a count of patients: reference or open data (Census residents, list
    sizes, IMD, the review's figures), parameters, or a value computed from such data only."""

    fmt: str = "number"

    @property
    def kind(self):
        return self.fmt


@dataclass(frozen=True)
class Count(Col):
    """A count of people, referrals or events from the extract (controlled).

    ``measure``: what is counted (:data:`spstudy.publish.cells.MEASURES`), so the cell can be related to
    every other cell of the release; None for a count that is related to no other published count
    (protected by suppression and rounding alone; the audit treats it as unrelated).
    ``at``: coordinates this column fixes (e.g. ``{"ethnicity": "Recorded"}``).
    ``continuous``: the count is a weighted or person-time quantity rather than whole people.
    """

    measure: str | None = None
    at: dict = field(default_factory=dict, hash=False, compare=False)
    continuous: bool = False

    @property
    def kind(self):
        return "person_years" if self.continuous else "count"


@dataclass(frozen=True)
class Estimate(Col):
    """A value computed from patient data that the publisher does not recompute (a model
    coefficient, standardised rate, effect, balance statistic). Suppressed where any of ``sources``
    (count columns of the same row; "*" = every count column of the row) is suppressed."""

    sources: tuple = ("*",)
    fmt: str = "ratio"

    @property
    def kind(self):
        return self.fmt


@dataclass(frozen=True)
class Rate(Col):
    """count / per x multiplier, recomputed from the published count, with its interval.

    method 'rate': crude rate with Byars' interval (exact below 10), PHEindicatormethods phe_rate;
    'ratio': observed / expected with the same interval on the observed count (calculate_ISRatio).
    ``lower``/``upper``/``flag`` name the columns the publisher fills (interval limits and the
    funnel-plot classification, against ``target`` for ratios, else the rate of the row whose geography
    is ``target_row``)."""

    count: str = ""
    per: str = ""
    multiplier: float = 1000.0
    method: str = "rate"
    lower: str | None = None
    upper: str | None = None
    flag: str | None = None
    target: float | None = None
    target_row: str | None = None
    fmt: str = "rate"
    confidence: float | None = None  # None: the study's level (the publisher sets it); 0.95 outside a publisher

    @property
    def kind(self):
        return self.fmt


@dataclass(frozen=True)
class Proportion(Col):
    """count / total x multiplier (percent by default), recomputed from the published counts, with a
    Wilson interval (PHEindicatormethods phe_proportion) and an optional funnel flag against the
    row whose geography is ``target_row``."""

    count: str = ""
    total: str = ""
    multiplier: float = 100.0
    lower: str | None = None
    upper: str | None = None
    flag: str | None = None
    target_row: str | None = None
    fmt: str = "percent"
    confidence: float | None = None  # None: the study's level (the publisher sets it); 0.95 outside a publisher

    @property
    def kind(self):
        return self.fmt


@dataclass(frozen=True)
class RateRatio(Col):
    """(count / per) over the same for the reference row, recomputed from the published counts, with a
    log-normal interval (stats.rate_ratio). ``reference``: the value of ``key`` (a row-key column) that
    marks the reference row."""

    count: str = ""
    per: str = ""
    key: str = ""
    reference: str = ""
    lower: str | None = None
    upper: str | None = None
    fmt: str = "ratio"
    confidence: float | None = None  # None: the study's level (the publisher sets it); 0.95 outside a publisher

    @property
    def kind(self):
        return self.fmt


@dataclass(frozen=True)
class Generated(Col):
    """A column the publisher fills from another spec (interval limits, funnel flags)."""

    of: str = ""
    fmt: str = "rate"

    @property
    def kind(self):
        return self.fmt


DERIVED = (Rate, Proportion, RateRatio)
DEFAULT_CONFIDENCE = 0.95  # a Rate, Proportion or RateRatio made outside a publisher (tests, direct calls) and given no level


def level_of(c: Col) -> float:
    """The confidence level of a recomputed interval: its own, else :data:`DEFAULT_CONFIDENCE`."""
    return DEFAULT_CONFIDENCE if c.confidence is None else float(c.confidence)


# --------------------------------------------------------------------------------------- tables

@dataclass
class TableSpec:
    """How to publish one table: its columns, which columns place a row in the cube, fixed coordinates."""

    name: str
    title: str
    columns: dict[str, Col]
    rows: dict[str, str] = field(default_factory=dict)   # key column -> dimension ("geo", "ethnicity", ...)
    at: dict[str, str] = field(default_factory=dict)     # coordinates fixed for the whole table
    notes: str = ""
    source: str = ""
    empty: str = "none"

    def full_columns(self) -> dict[str, Col]:
        from spstudy.methods.stats import confidence_label

        out = dict(self.columns)
        for name, c in self.columns.items():
            if isinstance(c, DERIVED):
                for part in ("lower", "upper"):
                    col = getattr(c, part)
                    if col and col != f"{name}_{part}":
                        raise ValueError(f"table {self.name!r}: column {name!r} names its {part} limit {col!r}; an interval is named "
                                         f"<estimate>_lower / <estimate>_upper ({name}_{part})")
                    if col:
                        out[col] = Generated(f"{c.label}: {part} {confidence_label(level_of(c))} limit", of=name, fmt=c.kind)
                if getattr(c, "flag", None):
                    out[c.flag] = Generated(f"{c.label}: against funnel limits", of=name, fmt="text")
        return out


def _is_number_like(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def check_table(spec: TableSpec, df: pd.DataFrame, where: str) -> pd.DataFrame:
    """The columns to publish, in the declared order; every column declared, counts non-negative."""
    cols = spec.full_columns()
    missing = [c for c, s in cols.items() if c not in df.columns and not isinstance(s, (Generated,) + DERIVED)]
    if missing:
        raise DisclosureError(f"{where}: declared column(s) {missing} not in the table (columns: {list(df.columns)})")
    for k in spec.rows:
        if k not in cols:
            raise DisclosureError(f"{where}: row key {k!r} must also be declared as a column")
    out = df.reset_index(drop=True).copy()
    for c, s in cols.items():
        if isinstance(s, (Generated,) + DERIVED) and c not in out.columns:  # the publisher computes them
            out[c] = np.nan if s.kind != "text" else None
    for c, s in cols.items():
        if isinstance(s, Count):
            v = pd.to_numeric(out[c], errors="coerce")
            if (v < 0).any():
                raise DisclosureError(f"{where}: column {c!r} is a count but holds negative values")
            out[c] = v.astype(float)
        if isinstance(s, DERIVED):
            for ref in (s.count, getattr(s, "per", "") or getattr(s, "total", "")):
                if ref not in cols:
                    raise DisclosureError(f"{where}: column {c!r} is derived from {ref!r}, which is not declared")
            if not isinstance(cols[s.count], Count):
                raise DisclosureError(f"{where}: column {c!r}: {s.count!r} must be a Count")
        if isinstance(s, Estimate):
            for src in s.sources:
                if src != "*" and not isinstance(cols.get(src), Count):
                    raise DisclosureError(f"{where}: estimate {c!r} rests on {src!r}, which is not a Count column")
        if isinstance(s, Label) and _is_number_like(out[c]):
            raise DisclosureError(f"{where}: column {c!r} holds numbers but is declared as a Label; declare what it is")
    return out[list(cols)]


def row_keys(spec: TableSpec, df: pd.DataFrame, area: str, where: str) -> dict[tuple[int, str], tuple]:
    """Cell key of every count cell: (row, column) -> key."""
    out = {}
    acode = C.area_code(area)
    open_dims = {}
    cols = {c: list(df[c].array) for c in df.columns}  # what df.at[r, c] gives, read once per column
    for r in range(len(df)):
        coords: dict[str, str] = {"geo": acode}
        coords.update(spec.at)
        for col, dim in spec.rows.items():
            v = cols[col][r]
            if isinstance(dim, dict):  # the dimension is named row by row: {"by": column, "dims": {value: dimension}}
                d = dim["dims"].get(str(cols[dim["by"]][r]))
                if d is None:
                    continue  # e.g. a model's intercept: the total over this dimension
                dim = d
            if v is None or (isinstance(v, float) and math.isnan(v)):
                v = ""
            if dim == "geo":
                code = str(v) or acode
                C.geo_level(code)
                if not (C.geo_contains(acode, code) or C.geo_contains(code, acode)):
                    raise DisclosureError(f"{where}: row {r} is for {code}, outside the pack's area {area} (only the area, "
                                          "its parts and the areas containing it, e.g. NCL as a reference, may appear)")
                coords["geo"] = code
            else:
                tree = C.dim_tree(dim, open_dims)
                coords[dim] = (tree.node(v, f"{where}, column {col!r}") if dim in C.CATEGORY_DIMS
                               else C.ALL if str(v).lower() == "all" else str(v))
        for col, s in spec.columns.items():
            if not isinstance(s, Count):
                continue
            v0 = cols[col][r]
            if v0 is None or (isinstance(v0, float) and math.isnan(v0)):
                continue  # not applicable (no count): published blank
            cc = {**coords, **{d: (C.dim_tree(d).node(n, where) if d in C.CATEGORY_DIMS else n) for d, n in s.at.items()}}
            if s.measure is None:
                m = f"{spec.name}.{col}"
                C.MEASURES.setdefault(m, C.Measure(m, f"{spec.title}: {s.label}", geo="area", additive=False,
                                                   unit="person-years" if s.continuous else "people"))
                if not spec.rows:
                    cc["row"] = str(r)
            else:
                m = s.measure
                meas = C.get_measure(m)
                if not meas.additive:
                    cc["pack"] = area
            out[(r, col)] = C.make_key(m, cc)
    return out


# ----------------------------------------------------------------------------- applying control

def format_value(v, kind: str) -> str:
    """A number as published, at the precision of its kind ('' for missing)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if kind == "text" or isinstance(v, str):
        return str(v)
    x = float(v)
    if math.isinf(x):
        return ""
    if kind == "p":
        return "<0.001" if x < 0.0005 else f"{x:.3f}"
    d = DECIMALS.get(kind, 2)
    s = f"{x:.{d}f}"
    if s.startswith("-") and float(s) == 0:
        s = s[1:]
    return s


def derive(spec: TableSpec, data: pd.DataFrame, suppressed: pd.DataFrame) -> None:
    """Recompute derived columns in place from the (rounded, NaN-where-suppressed) counts."""
    from spstudy.methods import stats

    cols = spec.columns
    geo_col = next((c for c, d in spec.rows.items() if d == "geo"), None)
    for name, s in cols.items():
        if isinstance(s, Rate):
            x = data[s.count].to_numpy(float)
            n = pd.to_numeric(data[s.per], errors="coerce").to_numpy(float)
            ok = ~np.isnan(x) & (n > 0)
            val = np.full(len(data), np.nan)
            lo, hi = val.copy(), val.copy()
            if ok.any():
                if s.method == "ratio":
                    r = stats.indirectly_standardised_ratio(x[ok], n[ok], multiplier=s.multiplier, confidence=level_of(s))
                    val[ok], lo[ok], hi[ok] = r["ratio"], r["ratio_lower"], r["ratio_upper"]
                else:
                    r = stats.crude_rate(x[ok], n[ok], multiplier=s.multiplier, confidence=level_of(s))
                    val[ok], lo[ok], hi[ok] = r["rate"], r["rate_lower"], r["rate_upper"]
            data[name] = val
            if s.lower:
                data[s.lower] = lo
            if s.upper:
                data[s.upper] = hi
            if s.flag:
                flag = np.full(len(data), None, dtype=object)
                if ok.any():
                    if s.method == "ratio":
                        t = s.target if s.target is not None else 1.0
                        flag[ok] = stats.funnel_flag(x[ok], n[ok], statistic="ratio", target=t).to_numpy()
                    else:
                        t = _target(data, geo_col, s.target_row, s.count, s.per, spec.name) if s.target is None else s.target / s.multiplier
                        flag[ok] = stats.funnel_flag(x[ok], n[ok], statistic="rate", target=t).to_numpy()
                data[s.flag] = flag
            suppressed[name] |= suppressed[s.count]
            for c in (s.lower, s.upper, s.flag):
                if c:
                    suppressed[c] = suppressed[s.count].copy()
        elif isinstance(s, Proportion):
            x = data[s.count].to_numpy(float)
            n = pd.to_numeric(data[s.total], errors="coerce").to_numpy(float)
            ok = ~np.isnan(x) & ~np.isnan(n) & (n > 0)
            ok &= x <= n
            val = np.full(len(data), np.nan)
            lo, hi = val.copy(), val.copy()
            if ok.any():
                w = stats.wilson_ci(x[ok], n[ok], multiplier=s.multiplier, confidence=level_of(s))
                val[ok], lo[ok], hi[ok] = w["proportion"], w["proportion_lower"], w["proportion_upper"]
            data[name] = val
            if s.lower:
                data[s.lower] = lo
            if s.upper:
                data[s.upper] = hi
            if s.flag:
                flag = np.full(len(data), None, dtype=object)
                t = _target(data, geo_col, s.target_row, s.count, s.total, spec.name)
                if ok.any():
                    flag[ok] = stats.funnel_flag(x[ok], n[ok], statistic="proportion", target=t).to_numpy()
                data[s.flag] = flag
            sup = suppressed[s.count] | (suppressed[s.total] if s.total in suppressed else False)
            suppressed[name] |= sup
            for c in (s.lower, s.upper, s.flag):
                if c:
                    suppressed[c] = sup.copy()
    for name, s in cols.items():
        if isinstance(s, RateRatio):
            x = data[s.count].to_numpy(float)
            n = pd.to_numeric(data[s.per], errors="coerce").to_numpy(float)
            ref = (data[s.key].astype(str) == s.reference).to_numpy()
            if ref.sum() != 1:
                raise DisclosureError(f"table {spec.name!r}: column {name!r} needs exactly one reference row {s.key} = {s.reference!r}")
            xr, nr = x[ref][0], n[ref][0]
            sup_ref = bool(suppressed.loc[ref, s.count].iloc[0])
            ok = ~np.isnan(x) & (n > 0) & (not sup_ref) & (not np.isnan(xr)) & (nr > 0)
            val = np.full(len(data), np.nan)
            lo, hi = val.copy(), val.copy()
            if ok.any():
                r = stats.rate_ratio(x[ok], n[ok], np.full(ok.sum(), xr), np.full(ok.sum(), nr), confidence=level_of(s))
                val[ok], lo[ok], hi[ok] = r["rate_ratio"], r["rate_ratio_lower"], r["rate_ratio_upper"]
            lo[ref], hi[ref] = np.nan, np.nan
            data[name] = val
            sup = suppressed[s.count] | sup_ref
            suppressed[name] |= sup
            for c in (s.lower, s.upper):
                if c:
                    data[c] = lo if c == s.lower else hi
                    suppressed[c] = sup.copy()
    for name, s in cols.items():
        if isinstance(s, Estimate):
            srcs = [c for c, t in cols.items() if isinstance(t, Count)] if "*" in s.sources else list(s.sources)
            for src in srcs:
                suppressed[name] |= suppressed[src]


def _target(data, geo_col, target_row, count, den, table) -> float:
    if target_row is None or geo_col is None:
        raise DisclosureError(f"table {table!r}: a funnel flag against the area needs a total row (target_row) and a geography key")
    row = data[data[geo_col].astype(str) == target_row]
    if len(row) != 1:
        raise DisclosureError(f"table {table!r}: no single total row {target_row!r} for the funnel target")
    x, n = float(row[count].iloc[0]), float(pd.to_numeric(row[den]).iloc[0])
    if math.isnan(x) or not n > 0:
        raise DisclosureError(f"table {table!r}: the total row's count is suppressed; the funnel target cannot be published")
    return x / n


@dataclass
class Controlled:
    """A table after disclosure control: ``values`` numeric (NaN where suppressed, counts rounded,
    derived values recomputed), ``shown`` as published (strings; ``[c]``), ``suppressed`` mask."""

    spec: TableSpec
    area: str
    notebook: str
    values: pd.DataFrame
    shown: pd.DataFrame
    suppressed: pd.DataFrame
    primary: int
    secondary: int
    keys: dict

    @property
    def n_suppressed(self) -> int:
        return int(self.suppressed.to_numpy().sum())


def apply(spec: TableSpec, raw: pd.DataFrame, keys: dict, suppressed_keys: set, rules: Rules, area: str, notebook: str,
          primary_keys: set) -> Controlled:
    data = raw.copy()
    cols = spec.full_columns()
    hidden = {c: np.zeros(len(data), dtype=bool) for c in data.columns}
    n_primary = n_secondary = 0
    by_col: dict[str, list] = {}
    for (r, col), k in keys.items():
        by_col.setdefault(col, []).append((r, k))
    for col, cells in by_col.items():
        before = list(data[col].array)  # the values data.at[r, col] gives (numpy scalars for numpy columns)
        rows, new = [], []
        for r, k in cells:
            if k in suppressed_keys:
                hidden[col][r] = True
                if k in primary_keys:
                    n_primary += 1
                else:
                    n_secondary += 1
            else:
                rows.append(r)
                new.append(rules.round(float(before[r])))
        if data[col].dtype == np.dtype("float64"):  # check_table makes every count float64; anything else keeps .at's checks
            arr = data[col].to_numpy(copy=True)
            arr[rows] = new
            data[col] = arr
        else:
            for r, v in zip(rows, new):
                data.at[r, col] = v
    mask = pd.DataFrame(hidden, index=data.index)
    for col, s in cols.items():
        if isinstance(s, Count):
            for r, v in enumerate(data[col].array):
                if (r, col) not in keys and not math.isnan(float(v)):
                    raise DisclosureError(f"{spec.name}: count cell ({r}, {col}) has no key")
    derive(spec, data, mask)
    values = data.copy()
    for col in values.columns:
        if mask[col].any():
            if pd.api.types.is_numeric_dtype(values[col]) and not pd.api.types.is_bool_dtype(values[col]):
                values[col] = values[col].astype(float)
                values.loc[mask[col], col] = np.nan
            else:
                values[col] = values[col].astype(object)
                values.loc[mask[col], col] = None
    shown = pd.DataFrame({c: [format_value(v, cols[c].kind) for v in values[c]] for c in values.columns}, dtype=object)
    shown = shown.where(~mask, SUPPRESSED)
    for c, s in cols.items():  # text as published, so figures and sentences read what a reader reads
        if s.kind == "text" and c in values.columns and not pd.api.types.is_bool_dtype(values[c]):
            values[c] = [None if v in ("", SUPPRESSED) else v for v in shown[c]]
    # keep the numbers behind figures and findings at the published precision
    for c, s in cols.items():
        if s.kind not in ("text",) and c in values.columns and pd.api.types.is_float_dtype(values[c]):
            if s.kind == "p":  # what "<0.001" or three decimals say, no more
                values[c] = values[c].where(values[c] >= 0.0005, 0.0005).round(3).where(values[c].notna())
            else:
                values[c] = values[c].round(DECIMALS.get(s.kind, 2))
    return Controlled(spec, area, notebook, values, shown, mask, n_primary, n_secondary, keys)


# ------------------------------------------------------------------------ the release's protection

@dataclass
class Item:
    """One table of one pack, as declared."""

    area: str
    notebook: str
    spec: TableSpec
    raw: pd.DataFrame
    keys: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.area}/{self.notebook}/{self.spec.name}"


@dataclass
class Protection:
    suppressed: set
    primary: set
    log: list
    values: dict


def check_relations(values: dict, rels: list, where: dict, tol: float = 1e-6) -> None:
    """The true counts must satisfy every relation the cell keys imply (a parent is the sum of its
    children, or at least each of them), or the keys misdescribe what was counted and the attack
    model is wrong. Raises :class:`DisclosureError` naming the first cells that disagree."""
    bad = []
    for p, ch, exact in rels:
        if p not in values:
            continue
        known = [k for k in ch if k in values]
        total = sum(values[k] for k in known)
        pv = values[p]
        slack = tol * max(1.0, abs(pv))
        if exact and len(known) == len(ch):
            wrong = abs(total - pv) > slack
        elif exact:
            wrong = total > pv + slack       # the unpublished children are counts (>= 0)
        else:
            wrong = any(values[k] > pv + slack for k in known)
        if wrong:
            parts = ", ".join(f"{C.key_str(k)} = {values[k]:g} ({where.get(k, '?')})" for k in known[:6])
            rel = "the sum of" if exact else "at least each of"
            bad.append(f"{C.key_str(p)} = {pv:g} ({where.get(p, '?')}) should be {rel} {parts}"
                       + (f" and {len(ch) - len(known)} unpublished cell(s)" if len(known) < len(ch) else ""))
    if bad:
        raise DisclosureError(f"{len(bad)} relation(s) between the declared cells do not hold in the data, so the cells are "
                              "declared wrongly (a measure, a coordinate or a missing category): " + "; ".join(bad[:3]))


def protect(items: list[Item], rules: Rules, max_rounds: int = 200) -> Protection:
    """Choose the cells to suppress across the whole release.

    Primary cells (1..threshold) first; then, until the attacker (:mod:`spstudy.publish.audit`) finds no
    exposed cell, suppress for each exposed cell the smallest published non-zero cell in a relation
    with it (children before parents, so totals stay published where they can)."""
    from spstudy.publish import audit as A

    values: dict = {}
    where: dict = {}
    continuous: set = set()
    for it in items:
        cols = {c: list(it.raw[c].array) for c in {col for _, col in it.keys}}  # what it.raw.at[r, col] gives
        for (r, col), k in it.keys.items():
            v = float(cols[col][r])
            if math.isnan(v):
                raise DisclosureError(f"{it.where}: count column {col!r} row {r} is missing; counts must be numbers (0 if none)")
            if k in values and abs(values[k] - v) > 1e-6 * max(1.0, abs(v)):
                raise DisclosureError(
                    f"the same count is computed twice with different values: {C.key_str(k)} is {values[k]:g} in "
                    f"{where[k]} but {v:g} in {it.where} (row {r}, column {col!r}); the two analyses must count the same way")
            values[k] = v
            where.setdefault(k, it.where)
            if it.spec.full_columns()[col].kind == "person_years":
                continuous.add(k)
    primary = {k for k, v in values.items() if rules.primary(v)}
    suppressed = set(primary)
    rels = C.relations(list(values))
    by_member: dict = {}
    for p, ch, exact in rels:
        for k in (p, *ch):
            by_member.setdefault(k, []).append((p, ch, exact))
    check_relations(values, rels, where)
    log = [f"{len(primary)} cell(s) with counts 1-{rules.threshold} suppressed (primary)"]
    cache: dict = {}
    check = None  # every cell in the first round; then only what can have changed
    for rnd in range(max_rounds):
        problem = A.Problem()
        for k, v in values.items():
            if k in suppressed:
                # the attacker is assumed to know which suppressed cells are small counts (1..threshold)
                # and which were suppressed to protect them (more than threshold): the packs say how many of each
                problem.variable(k, *rules.suppressed_bounds(k in primary, k in continuous))
            else:
                problem.variable(k, *rules.published_bounds(rules.round(v), k in continuous))
        for p, ch, exact in rels:
            for k in (p, *ch):
                problem.variable(k)
            problem.equalities.append((p, ch, exact))
        rounded = {k: rules.round(v) for k, v in values.items() if k not in suppressed}
        ex = A.exposures(problem, suppressed, rounded, rules.protection_values, continuous, cache, only=check)
        if not ex:
            log.append(f"secondary suppression: {len(suppressed) - len(primary)} cell(s) in {rnd} round(s)")
            return Protection(suppressed, primary, log, values)
        added = 0
        newly: set = set()
        for e in ex:
            cand = []
            for p, ch, _ in by_member.get(e.key, []):
                for k in ch:
                    if k != e.key and k in values and k not in suppressed and values[k] > 0:
                        cand.append((0, values[k], C.key_str(k), k))
                if p != e.key and p in values and p not in suppressed and values[p] > 0:
                    cand.append((1, values[p], C.key_str(p), p))
            if e.kind == "rounded" and e.key not in suppressed:
                cand.append((2, values[e.key], C.key_str(e.key), e.key))
            if not cand:
                # nothing published beside it: suppress a published cell anywhere in its relations' relations
                for p, ch, _ in by_member.get(e.key, []):
                    for k in (p, *ch):
                        for p2, ch2, _ in by_member.get(k, []):
                            for k2 in (p2, *ch2):
                                if k2 in values and k2 not in suppressed and values[k2] > 0:
                                    cand.append((3, values[k2], C.key_str(k2), k2))
            if not cand:
                raise DisclosureError(f"cannot protect {e.describe(rules.protection_values)}: no published cell left to suppress")
            k = min(cand)[3]
            if k not in suppressed:
                suppressed.add(k)
                newly.add(k)
                added += 1
                log.append(f"suppressed {C.key_str(k)} (in {where.get(k, '?')}) to protect {C.key_str(e.key)}")
        if not added:
            raise DisclosureError("secondary suppression made no progress: " + "; ".join(e.describe(rules.protection_values) for e in ex[:5]))
        # Suppressing a cell only widens what the attacker must allow, so cells that were safe stay safe:
        # re-check the exposed cells and the newly suppressed ones.
        check = {e.key for e in ex} | newly
    raise DisclosureError(f"secondary suppression did not converge in {max_rounds} rounds")


def control_release(items: list[Item], rules: Rules) -> tuple[list[Controlled], Protection]:
    """Disclosure control of a whole release: keys, linked protection, rounding, derived values."""
    for it in items:
        it.raw = check_table(it.spec, it.raw, it.where)
        it.keys = row_keys(it.spec, it.raw, it.area, it.where)
    prot = protect(items, rules)
    out = [apply(it.spec, it.raw, it.keys, prot.suppressed, rules, it.area, it.notebook, prot.primary) for it in items]
    return out, prot


def control_table(spec: TableSpec, df: pd.DataFrame, area: str, rules: Rules, notebook: str = "interactive") -> Controlled:
    """One table on its own (interactive preview): the same rules, with protection over this table only."""
    it = Item(area, notebook, spec, df)
    return control_release([it], rules)[0][0]


# ------------------------------------------------------------------------- reading what was published

def read_published_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def derived_metadata(spec: TableSpec) -> list[dict]:
    """How each rate/percentage column of a table was computed (for the audit)."""
    out = []
    for name, s in spec.columns.items():
        if isinstance(s, Rate):
            out.append({"column": name, "count": s.count, "denominator": s.per, "multiplier": s.multiplier,
                        "decimals": DECIMALS[s.kind], "denominator_decimals": DECIMALS.get(spec.columns[s.per].kind, 2),
                        "denominator_is_count": isinstance(spec.columns[s.per], Count)})
        elif isinstance(s, Proportion):
            out.append({"column": name, "count": s.count, "denominator": s.total, "multiplier": s.multiplier,
                        "decimals": DECIMALS[s.kind], "denominator_decimals": DECIMALS.get(spec.columns[s.total].kind, 0),
                        "denominator_is_count": isinstance(spec.columns[s.total], Count)})
    return out


def leaky_derived(rows: list[dict], d: dict, rules: Rules, where: str, keyof: dict) -> list:
    """Constraints an attacker gets from a published rate or percentage that is NOT the published
    count over the published denominator: the count it implies, at its printed precision.
    ``keyof``: (row, column) -> cell key of the table's count cells.
    Returns a list of (coeffs {key: a}, lo, hi, description)."""
    out = []
    eps = 0.5 * 10 ** (-d["decimals"])
    m = d["multiplier"]
    for i, row in enumerate(rows):
        v, x, n = row.get(d["column"], ""), row.get(d["count"], ""), row.get(d["denominator"], "")
        if v in ("", SUPPRESSED) or x in ("", SUPPRESSED):
            continue
        kx = keyof.get((i, d["count"]))
        if kx is None:
            continue
        v, x = float(v), float(x)
        kn = keyof.get((i, d["denominator"])) if d.get("denominator_is_count") else None
        if n in ("", SUPPRESSED):
            if kn is None:
                continue
            # denominator hidden: the ratio still bounds count / denominator
            out.append(({kx: 1.0, kn: -(v + eps) / m}, -math.inf, 0.0, f"{where}: {d['column']} row {i} bounds {d['count']} / {d['denominator']}"))
            out.append(({kx: 1.0, kn: -(v - eps) / m}, 0.0, math.inf, f"{where}: {d['column']} row {i} bounds {d['count']} / {d['denominator']}"))
            continue
        n = float(n)
        if n <= 0:
            continue
        en = 0.5 * 10 ** (-d.get("denominator_decimals", 0))
        if kn is None and (v - eps) * max(n - en, 0) / m - 1e-9 <= x <= (v + eps) * (n + en) / m + 1e-9:
            continue  # what the published count over the published denominator gives: no information beyond them
        if kn is not None and abs(v - x / n * m) <= eps + 1e-9:
            continue
        if kn is not None:
            out.append(({kx: 1.0, kn: -(v + eps) / m}, -math.inf, 0.0, f"{where}: {d['column']} row {i} is not {d['count']}/{d['denominator']} as published"))
            out.append(({kx: 1.0, kn: -(v - eps) / m}, 0.0, math.inf, f"{where}: {d['column']} row {i} is not {d['count']}/{d['denominator']} as published"))
        else:
            lo, hi = (v - eps) * max(n - en, 0) / m, (v + eps) * (n + en) / m
            out.append(({kx: 1.0}, lo, hi, f"{where}: {d['column']} row {i} is not {d['count']}/{d['denominator']} as published; it implies {d['count']} in [{lo:.2f}, {hi:.2f}]"))
    return out
