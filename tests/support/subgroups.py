"""The subgroups tests (tests/*/test_subgroups.py): shared inputs, helpers and fixtures.

Who benefits (spstudy.subgroups): known answers, equivalence with evaluation.did, simulated worlds.
"""

from __future__ import annotations

from spstudy.methods.power import simulate_matched_counts


def _world(n_sets, seed, groups=None, effect=1.0, **kw):
    w = simulate_matched_counts(n_sets, seed=seed, groups=groups, effect_rate_ratio=effect, **kw)
    d, pairs = w.units, w.pairs
    return d, pairs


