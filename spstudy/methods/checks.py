"""The column check every method and analysis runs on its input tables, written once.

It names the argument, every missing column and the columns the table has, so a caller can see at
once whether they passed the wrong table or a table from an older version of a function.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd


def require_columns(table: pd.DataFrame | Iterable[str], columns: Sequence[str] | str, argument: str,
                    hint: str = "") -> list[str]:
    """Raise ValueError naming ``argument``, every column of ``columns`` missing from ``table`` (a
    DataFrame or the column names of a table, e.g. a DuckDB relation's) and the columns it has; an
    optional ``hint`` says where the right table comes from. Returns ``columns`` as a list (a single
    name becomes a one-item list)."""
    cols = [columns] if isinstance(columns, str) else list(columns)
    have = list(table.columns) if isinstance(table, pd.DataFrame) else list(table)
    missing = [c for c in cols if c not in have]
    if missing:
        raise ValueError(f"`{argument}`: missing column(s) {missing} (columns: {have})" + (f"; {hint}" if hint else ""))
    return cols
