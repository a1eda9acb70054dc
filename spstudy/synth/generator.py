"""Generate the synthetic extract: :func:`generate` (and the CLI ``spstudy synth``) drives the draws and writes the tables."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError

from spstudy.inputs import project
from spstudy.inputs.checksums import sha256
from spstudy.synth.config import (
    _NO_DATE,
    _S_ACTIVITY,
    _S_PRACTICE,
    _S_PRIOR,
    _S_REFERRAL,
    _S_SAMPLE,
    _S_WELLBEING,
    ACTIVITY_LABELS,
    OUTCOMES,
    SLUGS,
    SOURCES,
    SynthParams,
    default_params_path,
    load_synth_params,
)
from spstudy.synth.draws import (
    _activity,
    _build_frame,
    _draw_referrals,
    _pass1,
    _person_hash,
    _persons_block,
    _rates,
    _referral_hash,
    _rng,
    _solve_group_constants,
    _subset_referrals,
    _UseTruth,
    _wellbeing,
)
from spstudy.synth.tables import (
    _PATIENT_TABLES,
    _activity_table,
    _concat,
    _persons_table,
    _prepare_out,
    _referrals_table,
    _wellbeing_table,
    _workforce_frame,
    _write_parquet,
    _write_sums,
)

__all__ = ["generate", "main"]


# ============================================================================== generate

def _study_period():
    """The study and data periods from ``parameters/ncl.yaml`` (section ``study`` only, validated by params.Study)."""
    from spstudy.inputs.params import ParameterError, Study

    path = project.parameters_dir() / "ncl.yaml"
    try:
        data = yaml.safe_load(path.read_text())
        return Study.model_validate(data["study"])
    except (OSError, KeyError, TypeError, yaml.YAMLError, ValidationError, ParameterError) as e:
        raise ValueError(f"{path}: cannot read a valid 'study' section for the study period: {e}") from None


def generate(out_dir, seed: int = 7, scale: float = 1.0, pool_fraction: float = 0.25,
             params_path: Path | str | None = None, chunk_persons: int | None = None,
             truth_dir: Path | str | None = None) -> dict:
    """Generate synthetic extracts for NCL into ``out_dir`` and return a summary dict.

    Arguments: ``seed`` (non-negative integer), ``scale`` (multiplies the Census 2021 population AND the
    referral volumes), ``pool_fraction`` (inclusion probability of each non-referred registered person
    in the comparator sample, 0-1), ``params_path`` (generator parameters YAML), ``chunk_persons`` (None:
    one Parquet file per table; else tables are written as folders of parts, each covering about this
    many generated persons, for bounded memory), ``truth_dir`` (where to write ``truth.json``; None:
    not written, but the truth is in the returned summary under ``truth``).

    Writes persons/referrals/activity/wellbeing as Parquet (zstd, sorted), workforce.csv,
    extract_info.json and SHA256SUMS. Same arguments and parameter file => byte-identical files.
    """
    t0 = time.perf_counter()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer; got {seed!r}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale: expected a positive number; got {scale!r}")
    if not (isinstance(pool_fraction, (int, float)) and 0 <= pool_fraction <= 1):
        raise ValueError(f"pool_fraction: expected a number between 0 and 1; got {pool_fraction!r}")
    params_path = default_params_path() if params_path is None else Path(params_path)
    if not params_path.is_absolute() and not params_path.exists():
        params_path = project.root() / params_path
    P = load_synth_params(params_path)
    bs = P.output.block_persons
    if chunk_persons is not None:
        if not isinstance(chunk_persons, (int, np.integer)) or chunk_persons < 1:
            raise ValueError(f"chunk_persons: expected a positive integer or None; got {chunk_persons!r}")
        chunk_blocks = max(1, int(math.ceil(chunk_persons / bs)))
    else:
        chunk_blocks = None

    study = _study_period()
    F = _build_frame(P, study, float(scale))
    practice_eff = np.exp(P.referrals.practice_sd * _rng(seed, _S_PRACTICE).standard_normal(len(F.practice_codes))
                          - P.referrals.practice_sd ** 2 / 2)

    # ---- pass 1: calibration and referral normalisation over the whole population
    acc = _pass1(F, P, seed, practice_eff)
    H = P.health_use
    lam0_gp = H.gp_per_person_year * acc["reg_total"] / acc["gp_num"]
    lam0_ae = H.ae_per_person_year * acc["reg_total"] / acc["ae_num"]
    lam0_el = H.elective.per_person_year * acc["reg_total"] / acc["el_num"]
    K = _solve_group_constants(F, acc)
    t1 = time.perf_counter()

    # ---- pass 2
    out = Path(out_dir)
    _prepare_out(out)
    use_truth = _UseTruth(P.truth.windows_months)
    wtruth: dict = {}
    counts = {t: 0 for t in _PATIENT_TABLES}
    svc_count = np.zeros(len(F.services), dtype=np.int64)
    outcome_by_src = np.zeros((len(SOURCES), 3), dtype=np.int64)
    pending = {t: [] for t in _PATIENT_TABLES}
    part = 0
    n_pool = 0
    n_prior = 0
    pr = P.referrals.prior
    prior_months = np.arange(max(1, F.ref_months[0] - pr.months), F.ref_months[0]) if pr.months and pr.volume_ratio > 0 else np.array([], dtype=np.int64)
    F_prior = dataclasses.replace(F, ref_months=prior_months) if len(prior_months) else None

    def flush(final: bool):
        nonlocal part
        pers = _concat(pending["persons"])
        if not pers:
            return
        h_sorted = np.sort(pers["h"])
        tabs = {
            "persons": _persons_table(F, pers.pop("h"), pers),
            "referrals": _referrals_table(F, _concat(pending["referrals"])) if pending["referrals"] else None,
            "activity": _activity_table(h_sorted, _concat(pending["activity"])) if pending["activity"] else None,
            "wellbeing": _wellbeing_table(_concat(pending["wellbeing"])) if pending["wellbeing"] else None,
        }
        for t, tab in tabs.items():
            if tab is None or tab.num_rows == 0:
                continue
            counts[t] += tab.num_rows
            path = out / f"{t}.parquet" if chunk_blocks is None else out / t / f"part-{part:05d}.parquet"
            _write_parquet(tab, path, P)
        for t in pending:
            pending[t].clear()
        part += 1

    for b, start in enumerate(range(0, F.n_persons, bs)):
        blk = _persons_block(F, P, seed, b, start, min(start + bs, F.n_persons), practice_eff)
        ref, referred = _draw_referrals(F, P, blk, K, _rng(seed, _S_REFERRAL, b))
        pool = (_rng(seed, _S_SAMPLE, b).random(blk.n) < pool_fraction) & ~referred
        n_pool += int(pool.sum())
        # referrals before the study period, among people not referred in it who are in the extract
        prior = None
        if F_prior is not None:
            prior, _ = _draw_referrals(F_prior, P, blk, K * pr.volume_ratio, _rng(seed, _S_PRIOR, b))
            prior = _subset_referrals(prior, pool[prior.rows])
            n_prior += prior.n
        out_rows = np.flatnonzero(referred | pool)
        # person-level fields, with the SP record overriding for referred people
        eth_state = blk.eth_state.copy()
        lang_rec = blk.lang_recorded.copy()
        eth_state[ref.rows] = ref.eth_state
        lang_rec[ref.rows] = ref.lang_rec
        h_out = _person_hash(blk.gi[out_rows])
        pending["persons"].append({
            "h": h_out, "birth_year": blk.birth_year[out_rows], "female": blk.female[out_rows],
            "eth": blk.eth[out_rows], "eth_state": eth_state[out_rows], "lang": blk.lang[out_rows],
            "prof": blk.prof[out_rows], "interp": blk.interp[out_rows], "lang_recorded": lang_rec[out_rows],
            "lsoa": blk.lsoa[out_rows], "ward": blk.ward[out_rows], "practice": blk.practice[out_rows],
            "reg_start": blk.reg_start[out_rows], "reg_end": blk.reg_end[out_rows],
            "has_end": blk.has_end[out_rows], "died": blk.died[out_rows],
        })
        if ref.n:
            pending["referrals"].append({
                "rid": _referral_hash(blk.gi[ref.rows]), "pid": _person_hash(blk.gi[ref.rows]),
                "ref_day": ref.ref_day, "src": ref.src, "reason_code": ref.reason_code, "practice": blk.practice[ref.rows],
                "svc": ref.svc, "outcome": ref.outcome, "fc": ref.fc, "closure": ref.closure,
                "contacts": ref.contacts, "onward": ref.onward,
            })
            svc_count += np.bincount(ref.svc, minlength=len(F.services))
            np.add.at(outcome_by_src, (ref.src, ref.outcome), 1)
        if prior is not None and prior.n:
            pending["referrals"].append({
                "rid": _referral_hash(blk.gi[prior.rows]), "pid": _person_hash(blk.gi[prior.rows]),
                "ref_day": prior.ref_day, "src": prior.src, "reason_code": prior.reason_code, "practice": blk.practice[prior.rows],
                "svc": prior.svc, "outcome": prior.outcome, "fc": prior.fc, "closure": prior.closure,
                "contacts": prior.contacts, "onward": prior.onward,
            })
        # activity for output persons
        fc_person = np.full(blk.n, _NO_DATE, dtype=np.int64)
        fc_person[ref.rows] = np.where(ref.treated, ref.fc, _NO_DATE)
        if prior is not None and prior.n:
            fc_person[prior.rows] = np.where(prior.treated, prior.fc, _NO_DATE)   # the planted effect acts on them too
        rates = _rates(F, P, blk, out_rows, lam0_gp, lam0_ae, lam0_el)
        loc, day, st = _activity(F, P, blk, out_rows, fc_person[out_rows], rates, _rng(seed, _S_ACTIVITY, b))
        pending["activity"].append({"pid": h_out[loc], "day": day, "setting": st})
        # truth for referred people (expected counts from the latent rates)
        pos = np.searchsorted(out_rows, ref.rows)
        use_truth.accumulate(F, P, blk, ref, (rates[0][pos], rates[1][pos]))
        wb = _wellbeing(F, P, blk, ref, _rng(seed, _S_WELLBEING, b), wtruth)
        if len(wb[0]):
            pending["wellbeing"].append({"rid": _referral_hash(blk.gi[ref.rows[wb[0]]]), "tp": wb[1], "inst": wb[2],
                                         "item": wb[3], "score": wb[4], "day": wb[5]})
        if chunk_blocks is not None and ((b + 1) % chunk_blocks == 0):
            flush(False)
        del blk, rates
    flush(True)

    wf = _workforce_frame(P)
    wf.to_csv(out / "workforce.csv", index=False, lineterminator="\n")
    counts["workforce"] = len(wf)

    params_sha = sha256(params_path)
    info = {
        "synthetic": True,
        "description": "Synthetic NCL social prescribing extracts made by spstudy.synth; not real patients.",
        "generator": "spstudy.synth",
        "generator_version": P.generator_version,
        "seed": int(seed),
        "scale": float(scale),
        "pool_fraction": float(pool_fraction),
        "parameters_file": params_path.name,
        "parameters_sha256": params_sha,
        "study_period": {"referral_start": str(study.referral_start), "referral_end": str(study.referral_end),
                         "data_start": str(study.data_start), "data_end": str(study.data_end)},
        "population_frame_persons": int(F.n_persons),
        "population_frame_by_borough": {SLUGS[b]: int(F.ward_n[F.ward_borough == b].sum()) for b in range(len(SLUGS))},
        "sample_design": {
            "referred": "every person referred in the referral period is included (weight 1)",
            "non_referred": ("Bernoulli sample of non-referred registered persons: each included independently with "
                             "probability pool_fraction; weight 1 / pool_fraction"),
            "non_referred_weight": (1.0 / pool_fraction) if pool_fraction > 0 else None,
            "non_referred_in_sample": n_pool - n_prior,   # never referred at any time (what the loader checks)
            "referred_before_the_study_period": ("people not referred in the study period who were referred in the "
                                                 f"{pr.months} months before it: sampled like the never-referred (probability "
                                                 "pool_fraction, weight 1 / pool_fraction), with their referral rows (dated before "
                                                 "the study period); not counted in non_referred_in_sample"),
            "referred_before_the_study_period_in_sample": n_prior,
        },
        "activity_settings": ACTIVITY_LABELS,
        "layout": "one Parquet file per table" if chunk_blocks is None else "one folder of Parquet parts per table",
        "row_counts": {k: int(v) for k, v in counts.items()},
        "truth": "the planted effects are recorded in a separate truth file that analyses must not read",
    }
    (out / "extract_info.json").write_text(json.dumps(info, indent=2, sort_keys=False) + "\n")
    _write_sums(out)

    # ---- truth
    seen_total = int(outcome_by_src[:, 0].sum())
    wb_res = {}
    for inst, d in wtruth.items():
        wb_res[inst] = {}
        for key, a in d.items():
            f = lambda num, den: (a[num] / a[den]) if a.get(den) else None  # noqa: E731
            wb_res[inst][key] = {
                "planted_mean_shift": _planted_shift(P, key),
                "att_all_seen_with_baseline": f("sum_effect_baseline_treated", "n_baseline_treated"),
                "att_responders": f("sum_effect_responders_treated", "n_responders_treated"),
                "naive_change_responders": f("sum_naive_change_responders", "n_responders"),
                "change_without_effect_responders": f("sum_change_without_effect_responders", "n_responders"),
                "mean_baseline_all": f("sum_baseline_all", "n_baseline"),
                "mean_baseline_responders": f("sum_baseline_responders", "n_responders"),
                "n_baseline": int(a.get("n_baseline", 0)),
                "n_responders": int(a.get("n_responders", 0)),
            }
    truth = {
        "warning": "TRUTH FILE: for checking analyses. Analyses must never read it.",
        "generator_version": P.generator_version, "seed": int(seed), "scale": float(scale),
        "pool_fraction": float(pool_fraction), "parameters_sha256": params_sha,
        "planted_effect": {
            "gp_rate_ratio": P.effect.gp_rate_ratio, "ae_rate_ratio": P.effect.ae_rate_ratio,
            "acts_from": "first_contact_date, to the end of the data",
            "acts_on": f"referrals with outcome 'seen' at services of type {P.effect.applies_to}; none for 'dna' or 'declined'",
            "wellbeing_mean_shift": P.effect.wellbeing.model_dump(),
            "wellbeing_individual_benefit_sd": P.effect.individual_benefit_sd,
            "wellbeing_follow_up": "returned more often by people who benefit more (informative attrition)",
        },
        "service_use": use_truth.result(P),
        "wellbeing": wb_res,
        "inequity": {"ethnicity_multiplier": P.referrals.inequity_ethnicity,
                     "english_proficiency_multiplier": P.referrals.inequity_english,
                     "meaning": "multiplier on the referral hazard relative to need, by true ethnic code / proficiency"},
        "regression_to_the_mean": {"crisis_referral_multiplier": P.referrals.crisis_multiplier,
                                   "crisis": P.health_use.crisis.model_dump()},
        "referral_volumes": {s.name: {"target": float(F.service_targets[i]), "realised": int(svc_count[i])}
                             for i, s in enumerate(F.services)},
        "outcomes_by_source": {SOURCES[i]: {o: int(outcome_by_src[i, j]) for j, o in enumerate(OUTCOMES)} for i in range(len(SOURCES))},
        "calibration": {"gp_per_person_year_target": H.gp_per_person_year, "ae_per_person_year_target": H.ae_per_person_year,
                        "gp_lambda0": lam0_gp, "ae_lambda0": lam0_ae,
                        "registered_person_years": acc["reg_total"] / 365.25,
                        "proficiency_share_capped": F.diagnostics["proficiency_share_capped"]},
        "n_seen": seen_total,
        "referred_before_the_study_period_in_sample": n_prior,
        "negative_control": {"setting": "elective", "planted_rate_ratio": 1.0,
                             "meaning": "elective admissions follow need and crises but social prescribing has no effect on them",
                             "elective_lambda0": lam0_el, "per_person_year_target": H.elective.per_person_year},
    }
    if truth_dir is not None:
        td = Path(truth_dir)
        td.mkdir(parents=True, exist_ok=True)
        (td / "truth.json").write_text(json.dumps(truth, indent=2, default=_json_default) + "\n")

    t2 = time.perf_counter()
    sizes = {p.relative_to(out).as_posix(): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    return {
        "out_dir": str(out), "truth_dir": str(truth_dir) if truth_dir is not None else None,
        "seed": int(seed), "scale": float(scale), "pool_fraction": float(pool_fraction),
        "population_frame_persons": int(F.n_persons), "row_counts": info["row_counts"],
        "referrals_by_service": {s.name: int(svc_count[i]) for i, s in enumerate(F.services)},
        "bytes_total": int(sum(sizes.values())), "bytes_by_file": sizes,
        "seconds_pass1": round(t1 - t0, 2), "seconds_total": round(t2 - t0, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "truth": truth,
    }


def _planted_shift(P: SynthParams, key: str):
    e = P.effect.wellbeing
    if key == "wemwbs_total":
        return e.wemwbs_total
    if key == "swemwbs_raw":
        return e.wemwbs_total * 7 / 14
    if key == "swemwbs_metric":
        return None  # non-linear conversion: see att_* for the realised value
    return getattr(e, key)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (dt.date,)):
        return o.isoformat()
    raise TypeError(type(o))


# ============================================================================== CLI

def main(argv=None) -> int:
    """CLI: ``spstudy synth --seed 7 --scale 1 --pool-fraction 0.25 --out data/extracts [--truth data/truth]``."""
    ap = argparse.ArgumentParser(prog="spstudy synth", description="Generate synthetic NCL social prescribing extracts (data contract) with a known planted effect.")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the Census 2021 population and the referral volumes")
    ap.add_argument("--pool-fraction", type=float, default=0.25, help="sampling fraction of non-referred persons (comparator pool)")
    ap.add_argument("--out", default="data/extracts", help="output folder for the extract tables")
    ap.add_argument("--truth", default=None, help="folder for truth.json (kept apart from the extracts)")
    ap.add_argument("--params", default=None, help="generator parameters (YAML; default parameters/synth.yaml)")
    ap.add_argument("--chunk-persons", type=int, default=None, help="write folders of Parquet parts, about this many generated persons per part")
    a = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        s = generate(a.out, seed=a.seed, scale=a.scale, pool_fraction=a.pool_fraction, params_path=a.params,
                     chunk_persons=a.chunk_persons, truth_dir=a.truth)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s.pop("truth")
    s.pop("bytes_by_file")
    print(json.dumps(s, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
