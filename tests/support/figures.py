"""The figures tests (tests/*/test_figures.py): shared inputs, helpers and fixtures.

Figures: funnel plots draw the limits their tables classify against, in the units of the points;
ratio maps use a scale that cannot go below zero and is symmetric in the ratio; importing the module
leaves the matplotlib backend alone.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd


def _practices(seed=5, n=40, rate=0.0145):
    rng = np.random.default_rng(seed)
    py = rng.integers(2_000, 25_000, n).astype(float)
    x = rng.poisson(py * rate)
    return pd.DataFrame({"name": [f"P{i}" for i in range(n)], "person_years": py, "referrals": x, "rate": 1000 * x / py})


