"""The sroi tests (tests/*/test_sroi.py): shared inputs, helpers and fixtures.

Tests for spstudy.sroi. Known answers cite their source in comments.

Guide = Cabinet Office / SROI Network, "A guide to Social Return on Investment" (January 2012):
Stage 4 (establishing impact: deadweight, displacement, attribution), Stage 5.1 (projecting
into the future, drop-off), Stage 5.2 (net present value), Stage 5.3 (SROI ratio), Stage 5.4
(sensitivity), Stage 5.5 (payback period).
Green Book = HM Treasury, The Green Book (2022), Annex A6 discounting: 3.5% for years 0-30,
declining thereafter; discount factor 1/(1+r)^t.
"""

import matplotlib

matplotlib.use("Agg")

import pandas as pd
from hypothesis import strategies as st

from spstudy.methods import sroi


def _row(**kw):
    base = {
        "stakeholder": "Patients", "outcome": "Improved wellbeing", "indicator": "SWEMWBS +1",
        "quantity": 10.0, "financial_proxy": 1000.0, "proxy_source": "test proxy",
        "price_year": 2023, "deadweight": 0.2, "attribution": 0.25, "displacement": 0.1,
        "drop_off": 0.1, "duration_years": 3, "notes": "",
    }
    base.update(kw)
    return base


def _map(*rows):
    return pd.DataFrame(list(rows) or [_row()])


TWO_ROWS = _map(
    _row(),
    _row(stakeholder="NHS", outcome="Fewer GP appointments", indicator="GP appts",
         quantity=200, financial_proxy=40.0, deadweight=0.3, attribution=0.2, displacement=0.0,
         drop_off=0.5, duration_years=2),
)


# ---------------------------------------------------------------------------------------------
# Monte Carlo
# ---------------------------------------------------------------------------------------------
DRAWS = {
    "Improved wellbeing:attribution": sroi.triangular(0.1, 0.25, 0.5),
    "Improved wellbeing:quantity": sroi.normal_from_ci(6, 14),
    "deadweight": sroi.uniform(0.1, 0.4),
    "investment": sroi.lognormal_from_ci(8000, 12000),
}


# ---------------------------------------------------------------------------------------------
# Tornado and break-even
# ---------------------------------------------------------------------------------------------
RANGES = {
    "deadweight": (0.1, 0.5),
    "Improved wellbeing:duration_years": (1, 5),
    "discount_rate": (0.015, 0.06),
    "investment": (8000, 12000),
}


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------
fractions = st.floats(0, 1, allow_nan=False)


