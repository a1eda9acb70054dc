"""Simulated worlds for testing the evaluation where its assumptions hold and where they fail.

A small data-generating process of its own, independent of :mod:`spstudy.synth` (no shared code,
parameters or random streams): a population with a stable person-level level of need (gamma
frailty, a U-shaped age gradient, deprivation), referral that selects on that need and age, and a
monthly Poisson count of GP appointments, A&E attendances and elective admissions (the negative
control, which social prescribing does not change) from 24 months before to 12 months after each
person's index date. It produces the evaluation's inputs directly: cohort rows in the shape of
:func:`spstudy.analyses.evaluation.cohort`, window counts in the shape of
:func:`spstudy.analyses.evaluation.count_windows` and monthly counts (long: index_id, month, setting,
events, days), so :func:`spstudy.analyses.evaluation.evaluate` runs on it unchanged.

Worlds (``WORLDS``), each a story about why people are referred:

* ``null``: selection on stable high use; no effect at all.
* ``transient_crisis``: a crisis raises use in the three months before referral and is over by the
  referral date (the washout holds all of it); effect from referral.
* ``trend_selection``: people are referred because their use has been rising for years (a steady
  rise of 2% a month on the log scale that goes on after referral; no peak).
* ``long_crisis``: a crisis that starts 8 months before referral, peaks at referral and fades slowly
  (15% a month) through the whole follow-up: longer than the washout on both sides.
* ``late_shock``: a shock in the last weeks before referral that spills over into the first two
  months after it.
* ``heterogeneous``: selection on stable use; the effect differs by age (rate ratio 0.70 under 50,
  0.95 from 50).

The truth (:attr:`World.truth`) is the ratio of expected counts with and without the effect over
each window, for the referred (ITT) and the seen (per protocol): exact, from the latent rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

WORLDS = ("null", "transient_crisis", "trend_selection", "long_crisis", "late_shock", "heterogeneous")
SETTINGS = ("gp", "ae", "elective")
FIRST_MONTH, LAST_MONTH = -24, 11
_DPM = 30.4375


@dataclass(frozen=True)
class World:
    """One simulated world: ``index`` (cohort rows), ``monthly`` (long monthly counts),
    ``truth`` ({(setting, window_months, cohort): true rate ratio}), its ``name`` and ``seed``."""

    name: str
    seed: int
    index: pd.DataFrame
    events: dict          # setting -> array (persons x months) of counts
    days: np.ndarray      # days in each month
    truth: dict

    @property
    def months(self) -> np.ndarray:
        return np.arange(FIRST_MONTH, LAST_MONTH + 1)

    @property
    def monthly(self) -> pd.DataFrame:
        """Monthly counts, long: index_id, month, setting, events, days."""
        return self.monthly_for(self.index["index_id"].to_numpy())

    def monthly_for(self, ids, settings=SETTINGS) -> pd.DataFrame:
        ids = np.asarray(ids)
        n, m = len(ids), len(self.months)
        parts = [pd.DataFrame({"index_id": np.repeat(ids, m), "month": np.tile(self.months, n), "setting": s,
                               "events": self.events[s][ids].ravel(), "days": np.tile(self.days, n)}) for s in settings]
        return pd.concat(parts, ignore_index=True)

    def window_counts(self, windows_months, settings=SETTINGS) -> pd.DataFrame:
        """Wide window counts (as :func:`spstudy.analyses.evaluation.count_windows` gives them)."""
        out = {"index_id": self.index["index_id"].to_numpy()}
        mo = self.months
        for name, a, b in windows_months:
            cols = (mo >= a) & (mo <= b)
            for s in settings:
                out[f"{s}_{name}_events"] = self.events[s][:, cols].sum(axis=1)
            out[f"{name}_days"] = np.full(len(self.index), int(self.days[cols].sum()), dtype=np.int64)
        return pd.DataFrame(out)


def _month_lengths(first: int, last: int) -> np.ndarray:
    m = np.arange(first, last + 2)
    b = np.round(_DPM * m).astype(int)
    return np.diff(b)


def dynamics(name: str, months: np.ndarray) -> np.ndarray:
    """Multiplier of a referred person's use by relative month in world ``name`` (before any effect;
    the trend world's rise is per person, in :func:`simulate_world`)."""
    t = months.astype(float)
    if name == "transient_crisis":
        return 1 + np.select([t == -3, t == -2, t == -1], [0.3, 0.7, 1.0], 0.0)
    if name == "long_crisis":
        rise = np.where((t >= -8) & (t <= -1), (t + 9) / 8, 0.0)
        fall = np.where(t >= 0, 0.85 ** (t + 1), 0.0)
        return 1 + 1.0 * (rise + fall)
    if name == "late_shock":
        return 1 + np.select([t == -1, t == 0, t == 1, t == 2], [0.8, 0.7, 0.25, 0.05], 0.0)
    return np.ones_like(t)


def simulate_world(name: str, seed: int, n_referred: int = 1500, pool_per_referral: int = 5, effect_gp: float = 0.85,
                   effect_ae: float = 0.85, share_seen: float = 0.7, windows=(6, 12)) -> World:
    """Simulate world ``name`` (one of ``WORLDS``) with ``seed`` (numpy default_rng).

    About ``n_referred`` referred people and ``pool_per_referral`` comparators per referred person
    (non-referred people of the same population, each with the same relative-month calendar).
    The effect (rate ratio ``effect_gp`` / ``effect_ae``) acts on people seen (``share_seen`` of the
    referred, at random) from the index month on; none in ``null``; by age in ``heterogeneous``;
    never on elective admissions.
    """
    if name not in WORLDS:
        raise ValueError(f"world {name!r} is not one of {WORLDS}")
    rng = np.random.default_rng(seed)
    n_pop = int(n_referred * (pool_per_referral + 1) * 1.6)
    age = rng.integers(18, 91, n_pop)
    sex = np.where(rng.random(n_pop) < 0.52, "F", "M")
    imd = rng.integers(1, 6, n_pop)
    eth = rng.choice(np.array(["Asian", "Black", "Other", "White"]), n_pop, p=[0.2, 0.15, 0.1, 0.55])
    pcn = rng.choice(np.array(["P1", "P2", "P3", "P4"]), n_pop)
    u = rng.gamma(1.5, 1 / 1.5, n_pop)
    v = rng.gamma(2.0, 1 / 2.0, n_pop)
    a2 = ((age - 50) / 40.0) ** 2
    riser = rng.random(n_pop) < 0.15 if name == "trend_selection" else np.zeros(n_pop, dtype=bool)
    logit = 1.0 * np.log(u) + 1.2 * a2 + 0.15 * (imd - 3) + 4.0 * riser
    # intercept so that the expected number referred is n_referred
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(mid + logit)))).sum() < n_referred:
            lo = mid
        else:
            hi = mid
    treated = rng.random(n_pop) < 1 / (1 + np.exp(-(mid + logit)))
    ref = np.flatnonzero(treated)
    non = np.flatnonzero(~treated)
    pool = np.sort(rng.choice(non, size=min(len(non), pool_per_referral * len(ref)), replace=False))
    keep = np.concatenate([ref, pool])
    n = len(keep)
    tr = treated[keep].astype(int)
    seen = (tr == 1) & (rng.random(n) < share_seen)
    months = np.arange(FIRST_MONTH, LAST_MONTH + 1)
    days = _month_lengths(FIRST_MONTH, LAST_MONTH)
    base = {
        "gp": 0.40 * (0.7 + 0.6 * a2[keep]) * u[keep] * (1 + 0.08 * (imd[keep] - 3)),
        "ae": 0.035 * (0.8 + 0.8 * a2[keep]) * u[keep] ** 0.7 * v[keep] * (1 + 0.15 * (imd[keep] - 3)),
        "elective": 0.012 * (0.5 + age[keep] / 60) * u[keep],
    }
    if name == "trend_selection":
        dyn = np.where(riser[keep][:, None], np.exp(0.02 * (months[None, :] - FIRST_MONTH)), 1.0)
    else:
        dyn = np.where(tr[:, None] == 1, dynamics(name, months)[None, :], 1.0)
    if name == "null":
        theta = {"gp": np.ones(n), "ae": np.ones(n)}
    elif name == "heterogeneous":
        th = np.where(age[keep] < 50, 0.70, 0.95)
        theta = {"gp": th, "ae": th}
    else:
        theta = {"gp": np.full(n, effect_gp), "ae": np.full(n, effect_ae)}
    theta["elective"] = np.ones(n)
    post = months >= 0
    events, truth = {}, {}
    ids = np.arange(n)
    for s in SETTINGS:
        extra = dyn if s != "elective" else 1 + 0.5 * (dyn - 1)  # health trends and crises raise elective use less
        mu0 = base[s][:, None] * extra * (days / _DPM)[None, :]
        mult = np.where(seen[:, None] & post[None, :], theta[s][:, None], 1.0)
        mu1 = mu0 * mult
        events[s] = rng.poisson(mu1).astype(np.int64)
        for w in windows:
            win = (months >= 0) & (months < w)
            for c, who in (("itt", tr == 1), ("per_protocol", seen)):
                truth[(s, w, c)] = float(mu1[who][:, win].sum() / mu0[who][:, win].sum())
    index = pd.DataFrame({
        "index_id": ids, "person_id": [f"W{i}" for i in keep], "index_date": pd.Timestamp("2024-01-01"),
        "follow_start": pd.Timestamp("2021-01-01"), "follow_end": pd.Timestamp("2025-03-31"),
        "treated": tr, "seen": seen.astype(int), "referral_id": [f"R{i}" if t else None for i, t in zip(keep, tr)],
        "closure_date": pd.NaT, "age": age[keep], "sex": sex[keep], "ethnic_group": eth[keep],
        "imd_quintile": pd.array(imd[keep], dtype="Int64"), "pcn_code": pcn[keep], "practice_code": pcn[keep],
    })
    return World(name=name, seed=seed, index=index, events=events, days=days.astype(np.int64), truth=truth)


def world_design(**overrides):
    """The evaluation design used on the worlds (the shipped defaults; a quicker bootstrap and no
    conventional design)."""
    import dataclasses

    from spstudy.analyses.evaluation import Design

    d = Design(bootstrap_draws=100, conventional=False)
    return dataclasses.replace(d, **overrides) if overrides else d


def evaluate_world(world: World, design=None, settings=SETTINGS):
    """Run :func:`spstudy.analyses.evaluation.evaluate` on a world. Returns the EvaluationResult."""
    from spstudy.analyses.evaluation import design_windows_months, evaluate

    design = design or world_design()
    counts = world.window_counts(design_windows_months(design), settings)

    def monthly(rows):
        return world.monthly_for(rows["index_id"].to_numpy(), settings)

    return evaluate(world.index, counts, monthly, design, list(settings))


def scorecard(world: World, result) -> pd.DataFrame:
    """Per setting, window and cohort: the truth, the main and trend-adjusted estimates and whether
    their intervals cover the truth, and the verdict (one row each; gp and ae)."""
    est = result.estimates.set_index(["setting", "window_months", "cohort", "estimator"])
    rows = []
    for v in result.verdicts.itertuples():
        t = world.truth[(v.setting, v.window_months, v.cohort)]
        row = {"world": world.name, "seed": world.seed, "setting": v.setting, "window_months": v.window_months, "cohort": v.cohort,
               "truth": t, "verdict": v.verdict, "headline_estimator": v.headline_estimator}
        for e in ("matched_did", "trend_adjusted"):
            r = est.loc[(v.setting, v.window_months, v.cohort, e)]
            row[f"{e}"] = r["rate_ratio"]
            row[f"{e}_covers"] = bool(r["rate_ratio_lower"] <= t <= r["rate_ratio_upper"])
            row[f"{e}_excludes_1"] = bool(r["rate_ratio_upper"] < 1 or r["rate_ratio_lower"] > 1)
        if v.headline_estimator != "none":
            row["headline_covers"] = row[f"{v.headline_estimator}_covers"]
            row["headline_excludes_1"] = row[f"{v.headline_estimator}_excludes_1"]
        else:
            row["headline_covers"] = np.nan
            row["headline_excludes_1"] = False
        rows.append(row)
    return pd.DataFrame(rows)
