"""Reference data loaders, checked against the figures their publishers give.

Expected values are from data/reference/SOURCES.md, which quotes the ONS / NHS Digital releases:
Census 2021 TS021 residents by borough, TS001 ward sums, WD22 ward counts, the May 2022 GP list sizes.
"""

import pandas as pd
import pytest

pytestmark = pytest.mark.known_answer

from spstudy.inputs import reference as ref


def test_wards_per_borough_match_ons_wd22():
    # ONS Wards (December 2022): Barnet 24, Camden 20, Enfield 25, Haringey 21, Islington 17 (107)
    n = ref.wards().groupby("borough_name").size().to_dict()
    assert n == {"Barnet": 24, "Camden": 20, "Enfield": 25, "Haringey": 21, "Islington": 17}


def test_census_ts021_borough_totals():
    # Census 2021 TS021 usual residents (SOURCES.md section 3)
    tot = ref.ethnicity_lsoa21().groupby("borough_code")["residents"].sum().to_dict()
    assert tot == {"E09000003": 389365, "E09000007": 210163, "E09000010": 329987, "E09000014": 264227, "E09000019": 216608}
    assert set(ref.ethnicity_lsoa21()["group"]) == {"Asian", "Black", "Mixed", "White", "Other"}


def test_census_ts001_ward_population_sums():
    # TS001 summed over OAs to WD22 best fit (SOURCES.md: Barnet 389,348 ... Islington 216,607)
    pop = ref.census_population()
    assert len(pop) == 107
    assert pop.groupby("borough_code")["residents"].sum().to_dict() == {
        "E09000003": 389348, "E09000007": 210124, "E09000010": 329980, "E09000014": 264234, "E09000019": 216607}
    assert len(ref.census_population(ref.area("camden"))) == 20


def test_gp_practices_totals():
    # NHS Digital Patients Registered at a GP Practice, May 2022: 181 practices, 1,749,697 patients
    g = ref.gp_practices()
    assert len(g) == 181 and g["registered_patients"].sum() == 1749697
    assert g.groupby("borough_name")["registered_patients"].sum()["Barnet"] == 439828


def test_ward_boundaries_in_british_national_grid():
    g = ref.ward_boundaries()
    assert g.crs.to_epsg() == 27700
    assert len(g) == 107
    # SOURCES.md: summed area 235.8 km2 for the five boroughs
    assert g.area.sum() / 1e6 == pytest.approx(235.8, abs=0.1)


def test_population_age_bands_and_imd():
    p = ref.population_ward_age()
    assert p["age_band"].nunique() == 19 and p["ward22_code"].nunique() == 107
    assert len(ref.imd2025()) == 806 and len(ref.imd2019()) == 795


def test_unknown_area_is_rejected():
    with pytest.raises(ValueError, match="unknown area 'hackney'"):
        ref.area("hackney")


def test_an_area_is_resolved_once_with_its_name_code_and_boroughs():
    ncl, cam = ref.area("ncl"), ref.area("camden")
    assert ncl is ref.WHOLE_REGION and ncl.code == "E54000028" and len(ncl.borough_codes) == 5 and ncl.several_boroughs
    assert (cam.name, cam.code, cam.borough_codes, cam.several_boroughs, cam.only_borough) == ("Camden", "E09000007", ("E09000007",), False, "E09000007")
    assert ncl.only_borough is None
    assert ref.area("camden") is cam  # one value per area
    assert cam.covers(pd.Series(["E09000007", "E09000003"])).tolist() == [True, False]


def test_reference_read_from_project_not_shared():
    assert ref.reference_dir().parts[-2:] == ("data", "reference")
    assert "shared" not in ref.reference_dir().parts
