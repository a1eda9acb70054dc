"""Parameters added for issue 17: the Monte Carlo seed, the wellbeing valuations, the need-index
sensitivity seed and the one reference population for expected referrals."""

import pytest

from spstudy.inputs.params import ParameterError, load_parameters


@pytest.mark.unit
def test_new_parameters_have_stated_defaults():
    p = load_parameters("enfield")
    assert p.sroi.seed == 20240401 and p.sroi.seed != p.sroi.price_year  # the seed is no longer the price year
    assert set(p.sroi.wellbeing_valuation) == {"ons4_life_satisfaction"}  # WEMWBS/SWEMWBS: measured, not valued (A14)
    assert p.sroi.wellbeing_valuation["ons4_life_satisfaction"].wellbys_per_point == 1.0
    assert p.needs.reference_area == "ncl" and p.needs.sensitivity_seed == 1 and p.needs.sensitivity_draws == 500


@pytest.mark.unit
def test_wellbeing_valuation_is_validated():
    bad = {"sroi": {"wellbeing_valuation": {"swemwbs_metric": {"wellbys_per_point": 0.5, "wellbys_per_point_range": [0.1, 0.3], "source": "x"}}}}
    with pytest.raises(ParameterError, match="wellbys_per_point_range must contain wellbys_per_point"):
        load_parameters("ncl", overrides=bad)
    with pytest.raises(ParameterError, match="sroi.wellbeing_valuation"):
        load_parameters("ncl", overrides={"sroi": {"wellbeing_valuation": {"happiness_points": {
            "wellbys_per_point": 1, "wellbys_per_point_range": [1, 1], "source": "x"}}}})
    with pytest.raises(ParameterError, match="needs.reference_area"):
        load_parameters("ncl", overrides={"needs": {"reference_area": "london"}})
