"""Loaders for the real open reference data in ``data/reference/`` (see its SOURCES.md).

Every loader returns a tidy DataFrame (or GeoDataFrame) with the columns named in its docstring.
Geometry is returned in British National Grid (EPSG:27700) for area and distance work unless
``crs`` says otherwise. Vintages differ (Census 2021, mid-2020 estimates, IMD 2019 and 2025, GP
lists May 2022, wards December 2022): every loader says which it is.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spstudy.inputs import project

BNG = "EPSG:27700"

BOROUGHS = pd.DataFrame(
    {
        "borough": ["barnet", "camden", "enfield", "haringey", "islington"],
        "borough_code": ["E09000003", "E09000007", "E09000010", "E09000014", "E09000019"],
        "borough_name": ["Barnet", "Camden", "Enfield", "Haringey", "Islington"],
    }
)
BOROUGH_SLUGS = tuple(BOROUGHS["borough"])
AREAS = ("ncl",) + BOROUGH_SLUGS  # what a pack can be made for

ATTRIBUTION = (
    "Source: Office for National Statistics licensed under the Open Government Licence v3.0. "
    "Contains National Statistics data (c) Crown copyright and database right 2022-2023. "
    "Contains OS data (c) Crown copyright and database right 2022. "
    "English Indices of Deprivation 2019 and 2025 (c) Crown copyright, MHCLG, OGL v3.0. "
    "Contains public sector information from NHS Digital (now NHS England), OGL v3.0. "
    "Open Government Licence v3.0: https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/"
)


def reference_dir() -> Path:
    """Folder of the reference data: ``$SPSTUDY_REFERENCE`` or ``<project>/data/reference``."""
    return Path(os.environ.get("SPSTUDY_REFERENCE", project.root() / "data" / "reference"))


def _read_csv(name: str, **kw) -> pd.DataFrame:
    path = reference_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"reference file missing: {path} (see data/reference/SOURCES.md)")
    return pd.read_csv(path, **kw)


NCL_CODE = "E54000028"  # ONS code of the North Central London ICB / STP area
REGION = "ncl"  # the area that holds every borough


@dataclass(frozen=True)
class Area:
    """A pack's area, resolved once from its key (:func:`area`): the key ('ncl' or a borough slug),
    its name, its ONS code (E54000028 for NCL, the LAD22 code for a borough) and the LAD22 codes of
    the boroughs it covers. Analyses take an Area and never look an area up by its key."""

    key: str
    name: str
    code: str
    borough_codes: tuple[str, ...]

    @property
    def several_boroughs(self) -> bool:
        """True when the area holds more than one borough (borough is then a variable to adjust for)."""
        return len(self.borough_codes) > 1

    @property
    def only_borough(self) -> str | None:
        """The LAD22 code of the area's one borough, or None for an area of several boroughs."""
        return self.borough_codes[0] if len(self.borough_codes) == 1 else None

    def covers(self, borough_code) -> "pd.Series":
        """Which of ``borough_code`` (a Series of LAD22 codes) are in the area (a boolean Series)."""
        return pd.Series(borough_code).isin(self.borough_codes)


def as_area(value, argument: str = "area") -> Area:
    """``value`` if it is an :class:`Area`; otherwise a TypeError that says how to make one. Analyses
    call it on every Area argument so a key passed by mistake ('camden') fails with the fix, not with an
    AttributeError deep inside; it never resolves a key (that is :func:`area`'s job, done once per pack)."""
    if isinstance(value, Area):
        return value
    hint = f" (for a key use reference.area({value!r}))" if isinstance(value, str) else ""
    raise TypeError(f"`{argument}`: expected a spstudy.inputs.reference.Area, got {type(value).__name__} {value!r}{hint}")


@functools.lru_cache(maxsize=None)
def area(key: str) -> Area:
    """The :class:`Area` for ``key`` ('ncl' or a borough slug); the only place a key is resolved."""
    if key == REGION:
        return Area(REGION, "North Central London", NCL_CODE, tuple(BOROUGHS["borough_code"]))
    if key not in BOROUGH_SLUGS:
        raise ValueError(f"unknown area {key!r}; expected one of {', '.join(AREAS)}")
    row = BOROUGHS.loc[BOROUGHS["borough"] == key].iloc[0]
    return Area(key, str(row["borough_name"]), str(row["borough_code"]), (str(row["borough_code"]),))


WHOLE_REGION = area(REGION)  # all five boroughs: the default reference area and the whole-NCL pack


@functools.lru_cache(maxsize=None)
def wards() -> pd.DataFrame:
    """The 107 NCL electoral wards (December 2022): ward22_code, ward22_name, borough_code, borough_name."""
    return _read_csv("ncl_wards_2022_list.csv")


def ward_boundaries(crs: str = BNG):
    """Ward boundaries (ONS WD22 BSC, super-generalised) as a GeoDataFrame in ``crs``.

    Columns: ward22_code, ward22_name, borough_code, borough_name, area_km2, geometry.
    """
    import geopandas as gpd

    g = gpd.read_file(reference_dir() / "ncl_wards_2022.geojson")
    g = g.set_crs("EPSG:4326", allow_override=True)
    return g.to_crs(crs)


def borough_boundaries(crs: str = BNG):
    """Borough outlines dissolved from the ward boundaries."""
    g = ward_boundaries(crs)
    return g.dissolve(by=["borough_code", "borough_name"], as_index=False)[["borough_code", "borough_name", "geometry"]]


@functools.lru_cache(maxsize=None)
def lsoa21_lookup() -> pd.DataFrame:
    """LSOA 2021 -> best-fit ward 2022: lsoa21_code, lsoa21_name, ward22_code, ward22_name, borough_code, borough_name."""
    return _read_csv("ncl_lookup_lsoa21_to_ward22_bestfit.csv")


@functools.lru_cache(maxsize=None)
def imd2025() -> pd.DataFrame:
    """IMD 2025 by LSOA 2021 (MHCLG File 7): scores, ranks (1 = most deprived of 33,755) and deciles."""
    return _read_csv("ncl_imd2025_lsoa21.csv")


@functools.lru_cache(maxsize=None)
def imd2019() -> pd.DataFrame:
    """IMD 2019 by LSOA 2011: ranks (1 = most deprived of 32,844) and deciles (no scores)."""
    return _read_csv("ncl_imd2019_lsoa11.csv")


@functools.lru_cache(maxsize=None)
def ethnicity_lsoa21() -> pd.DataFrame:
    """Census 2021 TS021 five groups by LSOA 2021, tidy.

    Columns: lsoa21_code, ward22_code (best fit), borough_code, group (Asian/Black/Mixed/White/Other),
    residents.
    """
    from spstudy.inputs.contract import CENSUS5_LABELS

    d = _read_csv("ncl_census2021_ts021_ethnic_group_5cat_lsoa21.csv")
    inv = {v: k for k, v in CENSUS5_LABELS.items()}
    unknown = sorted(set(d["ethnic_group"]) - set(inv))
    if unknown:
        raise ValueError(f"ncl_census2021_ts021_ethnic_group_5cat_lsoa21.csv: column ethnic_group has unknown labels {unknown}")
    return pd.DataFrame(
        {
            "lsoa21_code": d["lsoa21_code"],
            "ward22_code": d["ward22_bestfit_code"],
            "borough_code": d["borough_code"],
            "group": d["ethnic_group"].map(inv),
            "residents": d["count"].astype("int64"),
        }
    )


@functools.lru_cache(maxsize=None)
def census_ward() -> pd.DataFrame:
    """Ward-level Census 2021 indicators built from OA data (DERIVED, see SOURCES.md section 3).

    Columns: ward22_code, ward22_name, borough_code, table, variable, category_code, category_name,
    base, estimate, percent.
    """
    return _read_csv("ncl_census2021_ward22_from_oa21_derived.csv")


@functools.lru_cache(maxsize=None)
def english_proficiency_msoa21() -> pd.DataFrame:
    """Census 2021 TS029 proficiency in English by MSOA 2021 (residents aged 3+), tidy.

    Columns: msoa21_code, msoa21_name, borough_code, category, residents, base.
    ``main_language_not_english`` is a subtotal of the four ``not_english_*`` rows.
    """
    d = _read_csv("ncl_census2021_ts029_english_proficiency_msoa21.csv")
    return d.rename(columns={"count": "residents", "all_usual_residents_aged_3_plus": "base"})[
        ["msoa21_code", "msoa21_name", "borough_code", "category", "residents", "base"]
    ]


@functools.lru_cache(maxsize=None)
def population_ward_age() -> pd.DataFrame:
    """ONS mid-2020 persons by five-year age band, apportioned to 2022 wards (DERIVED).

    Columns: ward22_code, ward22_name, borough_code, age_band ('0-4' ... '90+'), population.
    """
    d = _read_csv("ncl_mye2020_population_persons_5yr_ward22_apportioned.csv")
    return d.rename(columns={"population_estimate": "population"})[
        ["ward22_code", "ward22_name", "borough_code", "age_band", "population"]
    ]


@functools.lru_cache(maxsize=None)
def population_lsoa11_sya() -> pd.DataFrame:
    """ONS mid-2020 persons by single year of age (0-89, '90+') for 2011 LSOAs."""
    return _read_csv("ncl_mye2020_population_persons_sya_lsoa11.csv")


@functools.lru_cache(maxsize=None)
def ward_deprivation() -> pd.DataFrame:
    """Ward deprivation summaries (DERIVED): IMD 2025 population-weighted score, IMD 2019 rank, etc."""
    return _read_csv("ncl_ward22_deprivation_summary_derived.csv")


@functools.lru_cache(maxsize=None)
def gp_practices() -> pd.DataFrame:
    """GP practices in NCL (May 2022 list sizes, January 2022 PCN membership)."""
    return _read_csv("ncl_gp_practices_2022.csv")


@functools.lru_cache(maxsize=None)
def lookup_lsoa11_lsoa21() -> pd.DataFrame:
    """ONS LSOA 2011 -> LSOA 2021 lookup with change indicator (U/S/M)."""
    return _read_csv("ncl_lookup_lsoa11_to_lsoa21.csv")


def census_population(area: Area = WHOLE_REGION) -> pd.DataFrame:
    """Census 2021 usual residents by ward (TS001 summed over OAs): ward22_code, ward22_name, borough_code, residents."""
    d = census_ward()
    d = d[d["table"] == "TS001"]
    out = (
        d.groupby(["ward22_code", "ward22_name", "borough_code"], as_index=False)["estimate"].sum()
        .rename(columns={"estimate": "residents"})
    )
    out["residents"] = out["residents"].round().astype("int64")
    return out[out["borough_code"].isin(area.borough_codes)].reset_index(drop=True)


def reference_files() -> list[Path]:
    """Every file in the reference folder (for manifests)."""
    return sorted(p for p in reference_dir().iterdir() if p.is_file())
