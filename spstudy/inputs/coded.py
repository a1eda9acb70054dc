"""Coded extracts in, contract tables out (and back, for synthetic coded extracts).

A borough has no data in the shape of the data contract. What it can get is

* a **GP system search export** (EMIS Web or SystmOne) of coded events: a pseudonymised patient id,
  a SNOMED CT concept id, a date and sometimes a value;
* a **registration list** of the practices' patients (year of birth, sex, LSOA, practice,
  registration dates, main language);
* a **case-management export** (Access Elemental in Barnet, JOY elsewhere) following the PRSB
  Social Prescribing Information Standard: one row per referral, its events (contacts, onward
  referrals, declined, did not attend) and its outcome measures (ONS4, WEMWBS, SWEMWBS).

:func:`import_coded_events` turns such a folder into the contract tables (``persons``,
``referrals``, ``activity``, ``wellbeing``, ``workforce``) that :func:`spstudy.inputs.extracts.load_extracts`
validates. Every concept is recognised through a versioned code list in ``spstudy/codelists/``
(columns code, term, maps_to, code_system, source, version, preferred), in the style of
OpenSAFELY codelists: adding a concept, or a new activity setting, is a row in a CSV file, not
code. The file layout is specified in ``docs/extract_specification.md``.

:func:`export_coded_events` does the reverse (contract tables -> coded extract, using each code
list's *preferred* concept), so the shipped synthetic data gives a synthetic coded extract and the
importer can be tested by a round trip.

Everything the importer does not carry into the contract tables is counted in
``import_ledger.csv`` (rows read, mapped, ignored and why); every breach in every input file is
reported at once in a :class:`CodedExtractError` (a :class:`spstudy.inputs.extracts.ExtractError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spstudy.inputs import contract, project, reference
from spstudy.inputs.checksums import sha256
from spstudy.inputs.extracts import (
    Breach,
    ExtractError,
    Ledger,
    _Breaches,
    _check_nhs_numbers,
    _isin,
    _parse_date,
    _positions,
    find_table_file,
    read_extract_info,
    read_table_file,
)

CODELIST_DIR = project.package_file("inputs", "codelists")
CODELIST_COLUMNS = ("code", "term", "maps_to", "code_system", "source", "version", "preferred")
IMPORTER_VERSION = "1.0.0"


# ------------------------------------------------------------------------------------ code lists

_VERHOEFF_D = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
                        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
                        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
                        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]])
_VERHOEFF_P = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
                        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
                        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]])


def verhoeff_valid(number: str) -> bool:
    """True if the digit string's last digit is its Verhoeff check digit (Verhoeff 1969; the
    dihedral-group D5 tables as in the SNOMED CT Technical Implementation Guide, 'Check-digit')."""
    s = str(number)
    if not s.isdigit():
        return False
    c = 0
    for i, ch in enumerate(reversed(s)):
        c = int(_VERHOEFF_D[c, _VERHOEFF_P[i % 8, int(ch)]])
    return c == 0


def snomed_concept_id_valid(code: str) -> bool:
    """A well-formed SNOMED CT *concept* identifier: 6-18 digits, no leading zero, partition
    identifier 00 (international, short form) or 10 (extension, long form) in the two digits before
    the check digit, and a valid Verhoeff check digit (SNOMED CT Technical Implementation Guide,
    'SCTID data type')."""
    s = str(code)
    return s.isdigit() and 6 <= len(s) <= 18 and s[0] != "0" and s[-3:-1] in ("00", "10") and verhoeff_valid(s)


def codelist_targets() -> dict[str, tuple[str, ...]]:
    """What each code list maps to, taken from the data contract (so a new contract code, e.g. a
    new activity setting, only needs rows in the code list)."""
    return {
        "ethnicity": tuple(contract.ETHNIC_CATEGORIES),
        "interpreter": ("true", "false"),
        "main-language": tuple(contract.LANGUAGES),
        "english-proficiency": tuple(contract.ENGLISH_PROFICIENCY),
        "activity-setting": tuple(contract.ACTIVITY_SETTINGS),
        "sp-case-events": ("referral", "declined", "dna", "contact", "onward_referral"),
        "referral-source": tuple(contract.REFERRAL_SOURCES),
        "referral-reason": tuple(contract.REFERRAL_REASONS),
        "wellbeing-items": tuple(contract.ITEM_RANGES) + ("wemwbs_total", "swemwbs_total"),
        "sex": tuple(contract.SEXES),
        "registration-end-reason": tuple(contract.REGISTRATION_END_REASONS),
    }


# where each list is read (file: column); the test checks every shipped list is used here
CODELIST_USES: dict[str, tuple[str, ...]] = {
    "ethnicity": ("coded_events: concept_id",),
    "interpreter": ("coded_events: concept_id",),
    "main-language": ("coded_events: concept_id", "registrations: main_language"),
    "english-proficiency": ("registrations: english_proficiency",),
    "activity-setting": ("coded_events: concept_id",),
    "sp-case-events": ("sp_events: concept_id", "coded_events: concept_id"),
    "referral-source": ("sp_referrals: referral_source",),
    "referral-reason": ("sp_referrals: referral_reasons",),
    "wellbeing-items": ("sp_outcome_measures: item_code",),
    "sex": ("registrations: sex",),
    "registration-end-reason": ("registrations: deregistration_reason",),
}
# code lists matched against the GP system's concept_id column (must not share codes)
GP_EVENT_LISTS = ("ethnicity", "interpreter", "main-language", "activity-setting", "sp-case-events")


@dataclass(frozen=True)
class CodeList:
    """One code list: ``table`` has the columns of :data:`CODELIST_COLUMNS` (all text)."""

    name: str
    path: Path
    table: pd.DataFrame

    @property
    def mapping(self) -> dict[str, str]:
        return dict(zip(self.table["code"], self.table["maps_to"]))

    def preferred(self, target: str) -> str:
        """The concept written for ``target`` by :func:`export_coded_events`."""
        t = self.table[(self.table["maps_to"] == target) & (self.table["preferred"] == "1")]
        if len(t) != 1:
            raise CodedExtractError(breaches=[Breach(str(self.path), "preferred", f"needs exactly one preferred row for "
                                                                                  f"'{target}' to write it; has {len(t)}")])
        return t["code"].iloc[0]

    @property
    def version(self) -> str:
        return ",".join(sorted(set(self.table["version"])))


def check_codelist(table: pd.DataFrame, name: str, targets: tuple[str, ...] | None = None) -> list[str]:
    """Problems with a code list table (empty list = well formed): required columns, no empty
    code/term/maps_to/source/version, unique codes, SNOMED CT concept ids well formed (Verhoeff),
    maps_to among the contract's codes, preferred 0/1 and at most one preferred row per maps_to."""
    probs = []
    missing = [c for c in CODELIST_COLUMNS if c not in table.columns]
    if missing:
        return [f"{name}: missing columns {', '.join(missing)} (expected {', '.join(CODELIST_COLUMNS)})"]
    for c in ("code", "term", "maps_to", "code_system", "source", "version"):
        empty = table[c].isna() | (table[c].astype(str).str.strip() == "")
        if empty.any():
            probs.append(f"{name}: empty {c} in rows {list(np.flatnonzero(empty) + 1)[:5]}")
    dup = table["code"].duplicated(keep=False)
    if dup.any():
        probs.append(f"{name}: duplicate codes {sorted(set(table.loc[dup, 'code']))[:5]}")
    sct = table["code_system"] == "snomedct"
    bad = [c for c in table.loc[sct, "code"] if not snomed_concept_id_valid(c)]
    if bad:
        probs.append(f"{name}: malformed SNOMED CT concept ids (length, partition or Verhoeff check digit) {bad[:5]}")
    targets = targets if targets is not None else codelist_targets().get(name)
    if targets is not None:
        unknown = sorted(set(table["maps_to"]) - set(targets))
        if unknown:
            probs.append(f"{name}: maps_to values not in the contract {unknown[:5]} (allowed: {', '.join(targets)})")
    if not table["preferred"].isin(["0", "1"]).all():
        probs.append(f"{name}: preferred must be 0 or 1")
    many = table[table["preferred"] == "1"].groupby("maps_to").size()
    if (many > 1).any():
        probs.append(f"{name}: more than one preferred row for {list(many[many > 1].index)[:5]}")
    return probs


def load_codelist(name: str, directory: Path | str | None = None) -> CodeList:
    """Read and check ``<directory>/<name>.csv`` (default: the shipped ``spstudy/codelists``)."""
    path = Path(directory or CODELIST_DIR) / f"{name}.csv"
    if not path.exists():
        raise CodedExtractError(breaches=[Breach(str(path), None, "code list not found")])
    t = pd.read_csv(path, dtype=str, keep_default_na=False)
    t = t.apply(lambda s: s.str.strip()) if len(t) else t
    probs = check_codelist(t, name)
    if probs:
        raise CodedExtractError(breaches=[Breach(str(path), None, p) for p in probs])
    return CodeList(name, path, t.reset_index(drop=True))


def load_codelists(directory: Path | str | None = None) -> dict[str, CodeList]:
    """Every code list the importer uses (:data:`CODELIST_USES`), checked; codes matched against the
    GP export's concept_id column must not appear in two lists."""
    lists = {n: load_codelist(n, directory) for n in CODELIST_USES}
    seen: dict[str, str] = {}
    clash = []
    for n in GP_EVENT_LISTS:
        t = lists[n].table
        for c in t.loc[t["code_system"] == "snomedct", "code"]:
            if c in seen and seen[c] != n:
                clash.append(f"{c} in {seen[c]} and {n}")
            seen[c] = n
    if clash:
        raise CodedExtractError(breaches=[Breach(str(directory or CODELIST_DIR), None,
                                                 "concepts in more than one GP-event code list: " + "; ".join(clash[:5]))])
    return lists


# ------------------------------------------------------------------------------------ coded files

class CodedExtractError(ExtractError):
    """A coded extract (GP events, registration list, case-management export) cannot be imported.
    ``breaches`` lists every problem found, each naming file, column, rows and first values."""


@dataclass(frozen=True)
class CodedFile:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    nonempty: tuple[str, ...] = ()
    table_optional: bool = False
    description: str = ""


CODED_FILES: dict[str, CodedFile] = {f.name: f for f in (
    CodedFile("registrations", ("patient_id", "year_of_birth", "sex", "lsoa21_code", "practice_code", "registration_start",
                                "registration_end", "deregistration_reason"), ("main_language", "english_proficiency"),
              dates=("registration_start", "registration_end"),
              nonempty=("patient_id", "year_of_birth", "sex", "lsoa21_code", "practice_code", "registration_start"),
              description="registration list: one row per person registered at any time in the data period"),
    CodedFile("coded_events", ("patient_id", "concept_id", "event_date"), ("value", "term", "event_id"), dates=("event_date",),
              nonempty=("patient_id", "concept_id", "event_date"),
              description="GP system search export: one row per coded event"),
    CodedFile("sp_referrals", ("referral_id", "patient_id", "referral_received_date", "referral_source", "referral_reasons",
                               "service_provider", "practice_code", "initial_contact_date", "discharge_date"),
              ("pcn_code", "service_borough_code"), dates=("referral_received_date", "initial_contact_date", "discharge_date"),
              nonempty=("referral_id", "patient_id", "referral_received_date", "referral_source", "referral_reasons",
                        "service_provider", "practice_code"),
              description="case-management export: one row per social prescribing referral"),
    CodedFile("sp_events", ("referral_id", "concept_id", "event_date"), dates=("event_date",),
              nonempty=("referral_id", "concept_id", "event_date"),
              description="case-management export: contacts, onward referrals, declined, did not attend"),
    CodedFile("sp_outcome_measures", ("referral_id", "measure_date", "timepoint", "item_code", "score"),
              dates=("measure_date",), nonempty=("referral_id", "measure_date", "timepoint", "item_code", "score"),
              table_optional=True, description="case-management export: ONS4 / WEMWBS / SWEMWBS item scores and totals"),
)}


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_coded_events` wrote: ``out_dir`` (the contract tables), ``rows`` (rows per
    contract table: persons, referrals, activity and wellbeing rows; workforce roles) and ``ledger``
    (import_ledger.csv: file, step, target, rule, rows, note; ``rows`` counts input rows)."""

    out_dir: Path
    rows: pd.DataFrame
    ledger: pd.DataFrame

    def tidy(self) -> pd.DataFrame:
        return self.ledger


@dataclass
class _ImportLedger:
    records: list[dict] = field(default_factory=list)

    def add(self, file, step, rows, target="", rule="", note=""):
        self.records.append({"file": file, "step": step, "target": target, "rule": rule, "rows": int(rows), "note": note})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=["file", "step", "target", "rule", "rows", "note"])


def _text(s: pd.Series) -> pd.Series:
    """Trimmed text with empty -> missing (works for CSV strings and Parquet columns)."""
    if pd.api.types.is_string_dtype(s) and s.dtype != object:
        t = s.str.strip()
    else:
        t = s.astype("string").str.strip().astype("str")
    return t.where(t.notna() & (t != ""), None)


def _read_coded(src: Path, spec: CodedFile, led: _ImportLedger, all_breaches: list[Breach], dates_ledger: Ledger):
    """Read one coded file: returns (frame with text columns and parsed dates, path) or (None, path)."""
    try:
        path = find_table_file(src, spec.name, required=not spec.table_optional)
    except ExtractError as e:
        all_breaches.extend(e.breaches)
        return None, None
    if path is None:
        led.add(f"{spec.name}.(csv|parquet)", "file not supplied (optional)", 0)
        return None, None
    try:
        raw = read_table_file(path)
    except ExtractError as e:
        all_breaches.extend(e.breaches)
        return None, path
    br = _Breaches(path)
    led.add(path.name, "rows read", len(raw))
    skip = ("patient_id",) if spec.name in ("coded_events", "sp_referrals") else ()
    _check_nhs_numbers(raw, br, skip=skip)
    missing = [c for c in spec.required if c not in raw.columns]
    if missing:
        br.add(", ".join(missing), f"required column(s) missing (expected: {', '.join(spec.required)}; optional: "
                                   f"{', '.join(spec.optional) or 'none'}; see docs/extract_specification.md)")
        all_breaches.extend(br.items)
        return None, path
    extra = [c for c in raw.columns if c not in spec.required + spec.optional]
    if extra:
        led.add(path.name, "note", 0, note=f"ignored columns not in the specification: {', '.join(map(str, extra))}")
    out = {}
    for c in spec.required + tuple(o for o in spec.optional if o in raw.columns):
        if c in spec.dates:
            v = _parse_date(raw[c], c, br, dates_ledger, spec.name, path)
            bad = raw[c].notna().to_numpy() & (raw[c].astype("string").str.strip() != "").fillna(False).to_numpy() & v.isna().to_numpy()
            br.add(c, "not a valid date (expected YYYY-MM-DD)", mask=bad, values=raw[c])
            out[c] = v
        else:
            out[c] = _text(raw[c])
    df = pd.DataFrame(out)
    for c in spec.nonempty:
        br.add(c, "empty value where one is required", mask=df[c].isna())
    all_breaches.extend(br.items)
    return df, path


def _map(values: pd.Series, cl: CodeList) -> tuple[pd.Series, np.ndarray]:
    """maps_to for each value (None where the code is not in the list) and the 'unknown' mask (non-null, unmapped)."""
    codes = cl.table["code"]
    pos = _positions(values.fillna(""), codes)
    targets = cl.table["maps_to"].to_numpy(dtype=object)
    out = pd.Series(np.where(pos >= 0, targets[np.maximum(pos, 0)], None), index=values.index, dtype=object)
    unknown = values.notna().to_numpy() & (pos < 0)
    return out, unknown


def _latest(events: pd.DataFrame, value: str, led: _ImportLedger, what: str, file: str) -> pd.Series:
    """Per patient, ``value`` of the latest event (ties on the latest date: the last in file order,
    counted in the ledger when they disagree)."""
    if not len(events):
        return pd.Series(dtype=object)
    e = events.reset_index(drop=True).reset_index().sort_values(["patient_id", "event_date", "index"])
    last = e.groupby("patient_id").tail(1).set_index("patient_id")
    top = e.merge(last[["event_date"]].reset_index(), on=["patient_id", "event_date"])
    n_conf = int((top.groupby("patient_id")[value].nunique() > 1).sum())
    if n_conf:
        led.add(file, "note", n_conf, target=what, note=f"{n_conf} persons have different {what} codes on their latest "
                                                       "date; the last row in file order is used")
    return last[value]


def _spread(start: np.ndarray, end: np.ndarray, n: np.ndarray) -> np.ndarray:
    """n dates per row spread evenly from start to end (days as int64)."""
    reps = np.repeat(np.arange(len(n)), n)
    k = np.arange(len(reps)) - np.repeat(np.cumsum(n) - n, n)
    span = (end - start)[reps]
    denom = np.maximum(n[reps] - 1, 1)
    return start[reps] + (span * k) // denom


# --------------------------------------------------------------------------------------- import

def import_coded_events(src_dir: Path | str, out_dir: Path | str, *, pool_fraction: float | None = None,
                        codelists_dir: Path | str | None = None) -> ImportResult:
    """Turn a coded extract folder into the contract tables.

    ``src_dir`` holds ``registrations``, ``coded_events``, ``sp_referrals``, ``sp_events`` and
    optionally ``sp_outcome_measures``, ``workforce`` (contract format) and ``extract_info.json``,
    each as ``.csv`` or ``.parquet`` (layout: docs/extract_specification.md). ``out_dir`` receives
    persons, referrals, activity, wellbeing (Parquet), workforce.csv (if given), extract_info.json,
    import_ledger.csv and SHA256SUMS. ``pool_fraction``: the sampling fraction of never-referred
    registered people, if the registration list is a sample and ``extract_info.json`` does not say
    (default 1: the complete list). ``codelists_dir``: a folder of edited code lists (default the
    shipped ones).

    Raises :class:`CodedExtractError` listing every breach in every file. The output still has to
    pass :func:`spstudy.inputs.extracts.load_extracts`, which applies the study's rules (periods,
    duplicates) with its own ledger.
    """
    src, out = Path(src_dir), Path(out_dir)
    if src.resolve() == out.resolve():
        raise CodedExtractError(breaches=[Breach(str(out), None, "out_dir must differ from src_dir")])
    lists = load_codelists(codelists_dir)
    led = _ImportLedger()
    dates_ledger = Ledger()
    breaches: list[Breach] = []
    files: dict[str, pd.DataFrame | None] = {}
    paths: dict[str, Path | None] = {}
    for name, spec in CODED_FILES.items():
        files[name], paths[name] = _read_coded(src, spec, led, breaches, dates_ledger)
    wf_path = find_table_file(src, "workforce", required=False)
    info, info_breaches = read_extract_info(src)
    breaches += info_breaches
    if breaches:
        raise CodedExtractError(breaches=breaches)
    for r in dates_ledger.records:
        led.add(Path(r["file"]).name, "note", 0, note=r["note"])

    reg, ev, spr, spe, om = (files[n] for n in ("registrations", "coded_events", "sp_referrals", "sp_events", "sp_outcome_measures"))
    brs = {n: _Breaches(paths[n]) for n in files if paths[n] is not None}

    # ---- persons (registration list + demographic events)
    b = brs["registrations"]
    b.add("patient_id", "patient appears more than once (one row per person: the registration in the data period)",
          mask=reg["patient_id"].duplicated(keep=False), values=reg["patient_id"])
    yob = pd.to_numeric(reg["year_of_birth"], errors="coerce")
    b.add("year_of_birth", "not a whole number", mask=reg["year_of_birth"].notna() & (yob.isna() | (yob.round() != yob)),
          values=reg["year_of_birth"])
    sex, unk = _map(reg["sex"], lists["sex"])
    b.add("sex", f"code not in code list sex.csv ({', '.join(lists['sex'].table['code'])})", mask=unk, values=reg["sex"])
    end_reason, unk = _map(reg["deregistration_reason"], lists["registration-end-reason"])
    b.add("deregistration_reason", "code not in code list registration-end-reason.csv", mask=unk, values=reg["deregistration_reason"])
    prof = pd.Series(None, index=reg.index, dtype=object)
    if "english_proficiency" in reg:
        prof, unk = _map(reg["english_proficiency"], lists["english-proficiency"])
        b.add("english_proficiency", "code not in code list english-proficiency.csv", mask=unk, values=reg["english_proficiency"])
    lang = pd.Series(None, index=reg.index, dtype=object)
    if "main_language" in reg:
        lang, unk = _map(reg["main_language"].str.lower() if reg["main_language"].notna().any() else reg["main_language"],
                         lists["main-language"])
        iso = reg["main_language"].fillna("").str.fullmatch(r"[A-Za-z]{2,3}").to_numpy()
        other = unk & iso
        if other.any():
            lang[other] = "Other"
            vals = pd.Series(reg.loc[other, "main_language"]).str.lower().value_counts()
            led.add(paths["registrations"].name, "mapped", int(other.sum()), target="persons.main_language", rule="language_not_listed",
                    note="language codes not in main-language.csv mapped to Other: " + ", ".join(f"{k} ({v})" for k, v in vals.head(8).items()))
        b.add("main_language", "not a language code (ISO 639-1 two letters, or three-letter ISO 639-2)", mask=unk & ~iso,
              values=reg["main_language"])
    lk = reference.lsoa21_lookup().set_index("lsoa21_code")["ward22_code"]
    ward = reg["lsoa21_code"].map(lk)
    b.add("lsoa21_code", "LSOA not in the NCL best-fit lookup (data/reference/ncl_lookup_lsoa21_to_ward22_bestfit.csv): no ward",
          mask=reg["lsoa21_code"].notna() & ward.isna(), values=reg["lsoa21_code"])

    # ---- GP coded events: one lookup over every list matched against concept_id
    b = brs["coded_events"]
    pid_pos = _positions(ev["patient_id"], reg["patient_id"])
    unknown_pid = pid_pos < 0
    if unknown_pid.any():
        b.add("patient_id", "event for a patient not in registrations", mask=unknown_pid, values=ev["patient_id"])
        _check_nhs_numbers(ev.loc[unknown_pid, ["patient_id"]].reset_index(drop=True), b)
    gp_lists = pd.concat([lists[n].table.assign(list=n) for n in GP_EVENT_LISTS], ignore_index=True)
    gp_lists = gp_lists[(gp_lists["code_system"] == "snomedct") & (gp_lists["list"] != "sp-case-events")
                        | ((gp_lists["list"] == "sp-case-events") & gp_lists["maps_to"].isin(["referral", "declined"]))]
    cpos = _positions(ev["concept_id"].fillna(""), gp_lists["code"])
    hit = cpos >= 0
    which = np.where(hit, gp_lists["list"].to_numpy(dtype=object)[np.maximum(cpos, 0)], None)
    target = np.where(hit, gp_lists["maps_to"].to_numpy(dtype=object)[np.maximum(cpos, 0)], None)
    ef = paths["coded_events"].name
    if (~hit).any():
        top = ev.loc[~hit, "concept_id"].value_counts().head(5)
        led.add(ef, "ignored", int((~hit).sum()), rule="concept_not_in_code_lists",
                note=f"{ev.loc[~hit, 'concept_id'].nunique()} concepts in no code list, e.g. " + ", ".join(f"{k} ({v})" for k, v in top.items()))
    for n in GP_EVENT_LISTS:
        m = which == n
        if m.any():
            latest = "" if n in ("activity-setting", "sp-case-events") else "; the latest per person is used"
            led.add(ef, "mapped", int(m.sum()), target={"activity-setting": "activity", "sp-case-events": "cross-check only"}
                    .get(n, f"persons ({n})"), note=f"code list {n}.csv version {lists[n].version}{latest}")
    evk = ev.assign(list=which, target=target)
    demo = evk[hit & ~unknown_pid]
    eth = _latest(demo[demo["list"] == "ethnicity"], "target", led, "ethnicity", ef)
    interp = _latest(demo[demo["list"] == "interpreter"], "target", led, "interpreter", ef)
    lang_ev = _latest(demo[demo["list"] == "main-language"], "target", led, "main language", ef)

    persons = pd.DataFrame({
        "person_id": reg["patient_id"], "birth_year": yob.astype("Int64"), "sex": sex,
        "ethnicity": reg["patient_id"].map(eth), "main_language": lang,
        "english_proficiency": prof, "interpreter_needed": reg["patient_id"].map(interp),
        "lsoa21_code": reg["lsoa21_code"], "ward22_code": ward, "practice_code": reg["practice_code"],
        "registration_start": reg["registration_start"], "registration_end": reg["registration_end"],
        "registration_end_reason": end_reason})
    if len(lang_ev):
        from_ev = reg["patient_id"].map(lang_ev)
        differ = from_ev.notna() & persons["main_language"].notna() & (from_ev != persons["main_language"])
        if differ.any():
            led.add(ef, "note", int(differ.sum()), target="persons.main_language",
                    note="main spoken language from coded events differs from the registration list: the coded event is used")
        persons["main_language"] = from_ev.where(from_ev.notna(), persons["main_language"])
    persons["interpreter_needed"] = persons["interpreter_needed"].map({"true": True, "false": False})

    act = evk[(evk["list"] == "activity-setting").to_numpy() & ~unknown_pid]
    order = {s: i for i, s in enumerate(contract.ACTIVITY_SETTINGS)}
    activity = pd.DataFrame({"person_id": act["patient_id"].to_numpy(), "activity_date": act["event_date"].to_numpy(),
                             "setting": act["target"].to_numpy()})
    if "event_id" in act.columns:  # an appointment / attendance id: same-day appointments stay separate events
        activity["event_id"] = act["event_id"].to_numpy()
    activity["_o"] = activity["setting"].map(order)
    activity = activity.sort_values(["person_id", "activity_date", "_o"] + (["event_id"] if "event_id" in activity else []),
                                    kind="stable").drop(columns="_o").reset_index(drop=True)

    # ---- referrals (case management)
    b = brs["sp_referrals"]
    rf = paths["sp_referrals"].name
    b.add("referral_id", "duplicate referral identifiers", mask=spr["referral_id"].duplicated(keep=False), values=spr["referral_id"])
    unknown = _positions(spr["patient_id"], reg["patient_id"]) < 0
    b.add("patient_id", "referral for a patient not in registrations (the case-management and GP exports must use the "
                        "same pseudonymisation key)", mask=unknown, values=spr["patient_id"])
    if unknown.any():
        _check_nhs_numbers(spr.loc[unknown, ["patient_id"]].reset_index(drop=True), b)
    source, unk = _map(spr["referral_source"], lists["referral-source"])
    b.add("referral_source", "code not in code list referral-source.csv", mask=unk, values=spr["referral_source"])
    rmap = lists["referral-reason"].mapping
    parts = spr["referral_reasons"].fillna("").str.split(";")
    mapped = parts.map(lambda xs: [rmap.get(x.strip()) for x in xs if x.strip()])
    bad_reason = (spr["referral_reasons"].notna() & mapped.map(lambda xs: (not xs) or any(x is None for x in xs))).to_numpy()
    b.add("referral_reasons", "reason code not in code list referral-reason.csv (separate several with ';')", mask=bad_reason,
          values=spr["referral_reasons"])
    dup_reason = mapped.map(lambda xs: len([x for x in xs if x]) != len({x for x in xs if x})).to_numpy() & ~bad_reason
    b.add("referral_reasons", "the same reason twice in one referral", mask=dup_reason, values=spr["referral_reasons"])
    reasons = mapped.map(lambda xs: ";".join(x for x in xs if x) if xs and all(xs) else None)
    gp = reference.gp_practices().set_index("practice_code")
    pcn = spr["pcn_code"] if "pcn_code" in spr else pd.Series(None, index=spr.index, dtype=object)
    borough = spr["service_borough_code"] if "service_borough_code" in spr else pd.Series(None, index=spr.index, dtype=object)
    n_derived = int(pcn.isna().sum() + borough.isna().sum())
    if n_derived:
        led.add(rf, "note", n_derived, target="referrals.pcn_code, borough_code",
                note="PCN or borough not given: taken from the practice (data/reference/ncl_gp_practices_2022.csv)")
    pcn = pcn.where(pcn.notna(), spr["practice_code"].map(gp["pcn_code"]))
    borough = borough.where(borough.notna(), spr["practice_code"].map(gp["borough_code"]))

    # case-management events
    b2 = brs["sp_events"]
    sef = paths["sp_events"].name
    kind, unk = _map(spe["concept_id"], lists["sp-case-events"])
    if unk.any():
        top = spe.loc[unk, "concept_id"].value_counts().head(5)
        led.add(sef, "ignored", int(unk.sum()), rule="concept_not_in_code_lists",
                note="concepts not in sp-case-events.csv, e.g. " + ", ".join(f"{k} ({v})" for k, v in top.items()))
    ref_pos = _positions(spe["referral_id"], spr["referral_id"])
    b2.add("referral_id", "event for a referral not in sp_referrals", mask=ref_pos < 0, values=spe["referral_id"])
    rdate = spr["referral_received_date"].to_numpy()
    ok = ref_pos >= 0
    early = np.zeros(len(spe), dtype=bool)
    early[ok] = spe["event_date"].to_numpy()[ok] < rdate[ref_pos[ok]]
    b2.add("event_date", "event before the referral was received", mask=early)
    for k in ("contact", "onward_referral", "declined", "dna", "referral"):
        m = (kind == k).to_numpy()
        if m.any():
            led.add(sef, "mapped", int(m.sum()), target={"contact": "referrals.contacts", "onward_referral": "referrals.onward_referrals",
                                                        "declined": "referrals.outcome (declined)", "dna": "referrals.outcome (dna)",
                                                        "referral": "confirms the referral (not needed)"}[k])
    counts = pd.DataFrame({"rid": spe["referral_id"], "kind": kind}).groupby(["rid", "kind"]).size().unstack(fill_value=0)
    def count(k):
        return spr["referral_id"].map(counts[k] if k in counts else pd.Series(dtype=int)).fillna(0).astype("int64")
    contacts, onward, declined, dna = count("contact"), count("onward_referral"), count("declined"), count("dna")
    seen = spr["initial_contact_date"].notna()
    outcome = pd.Series(np.select([seen, declined > 0, dna > 0], ["seen", "declined", "dna"], default=""), index=spr.index)
    b.add("initial_contact_date", "referral has an initial contact date and a declined or did-not-attend event",
          mask=seen & ((declined > 0) | (dna > 0)))
    b.add("initial_contact_date", "referral has neither an initial contact date nor a declined or did-not-attend event: "
                                  "its outcome is unknown (the contract needs seen, dna or declined)",
          mask=(outcome == "").to_numpy(), values=spr["referral_id"])
    b.add("referral_id", "referral has both a declined and a did-not-attend event", mask=(~seen & (declined > 0) & (dna > 0)).to_numpy(),
          values=spr["referral_id"])

    referrals = pd.DataFrame({
        "referral_id": spr["referral_id"], "person_id": spr["patient_id"], "referral_date": spr["referral_received_date"],
        "source": source, "reasons": reasons, "borough_code": borough, "pcn_code": pcn, "practice_code": spr["practice_code"],
        "provider": spr["service_provider"], "outcome": outcome, "first_contact_date": spr["initial_contact_date"],
        "closure_date": spr["discharge_date"], "contacts": contacts, "onward_referrals": onward})

    # GP-side social prescribing codes: a cross-check of the two exports
    gp_sp = evk[(evk["list"] == "sp-case-events") & (evk["target"] == "referral")]
    if len(gp_sp):
        no_case = ~gp_sp["patient_id"].isin(spr["patient_id"])
        led.add(ef, "cross-check", int(no_case.sum()), target="sp_referrals",
                note=f"of {len(gp_sp)} GP-coded social prescribing referrals (871731000000106), {int(no_case.sum())} are for "
                     "patients with no case-management referral (not imported: the case-management export is the referral record)")

    # ---- wellbeing (outcome measures)
    wellbeing = pd.DataFrame(columns=["referral_id", "timepoint", "instrument", "item", "score", "measurement_date"])
    if om is not None:
        b3 = brs["sp_outcome_measures"]
        of = paths["sp_outcome_measures"].name
        item, unk = _map(om["item_code"], lists["wellbeing-items"])
        b3.add("item_code", "code not in code list wellbeing-items.csv", mask=unk, values=om["item_code"])
        b3.add("referral_id", "measure for a referral not in sp_referrals", mask=_positions(om["referral_id"], spr["referral_id"]) < 0,
               values=om["referral_id"])
        b3.add("timepoint", f"unknown time point (allowed: {', '.join(contract.TIMEPOINTS)})",
               mask=om["timepoint"].notna() & ~_isin(om["timepoint"], contract.TIMEPOINTS), values=om["timepoint"])
        score = pd.to_numeric(om["score"], errors="coerce")
        b3.add("score", "not a number", mask=om["score"].notna() & score.isna(), values=om["score"])
        is_total = item.fillna("").str.endswith("_total").to_numpy()
        items = om[~is_total & item.notna().to_numpy()].assign(item=item[~is_total & item.notna().to_numpy()], score=score)
        items = items.assign(instrument=items["item"].str.split("_").str[0])
        totals = om[is_total].assign(instrument=item[is_total].str.replace("_total", "", regex=False), total=score[is_total])
        key = ["referral_id", "timepoint", "instrument"]
        sums = items.groupby(key).agg(item_sum=("score", "sum"), n_items=("score", "size")).reset_index()
        full = {k: len(v) for k, v in contract.INSTRUMENT_ITEMS.items()}
        sums = sums[sums["n_items"] == sums["instrument"].map(full)]
        chk = totals.merge(sums, on=key, how="left")
        with_items = chk["item_sum"].notna().to_numpy()
        metric = _swemwbs_metric(chk["item_sum"])
        agree = (chk["total"] == chk["item_sum"]) | ((chk["instrument"] == "swemwbs") & (chk["total"].round(2) == metric.round(2)))
        bad = with_items & ~agree.to_numpy()
        if bad.any():
            b3.add("score", "total does not equal the sum of its items (WEMWBS; SWEMWBS raw or metric score)",
                   rows=(np.asarray(totals.index)[bad] + 1), values=chk.loc[bad, "total"])
        if (~with_items).any():
            led.add(of, "excluded", int((~with_items).sum()), target="wellbeing", rule="total_without_items",
                    note="totals recorded without their items are not carried (the contract's wellbeing table holds items)")
        if with_items.any():
            led.add(of, "checked", int(with_items.sum()), target="wellbeing", note="totals equal to the sum of their items")
        led.add(of, "mapped", len(items), target="wellbeing", note=f"code list wellbeing-items.csv version {lists['wellbeing-items'].version}")
        wellbeing = pd.DataFrame({"referral_id": items["referral_id"], "timepoint": items["timepoint"],
                                  "instrument": items["instrument"], "item": items["item"],
                                  "score": items["score"].astype("Int64"), "measurement_date": items["measure_date"]})

    all_b = [x for n in brs for x in brs[n].items]
    if all_b:
        raise CodedExtractError(breaches=all_b)

    # ---- write
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("persons", "referrals", "activity", "wellbeing", "workforce"):
        for suffix in (".csv", ".csv.gz", ".parquet"):
            (out / f"{stale}{suffix}").unlink(missing_ok=True)
    _write_parquet(persons, out / "persons.parquet", ["registration_start", "registration_end"])
    _write_parquet(referrals, out / "referrals.parquet", ["referral_date", "first_contact_date", "closure_date"])
    _write_parquet(activity, out / "activity.parquet", ["activity_date"])
    _write_parquet(wellbeing.reset_index(drop=True), out / "wellbeing.parquet", ["measurement_date"])
    rows = {"persons": len(persons), "referrals": len(referrals), "activity": len(activity), "wellbeing": len(wellbeing)}
    if wf_path is not None:
        wf = read_table_file(wf_path)
        wf.to_csv(out / "workforce.csv", index=False)
        rows["workforce"] = len(wf)
        led.add(wf_path.name, "copied", len(wf), target="workforce")
    never = int((~persons["person_id"].isin(referrals["person_id"])).sum())
    f = info.get("pool_fraction", pool_fraction if pool_fraction is not None else 1.0)
    new_info = {k: v for k, v in info.items() if k not in ("row_counts", "layout")}
    new_info.update({
        "imported_by": f"spstudy.inputs.coded.import_coded_events {IMPORTER_VERSION}",
        "imported_from": str(src.name),
        "code_lists": {n: lists[n].version for n in sorted(lists)},
        "pool_fraction": f,
        "sample_design": {**(info.get("sample_design") or {}), "non_referred_weight": 1 / f, "non_referred_in_sample": never},
        "layout": "one Parquet file per table (workforce CSV)", "row_counts": rows})
    if "description" not in new_info:
        new_info["description"] = "Contract tables imported from a coded extract (GP events, registration list, case management)."
    (out / "extract_info.json").write_text(json.dumps(new_info, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    ledger = led.frame()
    ledger.to_csv(out / "import_ledger.csv", index=False)
    names = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    (out / "SHA256SUMS").write_text("".join(f"{sha256(out / n)}  {n}\n" for n in names))
    return ImportResult(out, pd.DataFrame({"table": list(rows), "rows": list(rows.values())}), ledger)


def _swemwbs_metric(raw: pd.Series) -> pd.Series:
    """SWEMWBS metric score for a raw total (Warwick conversion table in spstudy/data/swemwbs_conversion.csv)."""
    t = pd.read_csv(project.package_file("data", "swemwbs_conversion.csv"))
    return raw.map(dict(zip(t["raw_score"].astype(float), t["metric_score"])))


def _write_parquet(df: pd.DataFrame, path: Path, date_cols: list[str]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {}
    for c in df.columns:
        s = df[c]
        if c in date_cols:
            cols[c] = pa.array(pd.to_datetime(s).dt.date.where(s.notna(), None).to_numpy(dtype=object), type=pa.date32())
        elif pd.api.types.is_bool_dtype(s) or c == "interpreter_needed":
            cols[c] = pa.array(s.astype(object).where(s.notna(), None).to_numpy(dtype=object), type=pa.bool_())
        elif pd.api.types.is_integer_dtype(s):
            cols[c] = pa.array(s.astype("Int64").astype(object).where(s.notna(), None).to_numpy(dtype=object), type=pa.int64())
        else:
            cols[c] = pa.array(s.astype(object).where(s.notna(), None).to_numpy(dtype=object), type=pa.string())
    pq.write_table(pa.table(cols), path)


# --------------------------------------------------------------------------------------- export

def export_coded_events(contract_dir: Path | str, out_dir: Path | str, fmt: str = "csv",
                        codelists_dir: Path | str | None = None) -> Path:
    """Write a synthetic coded extract from contract tables (the inverse of :func:`import_coded_events`).

    Each contract value is written as its code list's *preferred* concept: ethnicity and
    interpreter as coded events dated at registration start, GP and A&E activity as encounter
    concepts, referrals as case-management rows with their events (declined / did-not-attend at
    closure, else at referral; contacts and onward referrals spread evenly from first contact to
    closure), wellbeing items as outcome measures plus WEMWBS and SWEMWBS totals (raw sums). GP-side
    'Referral to social prescribing service' codes are added at each referral date. Every row of the
    contract tables is written, duplicates included. ``fmt``: 'csv' (what a search export gives) or
    'parquet' (for national-scale runs). Deterministic; returns ``out_dir``.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet'; got {fmt!r}")
    src, out = Path(contract_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lists = load_codelists(codelists_dir)

    def read(name, required=True):
        p = find_table_file(src, name, required=required)
        return None if p is None else read_table_file(p)

    def ds(s):
        s = pd.to_datetime(s)
        return s.dt.strftime("%Y-%m-%d").where(s.notna(), None)

    def pref(name, values):
        cl = lists[name]
        m = {t: cl.preferred(t) for t in pd.unique(values.dropna())}
        return values.map(m)

    p = read("persons")
    r = read("referrals")
    a = read("activity")
    w = read("wellbeing", required=False)

    lang_code = pref("main-language", p["main_language"])
    reg = pd.DataFrame({"patient_id": p["person_id"], "year_of_birth": p["birth_year"].astype("Int64").astype(str),
                        "sex": pref("sex", p["sex"]), "lsoa21_code": p["lsoa21_code"], "practice_code": p["practice_code"],
                        "registration_start": ds(p["registration_start"]), "registration_end": ds(p["registration_end"]),
                        "deregistration_reason": pref("registration-end-reason", p["registration_end_reason"]),
                        "main_language": lang_code, "english_proficiency": pref("english-proficiency", p["english_proficiency"])})
    start = ds(p["registration_start"])
    interp = p["interpreter_needed"].map(lambda v: None if pd.isna(v) else ("true" if (v is True or str(v).lower() in ("true", "1")) else "false"))
    parts = [
        pd.DataFrame({"patient_id": p["person_id"], "concept_id": pref("ethnicity", p["ethnicity"]), "event_date": start}),
        pd.DataFrame({"patient_id": p["person_id"], "concept_id": pref("interpreter", interp), "event_date": start}),
        pd.DataFrame({"patient_id": a["person_id"], "concept_id": pref("activity-setting", a["setting"]), "event_date": ds(a["activity_date"]),
                      **({"event_id": a["event_id"].astype(object)} if "event_id" in a.columns else {})}),
        pd.DataFrame({"patient_id": r["person_id"], "concept_id": lists["sp-case-events"].preferred("referral"),
                      "event_date": ds(r["referral_date"])}),
    ]
    events = pd.concat([x.dropna(subset=["concept_id"]) for x in parts], ignore_index=True)

    spr = pd.DataFrame({"referral_id": r["referral_id"], "patient_id": r["person_id"], "referral_received_date": ds(r["referral_date"]),
                        "referral_source": pref("referral-source", r["source"]),
                        "referral_reasons": r["reasons"].map(lambda s: ";".join(lists["referral-reason"].preferred(x) for x in str(s).split(";"))),
                        "service_provider": r["provider"], "practice_code": r["practice_code"], "pcn_code": r["pcn_code"],
                        "service_borough_code": r["borough_code"], "initial_contact_date": ds(r["first_contact_date"]),
                        "discharge_date": ds(r["closure_date"])})
    rd = pd.to_datetime(r["referral_date"]).to_numpy().astype("datetime64[D]").astype(np.int64)
    fc = pd.to_datetime(r["first_contact_date"]).to_numpy().astype("datetime64[D]").astype(np.int64)
    cl = pd.to_datetime(r["closure_date"]).to_numpy().astype("datetime64[D]").astype(np.int64)
    nat = np.iinfo(np.int64).min
    has_cl = cl != nat
    anchor = np.where(has_cl, cl, rd)
    ev_rows = []
    for outcome, kind in (("declined", "declined"), ("dna", "dna")):
        m = (r["outcome"] == outcome).to_numpy()
        ev_rows.append(pd.DataFrame({"referral_id": r.loc[m, "referral_id"].to_numpy(), "concept_id": lists["sp-case-events"].preferred(kind),
                                     "day": anchor[m]}))
    seen = fc != nat
    end = np.where(has_cl, cl, fc)
    for col, kind in (("contacts", "contact"), ("onward_referrals", "onward_referral")):
        n = pd.to_numeric(r[col]).fillna(0).astype(np.int64).to_numpy() * seen
        days = _spread(np.where(seen, fc, 0), np.where(seen, end, 0), n)
        ev_rows.append(pd.DataFrame({"referral_id": np.repeat(r["referral_id"].to_numpy(), n),
                                     "concept_id": lists["sp-case-events"].preferred(kind), "day": days}))
    spe = pd.concat(ev_rows, ignore_index=True)
    spe["event_date"] = pd.to_datetime(spe.pop("day").astype("int64"), unit="D").dt.strftime("%Y-%m-%d")

    tables = {"registrations": reg, "coded_events": events, "sp_referrals": spr, "sp_events": spe}
    if w is not None:
        wl = w.assign(score=pd.to_numeric(w["score"]))
        om = pd.DataFrame({"referral_id": wl["referral_id"], "measure_date": ds(wl["measurement_date"]), "timepoint": wl["timepoint"],
                           "item_code": pref("wellbeing-items", wl["item"]), "score": wl["score"].astype("Int64").astype(str)})
        tot = []
        for inst in ("wemwbs", "swemwbs"):
            g = wl[wl["instrument"] == inst].groupby(["referral_id", "timepoint"]).agg(
                score=("score", "sum"), n=("score", "size"), measure_date=("measurement_date", "first")).reset_index()
            g = g[g["n"] == len(contract.INSTRUMENT_ITEMS[inst])]
            tot.append(pd.DataFrame({"referral_id": g["referral_id"], "measure_date": ds(g["measure_date"]), "timepoint": g["timepoint"],
                                     "item_code": lists["wellbeing-items"].preferred(f"{inst}_total"),
                                     "score": g["score"].astype("int64").astype(str)}))
        tables["sp_outcome_measures"] = pd.concat([om] + tot, ignore_index=True)
    for name, df in tables.items():
        for suffix in (".csv", ".parquet"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)
        if fmt == "csv":
            df.to_csv(out / f"{name}.csv", index=False)
        else:
            df.astype(object).where(df.notna(), None).astype("string").to_parquet(out / f"{name}.parquet", index=False)
    wf = find_table_file(src, "workforce", required=False)
    if wf is not None:
        read_table_file(wf).to_csv(out / "workforce.csv", index=False)
    info, _ = read_extract_info(src)
    if info:
        info = {**info, "description": "Synthetic coded extract written by spstudy.coded.export_coded_events from the contract tables in "
                                       f"{src.name}/. " + str(info.get("description", "")),
                "layout": f"coded extract ({fmt}): registrations, coded_events, sp_referrals, sp_events, sp_outcome_measures"}
        info.pop("row_counts", None)
        (out / "extract_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def convert_full_extract(contract_dir: Path | str, work_dir: Path | str, fmt: str = "parquet") -> dict:
    """Full-size round trip for slow end-to-end tests and benchmarks: export ``contract_dir`` (e.g.
    data/extracts) to ``work_dir/coded`` and import it back to ``work_dir/contract``. Returns the
    seconds each step took and the :class:`ImportResult`."""
    import time

    work = Path(work_dir)
    t0 = time.perf_counter()
    coded = export_coded_events(contract_dir, work / "coded", fmt=fmt)
    t1 = time.perf_counter()
    res = import_coded_events(coded, work / "contract")
    t2 = time.perf_counter()
    return {"export_seconds": t1 - t0, "import_seconds": t2 - t1, "coded_dir": coded, "contract_dir": res.out_dir, "result": res}


def codelist_tables_markdown(directory: Path | str | None = None) -> str:
    """The code lists as Markdown tables (for docs/extract_specification.md; a test checks every
    shipped code appears there)."""
    lists = load_codelists(directory)
    out = []
    for name in sorted(lists):
        cl = lists[name]
        out += [f"#### `{name}.csv` (read from {'; '.join(CODELIST_USES[name])})", "",
                "| code | term | maps to | system | preferred |", "| --- | --- | --- | --- | --- |"]
        for r in cl.table.itertuples():
            out.append(f"| `{r.code}` | {r.term} | `{r.maps_to}` | {r.code_system} | {'yes' if r.preferred == '1' else ''} |")
        srcs = sorted(set(cl.table["source"]))
        out += ["", "Sources: " + "; ".join(srcs) + f". Version {cl.version}.", ""]
    return "\n".join(out) + "\n"
