"""The diagnostics tests (tests/*/test_diagnostics.py): shared inputs, helpers and fixtures.

Diagnostics and verdict rules (spstudy.diagnostics): known answers from pyfixest and from
VanderWeele & Ding (2017), hand-checkable contrasts, and each branch of the written rules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spstudy.methods import diagnostics as dg


def _panel(n_sets=300, k=1, months=range(-6, 6), effect=0.8, seed=3):
    """Matched sets of one referred person and k comparators with person frailty, a month pattern
    and an effect from month 0 on (log scale)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sets):
        base = rng.gamma(2.0, 0.5)
        for g, n in ((1, 1), (0, k)):
            for j in range(n):
                u = rng.gamma(3.0, 1 / 3.0)
                for m in months:
                    mu = base * u * (1 + 0.1 * np.sin(m)) * (effect if (g == 1 and m >= 0) else 1.0) * (1.3 if g == 1 else 1.0)
                    days = int(rng.integers(20, 32))
                    rows.append({"subclass": s, "unit": f"{s}-{g}-{j}", "treated": g, "month": m,
                                 "events": int(rng.poisson(mu * days / 30)), "days": days})
    return pd.DataFrame(rows)


def _fake_fit(theta: dict, se: float = 0.01) -> dg.EventStudyFit:
    months = np.array(sorted(theta))
    th = np.array([theta[m] for m in months], dtype=float)
    return dg.EventStudyFit(months=months, theta=th, vcov=np.eye(len(months)) * se ** 2, counts=pd.DataFrame({"month": months}), n_clusters=100)


def _diag(**kw):
    base = {"setting": "gp", "window_months": 12, "cohort": "itt", "max_abs_smd": 0.03,
            "baseline_deviation": 0.0, "baseline_deviation_se": 0.005, "pretrend_p": 0.5,
            "placebo_log_rr": 0.0, "placebo_se": 0.005, "transient": 0.0, "transient_se": 0.005, "washout": 3,
            "robust_available": True, "linearity_p": 0.5, "linearity_end_residual": 0.0, "linearity_end_residual_se": 0.01,
            "drift": 0.0, "drift_se": 0.005, "nc_log_rr": np.nan, "nc_se": np.nan, "nc_robust_log_rr": np.nan, "nc_robust_se": np.nan}
    base.update(kw)
    return base


def _verdict(**kw):
    v = dg.verdicts(pd.DataFrame([_diag(**kw)]), margin=0.05, alpha=0.05, smd_warn=0.1, smd_fail=0.25)
    return v.iloc[0]


