"""The evaluation tests (tests/*/test_evaluation.py): shared inputs, helpers and fixtures.

Matched pre/post evaluation: hand-checkable known answers, the cohort rules, the result object,
and recovery of the synthetic data's planted effect on the shipped sample (slow).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from spstudy.analyses import worlds as W
from spstudy.inputs.params import load_parameters


def _toy():
    """Two matched sets (1:1). Events and exposure chosen so every rate is easy to check by hand."""
    d = pd.DataFrame({
        "index_id": [0, 1, 2, 3], "treated": [1, 1, 0, 0], "seen": [1, 0, 0, 0],
        "gp_baseline_events": [10, 20, 10, 10], "baseline_days": [365, 365, 365, 365],
        "gp_post_12m_events": [5, 10, 10, 10], "post_12m_days": [365, 365, 365, 365],
        "gp_pre_12m_events": [10, 20, 10, 10], "pre_12m_days": [365, 365, 365, 365],
    })
    pairs = pd.DataFrame({"subclass": [1, 2], "treated_id": [0, 1], "control_id": [2, 3]})
    return d, pairs


def _tiny_extract(tmp_path):
    from spstudy.inputs.extracts import load_extracts
    from tests.support.tables import tiny_tables, write_tables

    t = tiny_tables()
    # P4 was referred before the study period: excluded from referrals by the loader, never a comparator
    extra = t["referrals"].iloc[[0]].assign(referral_id="R0", person_id="P4", referral_date="2022-06-01",
                                            first_contact_date="2022-06-10", closure_date="2022-08-01")
    t["referrals"] = pd.concat([t["referrals"], extra], ignore_index=True)
    # P5 was never referred (an extract must hold never-referred people: the loader refuses a caseload)
    t["persons"] = pd.concat([t["persons"], t["persons"].iloc[[3]].assign(person_id="P5")], ignore_index=True)
    d = write_tables(t, tmp_path / "x")
    p = load_parameters("camden", overrides={"data": {"extracts_dir": str(d)}})
    return p, load_extracts(p)


@pytest.fixture(scope="module")
def world_result():
    w = W.simulate_world("transient_crisis", 7, n_referred=800, pool_per_referral=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return w, W.evaluate_world(w, W.world_design(bootstrap_draws=50))


# ------------------------------------------------------------------------------ shipped data (slow)

def _truth(path: Path) -> dict:
    return json.loads((path / "truth.json").read_text())["service_use"]


