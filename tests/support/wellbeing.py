"""The wellbeing tests (tests/*/test_wellbeing.py): shared inputs, helpers and fixtures.

Tests for spstudy.wellbeing. Known answers cite their published source in comments.
"""

import numpy as np
import pandas as pd

from spstudy.methods import wellbeing as wb

# R datasets::sleep (Student 1908; Cushny & Peebles 1905): extra hours of sleep, drug 1 and 2.
SLEEP_G1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_G2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def _scores(baseline, follow_up, measure="wemwbs_total"):
    """A scores frame (as score_instruments returns) from paired lists; None = missing."""
    rows = []
    for i, (b, f) in enumerate(zip(baseline, follow_up)):
        for tp, v in (("baseline", b), ("follow_up", f)):
            if v is not None:
                rows.append({"referral_id": f"R{i:03d}", "timepoint": tp, "instrument": "x",
                             "measure": measure, "score": float(v)})
    return pd.DataFrame(rows)


def _long(referral, timepoint, instrument, items_scores):
    return pd.DataFrame({
        "referral_id": referral, "timepoint": timepoint, "instrument": instrument,
        "item": list(items_scores), "score": list(items_scores.values()),
    })


# ---------------------------------------------------------------------------------------------
# score_instruments
# ---------------------------------------------------------------------------------------------
def _example_long():
    parts = [
        _long("A", "baseline", "wemwbs", {c: 3 for c in wb.WEMWBS_ITEMS}),
        # follow-up missing item 14 -> no total
        _long("A", "follow_up", "wemwbs", {c: 4 for c in wb.WEMWBS_ITEMS[:13]}),
        _long("B", "baseline", "swemwbs", {c: 4 for c in wb.SWEMWBS_ITEMS}),
        _long("B", "baseline", "ons4", {"ons4_life_satisfaction": 5, "ons4_worthwhile": 6,
                                          "ons4_happy": 7}),
    ]
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Attrition-adjusted change (IPW and bounds)
# ---------------------------------------------------------------------------------------------
def _attrition_world(n, seed, mnar=False):
    """WEMWBS baseline B, change D, follow-up returned or not. MAR: return depends on B and a group
    that also changes D. MNAR: return depends on D itself (people who improve return more often)."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, n)
    b = np.clip(np.round(rng.normal(41, 6, n)), 20, 60)
    fu = np.clip(np.round(b + 3 + 2 * g + 0.25 * (41 - b) + rng.normal(0, 5, n)), 14, 70)
    d = fu - b
    if mnar:
        lp = -0.6 + 0.8 * (d - d.mean()) / d.std()
    else:
        lp = -0.6 - 0.12 * (b - 41) + 0.9 * g
    r = rng.random(n) < 1 / (1 + np.exp(-lp))
    scores = _scores(b.tolist(), [f if k else None for f, k in zip(fu, r)])
    chars = pd.DataFrame({"referral_id": [f"R{i:03d}" for i in range(n)], "group": np.where(g == 1, "b", "a")})
    return scores, chars, float(d.mean())


