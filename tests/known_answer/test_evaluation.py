"""Known-answer tests of evaluation; what the subject's tests check and their sources: tests/support/evaluation.py."""

from __future__ import annotations

import numpy as np
import pytest

from spstudy.analyses import evaluation as E
from tests.support.evaluation import (
    _toy,
    world_result,  # noqa: F401 (fixtures)
)

pytestmark = pytest.mark.known_answer


def test_did_toy_known_answer():
    """Saturated Poisson model: exp(interaction) = (7.5/15) / (10/10) = 0.5 exactly (the MLE of a
    saturated log-linear model reproduces the observed cell rates; Agresti, Categorical Data
    Analysis, 2013, s.9.1)."""
    d, pairs = _toy()
    r = E.did(d, pairs, "gp", 12, "itt", boot=200)
    assert r["rate_treated_pre"] == pytest.approx(15000 * 365.25 / 365)
    assert r["rate_treated_post"] == pytest.approx(7500 * 365.25 / 365)
    assert r["did_per_1000py"] == pytest.approx(-7500 * 365.25 / 365)
    assert r["ratio_of_rate_ratios"] == pytest.approx(0.5, rel=1e-8)
    pp = E.did(d, pairs, "gp", 12, "per_protocol", boot=50)
    assert pp["n_treated"] == 1 and pp["ratio_of_rate_ratios"] == pytest.approx(5 / 10, rel=1e-8)
    assert np.isnan(pp["ratio_of_rate_ratios_lower"])  # no interval from fewer than three matched sets


def test_restricted_cubic_spline_spans_the_natural_cubic_spline():
    """Harrell (2015) Regression Modeling Strategies s.2.4.5: the restricted cubic spline with
    knots t1..tk is the natural cubic spline with those knots. patsy 1.0 ``cr(x, knots=...,
    lower_bound=t1, upper_bound=tk)`` (a natural cubic regression spline, Wood 2006 s.4.1.2) spans
    the same space with the intercept, so least-squares fits on either basis agree."""
    patsy = pytest.importorskip("patsy")
    rng = np.random.default_rng(1)
    x = rng.uniform(18, 95, 400)
    y = np.sin(x / 12) + rng.normal(0, 0.2, 400)
    knots = E.rcs_knots(x, 4)
    ours = np.column_stack([np.ones_like(x), x, E.rcs_basis(x, knots)])
    ref = np.asarray(patsy.dmatrix("cr(x, knots=k, lower_bound=lo, upper_bound=hi) - 1",
                                   {"x": x, "k": knots[1:-1], "lo": knots[0], "hi": knots[-1]}))
    fit = lambda X: X @ np.linalg.lstsq(X, y, rcond=None)[0]  # noqa: E731
    np.testing.assert_allclose(fit(ours), fit(ref), atol=1e-8)
    # linear beyond the outer knots
    xx = np.linspace(knots[-1] + 1, knots[-1] + 20, 5)
    assert np.allclose(np.diff(E.rcs_basis(xx, knots), 2, axis=0), 0, atol=1e-9)
    assert E.rcs_knots(np.zeros(50), 3) is None

