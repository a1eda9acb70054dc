"""The data contract for patient-level extracts: tables, columns, types and allowed codes.

One source of truth: the loaders validate against it, the synthetic generator writes to it and
`docs/data_dictionary.md` is checked against it by the tests. The tables follow the PRSB Social
Prescribing Information Standard minimum data set (NHS England, 2023) plus the GP and A&E activity
an evaluation needs. Column ``maps_to`` names the minimum-data-set item where there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# NHS Data Dictionary "ETHNIC CATEGORY" (2001 census based codes A-Z). Z = not stated (the person
# was asked and declined or did not answer). An empty value means *not recorded* and is kept as its
# own category by every analysis, never merged with Z or "Other".
ETHNIC_CATEGORIES: dict[str, str] = {
    "A": "White - British",
    "B": "White - Irish",
    "C": "White - Any other White background",
    "D": "Mixed - White and Black Caribbean",
    "E": "Mixed - White and Black African",
    "F": "Mixed - White and Asian",
    "G": "Mixed - Any other mixed background",
    "H": "Asian or Asian British - Indian",
    "J": "Asian or Asian British - Pakistani",
    "K": "Asian or Asian British - Bangladeshi",
    "L": "Asian or Asian British - Any other Asian background",
    "M": "Black or Black British - Caribbean",
    "N": "Black or Black British - African",
    "P": "Black or Black British - Any other Black background",
    "R": "Other ethnic groups - Chinese",
    "S": "Other ethnic groups - Any other ethnic group",
    "Z": "Not stated",
}

# Census 2021 five high-level groups (TS021). Chinese (R) is in the Asian group in Census 2021.
CENSUS5_GROUPS: list[str] = ["Asian", "Black", "Mixed", "White", "Other"]
ETHNIC_TO_CENSUS5: dict[str, str] = {
    **{c: "White" for c in "ABC"},
    **{c: "Mixed" for c in "DEFG"},
    **{c: "Asian" for c in "HJKLR"},
    **{c: "Black" for c in "MNP"},
    "S": "Other",
}
NOT_STATED = "Not stated"
NOT_RECORDED = "Not recorded"

# Census 2021 TS021 labels as they appear in data/reference (for joining denominators).
CENSUS5_LABELS: dict[str, str] = {
    "Asian": "Asian, Asian British or Asian Welsh",
    "Black": "Black, Black British, Black Welsh, Caribbean or African",
    "Mixed": "Mixed or Multiple ethnic groups",
    "White": "White",
    "Other": "Other ethnic group",
}

SEXES = {"F": "Female", "M": "Male"}

# Census 2021 TS029 proficiency in English (residents aged 3+); empty = not recorded.
ENGLISH_PROFICIENCY: dict[str, str] = {
    "main_english": "Main language is English",
    "very_well": "Main language not English: can speak English very well",
    "well": "Main language not English: can speak English well",
    "not_well": "Main language not English: cannot speak English well",
    "not_at_all": "Main language not English: cannot speak English",
}

# Main spoken language (the information standard records it as a SNOMED CT concept; extracts carry
# the language name). The list holds the languages most spoken in NCL at Census 2021 (TS024, London
# boroughs) plus "Other"; empty = not recorded.
LANGUAGES: list[str] = [
    "English", "Turkish", "Bengali", "Polish", "Somali", "Portuguese", "Spanish", "Greek",
    "Romanian", "Albanian", "Arabic", "French", "Italian", "Bulgarian", "Persian/Farsi",
    "Kurdish", "Gujarati", "Tamil", "Hebrew", "Chinese", "Tigrinya", "Other",
]

REFERRAL_SOURCES: dict[str, str] = {
    "gp": "GP",
    "other_clinician": "Other clinician or practice staff",
    "self": "Self-referral",
    "other_agency": "Other agency (council, voluntary sector, hospital, police...)",
}

REFERRAL_REASONS: dict[str, str] = {
    "housing": "Housing",
    "money": "Benefits and money",
    "mental_health": "Mental health and emotional wellbeing",
    "isolation": "Social isolation and loneliness",
    "carers": "Carers",
    "lifestyle": "Weight and lifestyle",
}

REFERRAL_OUTCOMES: dict[str, str] = {
    "seen": "Seen by a link worker (at least one contact)",
    "dna": "Did not attend (no contact after referral accepted)",
    "declined": "Declined the offer",
}

ACTIVITY_SETTINGS: dict[str, str] = {
    "gp": "GP practice appointment (any clinician, attended)",
    "ae": "A&E attendance (ECDS, types 1-4)",
    # evaluation negative control (optional: without it the negative control is reported as not available)
    "elective": "Elective (planned) hospital admission, ordinary or day case (SUS/HES APC admission method 11-13); optional, the evaluation's negative-control outcome",
}

REGISTRATION_END_REASONS = {"moved_away": "Moved away / deregistered", "died": "Died"}

TIMEPOINTS = {"baseline": "At first contact", "follow_up": "At closure or review"}
INSTRUMENTS = {
    "ons4": "ONS4 personal wellbeing (4 items, 0-10)",
    "wemwbs": "Warwick-Edinburgh Mental Wellbeing Scale (14 items, 1-5)",
    "swemwbs": "Short WEMWBS (7 items, 1-5)",
}
ONS4_ITEMS = ["ons4_life_satisfaction", "ons4_worthwhile", "ons4_happy", "ons4_anxious"]
WEMWBS_ITEMS = [f"wemwbs_{i:02d}" for i in range(1, 15)]
SWEMWBS_ITEMS = [f"swemwbs_{i:02d}" for i in range(1, 8)]
ITEM_RANGES: dict[str, tuple[int, int]] = {
    **{i: (0, 10) for i in ONS4_ITEMS},
    **{i: (1, 5) for i in WEMWBS_ITEMS},
    **{i: (1, 5) for i in SWEMWBS_ITEMS},
}
INSTRUMENT_ITEMS = {"ons4": ONS4_ITEMS, "wemwbs": WEMWBS_ITEMS, "swemwbs": SWEMWBS_ITEMS}

WORKFORCE_ROLES = {
    "link_worker": "Social prescribing link worker",
    "health_wellbeing_coach": "Health and wellbeing coach",
    "care_coordinator": "Care coordinator",
}


@dataclass(frozen=True)
class Column:
    """One column of an extract table.

    kind: 'id' (string key), 'str', 'code' (value from ``codes``), 'codes' (one or more codes
    separated by ';'), 'int', 'float', 'date', 'bool'.
    """

    name: str
    kind: str
    description: str
    nullable: bool = False
    codes: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    maps_to: str = ""
    reference: str | None = None  # 'ward', 'lsoa21', 'practice', 'pcn', 'borough'
    optional: bool = False  # the column may be left out of the file (then treated as all empty)


@dataclass(frozen=True)
class Table:
    name: str
    grain: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    foreign_keys: dict[str, str] = field(default_factory=dict)  # column -> "table.column"
    optional: bool = False  # the file may be absent (then an empty table; analyses that need it say so)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_names(self) -> list[str]:
        return [c.name for c in self.columns if not c.optional]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _codes(d) -> tuple[str, ...]:
    return tuple(d)


PERSONS = Table(
    name="persons",
    grain="one registered patient",
    key=("person_id",),
    columns=(
        Column("person_id", "id", "Pseudonymous person identifier (never an NHS number).",
               maps_to="Person identifier (pseudonymised NHS number)"),
        Column("birth_year", "int", "Year of birth.", min=1900, max=2025, maps_to="Person birth date (year only)"),
        Column("sex", "code", "Sex (F female, M male).", codes=_codes(SEXES), maps_to="Person stated gender"),
        Column("ethnicity", "code", "NHS ethnic category code A-Z; Z = not stated; empty = not recorded.",
               nullable=True, codes=_codes(ETHNIC_CATEGORIES), maps_to="Ethnic category"),
        Column("main_language", "code", "Main spoken language; empty = not recorded.", nullable=True,
               codes=tuple(LANGUAGES), maps_to="Preferred spoken language"),
        Column("english_proficiency", "code", "Proficiency in English (Census 2021 TS029 categories); empty = not recorded.",
               nullable=True, codes=_codes(ENGLISH_PROFICIENCY)),
        Column("interpreter_needed", "bool", "Interpreter needed (true/false); empty = not recorded.", nullable=True,
               maps_to="Interpreter required indicator"),
        Column("lsoa21_code", "str", "2021 LSOA of residence.", reference="lsoa21", maps_to="Postcode of usual address (as LSOA)"),
        Column("ward22_code", "str", "2022 electoral ward of residence (WD22).", reference="ward"),
        Column("practice_code", "str", "ODS code of the registered GP practice.", reference="practice",
               maps_to="General medical practice code (patient registration)"),
        Column("registration_start", "date", "Start of registration at the practice."),
        Column("registration_end", "date", "End of registration; empty = still registered.", nullable=True),
        Column("registration_end_reason", "code", "Why registration ended; empty = still registered.", nullable=True,
               codes=_codes(REGISTRATION_END_REASONS)),
    ),
)

REFERRALS = Table(
    name="referrals",
    grain="one social prescribing referral",
    key=("referral_id",),
    foreign_keys={"person_id": "persons.person_id"},
    columns=(
        Column("referral_id", "id", "Referral identifier.", maps_to="Social prescribing referral identifier"),
        Column("person_id", "id", "Person referred (persons.person_id)."),
        Column("referral_date", "date", "Date the referral was received.", maps_to="Referral received date"),
        Column("source", "code", "Who referred.", codes=_codes(REFERRAL_SOURCES), maps_to="Source of referral"),
        Column("reasons", "codes", "One or more reasons, separated by ';'.", codes=_codes(REFERRAL_REASONS),
               maps_to="Reason for referral to social prescribing service"),
        Column("borough_code", "str", "Local authority (LAD22) of the service.", reference="borough"),
        Column("pcn_code", "str", "Primary care network of the referring practice.", reference="pcn"),
        Column("practice_code", "str", "Referring / registered practice.", reference="practice"),
        Column("provider", "str", "Organisation delivering the link worker service."),
        Column("outcome", "code", "What happened after referral.", codes=_codes(REFERRAL_OUTCOMES),
               maps_to="Social prescribing referral outcome"),
        Column("first_contact_date", "date", "First link worker contact; empty unless seen.", nullable=True,
               maps_to="Initial contact date"),
        Column("closure_date", "date", "Date the case closed; empty = still open.", nullable=True,
               maps_to="Discharge date"),
        Column("contacts", "int", "Number of link worker contacts.", min=0, max=500),
        Column("onward_referrals", "int", "Number of onward referrals / connections to community support.", min=0, max=100,
               maps_to="Social prescribing onward referral"),
    ),
)

ACTIVITY = Table(
    name="activity",
    grain="one GP appointment or A&E attendance",
    foreign_keys={"person_id": "persons.person_id"},
    columns=(
        Column("person_id", "id", "Person (persons.person_id)."),
        Column("activity_date", "date", "Date of the appointment or attendance."),
        Column("setting", "code", "Setting.", codes=_codes(ACTIVITY_SETTINGS)),
        Column("event_id", "str", "Appointment or attendance identifier (optional column). Give it when a person can have two "
               "appointments in the same setting on the same day: rows that repeat person, date and setting (and event_id, "
               "when given) are one event, and the copies are excluded under rule activity_exact_duplicate.",
               nullable=True, optional=True),
    ),
)

WELLBEING = Table(
    name="wellbeing",
    optional=True,
    grain="one item score at one time point",
    key=("referral_id", "timepoint", "item"),
    foreign_keys={"referral_id": "referrals.referral_id"},
    columns=(
        Column("referral_id", "id", "Referral (referrals.referral_id)."),
        Column("timepoint", "code", "baseline or follow_up.", codes=_codes(TIMEPOINTS), maps_to="Outcome measure time point"),
        Column("instrument", "code", "Instrument.", codes=_codes(INSTRUMENTS), maps_to="Outcome measure (ONS4 / WEMWBS / SWEMWBS)"),
        Column("item", "code", "Item code (see data dictionary).", codes=tuple(ITEM_RANGES), maps_to="Outcome measure item"),
        Column("score", "int", "Item score (ONS4 0-10, WEMWBS/SWEMWBS 1-5).", min=0, max=10, maps_to="Outcome measure score"),
        Column("measurement_date", "date", "Date of the measurement."),
    ),
)

WORKFORCE = Table(
    name="workforce",
    optional=True,
    grain="one role by PCN and employer",
    key=("borough_code", "pcn_code", "role", "employer"),
    columns=(
        Column("borough_code", "str", "Local authority (LAD22).", reference="borough"),
        Column("pcn_code", "str", "PCN code; empty = borough-level post.", nullable=True, reference="pcn"),
        Column("role", "code", "Personalised care role.", codes=_codes(WORKFORCE_ROLES)),
        Column("fte", "float", "Full-time equivalent in post.", min=0, max=500),
        Column("employer", "str", "Employing organisation."),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (PERSONS, REFERRALS, ACTIVITY, WELLBEING, WORKFORCE)}


OPTIONAL_TABLE_NOTES = {
    "wellbeing": "services that do not record ONS4 or (S)WEMWBS leave it out; the wellbeing analysis and the SROI's "
                 "wellbeing value then report no data.",
    "workforce": "leave it out if the borough has no workforce return; link-worker coverage and caseload per FTE are "
                 "then not reported.",
}

# extract_info.json: the sample design of ``persons`` (written by spstudy.synth and spstudy.coded; a real extract
# writes it by hand). Only these keys are read; others are kept in the pack manifest as given.
EXTRACT_INFO_FIELDS: dict[str, str] = {
    "pool_fraction": "Sampling fraction of registered people never referred: each was included independently with this "
                     "probability (a number in (0, 1]; 1 = every registered person). Analyses weight never-referred people "
                     "by 1 / pool_fraction. Absent file or key: 1.",
    "sample_design.non_referred_in_sample": "Number of people in persons never referred at any time in the extract; "
                                            "checked against persons and referrals.",
    "sample_design.non_referred_weight": "1 / pool_fraction; checked.",
    "study_period": "data_start, data_end (and referral_start, referral_end) the extract was cut for; the data period must "
                    "cover the parameters' study.data_start to study.data_end.",
}


def evaluator_contract_markdown() -> list[str]:
    """The part of the data dictionary an evaluator must meet beyond column types: who is in ``persons``,
    the sampling fraction, the data period the windows need, optional tables and the validation rules."""
    return [
        "## What an evaluation needs from the extract", "",
        "### Who must be in `persons`", "",
        "`persons` is the **registered population** of the practices, not the caseload: everyone registered at any time in",
        "the data period, referred or not. The matched evaluation compares referred people with registered people **never",
        "referred** (the comparator pool), and the equity analysis uses the registered population as its denominator. An",
        "extract whose `persons` holds only referred people stops at validation with that explanation.",
        "",
        "The never-referred may be a random sample: include each independently with a fixed probability (the *sampling",
        "fraction*) and state it in `extract_info.json` beside the tables. Referred people are always all included.",
        "",
        "| `extract_info.json` key | meaning |", "| --- | --- |",
        *[f"| `{k}` | {v} |" for k, v in EXTRACT_INFO_FIELDS.items()],
        "",
        "### The data period the windows need", "",
        "GP and A&E activity must run from `study.data_start` to `study.data_end`, and those must cover the evaluation's",
        "windows: before the first referral, the year of quarters, the matching window and the placebo index",
        "(`evaluation.placebo_shift_months` earlier, with its own matching window); after the last referral, the longest",
        "post window. With the default parameters (matching window months -12..-7, windows of 6 and 12 months, placebo",
        "12 months earlier) that is **24 months before the first referral and 12 months after the last**: for referrals",
        "from 2023-04-01 to 2024-03-31, activity from 2021-04-01 to 2025-03-30 or later. The parameter loader refuses a",
        "data period that does not cover the windows (`spstudy.inputs.params.required_data_period` computes it).",
        "",
        "### Optional tables and columns", "",
        "`persons`, `referrals` and `activity` are required. `wellbeing` and `workforce` are optional (see each table).",
        "`activity.event_id` is an optional column.",
        "",
        "### Validation rules beyond types", "",
        "- No column may hold a value that looks like an NHS number (10 digits, optionally spaced 3-3-4, passing the",
        "  Modulus 11 check): pseudonymise identifiers before they reach the workbench.",
        "- A referral's `borough_code` and `pcn_code` must be those of its `practice_code` (data/reference/ncl_gp_practices_2022.csv);",
        "  a person's `ward22_code` must be the best-fit ward of their `lsoa21_code`; a workforce row's PCN must be in its borough.",
        "- Column names must be unique (also ignoring case and surrounding spaces).",
        "- Dates are calendar dates. Timestamps with a time zone or UTC offset are converted to **Europe/London** dates (a",
        "  ledger line says how many); timestamps without one are read as London local time.",
        "- `activity`: rows that repeat person, date, setting (and `event_id`, when given) are one event; the copies are",
        "  counted and excluded under rule `activity_exact_duplicate` (a parameter; without it they stop the run).",
        "- Every breach in a file is reported at once, each with file, column, rows and first values; rows are only",
        "  excluded under a rule listed in `data.exclude_rules`, and each exclusion is a line in the data-quality ledger.",
        "",
    ]


def data_dictionary_markdown() -> str:
    """The data dictionary (docs/data_dictionary.md), generated from this module so the two cannot drift."""
    kinds = {"id": "text (identifier)", "str": "text", "code": "code", "codes": "codes separated by ';'", "int": "whole number",
             "float": "number", "date": "date YYYY-MM-DD", "bool": "true/false"}
    out = ["# Data dictionary: patient-level extracts", "",
           "Generated from `spstudy/inputs/contract.py` (`python -c \"import spstudy.inputs.contract as c; print(c.data_dictionary_markdown())\"`);",
           "a test fails if this file and the contract disagree. Each table is one file in the extracts folder:",
           "`<table>.parquet` or `<table>.csv` (UTF-8, header row), or a folder `<table>/` of Parquet parts.",
           "Empty cells mean *not recorded*. The loaders (`spstudy.inputs.extracts.load_extracts`) reject any file that",
           "breaks these rules with an error naming the file, column, rows and values; see the README.", "",
           "The tables follow the PRSB / NHS England *Social Prescribing Information Standard* minimum data set",
           "(column 'Minimum data set item'), plus GP and A&E activity for the evaluation.", ""]
    for t in TABLES.values():
        out += [f"## `{t.name}`: {t.grain}", ""]
        if t.optional:
            out += ["*Optional table*: " + OPTIONAL_TABLE_NOTES.get(t.name, "may be absent.") , ""]
        if t.key:
            out.append(f"Unique key: {', '.join(f'`{k}`' for k in t.key)}.")
        for c, ref in t.foreign_keys.items():
            out.append(f"`{c}` must exist in `{ref}`.")
        out += ["", "| column | type | required | description | allowed values | minimum data set item |", "| --- | --- | --- | --- | --- | --- |"]
        for c in t.columns:
            allowed = ""
            if c.codes:
                allowed = ", ".join(f"`{x}`" for x in c.codes) if len(c.codes) <= 24 else f"{len(c.codes)} item codes (below)"
            elif c.min is not None:
                allowed = f"{c.min:g} to {c.max:g}"
            elif c.reference:
                allowed = f"a {c.reference} code in data/reference"
            req = "optional column" if c.optional else ("no" if c.nullable else "yes")
            out.append(f"| `{c.name}` | {kinds[c.kind]} | {req} | {c.description} | {allowed} | {c.maps_to} |")
        out.append("")
    out += evaluator_contract_markdown()
    out += ["## Code lists", ""]
    lists = [("Ethnic category (NHS Data Dictionary; Census 2021 group in brackets)",
              {k: f"{v} ({ETHNIC_TO_CENSUS5.get(k, 'kept as its own category')})" for k, v in ETHNIC_CATEGORIES.items()}),
             ("Proficiency in English (Census 2021 TS029)", ENGLISH_PROFICIENCY), ("Referral source", REFERRAL_SOURCES),
             ("Referral reason", REFERRAL_REASONS), ("Referral outcome", REFERRAL_OUTCOMES), ("Activity setting", ACTIVITY_SETTINGS),
             ("Registration end reason", REGISTRATION_END_REASONS), ("Wellbeing time point", TIMEPOINTS), ("Instrument", INSTRUMENTS),
             ("Workforce role", WORKFORCE_ROLES)]
    for title, d in lists:
        out += [f"### {title}", "", "| code | meaning |", "| --- | --- |"] + [f"| `{k}` | {v} |" for k, v in d.items()] + [""]
    out += ["An empty ethnicity is **not recorded**; `Z` is **not stated**. Analyses keep both as their own categories.", "",
            "### Main language", "", ", ".join(LANGUAGES) + ". Empty = not recorded.", "",
            "### Wellbeing items", "", "| item | instrument | range | meaning |", "| --- | --- | --- | --- |"]
    wem = ["optimistic about the future", "useful", "relaxed", "interested in other people", "energy to spare",
           "dealing with problems well", "thinking clearly", "feeling good about myself", "feeling close to other people",
           "confident", "able to make up my own mind", "loved", "interested in new things", "cheerful"]
    ons = ["life satisfaction", "things done are worthwhile", "happy yesterday", "anxious yesterday (higher = worse)"]
    for i, n in zip(ONS4_ITEMS, ons):
        out.append(f"| `{i}` | ONS4 | 0-10 | {n} |")
    for i, n in zip(WEMWBS_ITEMS, wem):
        out.append(f"| `{i}` | WEMWBS | 1-5 | {n} |")
    for i, w in zip(SWEMWBS_ITEMS, (1, 2, 3, 6, 7, 9, 11)):
        out.append(f"| `{i}` | SWEMWBS | 1-5 | WEMWBS item {w}: {wem[w - 1]} |")
    return "\n".join(out) + "\n"
