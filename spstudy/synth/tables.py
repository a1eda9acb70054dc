"""Arrow tables in the data contract from the draws, and the files written (Parquet, workforce CSV, SHA256SUMS)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spstudy.inputs import reference
from spstudy.inputs.checksums import sha256
from spstudy.inputs.contract import (
    LANGUAGES,
    TABLES,
)
from spstudy.synth.config import _NO_DATE, ACTIVITY_LABELS, BOROUGH_CODES, ETH_CODES, OUTCOMES, PROF_CODES, REASONS, SLUGS, SOURCES, SynthParams
from spstudy.synth.draws import _INSTRUMENTS, _ITEM_CODES, Frame, _ids

# ============================================================================== table building

def _str_col(idx: np.ndarray, labels, null: np.ndarray | None = None) -> pa.Array:
    idx = np.asarray(idx, dtype=np.int32)
    mask = None if null is None else np.asarray(null, dtype=bool)
    d = pa.DictionaryArray.from_arrays(pa.array(idx, mask=mask), pa.array(list(labels), type=pa.string()))
    return d.cast(pa.string())


def _date_col(days: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    d = np.asarray(days, dtype=np.int64)
    mask = None if null is None else np.asarray(null, dtype=bool)
    return pa.array(np.where(mask, 0, d) if mask is not None else d, type=pa.int32(), mask=mask).cast(pa.date32())


def _persons_table(F: Frame, h: np.ndarray, a: dict) -> pa.Table:
    order = np.argsort(h, kind="stable")
    g = {k: v[order] for k, v in a.items()}
    h = h[order]
    eth_null = g["eth_state"] == 2
    eth_idx = np.where(g["eth_state"] == 1, len(ETH_CODES), g["eth"])
    lang_null = ~g["lang_recorded"]
    return pa.table({
        "person_id": pa.array(_ids("P", h), type=pa.string()),
        "birth_year": pa.array(g["birth_year"].astype(np.int32)),
        "sex": _str_col(np.where(g["female"], 0, 1), ["F", "M"]),
        "ethnicity": _str_col(eth_idx, ETH_CODES + ["Z"], eth_null),
        "main_language": _str_col(g["lang"], LANGUAGES, lang_null),
        "english_proficiency": _str_col(g["prof"], PROF_CODES, lang_null),
        "interpreter_needed": pa.array(g["interp"], type=pa.bool_(), mask=lang_null),
        "lsoa21_code": _str_col(g["lsoa"], F.lsoa_codes),
        "ward22_code": _str_col(g["ward"], F.ward_codes),
        "practice_code": _str_col(g["practice"], F.practice_codes),
        "registration_start": _date_col(g["reg_start"]),
        "registration_end": _date_col(g["reg_end"], ~g["has_end"]),
        "registration_end_reason": _str_col(np.where(g["died"], 1, 0), ["moved_away", "died"], ~g["has_end"]),
    })


def _reason_labels() -> list[str]:
    out = []
    for c in range(343):
        parts = [c // 49, (c // 7) % 7, c % 7]
        out.append(";".join(REASONS[x] for x in parts if x < 6))
    return out


_REASON_LABELS = _reason_labels()


def _referrals_table(F: Frame, a: dict) -> pa.Table:
    order = np.argsort(a["rid"], kind="stable")
    g = {k: v[order] for k, v in a.items()}
    svc = g["svc"]
    practice = g["practice"]
    pcn_codes = sorted(set(F.practice_pcn))
    pcn_idx = np.array([pcn_codes.index(x) for x in F.practice_pcn])[practice]
    return pa.table({
        "referral_id": pa.array(_ids("R", g["rid"]), type=pa.string()),
        "person_id": pa.array(_ids("P", g["pid"]), type=pa.string()),
        "referral_date": _date_col(g["ref_day"]),
        "source": _str_col(g["src"], SOURCES),
        "reasons": _str_col(g["reason_code"], _REASON_LABELS),
        "borough_code": _str_col(F.practice_borough[practice], BOROUGH_CODES),
        "pcn_code": _str_col(pcn_idx, pcn_codes),
        "practice_code": _str_col(practice, F.practice_codes),
        "provider": _str_col(svc, [s.name for s in F.services]),
        "outcome": _str_col(g["outcome"], OUTCOMES),
        "first_contact_date": _date_col(g["fc"], g["fc"] >= _NO_DATE),
        "closure_date": _date_col(g["closure"], g["closure"] >= _NO_DATE),
        "contacts": pa.array(g["contacts"].astype(np.int32)),
        "onward_referrals": pa.array(g["onward"].astype(np.int32)),
    })


def _activity_table(h_sorted: np.ndarray, a: dict) -> pa.Table:
    order = np.lexsort((a["setting"], a["day"], a["pid"]))
    pid, day, st = a["pid"][order], a["day"][order], a["setting"][order]
    idx = np.searchsorted(h_sorted, pid)
    ids = pa.array(_ids("P", h_sorted), type=pa.string())
    # the generator can draw two appointments for one person on one day in one setting; a real extract
    # tells them apart by an appointment identifier, so the rows carry one (1, 2 ... within the day)
    n = len(pid)
    new = np.ones(n, dtype=bool)
    if n:
        new[1:] = (pid[1:] != pid[:-1]) | (day[1:] != day[:-1]) | (st[1:] != st[:-1])
    start = np.flatnonzero(new)
    seq = np.arange(n) - np.repeat(start, np.diff(np.append(start, n))) + 1
    labels = pa.array([str(i) for i in range(1, int(seq.max(initial=1)) + 1)], type=pa.string())
    return pa.table({
        "person_id": pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), ids).cast(pa.string()),
        "activity_date": _date_col(day),
        "setting": _str_col(st, ACTIVITY_LABELS),
        "event_id": pa.DictionaryArray.from_arrays(pa.array((seq - 1).astype(np.int32)), labels).cast(pa.string()),
    })


def _wellbeing_table(a: dict) -> pa.Table:
    order = np.lexsort((a["item"], a["tp"], a["rid"]))
    g = {k: v[order] for k, v in a.items()}
    return pa.table({
        "referral_id": pa.array(_ids("R", g["rid"]), type=pa.string()),
        "timepoint": _str_col(g["tp"], ["baseline", "follow_up"]),
        "instrument": _str_col(g["inst"], _INSTRUMENTS),
        "item": _str_col(g["item"], _ITEM_CODES),
        "score": pa.array(g["score"].astype(np.int16)),
        "measurement_date": _date_col(g["day"]),
    })


def _workforce_frame(P: SynthParams) -> pd.DataFrame:
    gp = reference.gp_practices()
    pcn_b = dict(zip(gp["pcn_code"], gp["borough_code"]))
    rows = []
    for w in P.workforce:
        bcode = BOROUGH_CODES[SLUGS.index(w.borough)]
        if w.pcn is not None and pcn_b.get(w.pcn) != bcode:
            raise ValueError(f"workforce: pcn {w.pcn!r} is not a PCN of {w.borough} in reference.gp_practices()")
        rows.append({"borough_code": bcode, "pcn_code": w.pcn or "", "role": w.role, "fte": w.fte, "employer": w.employer})
    df = pd.DataFrame(rows, columns=TABLES["workforce"].names)
    return df.sort_values(["borough_code", "pcn_code", "role", "employer"], kind="stable").reset_index(drop=True)


def _write_parquet(table: pa.Table, path: Path, P: SynthParams):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", compression_level=P.output.zstd_level,
                   row_group_size=P.output.row_group_rows, use_dictionary=True, write_statistics=True)


def _concat(parts: list[dict]) -> dict:
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


_PATIENT_TABLES = ("persons", "referrals", "activity", "wellbeing")


def _prepare_out(out: Path):
    """Remove files this generator wrote before; refuse to mix with other files for the same tables."""
    out.mkdir(parents=True, exist_ok=True)
    for t in _PATIENT_TABLES + ("workforce",):
        others = [out / f"{t}.csv", out / f"{t}.csv.gz"] if t != "workforce" else [out / "workforce.parquet", out / "workforce.csv.gz", out / "workforce"]
        for other in others:
            if other.exists():
                raise ValueError(f"out_dir: {other} exists; write synthetic extracts to a folder without other extract files")
    for t in _PATIENT_TABLES:
        f = out / f"{t}.parquet"
        if f.exists():
            f.unlink()
        d = out / t
        if d.is_dir():
            stray = [x for x in d.iterdir() if x.suffix != ".parquet"]
            if stray:
                raise ValueError(f"out_dir: {d} holds files the generator did not write ({stray[0].name})")
            shutil.rmtree(d)
    for name in ("workforce.csv", "extract_info.json", "SHA256SUMS"):
        f = out / name
        if f.exists():
            f.unlink()


def _write_sums(out: Path) -> Path:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    lines = [f"{sha256(p)}  {p.relative_to(out).as_posix()}" for p in files]
    target = out / "SHA256SUMS"
    target.write_text("\n".join(lines) + "\n")
    return target
