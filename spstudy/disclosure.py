"""Statistical disclosure control: the one mechanism every published table passes through.

Rules (parameters ``disclosure``; defaults follow the NHS Digital HES/ECDS analysis guide and
OpenSAFELY's output checking):

1. Primary suppression: a count from 1 to ``threshold`` (default 7) is suppressed. Zero is shown.
2. Secondary suppression: in every group of cells that add up to a published total (``groups``: the
   columns that identify a margin, e.g. each ward's categories, or each category's wards), a lone
   suppressed cell could be recovered by subtraction, so the smallest other non-zero cell in that
   group is suppressed too; repeated until no group has exactly one suppressed cell.
3. Derived values (rates, percentages, intervals, ratios) computed from a suppressed count are
   suppressed with it (``derived``: count column -> the columns computed from it).
4. Every other count is rounded to the nearest ``rounding_base`` (default 5). Rates and model
   estimates are computed from unrounded counts and are not rounded (HES/ECDS practice); the counts
   behind a figure are rounded like any other published count.

Suppressed cells are missing in the numeric table and shown as ``[c]`` (the Government Analysis
Function's shorthand for "confidential") in CSV, Excel and HTML output, with a note saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SUPPRESSED = "[c]"
NOTE = ("[c] = suppressed to protect confidentiality: a count between 1 and {t}, a value computed "
        "from one, or a cell that would let one be recovered from a total. Other counts are rounded "
        "to the nearest {r}.")


@dataclass
class ControlledTable:
    """A table that has been through disclosure control (the only kind a pack publishes)."""

    data: pd.DataFrame            # numeric values; suppressed cells are NaN
    suppressed: pd.DataFrame      # boolean mask, same shape as data, True where suppressed
    counts: tuple[str, ...]
    threshold: int
    rounding_base: int
    log: list[str] = field(default_factory=list)

    def display(self) -> pd.DataFrame:
        """The table as published: suppressed cells shown as ``[c]``."""
        out = self.data.copy().astype(object)
        for c in self.counts:
            v = pd.to_numeric(self.data[c], errors="coerce")
            out[c] = [("" if pd.isna(x) else (int(x) if float(x).is_integer() else x)) for x in v]
        out = out.where(~self.suppressed, SUPPRESSED)
        return out.where(out.notna(), "")

    @property
    def n_suppressed(self) -> int:
        return int(self.suppressed.to_numpy().sum())

    def note(self) -> str:
        return NOTE.format(t=self.threshold, r=self.rounding_base)


def _round_to(x: pd.Series, base: int) -> pd.Series:
    if base <= 1:
        return x
    # round half up to the nearest base (0.5 ties away from zero; counts are non-negative)
    return (np.floor(x.astype(float) / base + 0.5) * base).astype(x.dtype if x.dtype.kind in "iu" else float)


def control(
    df: pd.DataFrame,
    counts: list[str] | tuple[str, ...],
    threshold: int = 7,
    rounding_base: int = 5,
    derived: dict[str, list[str]] | None = None,
    groups: list[list[str]] | None = None,
    round_counts: bool = True,
) -> ControlledTable:
    """Apply primary and secondary suppression and rounding to ``df``.

    Parameters
    ----------
    counts: columns holding counts of people or events (each checked against the threshold).
    derived: for each count column, columns computed from it (suppressed where it is).
        Use the key ``"*"`` for columns derived from every count in the row.
    groups: list of column lists; each defines groups of rows whose values of a count column add up
        to a published total (for secondary suppression). ``[[]]`` means the whole table is one group.
    """
    counts = list(counts)
    derived = derived or {}
    missing = [c for c in counts + [c for v in derived.values() for c in v] if c not in df.columns]
    if missing:
        raise ValueError(f"disclosure control: columns not in table: {missing}")
    data = df.reset_index(drop=True).copy()
    mask = pd.DataFrame(False, index=data.index, columns=data.columns)
    log: list[str] = []
    for c in counts:
        v = pd.to_numeric(data[c], errors="coerce")
        if (v.dropna() < 0).any():
            raise ValueError(f"disclosure control: negative count in column {c!r}")
        prim = (v >= 1) & (v <= threshold)
        mask[c] |= prim
        if prim.any():
            log.append(f"{c}: {int(prim.sum())} cell(s) with counts 1-{threshold} suppressed")
    # secondary suppression: repeat over all margins until no margin has a lone suppressed cell
    for c in counts:
        v = pd.to_numeric(data[c], errors="coerce").fillna(0)
        changed = True
        while changed:
            changed = False
            for g in groups or []:
                key = list(g) if g else np.zeros(len(data), dtype=int)
                for idx in data.groupby(key, dropna=False, sort=False).indices.values():
                    if len(idx) < 2:
                        continue
                    sup = mask[c].to_numpy()[idx]
                    if sup.sum() == 1:
                        vals = v.to_numpy()[idx]
                        cand = [(vals[i], idx[i]) for i in range(len(idx)) if not sup[i] and vals[i] > 0]
                        if cand:
                            j = min(cand)[1]
                            mask.loc[j, c] = True
                            changed = True
                            log.append(f"{c}: row {j} suppressed so that a suppressed cell cannot be recovered from the total by {g or 'table'}")
    # derived values
    for c in counts:
        for d in derived.get(c, []) + derived.get("*", []):
            mask[d] |= mask[c]
    # rounding
    if round_counts and rounding_base > 1:
        for c in counts:
            v = pd.to_numeric(data[c], errors="coerce")
            data[c] = _round_to(v, rounding_base)
    for c in data.columns:
        if mask[c].any():
            if not (pd.api.types.is_float_dtype(data[c]) or data[c].dtype == object):
                data[c] = data[c].astype("float64" if data[c].dtype.kind in "iuf" else object)
            data.loc[mask[c], c] = np.nan
    return ControlledTable(data=data, suppressed=mask, counts=tuple(counts), threshold=threshold,
                           rounding_base=rounding_base, log=log)


def safe_label(count: float, threshold: int = 7, rounding_base: int = 5) -> str:
    """A count as it may appear in a figure label: '[c]' if 1..threshold, else rounded."""
    if count is None or (isinstance(count, float) and np.isnan(count)):
        return SUPPRESSED
    if 1 <= count <= threshold:
        return SUPPRESSED
    if rounding_base > 1:
        count = np.floor(count / rounding_base + 0.5) * rounding_base
    return f"{int(count):,}"


def check_published(values: pd.DataFrame, counts: list[str], threshold: int) -> list[str]:
    """Problems in an already-published table: any count column holding a value in 1..threshold."""
    problems = []
    for c in counts:
        v = pd.to_numeric(values[c], errors="coerce")
        bad = (v >= 1) & (v <= threshold)
        if bad.any():
            problems.append(f"column {c!r}: {int(bad.sum())} value(s) in 1..{threshold}")
    return problems
