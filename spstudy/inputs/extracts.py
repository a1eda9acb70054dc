"""Load and validate patient-level extracts against the data contract (:mod:`spstudy.inputs.contract`).

One way in: every analysis reads extracts through :func:`load_extracts`. Each table is read from
``<extracts_dir>/<table>.parquet`` or ``<table>.csv``, checked column by column and row by row, and
either returned typed or rejected with an :class:`ExtractError`.

Validation is *lazy* (as pandera's ``lazy=True``): every breach found in every file is collected
and reported at once, each as a :class:`Breach` naming the file, the column, the problem, how many
rows have it, the first rows and the first values. Checks run in two stages: each file on its own
(readable, unique column names, no NHS-number-like values, types, codes, reference codes, keys,
dates not in the future), then the relations between files (foreign keys, dates in order, practice /
PCN / borough and LSOA / ward consistency, the sample design in ``extract_info.json``, who is in
``persons``). Rows are only ever excluded under a rule the parameters allow
(``data.exclude_rules``); every exclusion is counted in the :class:`Ledger`, which the packs
publish. Nothing is dropped silently.

pandera was considered for the per-column checks: its lazy mode is the model followed here, but its
failure cases carry index labels rather than 1-based file rows, and the date, timezone and
NHS-number checks would still be custom; the checks below are vectorised (pyarrow) so the shipped
7-million-row activity table validates in a few seconds.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spstudy.inputs import reference
from spstudy.inputs.contract import ITEM_RANGES, TABLES, Table

MAX_SHOWN = 5
MAX_ROWS_KEPT = 1000
LOCAL_TIMEZONE = "Europe/London"


# ------------------------------------------------------------------------------------------ errors

@dataclass(frozen=True)
class Breach:
    """One problem in one file: ``n_rows`` rows break it; ``rows`` are the first (1 = first data row)."""

    file: str
    column: str | None
    problem: str
    n_rows: int = 0
    rows: tuple[int, ...] = ()
    values: tuple = ()

    def message(self) -> str:
        where = f"{self.file}: column '{self.column}'" if self.column else f"{self.file}"
        msg = f"{where}: {self.problem}"
        if self.n_rows:
            shown = ", ".join(str(r) for r in self.rows[:MAX_SHOWN])
            more = "" if self.n_rows <= MAX_SHOWN else ", ..."
            msg += f" in {self.n_rows} row(s); first rows (1 = first data row): {shown}{more}"
        if self.values:
            msg += "; values: " + ", ".join(repr(v) for v in self.values[:MAX_SHOWN])
        return msg


def _breach(file, column, problem, rows=None, values=None) -> Breach:
    rows = [] if rows is None else list(rows)
    vals = () if values is None else tuple(_plain(v) for v in list(values)[:MAX_SHOWN])
    return Breach(str(file), column, problem, len(rows), tuple(int(r) for r in rows[:MAX_ROWS_KEPT]), vals)


def _plain(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return str(v.date()) if v == v.normalize() else str(v)
    return v


class ExtractError(ValueError):
    """An extract does not meet the data contract.

    ``breaches`` lists every problem found (one :class:`Breach` each); ``file``, ``column``,
    ``problem`` and ``rows`` describe the first, for callers that handle one at a time.
    """

    def __init__(self, file: Path | str | None = None, column: str | None = None, problem: str = "", rows=None, values=None,
                 *, breaches: list[Breach] | None = None):
        if breaches is None:
            breaches = [_breach(file, column, problem, rows, values)]
        if not breaches:
            raise ValueError("ExtractError needs at least one breach")
        self.breaches = list(breaches)
        first = self.breaches[0]
        self.file, self.column, self.problem, self.rows = first.file, first.column, first.problem, list(first.rows)
        if len(self.breaches) == 1:
            msg = first.message()
        else:
            files = sorted({b.file for b in self.breaches}, key=[b.file for b in self.breaches].index)
            msg = (f"{len(self.breaches)} problems in {len(files)} file(s) of the extract (all are listed):\n  - "
                   + "\n  - ".join(b.message() for b in self.breaches))
        super().__init__(msg)

    def to_frame(self) -> pd.DataFrame:
        """The breaches as a table: file, column, problem, rows (count), first_rows, first_values."""
        return pd.DataFrame([{"file": b.file, "column": b.column or "", "problem": b.problem, "rows": b.n_rows,
                              "first_rows": ", ".join(map(str, b.rows[:MAX_SHOWN])),
                              "first_values": ", ".join(map(repr, b.values))} for b in self.breaches])


class _Breaches:
    """Collects the breaches of one file (lazy validation)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.items: list[Breach] = []

    def add(self, column, problem, mask=None, values=None, rows=None) -> bool:
        """Record a breach at the rows where ``mask`` is true (or at ``rows``); ``values``: a Series
        aligned with the mask (its first distinct offending values are shown). Returns True if recorded."""
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            idx = np.flatnonzero(mask)
            if not len(idx):
                return False
            rows = idx + 1
            if values is not None:
                v = values.iloc[idx[:10_000]] if isinstance(values, pd.Series) else np.asarray(values)[idx[:10_000]]
                values = pd.unique(pd.Series(v).dropna())[:MAX_SHOWN]
        self.items.append(_breach(self.path.name if self.path.name else self.path, column, problem, rows, values))
        return True

    def file_level(self, problem: str):
        self.items.append(_breach(self.path, None, problem))


def _raise(breaches: list[Breach]):
    if breaches:
        raise ExtractError(breaches=breaches)


# ------------------------------------------------------------------------------------------ ledger

@dataclass
class Ledger:
    """Data-quality ledger: rows read, excluded (with the rule) and kept, per table, and notes."""

    records: list[dict] = field(default_factory=list)

    def read(self, table: str, file: str, n: int):
        self.records.append({"table": table, "file": file, "step": "rows read", "rule": "", "rows": int(n)})

    def exclude(self, table: str, file: str, rule: str, n: int, note: str = ""):
        self.records.append({"table": table, "file": file, "step": "rows excluded", "rule": rule, "rows": int(n), "note": note})

    def kept(self, table: str, file: str, n: int):
        self.records.append({"table": table, "file": file, "step": "rows kept", "rule": "", "rows": int(n)})

    def note(self, table: str, file: str, note: str):
        self.records.append({"table": table, "file": file, "step": "note", "rule": "", "rows": 0, "note": note})

    def to_frame(self) -> pd.DataFrame:
        cols = ["table", "file", "step", "rule", "rows", "note"]
        f = pd.DataFrame(self.records, columns=cols)
        f["note"] = f["note"].astype("object").where(f["note"].notna(), "")
        return f

    def check_balanced(self):
        """Assert rows read = rows excluded + rows kept for every table (every row accounted for)."""
        f = self.to_frame()
        for t, g in f.groupby("table"):
            read = g.loc[g.step == "rows read", "rows"].sum()
            out = g.loc[g.step.isin(["rows excluded", "rows kept"]), "rows"].sum()
            if read != out:
                raise AssertionError(f"ledger for {t}: {read} rows read but {out} excluded + kept")


@dataclass
class Extracts:
    persons: pd.DataFrame
    referrals: pd.DataFrame
    activity: pd.DataFrame
    wellbeing: pd.DataFrame
    workforce: pd.DataFrame
    ledger: Ledger
    files: dict[str, Path]
    pool_fraction: float = 1.0   # sampling fraction of never-referred persons (extract_info.json; 1 = all)
    extract_info: dict = field(default_factory=dict)
    # person ids with a referral at ANY date, including rows excluded as outside the study period
    # (the evaluation's comparators must never have been referred)
    referred_ever: frozenset = frozenset()

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)


# ----------------------------------------------------------------------------------------- reading

def find_table_file(directory: Path, table: str, required: bool = True) -> Path | None:
    """The file holding ``table`` in ``directory`` (parquet preferred over csv; both is an error).
    A missing file is an error if ``required``, else None."""
    directory = Path(directory)
    cands = [directory / f"{table}.parquet", directory / f"{table}.csv", directory / f"{table}.csv.gz", directory / table]
    found = [p for p in cands if p.exists()]
    if not found:
        if not required:
            return None
        raise ExtractError(directory / f"{table}.(parquet|csv)", None, "file not found: every extract needs this table")
    if len(found) > 1:
        raise ExtractError(found[0], None, f"more than one file for table '{table}' ({', '.join(p.name for p in found)}); keep one")
    return found[0]


def _duplicate_names(names: list[str]) -> list[str]:
    """Problems with column names: exact repeats, and names equal after ignoring case and surrounding spaces."""
    out = []
    seen: dict[str, str] = {}
    for n in names:
        key = str(n).strip().lower()
        if key in seen:
            other = seen[key]
            out.append(f"'{n}' appears twice" if other == n else f"'{other}' and '{n}' differ only in case or spaces")
        else:
            seen[key] = n
    return out


def _csv_header(path: Path) -> list[str]:
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
        return next(csv.reader(fh), [])


def read_table_file(path: Path) -> pd.DataFrame:
    """Read a CSV (all columns as text) or Parquet file; raise ExtractError if it is not what it claims
    or its column names repeat."""
    path = Path(path)
    if path.is_dir():  # a folder of Parquet parts (large extracts written in chunks)
        parts = sorted(path.glob("*.parquet"))
        if not parts:
            raise ExtractError(path, None, "folder holds no .parquet parts")
        return pd.concat([read_table_file(q) for q in parts], ignore_index=True)
    if path.stat().st_size == 0:
        raise ExtractError(path, None, "file is empty (0 bytes)")
    if path.suffix == ".parquet":
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic != b"PAR1":
            raise ExtractError(path, None, "not a Parquet file (missing the PAR1 signature); is it a CSV with the wrong extension?")
        try:
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        except Exception as e:  # pyarrow raises several types
            raise ExtractError(path, None, f"could not read Parquet file: {e}") from None
        dups = _duplicate_names(names)
        if dups:
            raise ExtractError(path, None, "duplicate column names: " + "; ".join(dups) + " (each column must appear once)")
        try:
            df = pq.read_table(path).to_pandas(date_as_object=False, types_mapper={}.get)
            for c in df.columns:  # text columns as pandas' string dtype, dates as datetime64
                if df[c].dtype == object and len(df) and df[c].map(type).isin([str]).all():
                    df[c] = df[c].astype("str")
        except Exception as e:  # pyarrow raises several types
            raise ExtractError(path, None, f"could not read Parquet file: {e}") from None
    else:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head == b"PAR1":
            raise ExtractError(path, None, "this is a Parquet file with a .csv extension")
        try:
            header = _csv_header(path)
        except UnicodeDecodeError:
            raise ExtractError(path, None, "not UTF-8 text: is it a spreadsheet or binary file?") from None
        except csv.Error as e:
            raise ExtractError(path, None, f"not a well-formed CSV: {e}") from None
        dups = _duplicate_names(header)
        if dups:
            raise ExtractError(path, None, "duplicate column names: " + "; ".join(dups) + " (each column must appear once)")
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise ExtractError(path, None, "not UTF-8 text: is it a spreadsheet or binary file?") from None
        except pd.errors.EmptyDataError:
            raise ExtractError(path, None, "file is empty (no header row)") from None
        except pd.errors.ParserError as e:
            raise ExtractError(path, None, f"not a well-formed CSV: {e}") from None
    if len(df) == 0:
        raise ExtractError(path, None, "file has a header but no data rows")
    return df


# -------------------------------------------------------------------------------- NHS numbers

_NHS_SHAPE = r"^\s*\d{3}[ -]?\d{3}[ -]?\d{4}\s*$"
_NHS_WEIGHTS = np.arange(10, 1, -1)


def nhs_number_valid(digits: np.ndarray) -> np.ndarray:
    """Modulus 11 check of NHS numbers given as an (n, 10) array of digits.

    NHS Data Dictionary, NHS NUMBER: multiply the first nine digits by 10, 9, ..., 2, sum, take the
    remainder on division by 11; the check digit is 11 minus the remainder (11 -> 0; 10 -> the number
    is invalid); the number is valid when that equals the tenth digit.
    """
    d = np.asarray(digits, dtype=np.int64).reshape(-1, 10)
    check = 11 - (d[:, :9] @ _NHS_WEIGHTS) % 11
    check = np.where(check == 11, 0, check)
    return (check != 10) & (check == d[:, 9])


def looks_like_nhs_number(values) -> np.ndarray:
    """True where a value is 10 digits (optionally spaced or hyphenated 3-3-4) passing the Modulus 11 check.
    ``values``: strings or integers (a Series, array or list); nulls are False."""
    import pyarrow as pa
    import pyarrow.compute as pc

    s = pd.Series(values)
    if pd.api.types.is_integer_dtype(s) or pd.api.types.is_float_dtype(s):
        num = pd.to_numeric(s, errors="coerce")
        ok = num.notna() & (num >= 1_000_000_000) & (num <= 9_999_999_999) & (num == num.round())
        out = np.zeros(len(s), dtype=bool)
        if ok.any():
            v = num[ok].astype("int64").to_numpy()
            digits = (v[:, None] // 10 ** np.arange(9, -1, -1)) % 10
            out[np.flatnonzero(ok.to_numpy())] = nhs_number_valid(digits)
        return out
    arr = pa.array(s.astype(object).where(s.notna(), None), type=pa.string()) if s.dtype == object else pa.array(s).cast(pa.string())
    shape = np.asarray(pc.fill_null(pc.match_substring_regex(arr, _NHS_SHAPE), False))
    out = np.zeros(len(s), dtype=bool)
    if shape.any():
        cand = [re.sub(r"\D", "", str(x)) for x in np.asarray(arr.filter(pa.array(shape)).to_pylist(), dtype=object)]
        digits = np.frombuffer("".join(cand).encode("ascii"), dtype=np.uint8).reshape(-1, 10) - 48
        out[np.flatnonzero(shape)] = nhs_number_valid(digits)
    return out


def _check_nhs_numbers(raw: pd.DataFrame, br: _Breaches, skip: tuple[str, ...] = ()):
    """Refuse any column holding values that look like NHS numbers (checked on distinct values).
    ``skip``: foreign-key columns, whose values must exist in a parent table that is itself checked
    (values missing from the parent are checked when the foreign key is)."""
    for c in raw.columns:
        if c in skip:
            continue
        s = raw[c]
        if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        uniq = pd.Series(pd.unique(s.dropna()))
        if not len(uniq):
            continue
        if uniq.dtype == object:
            keep = uniq.map(lambda v: isinstance(v, (str, int, np.integer)) and not isinstance(v, (bool, np.bool_)))
            uniq = uniq[keep].astype(str)
            if not len(uniq):
                continue
        hit = looks_like_nhs_number(uniq)
        if hit.any():
            bad = set(uniq[hit])
            mask = s.isin(bad).to_numpy()
            br.add(c, "values look like NHS numbers (10 digits passing the Modulus 11 check): identifiers must be "
                      "pseudonymised before they enter the workbench; values not shown", mask=mask)


# --------------------------------------------------------------------------------------- checking

def _isin(values: pd.Series, allowed) -> np.ndarray:
    """Fast membership test (pyarrow) for large string columns; nulls are False."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(values.astype(object).where(values.notna(), None), type=pa.string()) if values.dtype == object else pa.array(values)
    vs = pa.array(allowed, type=pa.string()) if isinstance(allowed, pd.Series) else pa.array([str(v) for v in allowed], type=pa.string())
    return np.asarray(pc.fill_null(pc.is_in(arr.cast(pa.string()), value_set=vs), False))


def _positions(values: pd.Series, keys: pd.Series) -> np.ndarray:
    """Position of each value in ``keys`` (-1 where absent), via pyarrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    idx = pc.index_in(pa.array(values).cast(pa.string()), value_set=pa.array(keys).cast(pa.string()))
    return np.asarray(pc.fill_null(idx, -1))


def _rows(mask) -> list[int]:
    """1-based data row numbers where mask is true."""
    return list(np.flatnonzero(np.asarray(mask)) + 1)


def _check_columns(df: pd.DataFrame, table: Table, path: Path, ledger: Ledger, br: _Breaches) -> bool:
    """Required columns present (with spelling hints); extra columns noted in the ledger. False if any is missing."""
    missing = [c for c in table.required_names if c not in df.columns]
    extra = [c for c in df.columns if c not in table.names]
    if missing:
        hints = []
        for m in missing:
            close = difflib.get_close_matches(m, [str(x) for x in extra], n=1)
            if close:
                hints.append(f"'{close[0]}' looks like a misspelling of '{m}'")
        hint = ("; " + "; ".join(hints)) if hints else ""
        br.add(", ".join(missing), f"required column(s) missing (expected columns: {', '.join(table.required_names)}){hint}")
    if extra:
        ledger.note(table.name, path.name, f"ignored columns not in the contract: {', '.join(map(str, extra))}")
    return not missing


_OFFSET = re.compile(r"(?:Z|[+-]\d\d:?\d\d)$")


def _parse_date(s: pd.Series, col: str, br: _Breaches, ledger: Ledger, table: str, path: Path) -> pd.Series:
    """Calendar dates (datetime64[ns] at midnight). Timezone-aware timestamps (a Parquet timestamp
    with a time zone, or text with a UTC offset or 'Z') are converted to Europe/London dates and
    counted in a ledger note; timestamps without a zone are taken as London local time."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert(LOCAL_TIMEZONE).dt.tz_localize(None).dt.normalize().astype("datetime64[ns]")
        ledger.note(table, path.name, f"column {col}: {int(s.notna().sum())} timezone-aware timestamps ({s.dt.tz}) "
                                      f"converted to {LOCAL_TIMEZONE} calendar dates")
        return out
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.normalize().astype("datetime64[ns]")
    if s.dtype == object and len(s.dropna()) and isinstance(s.dropna().iloc[0], (dt.date, dt.datetime)):
        vals = s.dropna()
        aware = vals.map(lambda v: isinstance(v, dt.datetime) and v.tzinfo is not None)
        out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
        try:
            if aware.any():
                a = pd.to_datetime(vals[aware], utc=True).dt.tz_convert(LOCAL_TIMEZONE).dt.tz_localize(None)
                out.loc[a.index] = a.dt.normalize().to_numpy()
                ledger.note(table, path.name, f"column {col}: {int(aware.sum())} timezone-aware timestamps converted to "
                                              f"{LOCAL_TIMEZONE} calendar dates")
            n = vals[~aware]
            if len(n):
                out.loc[n.index] = pd.to_datetime(n.map(lambda v: v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v),
                                                  errors="coerce").dt.normalize().to_numpy()
        except (TypeError, ValueError) as e:
            br.add(col, f"dates could not be read ({e})", mask=s.notna())
        return out
    text = s.astype("string").str.strip()
    out = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce").astype("datetime64[ns]")
    retry = text.notna() & (text != "") & out.isna()
    if retry.any():  # timestamps (ISO 8601 with a time, maybe an offset)
        t = text[retry]
        has_zone = t.str.contains(_OFFSET, regex=True)
        for zone in (True, False):
            part = t[has_zone == zone]
            if not len(part):
                continue
            try:
                v = pd.to_datetime(part, format="ISO8601", errors="coerce", utc=zone)
            except (TypeError, ValueError):
                v = pd.Series(pd.NaT, index=part.index)
            if zone:
                v = v.dt.tz_convert(LOCAL_TIMEZONE).dt.tz_localize(None)
                if v.notna().any():
                    ledger.note(table, path.name, f"column {col}: {int(v.notna().sum())} timestamps with a UTC offset "
                                                  f"converted to {LOCAL_TIMEZONE} calendar dates")
            out.loc[part.index] = v.dt.normalize().astype("datetime64[ns]").to_numpy()
    return out


def _typed(df: pd.DataFrame, table: Table, path: Path, br: _Breaches, ledger: Ledger) -> pd.DataFrame:
    """Type every contract column, recording every breach (bad values become missing so later checks run)."""
    out = {}
    for col in table.columns:
        if col.name not in df.columns:
            if col.optional:
                continue
            out[col.name] = pd.Series([None] * len(df), dtype="object")
            continue
        s = df[col.name]
        if pd.api.types.is_string_dtype(s) and s.dtype != object:  # already text
            v0 = s
            null = s.isna() | (s == "")
        elif s.dtype == object:
            v0 = s.astype("string").str.strip()
            null = s.isna() | (v0 == "")
        else:
            v0 = None
            null = s.isna()
        null = null.fillna(True).astype(bool)
        if not col.nullable and null.any():
            br.add(col.name, "empty value where one is required", mask=null)
        bad = None
        if col.kind in ("id", "str", "code", "codes"):
            v = v0 if v0 is not None else s.astype("str")
            if v.dtype == object:
                v = v.astype("str")
            v = v.where(~null, None) if null.any() else v
        elif col.kind == "int":
            v = pd.to_numeric(s, errors="coerce")
            bad = (~null) & (v.isna() | (v.round() != v))
            br.add(col.name, "not a whole number", mask=bad, values=s)
            v = v.where(~bad).astype("Int64")
        elif col.kind == "float":
            v = pd.to_numeric(s, errors="coerce")
            bad = (~null) & v.isna()
            br.add(col.name, "not a number", mask=bad, values=s)
            v = v.astype("float64")
        elif col.kind == "date":
            v = _parse_date(s, col.name, br, ledger, table.name, path)
            bad = (~null) & v.isna()
            br.add(col.name, "not a valid date (expected YYYY-MM-DD)", mask=bad, values=s)
        elif col.kind == "bool":
            if pd.api.types.is_bool_dtype(s):
                v = s.astype("boolean")
            else:
                t = s.astype("string").str.strip().str.lower()
                m = t.map({"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False})
                bad = (~null) & m.isna()
                br.add(col.name, "not true/false", mask=bad, values=s)
                v = m.astype("boolean")
        else:  # pragma: no cover - contract error
            raise AssertionError(col.kind)
        if col.min is not None or col.max is not None:
            num = v.astype("float64")
            out_of = (~null) & (((num < col.min) if col.min is not None else False) | ((num > col.max) if col.max is not None else False))
            br.add(col.name, f"out of range (expected {col.min} to {col.max})", mask=np.asarray(out_of.fillna(False)), values=s)
        if col.codes is not None:
            allowed = set(col.codes)
            if col.kind == "codes":
                parts = v.fillna("").str.split(";")
                unknown = (~null) & parts.map(lambda xs: not xs or any(x.strip() not in allowed for x in xs))
            else:
                unknown = (~null) & ~_isin(v, allowed)
            br.add(col.name, f"unknown code (allowed: {', '.join(sorted(allowed))})", mask=unknown, values=v)
        out[col.name] = v
    return pd.DataFrame(out)


def _reference_sets() -> dict[str, set[str]]:
    gp = reference.gp_practices()
    return {
        "ward": set(reference.wards()["ward22_code"]),
        "lsoa21": set(reference.lsoa21_lookup()["lsoa21_code"]),
        "practice": set(gp["practice_code"]),
        "pcn": set(gp["pcn_code"]),
        "borough": set(reference.BOROUGHS["borough_code"]),
    }


def _check_references(df: pd.DataFrame, table: Table, br: _Breaches, refs: dict[str, set[str]]):
    for col in table.columns:
        if col.reference and col.name in df.columns:
            v = df[col.name]
            bad = v.notna().to_numpy() & ~_isin(v, refs[col.reference])
            br.add(col.name, f"code not in the reference data ({col.reference} codes in data/reference)", mask=bad, values=v)


def _check_key(df: pd.DataFrame, table: Table, br: _Breaches):
    if table.key and all(k in df.columns for k in table.key):
        dup = df.duplicated(list(table.key), keep=False)
        br.add(", ".join(table.key), "duplicate identifiers", mask=dup, values=df[table.key[0]])


def _apply_rule(df, bad, rule, table, path, ledger, allowed, problem, column, br: _Breaches):
    """Exclude rows flagged ``bad`` if ``rule`` is allowed (counted in the ledger), else record a breach."""
    bad = np.asarray(bad, dtype=bool)
    if not bad.any():
        return df
    if rule in allowed:
        ledger.exclude(table, path.name, rule, int(bad.sum()), problem)
        return df.loc[~bad].reset_index(drop=True)
    br.add(column, f"{problem} (rule '{rule}'; allow exclusion in parameters data.exclude_rules)", mask=bad)
    return df


def _empty(table: Table) -> pd.DataFrame:
    dtypes = {"date": "datetime64[ns]", "int": "Int64", "float": "float64", "bool": "boolean"}
    return pd.DataFrame({c.name: pd.Series([], dtype=dtypes.get(c.kind, "str")) for c in table.columns if not c.optional})


# --------------------------------------------------------------------- relations between tables

def _check_persons(p: pd.DataFrame, br: _Breaches):
    bad = p["registration_end"].notna() & (p["registration_end"] < p["registration_start"])
    br.add("registration_end", "registration ends before it starts", mask=bad)
    bad = p["registration_end"].isna() != p["registration_end_reason"].isna()
    br.add("registration_end_reason", "must be given exactly when registration_end is given", mask=bad)
    bad = (p["birth_year"] > p["registration_start"].dt.year).fillna(False)
    br.add("birth_year", "born after registration started", mask=bad)
    lk = reference.lsoa21_lookup().set_index("lsoa21_code")["ward22_code"]
    best = p["lsoa21_code"].map(lk)
    bad = (best.notna() & p["ward22_code"].notna() & (best != p["ward22_code"])).to_numpy()
    if bad.any():
        q = p[bad]
        vals = pd.Series("", index=p.index)
        vals[bad] = q["lsoa21_code"].astype(str) + " -> " + q["ward22_code"].astype(str) + " (best fit " + best[bad].astype(str) + ")"
        br.add("ward22_code", "ward is not the best-fit ward of the person's LSOA (data/reference/"
                              "ncl_lookup_lsoa21_to_ward22_bestfit.csv)", mask=bad, values=vals)


def _check_practice_hierarchy(r: pd.DataFrame, br: _Breaches):
    """A referral's PCN and borough must be those of its practice (ODS / NHS Digital practice list, May 2022)."""
    gp = reference.gp_practices().set_index("practice_code")
    for col, ref in (("pcn_code", "pcn_code"), ("borough_code", "borough_code")):
        want = r["practice_code"].map(gp[ref])
        bad = want.notna() & r[col].notna() & (want != r[col])
        br.add(col, f"does not agree with the practice ({ref} of practice_code in data/reference/ncl_gp_practices_2022.csv)",
               mask=bad, values=(r["practice_code"].astype(str) + ": " + r[col].astype(str) + " (practice's " + want.astype(str) + ")"))


def _check_workforce(w: pd.DataFrame, br: _Breaches):
    gp = reference.gp_practices()
    pcn_borough = gp.drop_duplicates("pcn_code").set_index("pcn_code")["borough_code"]
    want = w["pcn_code"].map(pcn_borough)
    bad = want.notna() & (want != w["borough_code"])
    br.add("borough_code", "PCN is not in this borough (data/reference/ncl_gp_practices_2022.csv)", mask=bad,
           values=(w["pcn_code"].astype(str) + " in " + want.astype(str)))


def _exact_duplicates(a: pd.DataFrame, pos: np.ndarray, extra: pd.DataFrame | None) -> np.ndarray:
    """Rows repeating an earlier row's person, date, setting (and any non-contract columns, e.g. an
    appointment id): one int64 key per row; O(n) when the file is sorted by person, date and setting
    (as the generator writes it: then only the rows in a run of equal keys have their other columns
    compared), a sort otherwise."""
    from spstudy.inputs.contract import ACTIVITY_SETTINGS

    day = a["activity_date"].to_numpy().astype("datetime64[D]").astype(np.int64)
    day = day - day.min() if len(day) else day
    code = _positions(a["setting"], pd.Series(list(ACTIVITY_SETTINGS))).astype(np.int64)
    key = (pos.astype(np.int64) << 26) | (day << 8) | (code + 1)
    if extra is not None and extra.shape[1]:
        rows = np.arange(len(key))
        if len(key) > 1 and np.all(key[1:] >= key[:-1]):
            # sorted: only rows in a run of equal keys can repeat one another; compare their extra columns only
            same = key[1:] == key[:-1]
            in_run = np.zeros(len(key), dtype=bool)
            in_run[1:] |= same
            in_run[:-1] |= same
            rows = np.flatnonzero(in_run)
        sub = extra.iloc[rows] if len(rows) < len(key) else extra
        if extra.shape[1] == 1:
            h = pd.factorize(sub.iloc[:, 0], use_na_sentinel=False)[0].astype(np.int64)
        else:
            h = pd.util.hash_pandas_object(sub, index=False).to_numpy().view(np.int64)
        k = key[rows]
        order = np.lexsort((h, k))  # stable: the first of equal rows keeps its place and is kept
        ks, hs = k[order], h[order]
        rep = np.zeros(len(rows), dtype=bool)
        rep[1:] = (ks[1:] == ks[:-1]) & (hs[1:] == hs[:-1])
        dup = np.zeros(len(key), dtype=bool)
        dup[rows[order]] = rep
        return dup
    dup = np.zeros(len(key), dtype=bool)
    if len(key) > 1:
        if np.all(key[1:] >= key[:-1]):
            dup[1:] = key[1:] == key[:-1]
        else:
            order = np.argsort(key, kind="stable")
            ks = key[order]
            rep = np.zeros(len(key), dtype=bool)
            rep[1:] = ks[1:] == ks[:-1]
            dup[order] = rep
    return dup


def read_extract_info(directory: Path | str) -> tuple[dict, list[Breach]]:
    """``extract_info.json`` as a dict ({} if absent) and the breaches of its documented fields
    (:data:`spstudy.inputs.contract.EXTRACT_INFO_FIELDS`): pool_fraction a number in (0, 1], sample_design an
    object whose non_referred_weight is 1 / pool_fraction."""
    path = Path(directory) / "extract_info.json"
    if not path.exists():
        return {}, []
    br = _Breaches(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        br.file_level(f"not valid JSON: {e}")
        return {}, br.items
    if not isinstance(info, dict):
        br.file_level("expected a JSON object of keys and values")
        return {}, br.items
    f = info.get("pool_fraction", 1.0)
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
        br.add("pool_fraction", f"must be a number in (0, 1] (the sampling fraction of never-referred persons); got {f!r}")
    sd = info.get("sample_design")
    if sd is not None and not isinstance(sd, dict):
        br.add("sample_design", f"must be an object; got {type(sd).__name__}")
    elif isinstance(sd, dict) and "non_referred_weight" in sd and isinstance(f, (int, float)) and 0 < f <= 1:
        wgt = sd["non_referred_weight"]
        if not isinstance(wgt, (int, float)) or abs(wgt - 1 / f) > 1e-9 * max(1, 1 / f):
            br.add("sample_design.non_referred_weight", f"must be 1 / pool_fraction = {1 / f:g}; got {wgt!r}")
    sp = info.get("study_period")
    if sp is not None and not isinstance(sp, dict):
        br.add("study_period", f"must be an object with data_start and data_end; got {type(sp).__name__}")
    return info, br.items


def _check_sample_design(info: dict, p: pd.DataFrame, raw_referrals: pd.DataFrame, directory: Path, st, k: int,
                         ledger: Ledger, br_persons: _Breaches, br_info: _Breaches):
    is_ref = _isin(p["person_id"], pd.unique(raw_referrals["person_id"].dropna()))
    never = int((~is_ref).sum())
    n_ref = int(is_ref.sum())
    if never == 0:
        br_persons.add("person_id", "persons holds only people who were referred (the caseload): the evaluation compares "
                                    "referred people with registered people never referred, and the equity analysis needs the "
                                    "registered population as its denominator. Extract everyone registered at the practices in "
                                    "the data period (or a random sample of the never-referred, with its sampling fraction in "
                                    "extract_info.json pool_fraction); see docs/data_dictionary.md, 'Who must be in persons'")
    elif never < k * n_ref:
        ledger.note("persons", "persons", f"only {never} never-referred persons for {n_ref} referred: fewer than the "
                                          f"{k} comparator(s) per referred person matching asks for")
    sd = info.get("sample_design") if isinstance(info.get("sample_design"), dict) else {}
    if "non_referred_in_sample" in sd and sd["non_referred_in_sample"] != never:
        br_info.add("sample_design.non_referred_in_sample", f"says {sd['non_referred_in_sample']!r} never-referred persons "
                                                             f"but persons has {never} people with no referral")
    sp = info.get("study_period") if isinstance(info.get("study_period"), dict) else {}
    try:
        ds = dt.date.fromisoformat(str(sp["data_start"])) if "data_start" in sp else None
        de = dt.date.fromisoformat(str(sp["data_end"])) if "data_end" in sp else None
    except ValueError as e:
        br_info.add("study_period", f"dates are not valid YYYY-MM-DD: {e}")
        ds = de = None
    if (ds and ds > st.data_start) or (de and de < st.data_end):
        br_info.add("study_period", f"the extract's data period {ds} to {de} does not cover the parameters' data period "
                                    f"{st.data_start} to {st.data_end}")
    if not info:
        ledger.note("persons", "extract_info.json", "no extract_info.json: persons is taken to be every registered person "
                                                    "(sampling fraction 1)")


# ----------------------------------------------------------------------------------------- loading

def load_extracts(params, directory: Path | str | None = None, today: dt.date | None = None) -> Extracts:
    """Read, validate and type the extract tables for ``params`` (a :class:`~spstudy.inputs.params.Parameters`).

    Returns :class:`Extracts` with typed DataFrames, the data-quality ledger and the sampling
    fraction from ``extract_info.json``. Raises :class:`ExtractError` listing every breach found
    (all files are checked before it is raised; relations between files are checked once every
    file is readable and typed).
    """
    directory = Path(directory) if directory else params.extracts_path()
    today = today or dt.date.today()
    allowed = set(params.data.exclude_rules)
    st = params.study
    ledger = Ledger()
    refs = _reference_sets()
    files: dict[str, Path] = {}
    data: dict[str, pd.DataFrame] = {}
    extra_cols: dict[str, pd.DataFrame] = {}
    future = pd.Timestamp(today)
    breaches: list[Breach] = []
    supplied: set[str] = set()

    # ---- stage 1: each file on its own
    for name in ("persons", "referrals", "activity", "wellbeing", "workforce"):
        table = TABLES[name]
        try:
            path = find_table_file(directory, name, required=not table.optional)
        except ExtractError as e:
            breaches += e.breaches
            continue
        if path is None:
            ledger.note(name, f"{name}.(parquet|csv)", "optional table not supplied: an empty table is used")
            data[name] = _empty(table)
            files[name] = directory / f"{name}.csv"
            continue
        files[name] = path
        try:
            raw = read_table_file(path)
        except ExtractError as e:
            breaches += e.breaches
            continue
        br = _Breaches(path)
        ledger.read(name, path.name, len(raw))
        supplied.add(name)
        _check_nhs_numbers(raw, br, skip=tuple(table.foreign_keys) if name == "activity" else ())
        complete = _check_columns(raw, table, path, ledger, br)
        df = _typed(raw, table, path, br, ledger)
        _check_references(df, table, br, refs)
        _check_key(df, table, br)
        for col in table.columns:
            if col.kind == "date" and col.name in df.columns:
                fut = (df[col.name] > future).fillna(False)
                br.add(col.name, f"date in the future (after {today})", mask=fut, values=df[col.name])
        if name == "activity":
            extra = [c for c in raw.columns if c not in table.required_names]  # event_id and any other columns
            extra_cols[name] = raw[extra] if extra else None
        breaches += br.items
        if complete:
            data[name] = df
    info, info_breaches = read_extract_info(directory)
    breaches += info_breaches
    _raise(breaches)

    # ---- stage 2: relations between files
    brs = {n: _Breaches(files[n]) for n in data}
    br_info = _Breaches(directory / "extract_info.json")

    p = data["persons"]
    _check_persons(p, brs["persons"])

    r, path = data["referrals"], files["referrals"]
    br = brs["referrals"]
    raw_referrals = r
    raw_referral_ids = r["referral_id"]
    unknown = _positions(r["person_id"], p["person_id"]) < 0
    br.add("person_id", "referral for a person not in persons", mask=unknown, values=r["person_id"])
    for c in ("first_contact_date", "closure_date"):
        bad = (r[c].notna() & (r[c] < r["referral_date"])).fillna(False)
        br.add(c, f"{'closure' if c == 'closure_date' else 'first contact'} before referral", mask=bad)
    br.add("first_contact_date", "missing for a referral whose outcome is 'seen'", mask=(r["outcome"] == "seen") & r["first_contact_date"].isna())
    br.add("first_contact_date", "given for a referral that was not seen", mask=(r["outcome"] != "seen") & r["first_contact_date"].notna())
    _check_practice_hierarchy(r, br)
    pos = _positions(r["person_id"], p["person_id"])
    rs = np.where(pos >= 0, p["registration_start"].to_numpy()[np.maximum(pos, 0)], np.datetime64("NaT"))
    br.add("referral_date", "referral before the person's registration started", mask=r["referral_date"].to_numpy() < rs)
    _check_sample_design(info, p, raw_referrals, directory, st, params.evaluation.matching.k, ledger, brs["persons"], br_info)
    referred_ever = frozenset(r["person_id"])  # before the study-period exclusion below (the evaluation's comparator rule)
    outside = (r["referral_date"] < pd.Timestamp(st.referral_start)) | (r["referral_date"] > pd.Timestamp(st.referral_end))
    r = _apply_rule(r, outside, "referral_outside_study_period", "referrals", path, ledger, allowed,
                    f"referral date outside the study period {st.referral_start} to {st.referral_end}", "referral_date", br)
    ledger.kept("referrals", path.name, len(r))
    data["referrals"] = r

    a, path = data["activity"], files["activity"]
    br = brs["activity"]
    pos = _positions(a["person_id"], p["person_id"])
    unknown = pos < 0
    if unknown.any():
        br.add("person_id", "activity for a person not in persons", mask=unknown, values=a["person_id"])
        _check_nhs_numbers(a.loc[unknown, ["person_id"]].reset_index(drop=True), br)
    else:
        # the three exclusion rules in order, each counted on the rows the earlier ones left; one filter at the end
        drop = _exact_duplicates(a, pos, extra_cols.get("activity"))
        rules = [("activity_exact_duplicate", drop.copy(),
                  "row repeats an earlier row's person, date and setting (one consultation or attendance day)",
                  "person_id, activity_date, setting")]
        d = a["activity_date"].to_numpy()
        outside = (d < np.datetime64(st.data_start)) | (d > np.datetime64(st.data_end))
        rules.append(("activity_outside_data_period", outside & ~drop,
                      f"activity date outside the data period {st.data_start} to {st.data_end}", "activity_date"))
        drop |= outside
        start = p["registration_start"].to_numpy()[pos]
        end = p["registration_end"].to_numpy()[pos]
        notreg = ((d < start) | (~pd.isna(end) & (d > end))) & ~drop
        rules.append(("activity_outside_registration", notreg, "activity while the person was not registered", "activity_date"))
        excluded = np.zeros(len(a), dtype=bool)
        for rule, mask, problem, column in rules:
            if not mask.any():
                continue
            if rule in allowed:
                ledger.exclude("activity", path.name, rule, int(mask.sum()), problem)
                excluded |= mask
            else:
                br.add(column, f"{problem} (rule '{rule}'; allow exclusion in parameters data.exclude_rules)", mask=mask)
        if excluded.any():
            a = a.loc[~excluded].reset_index(drop=True)
        if len(a):
            lo, hi = a["activity_date"].min(), a["activity_date"].max()
            ledger.note("activity", path.name, f"activity runs from {lo.date()} to {hi.date()}; the data period is "
                                               f"{st.data_start} to {st.data_end}")
    ledger.kept("activity", path.name, len(a))
    data["activity"] = a

    w, path = data["wellbeing"], files["wellbeing"]
    br = brs["wellbeing"]
    if len(w):
        in_kept = _isin(w["referral_id"], data["referrals"]["referral_id"])
        in_raw = _isin(w["referral_id"], raw_referral_ids)
        dropped = ~in_kept & in_raw
        w = _apply_rule(w, dropped, "referral_outside_study_period", "wellbeing", path, ledger, allowed,
                        "measurement for a referral excluded as outside the study period", "referral_id", br)
        unknown = ~_isin(w["referral_id"], raw_referral_ids)
        br.add("referral_id", "measurement for a referral not in referrals (or excluded from it)", mask=unknown, values=w["referral_id"])
        prefix = w["item"].str.split("_").str[0]
        br.add("item", "item does not belong to the instrument", mask=(prefix != w["instrument"]).fillna(False), values=w["item"])
        lo = w["item"].map(lambda i: ITEM_RANGES.get(i, (0, 10))[0])
        hi = w["item"].map(lambda i: ITEM_RANGES.get(i, (0, 10))[1])
        br.add("score", "score out of the item's range (ONS4 0-10, WEMWBS/SWEMWBS 1-5)",
               mask=((w["score"] < lo) | (w["score"] > hi)).fillna(False), values=w["score"])
        rd = raw_referrals.drop_duplicates("referral_id").set_index("referral_id")["referral_date"].reindex(w["referral_id"]).to_numpy()
        br.add("measurement_date", "measurement before the referral", mask=w["measurement_date"].to_numpy() < rd)
    if "wellbeing" in supplied:
        ledger.kept("wellbeing", path.name, len(w))
    data["wellbeing"] = w

    if len(data["workforce"]):
        _check_workforce(data["workforce"], brs["workforce"])
    for name in ("persons", "workforce"):
        if name in supplied:
            ledger.kept(name, files[name].name, len(data[name]))
    _raise([b for n in ("persons", "referrals", "activity", "wellbeing", "workforce") for b in brs[n].items] + br_info.items)
    ledger.check_balanced()
    f = info.get("pool_fraction", 1.0)
    return Extracts(ledger=ledger, files=files, pool_fraction=float(f), extract_info=info, referred_ever=referred_ever, **data)


# ------------------------------------------------------------------------------------ sampling

def sample_extract(src_dir: Path | str, out_dir: Path | str, n_persons: int, seed: int,
                   referred_fraction: float | None = None) -> Path:
    """Write a random sample of an extract folder: ``n_persons`` persons with all their referrals,
    activity and wellbeing, and the workforce table unchanged.

    ``referred_fraction``: the share of the sample drawn from people with a referral (None: every
    person with the same probability). Tables keep their Parquet schema (CSV tables are written as
    CSV); ``extract_info.json`` states the sample and the sampling fraction of never-referred persons
    relative to referred ones (what the analyses' weights need). For fast tests and demos; ``seed``
    makes it reproducible. Returns ``out_dir``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    src, out = Path(src_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def read(name):
        path = find_table_file(src, name, required=not TABLES[name].optional)
        if path is None:
            return None, None
        if path.suffix == ".parquet" or path.is_dir():
            return pq.read_table(path), "parquet"
        return pa.Table.from_pandas(pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]), preserve_index=False), "csv"

    def write(name, t, fmt):
        if fmt == "parquet":
            pq.write_table(t, out / f"{name}.parquet")
        else:
            t.to_pandas().to_csv(out / f"{name}.csv", index=False)

    persons, pf = read("persons")
    referrals, rf = read("referrals")
    info, _ = read_extract_info(src)
    f = info.get("pool_fraction", 1.0)
    ids = np.asarray(persons.column("person_id").to_pylist(), dtype=object)
    is_ref = np.asarray(pc.is_in(persons.column("person_id"), value_set=pc.unique(referrals.column("person_id"))))
    rng = np.random.default_rng(seed)
    n = min(int(n_persons), len(ids))
    if referred_fraction is None:
        pick = rng.choice(len(ids), size=n, replace=False)
        q_ref = q_non = n / len(ids)
    else:
        n_ref = min(int(round(n * referred_fraction)), int(is_ref.sum()))
        n_non = min(n - n_ref, int((~is_ref).sum()))
        pick = np.concatenate([rng.choice(np.flatnonzero(is_ref), size=n_ref, replace=False),
                               rng.choice(np.flatnonzero(~is_ref), size=n_non, replace=False)])
        q_ref, q_non = n_ref / max(is_ref.sum(), 1), n_non / max((~is_ref).sum(), 1)
    f_new = f * q_non / q_ref if q_ref else f
    if not 0 < f_new <= 1:
        raise ValueError(f"sample_extract: referred_fraction {referred_fraction} makes never-referred persons "
                         f"over-represented (relative sampling fraction {f_new:g} > 1); raise referred_fraction")
    keep_ids = pa.array(sorted(ids[pick].astype(str)))
    persons = persons.filter(pc.is_in(persons.column("person_id"), value_set=keep_ids))
    write("persons", persons, pf)
    referrals = referrals.filter(pc.is_in(referrals.column("person_id"), value_set=keep_ids))
    write("referrals", referrals, rf)
    act_path = find_table_file(src, "activity")
    if act_path.suffix == ".parquet" or act_path.is_dir():
        activity = pq.read_table(act_path, filters=[("person_id", "in", keep_ids.to_pylist())])
        write("activity", activity, "parquet")
    else:
        activity, af = read("activity")
        write("activity", activity.filter(pc.is_in(activity.column("person_id"), value_set=keep_ids)), af)
    wellbeing, wf = read("wellbeing")
    if wellbeing is not None:
        write("wellbeing", wellbeing.filter(pc.is_in(wellbeing.column("referral_id"), value_set=referrals.column("referral_id"))), wf)
    workforce, kf = read("workforce")
    if workforce is not None:
        import shutil

        shutil.copy(find_table_file(src, "workforce"), out)
    referred = set(referrals.column("person_id").to_pylist())
    never = int(sum(1 for x in persons.column("person_id").to_pylist() if x not in referred))
    new = {k: v for k, v in info.items() if k not in ("row_counts", "sample_design", "population_frame_persons",
                                                        "population_frame_by_borough")}
    new.update({"description": f"A random sample of {n} persons of the extract in {src.name}/ (seed {seed}): "
                               "spstudy.inputs.extracts.sample_extract. " + str(info.get("description", "")),
                "pool_fraction": f_new,
                "sample_design": {"referred": f"people with a referral kept with probability {q_ref:.6g}",
                                  "non_referred": f"never-referred persons kept with probability {q_non:.6g}: sampling "
                                                  f"fraction {f_new:.6g} relative to referred persons",
                                  "non_referred_weight": 1 / f_new, "non_referred_in_sample": never},
                "row_counts": {"persons": persons.num_rows, "referrals": referrals.num_rows,
                               "activity": int(pq.ParquetFile(out / "activity.parquet").metadata.num_rows)
                               if (out / "activity.parquet").exists() else None}})
    (out / "extract_info.json").write_text(json.dumps(new, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


# --------------------------------------------------------------------- validated once, read many times

VALIDATED_TABLES = ("persons", "referrals", "activity", "wellbeing", "workforce")


VALIDATED_SUFFIX = ".arrow"


def write_validated(ex: Extracts, directory: Path | str) -> Path:
    """Write a validated extract for the notebooks of one build (so it is validated once, not once
    per notebook), with the ledger, the sampling metadata and a SHA-256 of every file. The tables
    are Arrow IPC files (Feather v2, uncompressed): a private copy read back within minutes, so
    writing and reading fast matters more than size (7.2 M activity rows: written in about 0.2 s
    and read in 0.25 s, against 0.8 s and 0.5 s as Parquet); dtypes round-trip exactly. The folder
    lives in the build's private area and is never published."""
    from spstudy.inputs.checksums import sha256

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for t in VALIDATED_TABLES:
        ex.table(t).reset_index(drop=True).to_feather(d / f"{t}{VALIDATED_SUFFIX}", compression="uncompressed")
    pd.DataFrame({"person_id": sorted(ex.referred_ever)}).to_feather(d / f"referred_ever{VALIDATED_SUFFIX}", compression="uncompressed")
    ex.ledger.to_frame().to_csv(d / "ledger.csv", index=False, lineterminator="\n")
    meta = {"pool_fraction": ex.pool_fraction, "extract_info": ex.extract_info, "files": {k: Path(v).name for k, v in ex.files.items()},
            "sha256": {f.name: sha256(f) for f in sorted(d.glob("*")) if f.suffix in (VALIDATED_SUFFIX, ".csv")}}
    (d / "validated.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
    return d


class ValidatedExtracts:
    """An extract validated earlier in the same build (:func:`write_validated`): each table is read
    from its Arrow IPC file the first time it is used, after its checksum is verified, so a notebook that
    never touches activity never reads it; a later notebook in the same kernel reuses what an earlier
    one read (frozensets and copy-on-write DataFrames, see ``_SHARED``)."""

    def __init__(self, directory: Path | str):
        from spstudy.inputs.checksums import sha256

        self.dir = Path(directory)
        meta = json.loads((self.dir / "validated.json").read_text())
        self._sha = meta["sha256"]
        self._sha256 = sha256
        self.pool_fraction = float(meta["pool_fraction"])
        self.extract_info = meta["extract_info"]
        self.files = {k: Path(v) for k, v in meta["files"].items()}
        self._cache: dict = {}

    def _read(self, name: str, fname: str, reader, share: bool = True):
        if name not in self._cache:
            key = (str(self.dir.resolve()), fname, self._sha[fname])
            if share and key in _SHARED:
                got = _SHARED[key]
            else:
                f = self.dir / fname
                if self._sha256(f) != self._sha[fname]:
                    raise ExtractError(f, None, "the validated copy of the extract changed during the build (checksum mismatch)")
                got = reader(f)
                if share:
                    if any(k[0] != key[0] for k in _SHARED):  # one build's tables at a time
                        _SHARED.clear()
                    _SHARED[key] = got
            # pandas copy-on-write: a shallow copy shares memory, but a change made through it never reaches another
            self._cache[name] = got.copy(deep=False) if isinstance(got, pd.DataFrame) else got
        return self._cache[name]

    def table(self, name: str) -> pd.DataFrame:
        if name not in VALIDATED_TABLES:
            raise KeyError(name)
        return self._read(name, f"{name}{VALIDATED_SUFFIX}", pd.read_feather)

    def derived(self, key: tuple, make):
        """``make()``, computed once per process for this validated extract and ``key``: for a result
        that depends only on the extract and the arguments in ``key`` (the equity analysis codes every
        person of the region the same way for each area). Callers treat it as read-only (DataFrames
        are copy-on-write, so a shallow copy can be changed safely)."""
        k = (str(self.dir.resolve()), "derived", key)
        if k not in _SHARED:
            if any(x[0] != k[0] for x in _SHARED):
                _SHARED.clear()
            _SHARED[k] = make()
        return _SHARED[k]

    persons = property(lambda self: self.table("persons"))
    referrals = property(lambda self: self.table("referrals"))
    activity = property(lambda self: self.table("activity"))
    wellbeing = property(lambda self: self.table("wellbeing"))
    workforce = property(lambda self: self.table("workforce"))

    @property
    def referred_ever(self) -> frozenset:
        return self._read("referred_ever", f"referred_ever{VALIDATED_SUFFIX}", lambda f: frozenset(pd.read_feather(f)["person_id"]))

    @property
    def ledger(self) -> Ledger:
        def read(f):
            led = Ledger()
            df = pd.read_csv(f, keep_default_na=False)
            led.records = [{k: (int(v) if k == "rows" else v) for k, v in r.items()} for r in df.to_dict("records")]
            return led

        return self._read("ledger", "ledger.csv", read, share=False)


#: Tables of a validated extract already read by this process, by (folder, file, SHA-256 checked when
#: read). A build's worker kernel runs many notebooks, one after another; each reads a table from disk
#: once. Only the most recent build's folder is kept. Shared as shallow copies (see ``_read``).
_SHARED: dict = {}


class AreaExtracts:
    """One area's rows of the validated extracts, cut once (the notebook context hands this out as
    ``ctx.local``): ``referrals`` made by the area's services (their ``borough_code``), ``workforce``
    of the area's boroughs, ``persons`` registered with the area's practices (NHS Digital practice
    list), ``wellbeing`` of the area's referrals. ``region`` is the whole validated extract, for what
    is defined over all of NCL: reference rates, residents of the area referred by any NCL service,
    and people referred anywhere (never comparators). Each cut is made the first time it is used."""

    def __init__(self, extracts, area):
        self.region = extracts
        self.area = area
        self._cache: dict = {}

    def _cut(self, name, make):
        if name not in self._cache:
            self._cache[name] = make().reset_index(drop=True)
        return self._cache[name]

    @property
    def referrals(self) -> pd.DataFrame:
        r = self.region.referrals
        return self._cut("referrals", lambda: r[self.area.covers(r["borough_code"]).to_numpy()])

    @property
    def workforce(self) -> pd.DataFrame:
        w = self.region.workforce
        return self._cut("workforce", lambda: w[self.area.covers(w["borough_code"]).to_numpy()])

    @property
    def persons(self) -> pd.DataFrame:
        p = self.region.persons
        practice_borough = reference.gp_practices().set_index("practice_code")["borough_code"]
        return self._cut("persons", lambda: p[self.area.covers(p["practice_code"].map(practice_borough)).to_numpy()])

    @property
    def wellbeing(self) -> pd.DataFrame:
        w = self.region.wellbeing
        return self._cut("wellbeing", lambda: w[w["referral_id"].isin(set(self.referrals["referral_id"])).to_numpy()])


def read_pool_fraction(extracts_dir: Path | str) -> float:
    """Sampling fraction of non-referred people in the persons extract.

    Read from ``<extracts_dir>/extract_info.json`` (key ``pool_fraction``, at the top level or in a
    nested object). A real (complete) extract has no such file: 1.0. Raises ValueError if the value
    is not in (0, 1].
    """
    path = Path(extracts_dir) / "extract_info.json"
    if not path.exists():
        return 1.0
    info = json.loads(path.read_text())

    def find(d):
        if isinstance(d, dict):
            if "pool_fraction" in d:
                return d["pool_fraction"]
            for v in d.values():
                f = find(v)
                if f is not None:
                    return f
        return None

    f = find(info)
    if f is None:
        return 1.0
    f = float(f)
    if not 0 < f <= 1:
        raise ValueError(f"{path}: pool_fraction must be in (0, 1]; got {f!r}")
    return f
