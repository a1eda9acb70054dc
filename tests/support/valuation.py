"""The valuation tests (tests/*/test_valuation.py): shared inputs, helpers and fixtures.

SROI inputs built from the evaluation: hand-checkable against the SROI guide's formulas
(Cabinet Office / Social Value UK 2012, stages 4-5) and the parameters' unit costs; what is not
valued (an unmapped wellbeing instrument, an estimate judged not credible) is said, not dropped.
"""

import pandas as pd
import pytest

from spstudy.analyses import valuation
from spstudy.inputs.params import load_parameters


@pytest.fixture(scope="module")
def params():
    return load_parameters("ncl", overrides={"sroi": {"attribution": [0.3, 0.3], "drop_off": 0.5, "duration_years": 1}})


@pytest.fixture(scope="module")
def a(params):
    return valuation.assumptions_from_parameters(params)


def _matched(gp=(-1000.0, -1500.0, -500.0), ae=(-50.0, -100.0, 0.0)):
    rows = []
    for s, (d, lo, hi) in (("gp", gp), ("ae", ae)):
        rows.append({"setting": s, "window_months": 12, "cohort": "itt", "did_per_1000py": d, "did_lower": lo, "did_upper": hi})
    return pd.DataFrame(rows)


def _wb(measure="ons4_life_satisfaction", change=1.0, lo=0.8, hi=1.2, n=500):
    return pd.DataFrame([{"measure": measure, "n_pairs": n, "mean_change": change, "mean_change_lower": lo, "mean_change_upper": hi}])


