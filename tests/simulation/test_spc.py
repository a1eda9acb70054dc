"""Simulation tests of spc; what the subject's tests check and their sources: tests/support/spc.py."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.spc import _series

pytestmark = pytest.mark.simulation


def test_false_alarms_on_stable_data_and_what_autocorrelation_does():
    """Stable independent normal data: points outside 3-sigma limits at about the nominal 0.27%
    (limits estimated from each 24-point series, so a little more). Autocorrelated data (AR(1),
    phi = 0.7) break the independence XmR assumes: the moving range underestimates sigma and
    special causes are signalled far more often (a known limitation; Montgomery, Introduction to
    Statistical Quality Control, ch. 10)."""
    rng = np.random.default_rng(20240)
    iid_out, iid_any, ar_any = [], [], []
    for _ in range(600):
        y = rng.normal(100, 10, 24)
        s = _series(list(y))
        iid_out.append(s["rule"].eq("outside limits").mean())
        iid_any.append(s["special_cause"].any())
        e = np.zeros(24)
        e[0] = rng.normal()
        for t in range(1, 24):
            e[t] = 0.7 * e[t - 1] + rng.normal() * np.sqrt(1 - 0.49)
        ar_any.append(_series(list(100 + 10 * e))["special_cause"].any())
    assert 0.001 < np.mean(iid_out) < 0.008
    assert np.mean(ar_any) > np.mean(iid_any) + 0.3


def test_a_sustained_step_is_detected():
    """A 2-sigma step after 12 stable months, limits from those 12 months (baseline_points, as Making
    Data Count advises fixing limits on a stable period), is flagged in most series."""
    rng = np.random.default_rng(11)
    hit = []
    for _ in range(300):
        y = np.concatenate([rng.normal(0, 1, 12), rng.normal(2, 1, 12)])
        s = _series(list(y), baseline_points=12)
        hit.append(s.loc[12:, "special_cause"].any())
    assert np.mean(hit) > 0.8

