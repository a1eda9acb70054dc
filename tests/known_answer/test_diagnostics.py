"""Known-answer tests of diagnostics; what the subject's tests check and their sources: tests/support/diagnostics.py."""

from __future__ import annotations

import numpy as np
import pytest

from spstudy.methods import diagnostics as dg
from tests.support.diagnostics import _panel

pytestmark = pytest.mark.known_answer


@pytest.mark.parametrize("k", [1, 2])
def test_event_study_equals_pyfixest_fepois(k):
    """Known answer: pyfixest 0.60 ``fepois("events ~ i(month, treated) | subclass^month",
    offset=log(days), vcov={"CRV1": "subclass"}, ssc=pf.ssc(k_adj=False, G_adj=True))`` - the
    fixed-effects Poisson event study with matched-set x month effects - gives the same
    coefficients and cluster-robust standard errors as the closed-form conditional fit (with k
    comparators per set left as separate rows in pyfixest and pooled in ours)."""
    pf = pytest.importorskip("pyfixest")
    p = _panel(k=k)
    fit = dg.fit_event_study(p)
    d = p.assign(logd=np.log(p["days"]))
    ref = pf.fepois("events ~ i(month, treated) | subclass^month", data=d, offset="logd", vcov={"CRV1": "subclass"},
                    ssc=pf.ssc(k_adj=False, G_adj=True))
    coef = ref.coef()
    se = ref.se()
    names = [f"C(month)[T.{m}]:treated" for m in fit.months]
    got = {n: i for i, n in enumerate(coef.index)}
    # pyfixest names the interaction terms "month::<m>:treated"
    order = [next(i for n, i in got.items() if n.startswith(f"month::{m}:")) for m in fit.months]
    assert len(order) == len(names)
    np.testing.assert_allclose(fit.theta, coef.to_numpy()[order], rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov)), se.to_numpy()[order], rtol=1e-5)


def test_e_values_match_vanderweele_ding_2017():
    """VanderWeele & Ding (2017) Ann Intern Med 167:268, worked examples (also the examples of the
    EValue R package 4.1.3, ``evalues.RR``): smoking and lung cancer RR 10.73 (8.02 to 14.36) ->
    E-values 20.95 and 15.52; breastfeeding and infant respiratory death, rare outcome so the odds
    ratio 3.9 (1.8 to 8.7) is read as a risk ratio -> 7.26 and 3.00; antidepressants and
    leukaemia (protective) RR 0.80 (0.71 to 0.91) -> 1.81 and 1.43."""
    e = dg.e_value(10.73, 8.02, 14.36)
    assert e["e_value"] == pytest.approx(20.95, abs=0.01) and e["e_value_ci"] == pytest.approx(15.52, abs=0.01)
    e = dg.e_value(3.9, 1.8, 8.7)
    assert e["e_value"] == pytest.approx(7.26, abs=0.01) and e["e_value_ci"] == pytest.approx(3.00, abs=0.01)
    e = dg.e_value(0.80, 0.71, 0.91)
    assert e["e_value"] == pytest.approx(1.81, abs=0.01) and e["e_value_ci"] == pytest.approx(1.43, abs=0.01)
    # an interval that includes 1 has an E-value of 1 for its limit; the E-value is symmetric in 1/RR
    assert dg.e_value(0.9, 0.8, 1.05)["e_value_ci"] == 1.0
    assert dg.e_value(1 / 0.8)["e_value"] == pytest.approx(dg.e_value(0.8)["e_value"])
    assert np.isnan(dg.e_value(np.nan)["e_value"])

