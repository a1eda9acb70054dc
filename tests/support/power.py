"""The power tests (tests/*/test_power.py): shared inputs, helpers and fixtures.

Minimum detectable effects (spstudy.power): Bloom's multipliers, the NB variance against
statsmodels, and simulated matched worlds in which the stated power must be achieved.
"""

from __future__ import annotations

from spstudy.methods import power as P
from spstudy.methods import subgroups as S


def _rejection_rate(effect, reps, n_sets, seed0, **world):
    rej = 0
    for s in range(reps):
        w = P.simulate_matched_counts(n_sets, seed=seed0 + s, effect_rate_ratio=effect, **world)
        d, pairs = w.units, w.pairs
        rej += S.fit_ratio_of_rate_ratios(S.did_long(d, pairs, "gp", 6))["p_value"] < 0.05
    return rej / reps


