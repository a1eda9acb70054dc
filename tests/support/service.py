"""The service tests (tests/*/test_service.py): shared inputs, helpers and fixtures.

Service reporting (spstudy.service): hand-checked tables, the distribution-free median interval
against its published construction, intervals on simulated skewed waiting times, and the shipped data.
"""

from __future__ import annotations

import pandas as pd

D = pd.Timestamp


def _refs():
    """Six referrals in two boroughs, written so every count can be checked by hand."""
    return pd.DataFrame({
        "referral_id": [f"R{i}" for i in range(1, 7)],
        "person_id": ["P1", "P2", "P3", "P3", "P4", "P5"],
        "referral_date": [D("2023-04-03"), D("2023-04-10"), D("2023-05-01"), D("2023-06-01"), D("2023-06-05"), D("2023-07-01")],
        "source": ["gp", "self", "gp", "gp", "other_agency", "gp"],
        "reasons": ["housing;money", "isolation", "housing", "mental_health;housing", "money", "carers"],
        "borough_code": ["E09000007", "E09000007", "E09000007", "E09000007", "E09000019", "E09000019"],
        "pcn_code": ["U1", "U1", "U2", "U2", "U3", "U3"],
        "practice_code": ["A", "A", "B", "B", "C", "C"],
        "provider": ["Age UK Camden"] * 4 + ["Help on Your Doorstep"] * 2,
        "outcome": ["seen", "seen", "seen", "seen", "dna", "declined"],
        "first_contact_date": [D("2023-04-10"), D("2023-05-08"), D("2023-05-15"), D("2023-06-20"), pd.NaT, pd.NaT],
        "closure_date": [D("2023-07-10"), pd.NaT, D("2023-06-15"), D("2023-08-01"), D("2023-07-01"), D("2023-07-02")],
        "contacts": [5, 2, 3, 4, 0, 0],
        "onward_referrals": [2, 0, 0, 1, 0, 0],
    })


