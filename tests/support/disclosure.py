"""The disclosure tests (tests/*/test_disclosure.py): shared inputs, helpers and fixtures.

Disclosure control: the rule, the cells and their relations, the linear-programming attacker, and
the release-level protection (spstudy.disclosure, spstudy.cells, spstudy.audit).
"""

from __future__ import annotations

import pandas as pd

from spstudy.publish import audit as A
from spstudy.publish import cells as C
from spstudy.publish import disclosure as D

R = D.Rules(7, 5)
CAMDEN, NCL = "E09000007", C.NCL_CODE


def _pcn_with_practices(n=3):
    from spstudy.inputs import reference

    gp = reference.gp_practices()
    pcn = gp.groupby("pcn_code").filter(lambda g: len(g) >= n)["pcn_code"].iloc[0]
    return pcn, list(gp.loc[gp["pcn_code"] == pcn, "practice_code"])


# ------------------------------------------------------------------------------------ the rule


# ---------------------------------------------------------------------------------- the cells


# -------------------------------------------------------------------------------- the attacker

def _problem(cells: dict, rels: list):
    p = A.Problem()
    for k, (lo, hi) in cells.items():
        p.variable(k, lo, hi)
    p.equalities = rels
    return p


# ----------------------------------------------------------------------------- release protection

def _slug(code):
    b = code
    while C.geo_level(b) not in ("borough", "ncl"):
        b = C.geo_parent(b)
    return {v: k for k, v in C._geo()["slug_code"].items()}[b]


def _referrals_by_practice(values: dict[str, float], area=None, measure="referrals_svc"):
    area = area or _slug(next(iter(values)))
    df = pd.DataFrame({"code": list(values), "referrals": list(values.values()), "registered": [5000.0] * len(values)})
    spec = D.TableSpec("t", "T", {"code": D.Label("Code"), "referrals": D.Count("Referrals", measure=measure),
                                   "registered": D.Public("Registered", "count"),
                                   "rate": D.Rate("Rate", count="referrals", per="registered", multiplier=1000, lower="rate_lower", upper="rate_upper")},
                       rows={"code": "geo"})
    return D.Item(area, "nb", spec, df)


