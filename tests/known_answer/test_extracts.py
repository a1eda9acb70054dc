"""Known-answer tests of extracts; what the subject's tests check and their sources: tests/support/extracts.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spstudy.inputs.extracts import looks_like_nhs_number, nhs_number_valid
from tests.support.extracts import SHIPPED, _error, _expect, _read, _write, copy, params, shipped_sample, strict  # noqa: F401 (fixtures)

pytestmark = pytest.mark.known_answer


def test_nhs_number_modulus_11_known_answers():
    """NHS Data Dictionary, NHS NUMBER (Modulus 11 check); 943 476 5919 is the example number used
    in NHS Digital's documentation and test data; changing its check digit makes it invalid; a
    number whose check value is 10 is never valid."""
    assert looks_like_nhs_number(["9434765919", "943 476 5919", "943-476-5919"]).all()
    assert not looks_like_nhs_number(["9434765918", "P9434765919", "94347659190", "943476591", None, ""]).any()
    assert looks_like_nhs_number(pd.Series([9434765919, 9434765918])).tolist() == [True, False]
    # 123456789x: 1*10+2*9+...+9*2 = 210 = 11*19 + 1 -> check 10 -> no valid check digit exists
    assert not nhs_number_valid(np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, d] for d in range(10)])).any()

