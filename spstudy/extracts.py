"""Load and validate patient-level extracts against the data contract (:mod:`spstudy.contract`).

One way in: every analysis reads extracts through :func:`load_extracts`. Each table is read from
``<extracts_dir>/<table>.parquet`` or ``<table>.csv``, checked column by column and row by row, and
either returned typed or rejected with an :class:`ExtractError` that names the file, the column,
the problem, how many rows have it and the first of them. Rows are only ever excluded under a rule
the parameters allow (``data.exclude_rules``); every exclusion is counted in the
:class:`Ledger`, which the packs publish. Nothing is dropped silently.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import reference
from .contract import TABLES, Table

MAX_SHOWN = 5


class ExtractError(ValueError):
    """An extract does not meet the data contract."""

    def __init__(self, file: Path | str, column: str | None, problem: str, rows=None, values=None):
        rows = [] if rows is None else list(rows)
        self.file, self.column, self.problem, self.rows = str(file), column, problem, rows
        where = f"{file}: column '{column}'" if column else f"{file}"
        msg = f"{where}: {problem}"
        if rows:
            shown = ", ".join(str(r) for r in rows[:MAX_SHOWN])
            more = "" if len(rows) <= MAX_SHOWN else ", ..."
            msg += f" in {len(rows)} row(s); first rows (1 = first data row): {shown}{more}"
        if values is not None and len(values):
            vals = ", ".join(repr(v) for v in list(values)[:MAX_SHOWN])
            msg += f"; values: {vals}"
        super().__init__(msg)


@dataclass
class Ledger:
    """Data-quality ledger: rows read, excluded (with the rule) and kept, per table."""

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
    # person ids with a referral at ANY date, including rows excluded as outside the study period
    # (the evaluation's comparators must never have been referred)
    referred_ever: frozenset = frozenset()

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)


# ----------------------------------------------------------------------------------------- reading

def find_table_file(directory: Path, table: str) -> Path:
    """The file holding ``table`` in ``directory`` (parquet preferred over csv; both is an error)."""
    cands = [directory / f"{table}.parquet", directory / f"{table}.csv", directory / f"{table}.csv.gz", directory / table]
    found = [p for p in cands if p.exists()]
    if not found:
        raise ExtractError(directory / f"{table}.(parquet|csv)", None, "file not found: every extract needs this table")
    if len(found) > 1:
        raise ExtractError(found[0], None, f"more than one file for table '{table}' ({', '.join(p.name for p in found)}); keep one")
    return found[0]


def read_table_file(path: Path) -> pd.DataFrame:
    """Read a CSV (all columns as text) or Parquet file; raise ExtractError if it is not what it claims."""
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

            df = pq.read_table(path).to_pandas(date_as_object=False, types_mapper={}.get)
            for c in df.columns:  # text columns as pandas' string dtype, dates as datetime64
                if df[c].dtype == object and df[c].map(type).isin([str]).all():
                    df[c] = df[c].astype("str")
        except Exception as e:  # pyarrow raises several types
            raise ExtractError(path, None, f"could not read Parquet file: {e}") from None
    else:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head == b"PAR1":
            raise ExtractError(path, None, "this is a Parquet file with a .csv extension")
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
        except UnicodeDecodeError:
            raise ExtractError(path, None, "not UTF-8 text: is it a spreadsheet or binary file?") from None
        except pd.errors.EmptyDataError:
            raise ExtractError(path, None, "file is empty (no header row)") from None
        except pd.errors.ParserError as e:
            raise ExtractError(path, None, f"not a well-formed CSV: {e}") from None
    if len(df) == 0:
        raise ExtractError(path, None, "file has a header but no data rows")
    return df


# --------------------------------------------------------------------------------------- checking

def _isin(values: pd.Series, allowed) -> np.ndarray:
    """Fast membership test (pyarrow) for large string columns; nulls are False."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(values.astype(object).where(values.notna(), None), type=pa.string()) if values.dtype == object else pa.array(values)
    vs = pa.array([str(v) for v in allowed], type=pa.string())
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


def _check_columns(df: pd.DataFrame, table: Table, path: Path, ledger: Ledger):
    missing = [c for c in table.names if c not in df.columns]
    extra = [c for c in df.columns if c not in table.names]
    if missing:
        hints = []
        for m in missing:
            close = difflib.get_close_matches(m, extra, n=1)
            if close:
                hints.append(f"'{close[0]}' looks like a misspelling of '{m}'")
        hint = ("; " + "; ".join(hints)) if hints else ""
        raise ExtractError(path, ", ".join(missing), f"required column(s) missing (expected columns: {', '.join(table.names)}){hint}")
    if extra:
        ledger.note(table.name, path.name, f"ignored columns not in the contract: {', '.join(extra)}")


def _parse_date(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.normalize().astype("datetime64[ns]")
    if s.dtype == object and len(s.dropna()) and isinstance(s.dropna().iloc[0], dt.date):
        return pd.to_datetime(s, errors="coerce").astype("datetime64[ns]")
    return pd.to_datetime(s.astype("string"), format="%Y-%m-%d", errors="coerce").astype("datetime64[ns]")


def _typed(df: pd.DataFrame, table: Table, path: Path) -> pd.DataFrame:
    out = {}
    for col in table.columns:
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
            raise ExtractError(path, col.name, "empty value where one is required", _rows(null))
        if col.kind in ("id", "str", "code", "codes"):
            v = v0 if v0 is not None else s.astype("str")
            if v.dtype == object:
                v = v.astype("str")
            v = v.where(~null, None) if null.any() else v
        elif col.kind == "int":
            v = pd.to_numeric(s, errors="coerce")
            bad = (~null) & (v.isna() | (v.round() != v))
            if bad.any():
                raise ExtractError(path, col.name, "not a whole number", _rows(bad), s[bad].unique())
            v = v.astype("Int64")
        elif col.kind == "float":
            v = pd.to_numeric(s, errors="coerce")
            bad = (~null) & v.isna()
            if bad.any():
                raise ExtractError(path, col.name, "not a number", _rows(bad), s[bad].unique())
            v = v.astype("float64")
        elif col.kind == "date":
            v = _parse_date(s)
            bad = (~null) & v.isna()
            if bad.any():
                raise ExtractError(path, col.name, "not a valid date (expected YYYY-MM-DD)", _rows(bad), s[bad].unique())
        elif col.kind == "bool":
            if pd.api.types.is_bool_dtype(s):
                v = s.astype("boolean")
            else:
                t = s.astype("string").str.strip().str.lower()
                m = t.map({"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False})
                bad = (~null) & m.isna()
                if bad.any():
                    raise ExtractError(path, col.name, "not true/false", _rows(bad), s[bad].unique())
                v = m.astype("boolean")
        else:  # pragma: no cover - contract error
            raise AssertionError(col.kind)
        if col.min is not None or col.max is not None:
            num = v.astype("float64")
            bad = (~null) & (((num < col.min) if col.min is not None else False) | ((num > col.max) if col.max is not None else False))
            if np.any(bad):
                raise ExtractError(path, col.name, f"out of range (expected {col.min} to {col.max})", _rows(bad), s[bad].unique())
        if col.codes is not None:
            allowed = set(col.codes)
            if col.kind == "codes":
                parts = v.fillna("").str.split(";")
                bad = (~null) & parts.map(lambda xs: not xs or any(x.strip() not in allowed for x in xs))
            else:
                bad = (~null) & ~_isin(v, allowed)
            if bad.any():
                raise ExtractError(path, col.name, f"unknown code (allowed: {', '.join(sorted(allowed))})", _rows(bad), v[bad].unique())
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


def _check_references(df: pd.DataFrame, table: Table, path: Path, refs: dict[str, set[str]]):
    for col in table.columns:
        if col.reference:
            v = df[col.name]
            bad = v.notna().to_numpy() & ~_isin(v, refs[col.reference])
            if bad.any():
                raise ExtractError(path, col.name, f"code not in the reference data ({col.reference} codes in data/reference)", _rows(bad), v[bad].unique())


def _check_key(df: pd.DataFrame, table: Table, path: Path):
    if table.key:
        dup = df.duplicated(list(table.key), keep=False)
        if dup.any():
            raise ExtractError(path, ", ".join(table.key), "duplicate identifiers", _rows(dup), df.loc[dup, table.key[0]].unique())


def _apply_rule(df, bad, rule, table, path, ledger, allowed, problem, column):
    """Exclude rows flagged ``bad`` if ``rule`` is allowed, else raise."""
    bad = np.asarray(bad, dtype=bool)
    if not bad.any():
        return df
    if rule in allowed:
        ledger.exclude(table, path.name, rule, int(bad.sum()), problem)
        return df.loc[~bad].reset_index(drop=True)
    raise ExtractError(path, column, f"{problem} (rule '{rule}'; allow exclusion in parameters data.exclude_rules)", _rows(bad))


# ----------------------------------------------------------------------------------------- loading

def load_extracts(params, directory: Path | str | None = None, today: dt.date | None = None) -> Extracts:
    """Read, validate and type the five extract tables for ``params`` (a :class:`~spstudy.params.Parameters`).

    Returns :class:`Extracts` with typed DataFrames and the data-quality ledger. Raises
    :class:`ExtractError` on the first contract breach.
    """
    directory = Path(directory) if directory else params.extracts_path()
    today = today or dt.date.today()
    allowed = set(params.data.exclude_rules)
    st = params.study
    ledger = Ledger()
    refs = _reference_sets()
    files: dict[str, Path] = {}
    data: dict[str, pd.DataFrame] = {}
    future = pd.Timestamp(today)

    for name in ("persons", "referrals", "activity", "wellbeing", "workforce"):
        table = TABLES[name]
        path = find_table_file(directory, name)
        files[name] = path
        raw = read_table_file(path)
        ledger.read(name, path.name, len(raw))
        _check_columns(raw, table, path, ledger)
        df = _typed(raw[table.names], table, path)
        _check_references(df, table, path, refs)
        _check_key(df, table, path)
        for col in table.columns:
            if col.kind == "date":
                fut = df[col.name] > future
                if fut.any():
                    raise ExtractError(path, col.name, f"date in the future (after {today})", _rows(fut), df.loc[fut, col.name].dt.date.unique())
        data[name] = df

    # ---- persons
    p, path = data["persons"], files["persons"]
    bad = p["registration_end"].notna() & (p["registration_end"] < p["registration_start"])
    if bad.any():
        raise ExtractError(path, "registration_end", "registration ends before it starts", _rows(bad))
    bad = p["registration_end"].isna() != p["registration_end_reason"].isna()
    if bad.any():
        raise ExtractError(path, "registration_end_reason", "must be given exactly when registration_end is given", _rows(bad))
    bad = p["birth_year"] > p["registration_start"].dt.year
    if bad.any():
        raise ExtractError(path, "birth_year", "born after registration started", _rows(bad))

    # ---- referrals
    r, path = data["referrals"], files["referrals"]
    raw_referral_ids = r["referral_id"]
    unknown = _positions(r["person_id"], p["person_id"]) < 0
    if unknown.any():
        raise ExtractError(path, "person_id", "referral for a person not in persons", _rows(unknown), r.loc[unknown, "person_id"].unique())
    for c in ("first_contact_date", "closure_date"):
        bad = r[c].notna() & (r[c] < r["referral_date"])
        if bad.any():
            what = "closure" if c == "closure_date" else "first contact"
            raise ExtractError(path, c, f"{what} before referral", _rows(bad))
    bad = (r["outcome"] == "seen") & r["first_contact_date"].isna()
    if bad.any():
        raise ExtractError(path, "first_contact_date", "missing for a referral whose outcome is 'seen'", _rows(bad))
    bad = (r["outcome"] != "seen") & r["first_contact_date"].notna()
    if bad.any():
        raise ExtractError(path, "first_contact_date", "given for a referral that was not seen", _rows(bad))
    reg = p.set_index("person_id")
    rs = reg.loc[r["person_id"], "registration_start"].to_numpy()
    bad = r["referral_date"].to_numpy() < rs
    if bad.any():
        raise ExtractError(path, "referral_date", "referral before the person's registration started", _rows(bad))
    referred_ever = frozenset(r["person_id"])  # before the study-period exclusion below
    outside = (r["referral_date"] < pd.Timestamp(st.referral_start)) | (r["referral_date"] > pd.Timestamp(st.referral_end))
    r = _apply_rule(r, outside, "referral_outside_study_period", "referrals", path, ledger, allowed,
                    f"referral date outside the study period {st.referral_start} to {st.referral_end}", "referral_date")
    ledger.kept("referrals", path.name, len(r))
    data["referrals"] = r

    # ---- activity
    a, path = data["activity"], files["activity"]
    pos = _positions(a["person_id"], p["person_id"])
    unknown = pos < 0
    if unknown.any():
        raise ExtractError(path, "person_id", "activity for a person not in persons", _rows(unknown), a.loc[unknown, "person_id"].unique())
    outside = (a["activity_date"] < pd.Timestamp(st.data_start)) | (a["activity_date"] > pd.Timestamp(st.data_end))
    a = _apply_rule(a, outside, "activity_outside_data_period", "activity", path, ledger, allowed,
                    f"activity date outside the data period {st.data_start} to {st.data_end}", "activity_date")
    pos = _positions(a["person_id"], p["person_id"])
    start = p["registration_start"].to_numpy()[pos]
    end = p["registration_end"].to_numpy()[pos]
    d = a["activity_date"].to_numpy()
    notreg = (d < start) | (~pd.isna(end) & (d > end))
    a = _apply_rule(a, notreg, "activity_outside_registration", "activity", path, ledger, allowed,
                    "activity while the person was not registered", "activity_date")
    ledger.kept("activity", path.name, len(a))
    data["activity"] = a

    # ---- wellbeing
    w, path = data["wellbeing"], files["wellbeing"]
    dropped = ~w["referral_id"].isin(data["referrals"]["referral_id"]) & w["referral_id"].isin(raw_referral_ids)
    w = _apply_rule(w, dropped, "referral_outside_study_period", "wellbeing", path, ledger, allowed,
                    "measurement for a referral excluded as outside the study period", "referral_id")
    unknown = ~w["referral_id"].isin(data["referrals"]["referral_id"])
    if unknown.any():
        raise ExtractError(path, "referral_id", "measurement for a referral not in referrals (or excluded from it)", _rows(unknown), w.loc[unknown, "referral_id"].unique())
    prefix = w["item"].str.split("_").str[0]
    bad = prefix != w["instrument"]
    if bad.any():
        raise ExtractError(path, "item", "item does not belong to the instrument", _rows(bad), w.loc[bad, "item"].unique())
    from .contract import ITEM_RANGES

    lo = w["item"].map(lambda i: ITEM_RANGES[i][0])
    hi = w["item"].map(lambda i: ITEM_RANGES[i][1])
    bad = (w["score"] < lo) | (w["score"] > hi)
    if bad.any():
        raise ExtractError(path, "score", "score out of the item's range (ONS4 0-10, WEMWBS/SWEMWBS 1-5)", _rows(bad), w.loc[bad, "score"].unique())
    rd = data["referrals"].set_index("referral_id").loc[w["referral_id"], "referral_date"].to_numpy()
    bad = w["measurement_date"].to_numpy() < rd
    if bad.any():
        raise ExtractError(path, "measurement_date", "measurement before the referral", _rows(bad))
    ledger.kept("wellbeing", path.name, len(w))
    data["wellbeing"] = w

    for name in ("persons", "workforce"):
        ledger.kept(name, files[name].name, len(data[name]))
    ledger.check_balanced()
    return Extracts(ledger=ledger, files=files, referred_ever=referred_ever, **data)
