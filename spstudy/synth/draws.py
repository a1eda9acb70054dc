"""The draws: the reference frame of wards, practices and people, then persons, referrals, GP and A&E
activity and wellbeing scores, block by block from keyed random streams (see :mod:`spstudy.synth`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from spstudy.inputs import reference
from spstudy.inputs.contract import (
    CENSUS5_GROUPS,
    LANGUAGES,
    ONS4_ITEMS,
    SWEMWBS_ITEMS,
    WEMWBS_ITEMS,
)
from spstudy.synth.config import _ID_MOD, _NO_DATE, _S_PERSON, BOROUGH_CODES, ETH_CODES, PROF_CODES, REASONS, SLUGS, SOURCES, SWEMWBS_FROM_WEMWBS, SynthParams

# ============================================================================== helpers

def _rng(seed: int, stream: int, block: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(block)]))


def _cat(rng: np.random.Generator, cum: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``cum`` (row-wise cumulative probabilities ending at 1)."""
    u = rng.random(cum.shape[0])
    return (u[:, None] >= cum).sum(axis=1).astype(np.int64)


def _cum(p: np.ndarray) -> np.ndarray:
    """Row-normalised cumulative probabilities with the last column exactly 1 (rows of zeros -> first category)."""
    p = np.asarray(p, dtype=np.float64)
    s = p.sum(axis=-1, keepdims=True)
    q = np.where(s > 0, p / np.where(s > 0, s, 1), 0.0)
    c = np.cumsum(q, axis=-1)
    c[..., -1] = 1.0
    return c


def _step(d: dict[int, float], x: np.ndarray) -> np.ndarray:
    """Step function over lower band bounds: value of the band containing x."""
    keys = np.array(sorted(d), dtype=np.float64)
    vals = np.array([d[k] for k in sorted(d)], dtype=np.float64)
    return vals[np.searchsorted(keys, x, side="right") - 1]


def _days(d) -> int:
    return int(np.datetime64(d, "D").astype(np.int64))


def _add_months(days: np.ndarray, k: int) -> np.ndarray:
    """Day numbers plus k calendar months (day of month clipped to the month's length)."""
    d = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    m = d.astype("datetime64[M]")
    dom = (d - m.astype("datetime64[D]")).astype(np.int64)
    m2 = m + k
    dim2 = ((m2 + 1).astype("datetime64[D]") - m2.astype("datetime64[D]")).astype(np.int64)
    return (m2.astype("datetime64[D]").astype(np.int64) + np.minimum(dom, dim2 - 1)).astype(np.int64)


def _person_hash(i: np.ndarray) -> np.ndarray:
    """Bijective pseudonym number for global person index i (affine map modulo 10^10)."""
    return (np.asarray(i, dtype=np.int64) * 6364136223 + 1442695041) % _ID_MOD


def _referral_hash(i: np.ndarray) -> np.ndarray:
    return (np.asarray(i, dtype=np.int64) * 7046029253 + 2718281829) % _ID_MOD


def _ids(prefix: str, h: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(np.asarray(h, dtype=np.int64).astype("U10"), 10))


def _logit(p):
    return math.log(p / (1 - p))


# ============================================================================== frame

@dataclass
class Frame:
    """Static inputs built once from the reference data, the parameters and the scale."""

    scale: float
    ward_codes: np.ndarray
    ward_borough: np.ndarray
    ward_n: np.ndarray
    ward_cum: np.ndarray
    n_persons: int
    band_lo: np.ndarray
    band_width: np.ndarray
    age_cum: np.ndarray
    female_share: np.ndarray
    ward_lsoa_idx: np.ndarray
    ward_lsoa_cum: np.ndarray
    lsoa_codes: np.ndarray
    lsoa_imd: np.ndarray
    lsoa_eth_cum: np.ndarray
    lsoa_pne: np.ndarray
    lsoa_prof_cum: np.ndarray
    lang_cum: np.ndarray
    interp_p: np.ndarray
    practice_codes: np.ndarray
    practice_pcn: np.ndarray
    practice_borough: np.ndarray
    borough_practice_idx: np.ndarray
    borough_practice_cum: np.ndarray
    practice_group: np.ndarray
    services: list
    service_group: np.ndarray
    group_services: list
    group_cum: np.ndarray
    group_targets: np.ndarray
    service_targets: np.ndarray
    # calendar
    data_start: int
    data_end: int
    ref_start: int
    ref_end: int
    month_start: np.ndarray
    month_dim: np.ndarray
    month_of_year: np.ndarray
    ref_months: np.ndarray
    n_days: int
    diagnostics: dict = field(default_factory=dict)


def _build_frame(P: SynthParams, study, scale: float) -> Frame:
    B = {code: i for i, code in enumerate(BOROUGH_CODES)}
    wards = reference.census_population().sort_values("ward22_code").reset_index(drop=True)
    ward_codes = wards["ward22_code"].to_numpy(dtype=object)
    ward_borough = wards["borough_code"].map(B).to_numpy(dtype=np.int64)
    ward_n = np.rint(wards["residents"].to_numpy(dtype=np.float64) * scale).astype(np.int64)
    ward_cum = np.cumsum(ward_n)
    n_persons = int(ward_cum[-1]) if len(ward_cum) else 0
    if n_persons >= 10**9:
        raise ValueError(f"scale: {scale} gives {n_persons:,} persons; the generator supports fewer than 10^9")
    if n_persons == 0:
        raise ValueError(f"scale: {scale} gives no persons; use a larger scale")

    # ---- age (mid-2020 five-year bands by ward, taken as ages at age_reference_date)
    pa_ = reference.population_ward_age()
    labels = sorted(pa_["age_band"].unique(), key=lambda s: int(str(s).rstrip("+").split("-")[0]))
    lo = np.array([int(str(s).rstrip("+").split("-")[0]) for s in labels], dtype=np.float64)
    width = np.array([5.0] * (len(labels) - 1) + [0.0])
    piv = pa_.pivot_table(index="ward22_code", columns="age_band", values="population", aggfunc="sum")
    piv = piv.reindex(index=ward_codes, columns=labels)
    if piv.isna().any().any():
        raise ValueError("population_ward_age: some wards or age bands are missing")
    age_cum = _cum(piv.to_numpy())

    # ---- sex (Census 2021 TS008 ward shares; independent of age within ward: ASSUMPTION)
    cw = reference.census_ward()
    ts8 = cw[cw["table"] == "TS008"].pivot_table(index="ward22_code", columns="category_code", values="estimate", aggfunc="sum")
    ts8 = ts8.reindex(ward_codes)
    female_share = (ts8["sex-female"] / (ts8["sex-female"] + ts8["sex-male"])).to_numpy(dtype=np.float64)

    # ---- LSOAs within ward (TS021 residents of the LSOAs best-fitted to the ward)
    lk = reference.lsoa21_lookup()[["lsoa21_code", "lsoa21_name", "ward22_code"]].sort_values("lsoa21_code").reset_index(drop=True)
    lsoa_codes = lk["lsoa21_code"].to_numpy(dtype=object)
    eth = reference.ethnicity_lsoa21().pivot_table(index="lsoa21_code", columns="group", values="residents", aggfunc="sum")
    eth = eth.reindex(index=lsoa_codes, columns=CENSUS5_GROUPS).fillna(0.0)
    lsoa_res = eth.sum(axis=1).to_numpy(dtype=np.float64)
    ward_pos = {w: i for i, w in enumerate(ward_codes)}
    lsoa_ward = lk["ward22_code"].map(ward_pos).to_numpy()
    members = [np.flatnonzero(lsoa_ward == w) for w in range(len(ward_codes))]
    if any(len(m) == 0 for m in members):
        raise ValueError("lsoa21_lookup: a ward has no best-fit LSOA")
    lmax = max(len(m) for m in members)
    ward_lsoa_idx = np.zeros((len(ward_codes), lmax), dtype=np.int64)
    wts = np.zeros((len(ward_codes), lmax))
    for w, m in enumerate(members):
        ward_lsoa_idx[w, : len(m)] = m
        ward_lsoa_idx[w, len(m):] = m[-1]
        wts[w, : len(m)] = lsoa_res[m]
    ward_lsoa_cum = _cum(wts)

    imd = reference.imd2025().set_index("lsoa21_code").reindex(lsoa_codes)
    if imd["imd2025_imd_score"].isna().any():
        raise ValueError("imd2025: some LSOAs have no IMD 2025 score")
    lsoa_imd = imd["imd2025_imd_score"].to_numpy(dtype=np.float64)

    # ---- detailed ethnic category: LSOA TS021 group share x London within-group share
    within = np.zeros((len(CENSUS5_GROUPS), len(ETH_CODES)))
    for gi, g in enumerate(CENSUS5_GROUPS):
        for c, v in P.population.ethnic_within_group[g].items():
            within[gi, ETH_CODES.index(c)] = v
        within[gi] /= within[gi].sum()
    grp_share = eth.to_numpy(dtype=np.float64) / np.maximum(lsoa_res[:, None], 1)
    det = grp_share @ within
    lsoa_eth_cum = _cum(det)

    # ---- English proficiency tied to ethnicity, MSOA margins held in expectation
    ep = reference.english_proficiency_msoa21()
    epw = ep.pivot_table(index="msoa21_name", columns="category", values="residents", aggfunc="sum")
    msoa = lk["lsoa21_name"].str.slice(0, -1).to_numpy(dtype=object)
    missing = sorted(set(msoa) - set(epw.index))
    if missing:
        raise ValueError(f"english_proficiency_msoa21: no MSOA for LSOA name prefixes {missing[:5]}")
    epw = epw.reindex(msoa)
    base = (epw["main_language_english"] + epw["main_language_not_english"]).to_numpy(dtype=np.float64)
    m_eng = epw["main_language_english"].to_numpy(dtype=np.float64) / base
    split = epw[["not_english_can_speak_english_very_well", "not_english_can_speak_english_well",
                 "not_english_cannot_speak_english_well", "not_english_cannot_speak_english"]].to_numpy(dtype=np.float64)
    lsoa_prof_cum = _cum(split)
    pi = np.array([P.population.not_english_propensity[c] for c in ETH_CODES])
    denom = det @ pi
    c_l = np.where(denom > 0, (1 - m_eng) / np.where(denom > 0, denom, 1), 0.0)
    raw_pne = c_l[:, None] * pi[None, :]
    lsoa_pne = np.minimum(raw_pne, 0.97)
    capped = float(((raw_pne > 0.97) * det).sum() / det.sum())

    lang_p = np.zeros((len(ETH_CODES), len(LANGUAGES)))
    for ci, c in enumerate(ETH_CODES):
        for lang, v in P.population.languages_by_ethnicity.get(c, {"Other": 1.0}).items():
            lang_p[ci, LANGUAGES.index(lang)] = v
    lang_cum = _cum(lang_p)
    interp_p = np.array([P.population.interpreter_needed[c] for c in PROF_CODES])

    # ---- practices within borough weighted by registered patients
    gp = reference.gp_practices().sort_values("practice_code").reset_index(drop=True)
    practice_codes = gp["practice_code"].to_numpy(dtype=object)
    practice_pcn = gp["pcn_code"].to_numpy(dtype=object)
    practice_borough = gp["borough_code"].map(B).to_numpy(dtype=np.int64)
    pmax = max(int((practice_borough == b).sum()) for b in range(len(SLUGS)))
    borough_practice_idx = np.zeros((len(SLUGS), pmax), dtype=np.int64)
    pw = np.zeros((len(SLUGS), pmax))
    for b in range(len(SLUGS)):
        m = np.flatnonzero(practice_borough == b)
        borough_practice_idx[b, : len(m)] = m
        borough_practice_idx[b, len(m):] = m[-1]
        pw[b, : len(m)] = gp["registered_patients"].to_numpy(dtype=np.float64)[m]
    borough_practice_cum = _cum(pw)

    # ---- services and coverage groups
    pcn_borough = dict(zip(gp["pcn_code"], gp["borough_code"].map(B)))
    pcn_services: dict[str, list[int]] = {}
    for si, s in enumerate(P.referrals.services):
        for pc in s.pcns:
            if pc not in pcn_borough:
                raise ValueError(f"referrals.services[{s.name}].pcns: {pc!r} is not a PCN code in reference.gp_practices()")
            if pcn_borough[pc] != SLUGS.index(s.borough):
                raise ValueError(f"referrals.services[{s.name}].pcns: {pc!r} is not in {s.borough}")
            pcn_services.setdefault(pc, []).append(si)
    combos = sorted({tuple(v) for v in pcn_services.values()})
    group_services = [list(c) for c in combos]
    service_group = np.full(len(P.referrals.services), -1, dtype=np.int64)
    for gi, c in enumerate(combos):
        for si in c:
            if service_group[si] not in (-1, gi):
                raise ValueError(f"referrals.services[{P.referrals.services[si].name}]: its PCNs are covered by different "
                                 "sets of services; services sharing a PCN must share all their PCNs")
            service_group[si] = gi
    practice_group = np.array([combos.index(tuple(pcn_services[pc])) if pc in pcn_services else -1 for pc in practice_pcn], dtype=np.int64)
    service_targets = np.array([s.annual_referrals * scale for s in P.referrals.services])
    group_targets = np.array([service_targets[c].sum() for c in group_services])
    gmax = max(len(c) for c in group_services)
    gs = np.zeros((len(group_services), gmax))
    for gi, c in enumerate(group_services):
        gs[gi, : len(c)] = service_targets[c]
    group_cum = _cum(gs)

    # ---- calendar
    ds, de = _days(study.data_start), _days(study.data_end)
    rs, re_ = _days(study.referral_start), _days(study.referral_end)
    months = np.arange(np.datetime64(study.data_start, "M"), np.datetime64(study.data_end, "M") + 1)
    mstart = months.astype("datetime64[D]").astype(np.int64)
    mdim = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.int64)
    if mstart[0] != ds or mstart[-1] + mdim[-1] - 1 != de:
        raise ValueError("parameters/ncl.yaml study: data_start must be the first and data_end the last day of a month")
    rm = np.flatnonzero((mstart >= rs) & (mstart + mdim - 1 <= re_))
    if len(rm) == 0 or mstart[rm[0]] != rs or mstart[rm[-1]] + mdim[rm[-1]] - 1 != re_:
        raise ValueError("parameters/ncl.yaml study: referral_start/referral_end must be whole months")
    moy = (months.astype(np.int64) % 12) + 1

    return Frame(
        scale=scale, ward_codes=ward_codes, ward_borough=ward_borough, ward_n=ward_n, ward_cum=ward_cum,
        n_persons=n_persons, band_lo=lo, band_width=width, age_cum=age_cum, female_share=female_share,
        ward_lsoa_idx=ward_lsoa_idx, ward_lsoa_cum=ward_lsoa_cum, lsoa_codes=lsoa_codes, lsoa_imd=lsoa_imd,
        lsoa_eth_cum=lsoa_eth_cum, lsoa_pne=lsoa_pne, lsoa_prof_cum=lsoa_prof_cum, lang_cum=lang_cum,
        interp_p=interp_p, practice_codes=practice_codes, practice_pcn=practice_pcn,
        practice_borough=practice_borough, borough_practice_idx=borough_practice_idx,
        borough_practice_cum=borough_practice_cum, practice_group=practice_group,
        services=list(P.referrals.services), service_group=service_group, group_services=group_services,
        group_cum=group_cum, group_targets=group_targets, service_targets=service_targets,
        data_start=ds, data_end=de, ref_start=rs, ref_end=re_, month_start=mstart, month_dim=mdim,
        month_of_year=moy, ref_months=rm, n_days=de - ds + 1,
        diagnostics={"proficiency_share_capped": capped},
    )


# ============================================================================== persons

def _persons_block(F: Frame, P: SynthParams, seed: int, block: int, start: int, stop: int, practice_eff: np.ndarray):
    """Attributes, registration, latent need and crises for persons [start, stop). Deterministic per block."""
    rng = _rng(seed, _S_PERSON, block)
    n = stop - start
    gi = np.arange(start, stop, dtype=np.int64)
    ward = np.searchsorted(F.ward_cum, gi, side="right")
    borough = F.ward_borough[ward]

    # age at the reference date
    band = _cat(rng, F.age_cum[ward])
    u_age = rng.random(n)
    e90 = rng.exponential(P.population.age_90plus_mean_excess, n)
    age = F.band_lo[band] + u_age * F.band_width[band]
    top = F.band_width[band] == 0
    age = np.where(top, np.minimum(F.band_lo[band] + e90, P.population.oldest_age + 0.999), age)
    ref_day = _days(P.population.age_reference_date)
    birth = ref_day - np.floor(age * 365.25).astype(np.int64)
    birth_year = birth.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    age_i = np.floor(age)

    female = rng.random(n) < F.female_share[ward]
    lsoa = F.ward_lsoa_idx[ward, _cat(rng, F.ward_lsoa_cum[ward])]
    imd = F.lsoa_imd[lsoa]
    eth = _cat(rng, F.lsoa_eth_cum[lsoa])
    not_eng = rng.random(n) < F.lsoa_pne[lsoa, eth]
    prof_sub = _cat(rng, F.lsoa_prof_cum[lsoa])
    prof = np.where(not_eng, 1 + prof_sub, 0)
    lang_draw = _cat(rng, F.lang_cum[eth])
    lang = np.where(not_eng, lang_draw, 0)            # LANGUAGES[0] == "English"
    interp = rng.random(n) < F.interp_p[prof]
    practice = F.borough_practice_idx[borough, _cat(rng, F.borough_practice_cum[borough])]

    # registration: joined during the period (at the moving rate) or registered before it; ends by moving or death
    R = P.registration
    move = _step(R.move_away_per_year, age_i)
    q = np.minimum(0.5, np.exp(R.mortality_gompertz["intercept"] + R.mortality_gompertz["slope"] * age))
    mu = -np.log1p(-q)
    T_years = F.n_days / 365.25
    u_join, u_when, e_before, k_birth, e_end, u_reason = (rng.random(n), rng.random(n), rng.exponential(1.0, n),
                                                         rng.integers(0, 43, n), rng.exponential(1.0, n), rng.random(n))
    joined = u_join < (1 - np.exp(-move * T_years))
    born_in = birth >= F.data_start
    start_before = F.data_start - 1 - np.floor(e_before * R.years_registered_mean * 365.25).astype(np.int64)
    start_before = np.minimum(np.maximum(start_before, birth + k_birth), F.data_start - 1)
    start_joined = F.data_start + np.floor(u_when * F.n_days).astype(np.int64)
    reg_start = np.where(joined, start_joined, start_before)
    reg_start = np.where(born_in, np.minimum(birth + k_birth, F.data_end), reg_start)
    reg_start = np.maximum(reg_start, birth)
    h = move + mu
    from_day = np.maximum(reg_start, F.data_start)
    end = from_day + np.floor(e_end / h * 365.25).astype(np.int64)
    has_end = end <= F.data_end
    reg_end = np.where(has_end, end, _NO_DATE).astype(np.int64)
    died = has_end & (u_reason < mu / h)

    # what the GP record holds (missing at random within borough)
    gpr = P.recording.gp_record
    e_rec = np.array([gpr[s].ethnicity_recorded for s in SLUGS])[borough]
    e_ns = np.array([gpr[s].ethnicity_not_stated for s in SLUGS])[borough]
    l_rec = np.array([gpr[s].language_recorded for s in SLUGS])[borough]
    u_e = rng.random(n)
    eth_state = np.where(u_e < e_rec, 0, np.where(u_e < e_rec + e_ns, 1, 2))   # 0 code, 1 Z, 2 empty
    lang_recorded = rng.random(n) < l_rec

    # latent need
    H = P.health_use
    u = rng.gamma(H.frailty_shape, 1 / H.frailty_shape, n)
    v = rng.gamma(H.ae_shape, 1 / H.ae_shape, n)
    fa = rng.random(n) < H.frequent_attenders.share
    ltc_mean = H.ltc.base * np.exp(H.ltc.age_slope * (age - 30) + H.ltc.imd_slope * (imd - 25))
    ltc = np.minimum(rng.poisson(ltc_mean), H.ltc.max)
    sexm = np.where(female, _step(H.gp_female, age_i), 1.0)
    gpm = (_step(H.gp_age, age_i) * sexm * np.exp(H.gp_imd_log_slope * (imd - 25)) * (1 + H.ltc.gp_per_condition * ltc)
           * u * np.where(fa, H.frequent_attenders.gp_multiplier, 1.0))
    aem = (_step(H.ae_age, age_i) * np.exp(H.ae_imd_log_slope * (imd - 25)) * (1 + H.ltc.ae_per_condition * ltc)
           * u ** H.ae_frailty_power * v * np.where(fa, H.frequent_attenders.ae_multiplier, 1.0))

    # transient crises (monthly), with burn-in before the data period
    C = H.crisis
    pc = np.minimum(0.3, C.onset_per_month * gpm ** C.need_power * np.exp(C.imd_log_slope * (imd - 25)))
    M = len(F.month_start)
    excess = np.zeros((n, M), dtype=np.float32)
    cur = np.zeros(n)
    for t in range(-C.burn_in_months, M):
        onset = rng.random(n) < pc
        amp = np.zeros(n)
        k = int(onset.sum())
        if k:
            amp[onset] = rng.gamma(C.peak_shape, C.peak_mean / C.peak_shape, k)
        cur = cur * C.decay_per_month + amp
        if t >= 0:
            excess[:, t] = cur

    # registered days in each month
    mend = F.month_start + F.month_dim
    reg_days = np.clip(np.minimum(reg_end[:, None] + 1, mend[None, :]) - np.maximum(reg_start[:, None], F.month_start[None, :]),
                       0, None).astype(np.float32)

    # referral weight (need x inequity x practice), before crises and registration
    Rf = P.referrals
    refw = (_step(Rf.age_weight, age_i) * gpm ** Rf.need_power * np.exp(Rf.imd_log_slope * (imd - 25))
            * practice_eff[practice]
            * np.array([Rf.inequity_ethnicity[c] for c in ETH_CODES])[eth]
            * np.array([Rf.inequity_english[c] for c in PROF_CODES])[prof])

    return SimpleNamespace(
        n=n, gi=gi, ward=ward, borough=borough, age=age, age_i=age_i, birth_year=birth_year, female=female,
        lsoa=lsoa, imd=imd, eth=eth, prof=prof, lang=lang, interp=interp, practice=practice,
        reg_start=reg_start, reg_end=reg_end, has_end=has_end, died=died, eth_state=eth_state,
        lang_recorded=lang_recorded, gpm=gpm, aem=aem, excess=excess, reg_days=reg_days, refw=refw,
        group=F.practice_group[practice],
    )


def _season(F: Frame, amplitude: float, peak: int) -> np.ndarray:
    return 1 + amplitude * np.cos(2 * np.pi * (F.month_of_year - peak) / 12)


# ============================================================================== pass 1

_LOGW_LO, _LOGW_HI, _LOGW_BIN = -30.0, 15.0, 0.002


def _referral_exposure(F: Frame, P: SynthParams, blk) -> np.ndarray:
    """Per person, per referral month: relative referral hazard (before the service constant)."""
    rm = F.ref_months
    lag = P.referrals.crisis_lag_months
    return (blk.refw[:, None] * (1 + P.referrals.crisis_multiplier * blk.excess[:, rm - lag])
            * (blk.reg_days[:, rm] / F.month_dim[rm][None, :]))


def _pass1(F: Frame, P: SynthParams, seed: int, practice_eff: np.ndarray) -> dict:
    """Calibration sums and referral-weight histograms over the whole population, block by block."""
    nb = int(np.ceil((_LOGW_HI - _LOGW_LO) / _LOGW_BIN))
    G = len(F.group_services)
    cnt = np.zeros((G, nb), dtype=np.int64)
    wsum = np.zeros((G, nb))
    s_gp = _season(F, P.health_use.seasonality.gp_amplitude, P.health_use.seasonality.peak_month)
    s_ae = _season(F, P.health_use.seasonality.ae_amplitude, P.health_use.seasonality.peak_month)
    gp_num = ae_num = el_num = reg_total = 0.0
    el = P.health_use.elective
    bs = P.output.block_persons
    ae_ratio = P.health_use.crisis.ae_ratio
    for b, start in enumerate(range(0, F.n_persons, bs)):
        blk = _persons_block(F, P, seed, b, start, min(start + bs, F.n_persons), practice_eff)
        rd = blk.reg_days.astype(np.float64)
        gp_num += float(((rd * (1 + blk.excess)) @ s_gp * blk.gpm).sum())
        ae_num += float(((rd * (1 + ae_ratio * blk.excess)) @ s_ae * blk.aem).sum())
        el_num += float((rd * (1 + el.crisis_ratio * blk.excess)).sum(axis=1) @ blk.gpm ** el.need_power)
        reg_total += float(rd.sum())
        W = _referral_exposure(F, P, blk).sum(axis=1)
        ok = (blk.group >= 0) & (W > 0)
        lw = np.clip(np.log(W[ok]), _LOGW_LO, _LOGW_HI - 1e-9)
        bins = ((lw - _LOGW_LO) / _LOGW_BIN).astype(np.int64)
        idx = blk.group[ok] * nb + bins
        cnt += np.bincount(idx, minlength=G * nb).reshape(G, nb)
        wsum += np.bincount(idx, weights=W[ok], minlength=G * nb).reshape(G, nb)
    return dict(cnt=cnt, wsum=wsum, gp_num=gp_num, ae_num=ae_num, el_num=el_num, reg_total=reg_total)


def _solve_group_constants(F: Frame, acc: dict) -> np.ndarray:
    """K_g such that the expected number of persons referred in group g equals its target."""
    K = np.zeros(len(F.group_services))
    for g in range(len(F.group_services)):
        n_b = acc["cnt"][g]
        keep = n_b > 0
        n_b, w_b = n_b[keep].astype(np.float64), acc["wsum"][g][keep] / n_b[keep]
        target = F.group_targets[g]
        if target <= 0:
            continue
        if target >= 0.5 * n_b.sum():
            names = [F.services[s].name for s in F.group_services[g]]
            raise ValueError(f"referrals.services {names}: annual_referrals x scale ({target:.0f}) is too large for "
                             f"the {int(n_b.sum())} eligible persons at this scale")
        lo, hi = -60.0, 60.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            val = float((n_b * -np.expm1(-math.exp(mid) * w_b)).sum())
            lo, hi = (mid, hi) if val < target else (lo, mid)
        K[g] = math.exp(0.5 * (lo + hi))
    return K


# ============================================================================== pass 2 pieces

def _draw_referrals(F: Frame, P: SynthParams, blk, K: np.ndarray, rng: np.random.Generator):
    """Who is referred, when, to which service, and what happened. Returns a namespace over referred rows."""
    Rf = P.referrals
    rm = F.ref_months
    Kp = np.where(blk.group >= 0, K[np.maximum(blk.group, 0)], 0.0)
    hz = Kp[:, None] * _referral_exposure(F, P, blk)
    u = rng.random(hz.shape)
    hit = u < -np.expm1(-hz)
    referred = hit.any(axis=1)
    r = np.flatnonzero(referred)
    nr = len(r)
    mi = rm[np.argmax(hit[r], axis=1)]
    # referral day within the registered part of the month
    lo = np.maximum(F.month_start[mi], blk.reg_start[r])
    hi = np.minimum(F.month_start[mi] + F.month_dim[mi] - 1, blk.reg_end[r])
    ref_day = lo + np.floor(rng.random(nr) * (hi - lo + 1)).astype(np.int64)
    grp = blk.group[r]
    svc_pos = _cat(rng, F.group_cum[grp])
    gs = np.array([c + [c[-1]] * (F.group_cum.shape[1] - len(c)) for c in F.group_services])
    svc = gs[grp, svc_pos]
    src_cum = _cum(np.array([[s.sources[k] for k in SOURCES] for s in F.services]))
    src = _cat(rng, src_cum[svc])
    poor = blk.prof[r] >= 3
    p_dna = np.minimum(0.95, np.array([Rf.dna_by_source[s] for s in SOURCES])[src]
                       * np.where(poor, Rf.dna_poor_english_multiplier, 1.0))
    p_dec = np.array([Rf.declined_by_source[s] for s in SOURCES])[src]
    uo = rng.random(nr)
    outcome = np.where(uo < p_dna, 1, np.where(uo < p_dna + p_dec, 2, 0))
    wait = np.array([F.services[s].wait_days_mean for s in svc])
    fc = ref_day + np.maximum(1, np.rint(rng.gamma(2.0, wait / 2.0))).astype(np.int64)
    gone = fc > blk.reg_end[r]
    outcome = np.where((outcome == 0) & gone, 1, outcome)          # left the practice before first contact: DNA
    seen = outcome == 0
    dur = np.exp(math.log(Rf.support_days_median) + Rf.support_days_sigma * rng.standard_normal(nr))
    maxw = np.array([F.services[s].max_support_weeks or np.inf for s in svc]) * 7
    dur = np.maximum(1, np.rint(np.minimum(dur, maxw))).astype(np.int64)
    close_seen = np.minimum(fc + dur, np.where(blk.reg_end[r] >= fc, blk.reg_end[r], fc + dur))
    dlo, dhi = Rf.dna_closure_days
    clo, chi = Rf.declined_closure_days
    close_dna = ref_day + rng.integers(dlo, dhi + 1, nr)
    close_dec = ref_day + rng.integers(clo, chi + 1, nr)
    closure = np.where(outcome == 0, close_seen, np.where(outcome == 1, close_dna, close_dec))
    closure = np.where(closure > F.data_end, _NO_DATE, closure)
    contacts = np.where(seen, 1 + rng.poisson(Rf.contacts_per_fortnight * np.minimum(dur, 365) / 14.0), 0)
    contacts = np.minimum(contacts, 500)
    stype = np.array([F.services[s].type for s in svc])
    onward = np.where(seen, rng.poisson(np.array([Rf.onward_per_seen[t] for t in stype])), 0)
    onward = np.minimum(onward, 100)

    # reasons: 1-3 without replacement, borough weights x person modifiers (Gumbel top-k)
    bw = np.array([[Rf.reason_weights[b].get(k, 0.0) for k in REASONS] for b in SLUGS])
    w = bw[blk.borough[r]].copy()
    mods = Rf.reason_modifiers
    crisis_now = blk.excess[r, mi - Rf.crisis_lag_months] > 0.5
    for cond, d in ((blk.age[r] >= 65, mods.age_65_plus), (blk.imd[r] > 35, mods.imd_over_35), (crisis_now, mods.crisis)):
        for k, f in d.items():
            w[:, REASONS.index(k)] *= np.where(cond, f, 1.0)
    nreason = 1 + _cat(rng, np.tile(_cum(np.array(Rf.n_reasons_probs))[None, :], (nr, 1)))
    nreason = np.minimum(nreason, (w > 0).sum(axis=1))
    keys = np.where(w > 0, np.log(np.where(w > 0, w, 1)), -np.inf) + rng.gumbel(size=w.shape)
    order = np.argsort(-keys, axis=1, kind="stable")
    codes = np.full((nr, 3), 6, dtype=np.int64)
    for j in range(3):
        codes[:, j] = np.where(nreason > j, order[:, j], 6)
    reason_code = codes[:, 0] * 49 + codes[:, 1] * 7 + codes[:, 2]

    # the linked SP record overrides the GP record for some boroughs
    spr = P.recording.sp_record_referred
    u_e, u_l = rng.random(nr), rng.random(nr)
    eth_state = blk.eth_state[r].copy()
    lang_rec = blk.lang_recorded[r].copy()
    for bi, s in enumerate(SLUGS):
        o = spr.get(s)
        if o is None:
            continue
        here = blk.borough[r] == bi
        if o.ethnicity_recorded is not None:
            st = np.where(u_e < o.ethnicity_recorded, 0, np.where(u_e < o.ethnicity_recorded + o.ethnicity_not_stated, 1, 2))
            eth_state = np.where(here, st, eth_state)
        if o.language_recorded is not None:
            lang_rec = np.where(here, u_l < o.language_recorded, lang_rec)

    treated = seen & np.isin(stype, P.effect.applies_to)
    return SimpleNamespace(
        rows=r, n=nr, ref_day=ref_day, month=mi, svc=svc, src=src, outcome=outcome, seen=seen, treated=treated,
        fc=np.where(seen, fc, _NO_DATE), closure=closure, contacts=contacts, onward=onward, reason_code=reason_code,
        eth_state=eth_state, lang_rec=lang_rec, dur=dur,
    ), referred


def _subset_referrals(ref, keep: np.ndarray):
    """The referrals of :func:`_draw_referrals` restricted to the rows where ``keep`` is true."""
    keep = np.asarray(keep, dtype=bool)
    out = {k: (v[keep] if isinstance(v, np.ndarray) and v.shape[:1] == (ref.n,) else v) for k, v in vars(ref).items()}
    out["n"] = int(keep.sum())
    return SimpleNamespace(**out)


def _rates(F: Frame, P: SynthParams, blk, rows: np.ndarray, lam0_gp: float, lam0_ae: float, lam0_el: float = 0.0):
    """Expected events per full calendar month (rows x months) for GP, A&E and elective admissions,
    before the planted effect (elective: no seasonality, no effect)."""
    H = P.health_use
    s_gp = _season(F, H.seasonality.gp_amplitude, H.seasonality.peak_month)
    s_ae = _season(F, H.seasonality.ae_amplitude, H.seasonality.peak_month)
    ex = blk.excess[rows].astype(np.float64)
    gp = lam0_gp / 365.25 * blk.gpm[rows, None] * (1 + ex) * (s_gp * F.month_dim)[None, :]
    ae = lam0_ae / 365.25 * blk.aem[rows, None] * (1 + H.crisis.ae_ratio * ex) * (s_ae * F.month_dim)[None, :]
    el = lam0_el / 365.25 * (blk.gpm[rows, None] ** H.elective.need_power) * (1 + H.elective.crisis_ratio * ex) * F.month_dim[None, :]
    return gp, ae, el


def _activity(F: Frame, P: SynthParams, blk, out_rows: np.ndarray, fc_out: np.ndarray, rates, rng):
    """Events for output persons: (local row, day, setting) after registration filter and planted thinning."""
    res = []
    # GP and A&E first, then elective (no effect): adding elective did not change the GP and A&E draws
    for setting, (lam, rr) in enumerate(((rates[0], P.effect.gp_rate_ratio), (rates[1], P.effect.ae_rate_ratio), (rates[2], 1.0))):
        cnt = rng.poisson(lam)
        M = lam.shape[1]
        cell = np.repeat(np.arange(cnt.size, dtype=np.int64), cnt.ravel())
        loc, mo = cell // M, cell % M
        day = F.month_start[mo] + np.floor(rng.random(len(cell)) * F.month_dim[mo]).astype(np.int64)
        u = rng.random(len(cell))
        p = out_rows[loc]
        keep = (day >= blk.reg_start[p]) & (day <= blk.reg_end[p])
        keep &= (day < fc_out[loc]) | (u < rr)
        res.append((loc[keep], day[keep], np.full(int(keep.sum()), setting, dtype=np.int8)))
    loc = np.concatenate([x[0] for x in res])
    day = np.concatenate([x[1] for x in res])
    st = np.concatenate([x[2] for x in res])
    return loc, day, st


# ---------------------------------------------------------------------------- truth (service use)

class _UseTruth:
    """Accumulates expected counts (from the latent rates) in windows around referral and first contact."""

    def __init__(self, windows):
        self.windows = windows
        self.s = {}

    def add(self, key, value):
        self.s[key] = self.s.get(key, 0.0) + float(value)

    def accumulate(self, F: Frame, P: SynthParams, blk, ref, rates):
        if ref.n == 0:
            return
        r = ref.rows
        days = np.arange(F.n_days, dtype=np.int64) + F.data_start
        midx = np.repeat(np.arange(len(F.month_dim)), F.month_dim)
        reg = (days[None, :] >= blk.reg_start[r][:, None]) & (days[None, :] <= blk.reg_end[r][:, None])
        ridx = ref.ref_day - F.data_start
        fidx = np.where(ref.treated, ref.fc - F.data_start, F.n_days)
        fidx = np.minimum(fidx, F.n_days)
        self.add("n_referred", ref.n)
        self.add("n_seen", ref.treated.sum())
        for setting, lam, rr in (("gp", rates[0], P.effect.gp_rate_ratio), ("ae", rates[1], P.effect.ae_rate_ratio)):
            daily = (lam / F.month_dim[None, :])[:, midx] * reg
            C = np.concatenate([np.zeros((ref.n, 1)), np.cumsum(daily, axis=1)], axis=1)
            rows = np.arange(ref.n)

            def S(a, b):
                a = np.clip(a, 0, F.n_days)
                b = np.clip(b, 0, F.n_days)
                return np.where(b > a, C[rows, b] - C[rows, a], 0.0)

            for W in self.windows:
                b = _add_months(ref.ref_day, W) - F.data_start
                a_pre = _add_months(ref.ref_day, -W) - F.data_start
                y0 = S(ridx, b)
                y1 = y0 - (1 - rr) * S(np.maximum(ridx, fidx), b)
                pre = S(a_pre, ridx)
                t = ref.treated
                self.add(f"{setting}.{W}.seen.y0", y0[t].sum())
                self.add(f"{setting}.{W}.seen.y1", y1[t].sum())
                self.add(f"{setting}.{W}.seen.pre", pre[t].sum())
                self.add(f"{setting}.{W}.referred.y0", y0.sum())
                self.add(f"{setting}.{W}.referred.y", y1.sum())
                self.add(f"{setting}.{W}.referred.pre", pre.sum())
                bf = _add_months(np.where(t, ref.fc, ref.ref_day), W) - F.data_start
                f0 = S(fidx, bf)
                self.add(f"{setting}.{W}.seen_fc.y0", f0[t].sum())
                self.add(f"{setting}.{W}.seen_fc.y1", (rr * f0)[t].sum())

    def result(self, P: SynthParams) -> dict:
        s = self.s
        out = {"n_referred": int(s.get("n_referred", 0)), "n_seen": int(s.get("n_seen", 0))}
        share = out["n_seen"] / max(out["n_referred"], 1)
        out["share_seen"] = share
        for setting, rr in (("gp", P.effect.gp_rate_ratio), ("ae", P.effect.ae_rate_ratio)):
            d = {}
            for W in self.windows:
                g = lambda k: s.get(f"{setting}.{W}.{k}", 0.0)  # noqa: E731
                ns, nr = max(out["n_seen"], 1), max(out["n_referred"], 1)
                d[f"{W}m"] = {
                    "window": f"[referral_date, referral_date + {W} months); pre = [referral_date - {W} months, referral_date)",
                    "att_rate_ratio_seen": g("seen.y1") / g("seen.y0") if g("seen.y0") else None,
                    "att_difference_per_person_seen": (g("seen.y1") - g("seen.y0")) / ns,
                    "expected_per_person_seen_treated": g("seen.y1") / ns,
                    "expected_per_person_seen_untreated": g("seen.y0") / ns,
                    "itt_rate_ratio_referred": g("referred.y") / g("referred.y0") if g("referred.y0") else None,
                    "itt_difference_per_person_referred": (g("referred.y") - g("referred.y0")) / nr,
                    "itt_rate_ratio_from_share_seen": 1 - share * (1 - rr),
                    "naive_before_after_ratio_seen": g("seen.y1") / g("seen.pre") if g("seen.pre") else None,
                    "naive_before_after_ratio_seen_without_effect": g("seen.y0") / g("seen.pre") if g("seen.pre") else None,
                    "att_rate_ratio_seen_from_first_contact": g("seen_fc.y1") / g("seen_fc.y0") if g("seen_fc.y0") else None,
                    "expected_pre_per_person_seen": g("seen.pre") / ns,
                }
            out[setting] = d
        return out


# ---------------------------------------------------------------------------- wellbeing

_ONS_ORDER = list(ONS4_ITEMS)


def _wellbeing(F: Frame, P: SynthParams, blk, ref, rng, wtruth: dict):
    """Item scores at baseline (first contact) and follow-up (closure) for people seen. Long-form arrays."""
    Wb = P.wellbeing
    E = P.effect
    s = np.flatnonzero(ref.seen)
    ns = len(s)
    empty = (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.int8),) * 2 + (np.zeros(0, np.int8), np.zeros(0, np.int64))
    if ns == 0:
        return empty
    p = ref.rows[s]
    borough = blk.borough[p]
    has_base = rng.random(ns) < np.array([Wb.baseline_share[b] for b in SLUGS])[borough]
    benefit = 1 + E.individual_benefit_sd * rng.standard_normal(ns)
    eff_on = ref.treated[s].astype(np.float64)
    L = Wb.latent
    trait = L.referred_mean + L.imd_slope * (blk.imd[p] - 25) / 13 + L.trait_sd * rng.standard_normal(ns)
    fc = ref.fc[s]
    closed = ref.closure[s] < _NO_DATE
    t_fu = np.where(closed, ref.closure[s], np.minimum(fc + 84, F.data_end))
    m_fc = np.searchsorted(F.month_start, fc, side="right") - 1
    m_fu = np.searchsorted(F.month_start, t_fu, side="right") - 1
    z_b = trait - L.crisis_effect * blk.excess[p, m_fc] + L.occasion_sd * rng.standard_normal(ns)
    z_f = trait - L.crisis_effect * blk.excess[p, m_fu] + L.occasion_sd * rng.standard_normal(ns)
    bstd = (benefit - 1) / E.individual_benefit_sd if E.individual_benefit_sd > 0 else np.zeros(ns)
    p_ret = 1 / (1 + np.exp(-(_logit(Wb.follow_up_rate) + Wb.benefit_slope * bstd)))
    returned = has_base & closed & (rng.random(ns) < p_ret)
    inst = np.array([{"ons4": 0, "wemwbs": 1, "swemwbs": 2}[Wb.instrument[b]] for b in SLUGS])[borough]

    # item scores: baseline, follow-up with effect (observed), follow-up without effect (counterfactual)
    wm = Wb.wemwbs
    off = np.array(wm.item_offsets)
    nb_w, nf_w = rng.normal(0, wm.item_noise_sd, (ns, 14)), rng.normal(0, wm.item_noise_sd, (ns, 14))
    shift_w = (E.wellbeing.wemwbs_total * benefit * eff_on)[:, None]

    def wem(z, noise, shift):
        T = wm.population_mean + wm.population_sd * z
        return np.clip(np.rint(T[:, None] / 14 + off[None, :] + noise + shift / 14), 1, 5).astype(np.int8)

    w_b, w_f1, w_f0 = wem(z_b, nb_w, 0.0), wem(z_f, nf_w, shift_w), wem(z_f, nf_w, 0.0)
    o_mean = np.array([Wb.ons4[i].mean for i in _ONS_ORDER])
    o_slope = np.array([Wb.ons4[i].slope for i in _ONS_ORDER])
    o_sd = np.array([Wb.ons4[i].noise_sd for i in _ONS_ORDER])
    o_eff = np.array([getattr(E.wellbeing, i) for i in _ONS_ORDER])
    nb_o, nf_o = rng.standard_normal((ns, 4)) * o_sd, rng.standard_normal((ns, 4)) * o_sd

    def ons(z, noise, on):
        return np.clip(np.rint(o_mean + o_slope * z[:, None] + noise + (o_eff[None, :] * (benefit * on)[:, None])), 0, 10).astype(np.int8)

    o_b, o_f1, o_f0 = ons(z_b, nb_o, 0.0), ons(z_f, nf_o, eff_on), ons(z_f, nf_o, 0.0)

    # truth sums by instrument (on each instrument's summary scores)
    from spstudy.methods.wellbeing import swemwbs_metric

    def summaries(kind, w, o):
        if kind == 0:
            return {i: o[:, k].astype(np.float64) for k, i in enumerate(_ONS_ORDER)}
        if kind == 1:
            return {"wemwbs_total": w.sum(axis=1).astype(np.float64)}
        raw = w[:, SWEMWBS_FROM_WEMWBS].sum(axis=1)
        return {"swemwbs_raw": raw.astype(np.float64), "swemwbs_metric": swemwbs_metric(raw)}

    for kind, name in ((0, "ons4"), (1, "wemwbs"), (2, "swemwbs")):
        m = inst == kind
        if not m.any():
            continue
        sb, s1, s0 = summaries(kind, w_b[m], o_b[m]), summaries(kind, w_f1[m], o_f1[m]), summaries(kind, w_f0[m], o_f0[m])
        hb, rt, tr = has_base[m], returned[m], ref.treated[s][m]
        for key in sb:
            acc = wtruth.setdefault(name, {}).setdefault(key, {})
            for k, v in (("n_baseline_treated", (hb & tr).sum()), ("sum_effect_baseline_treated", (s1[key] - s0[key])[hb & tr].sum()),
                         ("n_responders_treated", (rt & tr).sum()), ("sum_effect_responders_treated", (s1[key] - s0[key])[rt & tr].sum()),
                         ("n_responders", rt.sum()), ("sum_naive_change_responders", (s1[key] - sb[key])[rt].sum()),
                         ("sum_change_without_effect_responders", (s0[key] - sb[key])[rt].sum()),
                         ("sum_baseline_responders", sb[key][rt].sum()), ("n_baseline", hb.sum()),
                         ("sum_baseline_all", sb[key][hb].sum())):
                acc[k] = acc.get(k, 0.0) + float(v)

    # long form: (referral row, timepoint, instrument, item index, score, date)
    recs = []
    for tp, mask, w, o, day in ((0, has_base, w_b, o_b, fc), (1, returned, w_f1, o_f1, ref.closure[s])):
        for kind in (0, 1, 2):
            m = mask & (inst == kind)
            k = int(m.sum())
            if not k:
                continue
            if kind == 0:
                sc, items = o[m], np.arange(4)
            elif kind == 1:
                sc, items = w[m], 4 + np.arange(14)
            else:
                sc, items = w[m][:, SWEMWBS_FROM_WEMWBS], 18 + np.arange(7)
            ni = len(items)
            recs.append((np.repeat(s[m], ni), np.full(k * ni, tp, np.int8), np.full(k * ni, kind, np.int8),
                         np.tile(items, k).astype(np.int8), sc.ravel().astype(np.int8), np.repeat(day[m], ni)))
    if not recs:
        return empty
    return tuple(np.concatenate([x[i] for x in recs]) for i in range(6))


_ITEM_CODES = list(ONS4_ITEMS) + list(WEMWBS_ITEMS) + list(SWEMWBS_ITEMS)
_INSTRUMENTS = ["ons4", "wemwbs", "swemwbs"]
