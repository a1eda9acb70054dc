"""Known-answer tests of coded; what the subject's tests check and their sources: tests/support/coded.py."""

from __future__ import annotations

import pytest

from spstudy.inputs.coded import (
    snomed_concept_id_valid,
    verhoeff_valid,
)
from tests.support.coded import KEYS, SHIPPED, _csv, coded_copy, coded_sample, params, sample  # noqa: F401 (fixtures)

pytestmark = pytest.mark.known_answer


def test_verhoeff_known_answers():
    """Verhoeff (1969) check digit, worked example in Wikipedia 'Verhoeff algorithm': 236 -> check
    digit 3. SNOMED CT concept ids carry a Verhoeff check digit (SNOMED CT Technical Implementation
    Guide): 22298006 Myocardial infarction and 871731000000106 Referral to social prescribing
    service (an NHS England code) are valid; changing the last digit breaks them."""
    assert verhoeff_valid("2363") and not verhoeff_valid("2364")
    assert snomed_concept_id_valid("22298006") and snomed_concept_id_valid("871731000000106")
    assert not snomed_concept_id_valid("22298007") and not snomed_concept_id_valid("871731000000107")
    assert not snomed_concept_id_valid("871731000000115")  # partition 11: not a concept id
    assert not snomed_concept_id_valid("0871731000000106") and not snomed_concept_id_valid("12345")

