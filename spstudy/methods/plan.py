"""A pre-specified analysis plan: written before any outcome is computed, hashed, and compared.

The plan is plain data (cohorts, windows, outcomes, covariates, estimators, subgroups, verdict
rules, seeds). :func:`canonical_json` serialises it one way only: keys sorted, no insignificant
whitespace, UTF-8, finite numbers as Python's shortest round-trip repr (the JSON Canonicalization
Scheme's rules, RFC 8785, for the values a plan holds), so the same parameters always give the same
bytes and the same SHA-256 (:func:`plan_sha256`). :func:`write_plan` writes those bytes as
``<stem>.json`` (so the file's own SHA-256 is the plan hash the manifest records) and a Markdown
rendering ``<stem>.md`` that quotes the hash. A user registers a plan by committing the JSON before
seeing results (e.g. ``parameters/evaluation_plan.json``); :func:`deviations` lists every
difference between that registered plan and the one the current run would write.

Registering the analysis of an observational study before its results follows Dal-Re et al.
(2014, Sci Transl Med 6:224cm1, "Making prospective registration of observational research a
reality"); OpenSAFELY likewise makes each study's protocol and code public before outputs are released.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["SCHEMA", "PlanRecord", "PlanDeviations", "build_plan", "plan_from_parameters", "canonical_json", "plan_sha256",
           "plan_markdown", "write_plan", "read_plan", "deviations"]

SCHEMA = "spstudy-analysis-plan/1"
SECTIONS = ("area", "cohorts", "windows", "outcomes", "covariates", "estimators", "subgroups", "verdict_rules", "seeds")


def _plain(x: Any, path: str = "plan") -> Any:
    """Plain JSON values: dict (str keys), list, str, int, float (finite), bool, None; tuples become
    lists, dates ISO strings, numpy scalars Python numbers. Anything else raises naming the path."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str):
                raise ValueError(f"{path}: keys must be strings, got {k!r}")
            out[k] = _plain(v, f"{path}.{k}")
        return out
    if isinstance(x, (list, tuple)):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, (dt.datetime, dt.date)):
        return x.isoformat()
    if hasattr(x, "item") and not isinstance(x, (int, float)):  # numpy scalar
        return _plain(x.item(), path)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{path}: non-finite number {x!r} cannot be in a plan")
        return float(x)
    raise ValueError(f"{path}: value of type {type(x).__name__} is not plain data (str, number, bool, None, list, dict)")


def canonical_json(plan: dict) -> bytes:
    """The one byte serialisation of ``plan`` (sorted keys, separators ',' ':', UTF-8, newline-free)."""
    return json.dumps(_plain(plan), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def plan_sha256(plan: dict) -> str:
    """Hex SHA-256 of :func:`canonical_json` of ``plan``."""
    return hashlib.sha256(canonical_json(plan)).hexdigest()


def build_plan(*, area: str, cohorts: dict, windows: dict, outcomes: dict, covariates: list, estimators: dict, subgroups: dict,
               verdict_rules: dict, seeds: dict, **extra) -> dict:
    """The plan as a plain dict, with the schema tag. Every argument is plain data; ``seeds`` maps
    each seed's name to its integer value (all of them: cohort pseudo-index dates, bootstraps,
    simulations). ``extra`` sections (e.g. ``confidence``, ``power``, ``disclosure``) are kept."""
    for name, s in seeds.items():
        if not isinstance(s, int) or isinstance(s, bool):
            raise ValueError(f"seeds.{name}: must be an integer, got {s!r}")
    plan = {"schema": SCHEMA, "area": area, "cohorts": cohorts, "windows": windows, "outcomes": outcomes, "covariates": list(covariates),
            "estimators": estimators, "subgroups": subgroups, "verdict_rules": verdict_rules, "seeds": seeds, **extra}
    return _plain(plan)


def plan_from_parameters(parameters: dict, *, covariates: list, seeds: dict, subgroups: dict, verdict_rules: dict,
                         estimators: dict | None = None, confidence: float = 0.95, power: float = 0.8) -> dict:
    """A plan from the validated parameters as plain values (``Parameters.to_dict()``) plus what the
    parameters do not hold yet: the propensity covariates actually used (``covariates``, e.g.
    ``spstudy.analyses.evaluation.ps_covariates(design)``), ``seeds``, ``subgroups`` (factors, smallest subgroup,
    reason rule, multiplicity), ``verdict_rules`` and any further ``estimators``."""
    st, ev = parameters["study"], parameters["evaluation"]
    m0, m1 = ev["matching_window_months"]
    b0, b1 = ev["baseline_window_months"]
    cohorts = {
        "referral_period": [st["referral_start"], st["referral_end"]],
        "data_period": [st["data_start"], st["data_end"]],
        "referred": "each person's first referral in the referral period to the area's services; index date = referral date",
        "comparators": "registered people in the area's practices never referred, pseudo-index date drawn from the referral dates",
        "comparator_pool_per_referral": ev["matching"]["comparator_pool_per_referral"],
        "itt": "all referred people", "per_protocol": "referred people seen by a link worker",
    }
    windows = {"post_windows_months": ev["windows_months"], "matching_window_months": [m0, m1], "baseline_window_months": [b0, b1],
               "washout_months": [b1 + 1, -1] if b1 < -1 else [], "post_window_from": ev["post_window_from"],
               "placebo_shift_months": ev["placebo_shift_months"]}
    outcomes = {"service_use": {"gp": "GP appointments per person-year", "ae": "A&E attendances per person-year"},
                "wellbeing": {"measures": ["ons4_life_satisfaction", "ons4_worthwhile", "ons4_happy", "ons4_anxious", "wemwbs_total", "swemwbs_metric"],
                              "meaningful_change": ev["wellbeing_thresholds"]}}
    est = {"matching": {"method": "propensity score (logistic), greedy nearest neighbour on the logit", **ev["matching"]},
           "balance_smd_threshold": ev["smd_threshold"],
           "did": "ratio of rate ratios, Poisson GLM with log exposure offset, cluster-robust by matched set",
           "naive": "referred people's post/pre rate ratio (shown, never headlined)", **(estimators or {})}
    return build_plan(area=parameters["area"], cohorts=cohorts, windows=windows, outcomes=outcomes, covariates=covariates, estimators=est,
                      subgroups=subgroups, verdict_rules=verdict_rules, seeds=seeds, confidence=confidence, power=power,
                      disclosure=parameters.get("disclosure", {}))


def _md_value(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return "`" + json.dumps(v, sort_keys=True, ensure_ascii=False) + "`"
    return "`" + json.dumps(v, ensure_ascii=False) + "`" if not isinstance(v, str) else v


def _md_block(obj: Any, depth: int = 0) -> list[str]:
    pad = "  " * depth
    if isinstance(obj, dict):
        lines = []
        for k in sorted(obj):
            v = obj[k]
            if isinstance(v, dict) and v:
                lines.append(f"{pad}- **{k}**:")
                lines += _md_block(v, depth + 1)
            else:
                lines.append(f"{pad}- **{k}**: {_md_value(v)}")
        return lines
    if isinstance(obj, list):
        return [f"{pad}- {_md_value(v)}" for v in obj]
    return [f"{pad}{_md_value(obj)}"]


def plan_markdown(plan: dict) -> str:
    """Markdown rendering of the plan (sections in a fixed order, keys sorted), quoting its hash."""
    plan = _plain(plan)
    h = plan_sha256(plan)
    out = ["# Pre-specified analysis plan", "", f"Plan SHA-256: `{h}` (of the canonical JSON, {plan.get('schema', SCHEMA)}).",
           "Results in this pack cite this hash; any change made after registration is listed as a deviation.", ""]
    order = [s for s in SECTIONS if s in plan] + sorted(k for k in plan if k not in SECTIONS and k != "schema")
    for s in order:
        out += [f"## {s.replace('_', ' ').capitalize()}", ""]
        out += _md_block(plan[s]) if isinstance(plan[s], (dict, list)) else [_md_value(plan[s])]
        out.append("")
    return "\n".join(out)


@dataclass(frozen=True)
class PlanRecord:
    """What :func:`write_plan` wrote: ``sha256`` (of the JSON file's bytes = the plan hash),
    ``json_file``, ``markdown_file`` (paths as strings), ``n_bytes``."""

    sha256: str
    json_file: str
    markdown_file: str
    n_bytes: int

    def tidy(self) -> pd.DataFrame:
        return pd.DataFrame([{"sha256": self.sha256, "json_file": self.json_file, "markdown_file": self.markdown_file, "n_bytes": self.n_bytes}])


def write_plan(plan: dict, directory: Path | str, stem: str = "analysis_plan") -> PlanRecord:
    """Write ``<stem>.json`` (canonical bytes) and ``<stem>.md`` into ``directory``; return the hash."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    b = canonical_json(plan)
    jp, mp = directory / f"{stem}.json", directory / f"{stem}.md"
    jp.write_bytes(b)
    mp.write_text(plan_markdown(plan), encoding="utf-8", newline="\n")
    return PlanRecord(sha256=hashlib.sha256(b).hexdigest(), json_file=str(jp), markdown_file=str(mp), n_bytes=len(b))


def read_plan(path: Path | str) -> dict:
    """A plan from a JSON file (any formatting: the hash is of its canonical form). Raises ValueError
    naming the file when it is not a JSON object with the plan schema tag."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not an analysis plan (expected a JSON object with \"schema\": \"{SCHEMA}\")")
    return obj


_ABSENT = object()


def _diff(a: Any, b: Any, path: str, out: list) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}" if path else k
            if k not in b:
                out.append((p, "removed", a[k], _ABSENT))
            elif k not in a:
                out.append((p, "added", _ABSENT, b[k]))
            else:
                _diff(a[k], b[k], p, out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", out)
    elif canonical_json({"v": a}) != canonical_json({"v": b}):
        out.append((path, "changed", a, b))


@dataclass(frozen=True)
class PlanDeviations:
    """Differences between a registered plan and the current one (:func:`deviations`).

    table: one row per deviation: ``path`` (e.g. ``windows.post_windows_months[0]``), ``change``
    (changed, added, removed), ``registered`` and ``current`` (the values as canonical JSON text;
    empty when absent). ``registered_sha256``, ``current_sha256``; ``matches``: no deviation."""

    table: pd.DataFrame
    registered_sha256: str
    current_sha256: str

    @property
    def matches(self) -> bool:
        return self.registered_sha256 == self.current_sha256

    def tidy(self) -> pd.DataFrame:
        return self.table.assign(registered_sha256=self.registered_sha256, current_sha256=self.current_sha256)


def deviations(registered: dict | Path | str, current: dict) -> PlanDeviations:
    """Every difference between the ``registered`` plan (a dict or the path of its JSON file) and
    ``current``: each is a deviation from the pre-specified analysis, listed by path."""
    reg = read_plan(registered) if isinstance(registered, (str, Path)) else _plain(registered)
    cur = _plain(current)
    rows: list = []
    _diff(reg, cur, "", rows)
    enc = lambda v: "" if v is _ABSENT else canonical_json({"v": v}).decode("utf-8")[5:-1]
    table = pd.DataFrame([{"path": p, "change": c, "registered": enc(a), "current": enc(b)}
                          for p, c, a, b in rows], columns=["path", "change", "registered", "current"])
    return PlanDeviations(table=table, registered_sha256=plan_sha256(reg), current_sha256=plan_sha256(cur))
