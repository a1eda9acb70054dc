"""What a published count *is*: its measure and its coordinates, so the release knows how cells relate.

Every count a pack publishes is a cell of a cube: a **measure** (what is counted, over which
population and period) at a node of each **dimension** (geography, ethnicity, language, outcome,
...). Two cells with the same key are the same number wherever they appear (another table, another
area's pack), and every node of a dimension's tree is the sum of its children (a PCN is the sum of
its practices, a borough of its PCNs or wards, NCL of its boroughs; a Census ethnic group of its
detailed NHS categories; "all referrals" of seen + did not attend + declined). The publisher
(:mod:`spstudy.publish.release`) and the audit (:mod:`spstudy.publish.audit`) derive every linear relation between
published cells from these keys, so no relation has to be remembered by hand.

Geography has two branches, because a borough's referrals can be counted by where people live
(wards, Census denominators) or by which practices referred them (PCNs and practices, registered
populations): a measure declares which (:class:`Measure` ``geo``). Codes are the ONS/ODS codes
themselves (ward E05..., borough E09..., NCL E54000028, PCN U..., practice ODS code).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from spstudy.inputs import reference
from spstudy.inputs.contract import (
    CENSUS5_GROUPS,
    ETHNIC_CATEGORIES,
    ETHNIC_TO_CENSUS5,
    LANGUAGES,
    NOT_RECORDED,
    NOT_STATED,
    REFERRAL_OUTCOMES,
    REFERRAL_REASONS,
    REFERRAL_SOURCES,
)
from spstudy.methods.coding import MODEL_AGE_BANDS

ALL = "All"
NCL_CODE = reference.NCL_CODE


class CellError(ValueError):
    """A table's rows cannot be placed in the release's cube (unknown code, mixed universes ...)."""


@dataclass(frozen=True)
class Tree:
    """A dimension as a tree of nodes; every internal node is the sum of its children.

    ``labels`` maps the values analyses print (e.g. "Asian") to node ids; unknown values are an error.
    ``exhaustive``: the children of each node are all the categories there are (so parent = sum of
    children); if False (an open list, e.g. languages outside the contract) parent >= sum of children.
    """

    name: str
    parent: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    exhaustive: bool = True
    overlapping: bool = False   # one unit can be in several categories (e.g. reasons): each child <= parent, no sum

    @functools.cached_property
    def children(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for c, p in self.parent.items():
            out.setdefault(p, []).append(c)
        return {k: tuple(v) for k, v in out.items()}

    @property
    def nodes(self) -> set[str]:
        return set(self.parent) | {ALL}

    def node(self, value, where: str = "") -> str:
        v = str(value)
        if v in self.labels:
            return self.labels[v]
        if v in self.parent or v == ALL:
            return v
        raise CellError(f"{where}: value {value!r} is not a category of dimension '{self.name}' "
                        f"(known: {', '.join(sorted(set(self.labels) | set(self.parent))[:12])}, ...)")


def _tree(name: str, groups: dict[str, list[str]] | list[str], labels: dict[str, str] | None = None, exhaustive=True) -> Tree:
    parent: dict[str, str] = {}
    if isinstance(groups, list):
        groups = {ALL: groups}
    pending = [ALL]
    while pending:
        p = pending.pop()
        for c in groups.get(p, []):
            parent[c] = p
            pending.append(c)
    lab = {ALL: ALL, "Total": ALL, "All referrals": ALL, "All": ALL} | (labels or {})
    return Tree(name, parent, lab, exhaustive)


RECORDED = "Recorded"

#: NHS ethnic category -> Census 2021 five groups -> recorded / not stated / not recorded -> all.
ETHNICITY = _tree(
    "ethnicity",
    {ALL: [RECORDED, NOT_STATED, NOT_RECORDED],
     RECORDED: list(CENSUS5_GROUPS),
     **{g: [ETHNIC_CATEGORIES[k] for k, v in ETHNIC_TO_CENSUS5.items() if v == g] for g in CENSUS5_GROUPS}},
    labels={**{k: ETHNIC_CATEGORIES[k] for k in ETHNIC_TO_CENSUS5}, "Z": NOT_STATED, "": NOT_RECORDED,
            "Ethnic group recorded (NHS code A-S)": RECORDED, "recorded": RECORDED},
)

PROFICIENCY_NODES = {"main_english": "Main language is English", "very_well": "Speaks English very well",
                     "well": "Speaks English well", "not_well": "Cannot speak English well", "not_at_all": "Cannot speak English"}
NOT_MAIN_ENGLISH = "Main language not English"
#: Census 2021 TS029 proficiency in English.
PROFICIENCY = _tree(
    "proficiency",
    {ALL: [RECORDED, NOT_RECORDED], RECORDED: [PROFICIENCY_NODES["main_english"], NOT_MAIN_ENGLISH],
     NOT_MAIN_ENGLISH: [PROFICIENCY_NODES[k] for k in ("very_well", "well", "not_well", "not_at_all")]},
    labels={k: v for k, v in PROFICIENCY_NODES.items()},
)

NOT_ENGLISH = "Not English"
#: Main spoken language (the contract's list, "Other" included, so recorded languages are exhaustive).
LANGUAGE = _tree("language", {ALL: [RECORDED, NOT_RECORDED], RECORDED: ["English", NOT_ENGLISH],
                              NOT_ENGLISH: [x for x in LANGUAGES if x != "English"]})

INTERPRETER = _tree("interpreter", {ALL: [RECORDED, NOT_RECORDED], RECORDED: ["Interpreter needed", "No interpreter needed"]})
OUTCOME = _tree("outcome", list(REFERRAL_OUTCOMES), labels={v: k for k, v in REFERRAL_OUTCOMES.items()} | {"all": ALL})
SOURCE = _tree("source", list(REFERRAL_SOURCES), labels={v: k for k, v in REFERRAL_SOURCES.items()})
#: A referral can have several reasons: reasons are NOT a partition (exhaustive=False, no sum rule).
REASON = Tree("reason", {k: ALL for k in REFERRAL_REASONS}, {v: k for k, v in REFERRAL_REASONS.items()} | {ALL: ALL},
              exhaustive=False, overlapping=True)
IMD_QUINTILE = _tree("imd_quintile", [str(q) for q in range(1, 6)], labels={str(float(q)): str(q) for q in range(1, 6)})
IMD_DECILE = _tree("imd_decile", [str(q) for q in range(1, 11)], labels={str(float(q)): str(q) for q in range(1, 11)})
SEX = _tree("sex", ["F", "M"], labels={"Female": "F", "Male": "M"})
#: The evaluation's cohorts overlap (everyone referred; those seen): each is at most "All".
COHORT = Tree("cohort", {"itt": ALL, "per_protocol": ALL}, {"ITT": "itt", "seen": "per_protocol", ALL: ALL}, exhaustive=False,
              overlapping=True)
#: A referral's main reason (the first listed): one per referral, so a partition.
MAIN_REASON = _tree("main_reason", list(REFERRAL_REASONS))
#: The equity models' adult age bands (one list: spstudy.methods.coding.MODEL_AGE_BANDS).
MODEL_AGE_BAND = _tree("model_age_band", [b for b, *_ in MODEL_AGE_BANDS])

CATEGORY_DIMS: dict[str, Tree] = {t.name: t for t in (ETHNICITY, PROFICIENCY, LANGUAGE, INTERPRETER, OUTCOME, SOURCE,
                                                         REASON, IMD_QUINTILE, IMD_DECILE, SEX, COHORT, MAIN_REASON,
                                                         MODEL_AGE_BAND)}


def open_dim(name: str) -> Tree:
    """A dimension whose categories are not known in advance (quarters, months, model terms): each
    value is its own node under "All", and the list is not exhaustive (parent >= sum of children)."""
    return Tree(name, {}, {}, exhaustive=False)


# ------------------------------------------------------------------------------------- geography

@functools.lru_cache(maxsize=None)
def _geo() -> dict[str, dict]:
    gp = reference.gp_practices()
    wards = reference.wards()
    b = reference.BOROUGHS
    level = {NCL_CODE: "ncl"}
    level.update({c: "borough" for c in b["borough_code"]})
    level.update({c: "pcn" for c in gp["pcn_code"]})
    level.update({c: "practice" for c in gp["practice_code"]})
    level.update({c: "ward" for c in wards["ward22_code"]})
    parent = {c: NCL_CODE for c in b["borough_code"]}
    parent.update(dict(zip(gp["practice_code"], gp["pcn_code"])))
    parent.update(dict(zip(gp["pcn_code"], gp["borough_code"])))
    parent.update(dict(zip(wards["ward22_code"], wards["borough_code"])))
    children: dict[tuple[str, str], list[str]] = {}
    for c, p in parent.items():
        branch = "res" if level[c] == "ward" else ("svc" if level[c] in ("pcn", "practice") else "both")
        for br in (("res", "svc") if branch == "both" else (branch,)):
            children.setdefault((p, br), []).append(c)
    slug_code = {"ncl": NCL_CODE, **dict(zip(b["borough"], b["borough_code"]))}
    names = {NCL_CODE: "North Central London", **dict(zip(b["borough_code"], b["borough_name"])),
             **dict(zip(gp["pcn_code"], gp["pcn_name"])), **dict(zip(gp["practice_code"], gp["practice_name"])),
             **dict(zip(wards["ward22_code"], wards["ward22_name"]))}
    return {"level": level, "parent": parent, "children": {k: tuple(sorted(v)) for k, v in children.items()},
            "slug_code": slug_code, "names": names}


def area_code(area: str) -> str:
    """ONS code of a pack's area ('ncl' -> E54000028, a borough slug -> its LAD22 code)."""
    try:
        return reference.area(area).code
    except ValueError as e:
        raise CellError(str(e)) from None


def geo_level(code: str) -> str:
    try:
        return _geo()["level"][code]
    except KeyError:
        raise CellError(f"{code!r} is not an NCL ward, practice, PCN, borough or NCL code") from None


def geo_parent(code: str) -> str | None:
    return _geo()["parent"].get(code)


def geo_children(code: str, branch: str) -> tuple[str, ...]:
    return _geo()["children"].get((code, branch), ())


def geo_name(code: str) -> str:
    return _geo()["names"].get(code, code)


def geo_contains(outer: str, inner: str) -> bool:
    """True if ``inner`` lies within ``outer`` (or is it)."""
    c = inner
    while c is not None:
        if c == outer:
            return True
        c = geo_parent(c)
    return False


# --------------------------------------------------------------------------------------- measures

@dataclass(frozen=True)
class Measure:
    """What a count column counts.

    geo: 'res' (people by where they live: wards, Census denominators), 'svc' (by the practice that
    referred them / where they are registered: practices, PCNs), or 'area' (only whole areas: a
    borough's cell and NCL's are related, nothing finer). ``additive=False`` for counts that do not
    add up across areas or categories (e.g. people in a matched sample: NCL is matched on its own):
    such cells are related to nothing, and the key includes the pack's area.
    """

    id: str
    description: str
    geo: str = "svc"
    additive: bool = True
    unit: str = "referrals"
    subset_of: str | None = None   # every cell is at most the same cell of this measure (e.g. a model's sample)


MEASURES: dict[str, Measure] = {}


def measure(id: str, description: str, geo: str = "svc", additive: bool = True, unit: str = "referrals",
            subset_of: str | None = None) -> Measure:
    m = Measure(id, description, geo, additive, unit, subset_of)
    if id in MEASURES and MEASURES[id] != m:
        raise CellError(f"measure {id!r} is defined twice, differently")
    MEASURES[id] = m
    return m


def get_measure(id: str) -> Measure:
    try:
        return MEASURES[id]
    except KeyError:
        if "." in id or "~not~" in id:  # a table's own count ("table.column") or the rest of a subset: related to nothing
            return MEASURES.setdefault(id, Measure(id, f"count {id}", geo="area", additive=False))
        raise CellError(f"unknown measure {id!r}; define it with spstudy.publish.cells.measure(...) (known: {sorted(MEASURES)})") from None


# The measures the shipped analyses publish. Periods are the study period unless stated.
measure("referrals_res", "Referrals in the study period of people living in the area (any NCL service), by residence", geo="res")
measure("referrals_svc", "Referrals in the study period made by the area's practices", geo="svc")
measure("registered_py", "Registered person-years in the study period (weighted for the extract's sampling), by practice",
        geo="svc", unit="person-years")
measure("referred_people_svc", "People referred in the study period by the area's practices (first referral)", geo="svc", unit="people")
measure("onward_referrals_svc", "Onward referrals made for referrals in the study period, by the area's practices", geo="svc")
measure("evaluated_referred", "Referred people in the evaluation cohort (registered long enough before referral), by cohort",
        geo="none", unit="people")
measure("matched_referred", "Referred people matched to a comparator, by cohort (and subgroup)", geo="none", unit="people")
# service delivery (notebook 05): nested populations of the referrals made by the area's practices
measure("seen_within_28d", "Seen referrals whose first contact came within 28 days", geo="svc", subset_of="referrals_svc")
measure("seen_within_14d", "Seen referrals whose first contact came within 14 days", geo="svc", subset_of="seen_within_28d")
measure("referrals_closed_svc", "Referrals by the area's practices whose case has closed", geo="svc", subset_of="referrals_svc")
measure("closed_no_onward_svc", "Closed referrals with no onward connection", geo="svc", subset_of="referrals_closed_svc")
measure("closed_within_28d", "Seen, closed referrals closed within 28 days of first contact", geo="svc", subset_of="referrals_closed_svc")
measure("closed_within_14d", "Seen, closed referrals closed within 14 days of first contact", geo="svc", subset_of="closed_within_28d")
# a person can be seen through referrals from practices in two PCNs or by two providers: people seen do not add up
measure("people_seen_svc", "People seen by a link worker, referred by the area's practices", geo="svc", unit="people", additive=False)
measure("people_seen_with_onward", "People seen with at least one onward referral", geo="svc", unit="people", additive=False,
        subset_of="people_seen_svc")
measure("referrals_svc_adults", "Referrals by the area's practices of people aged 16+ with a known IMD quintile (the DNA model's sample)",
        geo="svc", subset_of="referrals_svc")


# ------------------------------------------------------------------------------------------ keys

Key = tuple  # (measure_id, ((dim, node), ...)) with dims sorted; geo always present


def make_key(measure_id: str, coords: dict[str, str]) -> Key:
    """Canonical key: a coordinate at the root of its dimension ("All") is the same as no coordinate."""
    return (measure_id, tuple(sorted((d, n) for d, n in coords.items() if d == "geo" or n != ALL)))


def key_str(key: Key) -> str:
    if not isinstance(key, tuple):
        return str(key)
    m, coords = key
    return m + "".join(f"|{d}={n}" for d, n in coords)


def parse_key(s: str) -> Key:
    m, *parts = s.split("|")
    return (m, tuple(sorted(tuple(p.split("=", 1)) for p in parts)))


def dim_tree(dim: str, open_dims: dict[str, Tree] | None = None) -> Tree:
    if dim in CATEGORY_DIMS:
        return CATEGORY_DIMS[dim]
    if open_dims and dim in open_dims:
        return open_dims[dim]
    return open_dim(dim)


def _parent(key: Key, dim: str, node: str, open_dims) -> tuple[str, tuple[str, ...] | None] | None:
    """The parent node of ``node`` along ``dim`` for this key's measure, and its children if they are
    a known exhaustive list (None for an open list), or None if the node has no parent."""
    meas = get_measure(key[0])
    if dim == "geo":
        if meas.geo == "none":
            return None
        p = geo_parent(node)
        if p is None or (meas.geo == "area" and geo_level(node) != "borough"):
            return None
        kids = geo_children(p, "svc" if meas.geo == "area" else meas.geo)
        if node not in kids:
            raise CellError(f"{key_str(key)}: {node} is not in the '{meas.geo}' geography of measure {key[0]} "
                            "(a residence measure is by ward, a service measure by practice and PCN)")
        return p, kids
    if node == ALL:
        return None
    t = dim_tree(dim, open_dims)
    p = t.parent.get(node, ALL)
    return p, (t.children.get(p, ()) if t.exhaustive else None)


def relations(keys, open_dims: dict[str, Tree] | None = None) -> list[tuple[Key, tuple[Key, ...], bool]]:
    """Every additive relation implied by a set of cell keys: a list of (parent_key, child_keys, exact).

    For each key and each coordinate with a parent node, the parent cell (same measure, same other
    coordinates) is the sum of all its children (``exact``); along an open dimension (categories not
    known in advance: quarters, months, providers) the children present are all there are (tables
    publish such lists whole); along an overlapping one (reasons, cohorts) each child is at most the
    parent (``exact=False``).
    Parents are followed up to the root, so the whole lattice above the published cells is related;
    children that no table publishes are unknowns. Non-additive measures have no sum relations (a
    subset still bounds them cell by cell).
    """
    closure = set(keys)
    todo = list(closure)
    groups: dict[tuple[Key, str], set[Key]] = {}
    exact: dict[tuple[Key, str], bool] = {}
    while todo:
        key = todo.pop()
        m, coords = key
        meas = get_measure(m)
        cd = dict(coords)
        if meas.subset_of:  # holds cell by cell, whether or not the measure adds up
            # superset cell = this cell + the part outside the subset (unknown)
            sup = make_key(meas.subset_of, cd)
            rest = make_key(meas.subset_of + "~not~" + m, cd)
            gid = (sup, "subset of " + m)
            if gid not in groups:
                groups[gid] = {key, rest}
                exact[gid] = True
                MEASURES.setdefault(rest[0], Measure(rest[0], f"{meas.subset_of} outside {m}", meas.geo, False))
                for k in (sup,):
                    if k not in closure:
                        closure.add(k)
                        todo.append(k)
        if not meas.additive:
            continue
        for dim, node in coords:
            par = _parent(key, dim, node, open_dims)
            if par is None:
                continue
            p, kids = par
            pk = make_key(m, {**cd, dim: p})
            overlapping = dim != "geo" and dim_tree(dim, open_dims).overlapping
            gid = (pk, dim, node) if overlapping else (pk, dim)
            new = [pk] + ([make_key(m, {**cd, dim: k}) for k in kids] if kids is not None else [key])
            groups.setdefault(gid, set()).update(new[1:])
            # an open list (quarters, months, providers, bands) is published whole, so its parent is the sum;
            # overlapping categories (reasons, cohorts) only bound it
            exact[gid] = kids is not None or not overlapping
            for k in new:
                if k not in closure:
                    closure.add(k)
                    todo.append(k)
    return [(gid[0], tuple(sorted(ch)), exact[gid]) for gid, ch in sorted(groups.items(), key=lambda kv: str(kv[0]))]
