# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: spstudy (Python 3)
#     language: python
#     name: spstudy
# ---

# %% [markdown]
# # Service delivery
#
# **Questions managers ask every month.** How long do people wait for a first contact, and how long are
# they supported? How much support does a case get, and how many people are connected onward? Is each
# link worker's caseload within the review's 200 to 250 a year? Why are people referred, and by whom,
# and who does not attend? Is referral volume changing (statistical process control)? Which needs go
# unmet? By borough, PCN and provider, for the referrals made by the area's practices.

# %% tags=["parameters"]
area = "ncl"          # 'ncl' or a borough: barnet, camden, enfield, haringey, islington
pack_dir = None       # set by `spstudy packs`; without it the notebook previews its outputs
notebook = "05_service_delivery"

# %%
from spstudy.publish.publisher import start

ctx = start(globals())  # validates the parameters (a misspelt injected one is an error) and sets up the publisher

import pandas as pd

from spstudy.analyses import service
from spstudy.publish import cells, charts, findings
from spstudy.publish.disclosure import Count, Estimate, Label, Proportion, Public, Rate

p, pub, ex = ctx.params, ctx.publisher, ctx.extracts
conf = p.study.confidence  # the level of every interval below (parameters: study.confidence)
CI = pub.ci  # that level as labels say it, e.g. '95%'
here = ctx.scope.code
r, wf = ctx.local.referrals, ctx.local.workforce
rep = service.service_report(r, wf, p.study.referral_start, p.study.referral_end, p.study.referral_end, confidence=conf)
K = lambda t: service.keyed(t, here, ctx.area_name)  # noqa: E731
keys = {"unit": Label("Area, borough, PCN or provider"), "level": Label("Level"), "geo": Label("Code"), "provider": Label("Provider")}
rows = {"geo": "geo", "provider": "provider"}
svc = Count("Referrals", measure="referrals_svc")
pub.section(f"Service delivery in {ctx.area_name}", f"Referrals made by {ctx.area_name}'s practices between {p.study.referral_start} and "
            f"{p.study.referral_end}. Shares and rates are computed from the published (rounded) counts.")

# %% [markdown]
# ## How long do people wait?
# Days from referral to first contact and from first contact to closure: median with a distribution-free
# interval (at the `study.confidence` level), quartiles, and the share within 2 and 4 weeks (Wilson intervals).

# %%
wt = K(rep.waiting_times)
seen = {"outcome": "seen"}


def wait_columns(n: str, n_label: str, n_measure: str, within: str) -> dict:
    """Columns of a waiting-time table: the referrals with both dates (n), medians and quartiles of
    their waits, and how many came within 14 and 28 days (nested subsets of n)."""
    med = lambda label: Estimate(label, (n,), "days")  # noqa: E731
    return {**keys, n: Count(n_label, measure=n_measure, at=seen),
            "median_days": med("Median days"), "median_days_lower": med(f"Median: lower {CI} limit"),
            "median_days_upper": med(f"Median: upper {CI} limit"), "q1_days": med("Lower quartile (days)"),
            "q3_days": med("Upper quartile (days)"),
            "n_within_14_days": Count("Within 14 days", measure=f"{within}_within_14d", at=seen),
            "n_within_28_days": Count("Within 28 days", measure=f"{within}_within_28d", at=seen),
            **{f"pct_within_{d}_days": Proportion(f"% within {d} days", count=f"n_within_{d}_days", total=n,
                                                  lower=f"pct_within_{d}_days_lower", upper=f"pct_within_{d}_days_upper")
               for d in (14, 28)}}


def wait_table(interval: str, n: str) -> pd.DataFrame:
    t = wt[wt["interval"] == interval].rename(columns={"n_referrals_with_interval": n, "n_referrals_within_14_days": "n_within_14_days",
                                                       "n_referrals_within_28_days": "n_within_28_days"})
    return t[[c for c in t.columns if c not in ("interval", "n_referrals")]]


pub.table("wait_to_first_contact", wait_table("referral to first contact", "n_referrals_seen"),
          f"Days from referral to first contact, referrals seen, {ctx.area_name}", rows=rows,
          columns=wait_columns("n_referrals_seen", "Referrals seen", "referrals_svc", "seen"),
          notes="Every referral seen has a first contact date (the data contract checks it). Days are whole days; "
                "medians and quartiles are observed waits (nearest rank) and are shown only where the count behind them is.")
pub.table("support_duration", wait_table("first contact to closure", "n_referrals_seen_closed"),
          f"Days from first contact to closure, referrals seen and closed, {ctx.area_name}", rows=rows,
          columns=wait_columns("n_referrals_seen_closed", "Referrals seen and closed", "referrals_closed_svc", "closed"),
          notes="Cases still open at the end of the study period are not included. Days are whole days; medians and "
                "quartiles are observed durations (nearest rank) and are shown only where the count behind them is.")
pub.figure("median_wait_by_unit", "Median days from referral to first contact", charts.forest, "wait_to_first_contact", charts.alt_forest,
           label="unit", est="median_days", lower="median_days_lower", upper="median_days_upper", log=False, ref=14,
           where={"provider": "All"},
           title=f"Days from referral to first contact (median, {CI} CI), {ctx.area_name}", xlabel="Days (reference line: 14 days)")
pub.finding(findings.waiting, priority=2, area_code=here)

# %% [markdown]
# ## How much support does a case get?
# Contacts per case seen, and onward referrals (connections to community support) per person seen.

# %%
ct = K(rep.contacts)
cest = lambda label: Estimate(label, ("n_referrals_seen",), "score")  # noqa: E731
pub.table("contacts", ct, f"Link-worker contacts per case seen, {ctx.area_name}", rows=rows,
          columns={**keys, "n_referrals_seen": Count("Referrals seen", measure="referrals_svc", at=seen), "n_contacts": Count("Contacts"),
                   "mean_contacts": Rate("Contacts per case seen", count="n_contacts", per="n_referrals_seen", multiplier=1,
                                         lower="mean_contacts_lower", upper="mean_contacts_upper", fmt="score"),
                   "median_contacts": cest("Median contacts"), "q1_contacts": cest("Lower quartile"), "q3_contacts": cest("Upper quartile")})
on = K(rep.onward)
pub.table("onward_referrals", on, f"Onward referrals per person seen, {ctx.area_name}", rows=rows,
          columns={**keys, "n_people_seen": Count("People seen", measure="people_seen_svc"), "n_onward_referrals": Count("Onward referrals"),
                   "onward_per_person": Rate("Onward referrals per person seen", count="n_onward_referrals", per="n_people_seen",
                                             multiplier=1, lower="onward_per_person_lower", upper="onward_per_person_upper", fmt="score"),
                   "n_people_with_onward": Count("People with at least one", measure="people_seen_with_onward"),
                   "pct_with_onward": Proportion("% with at least one onward referral", count="n_people_with_onward", total="n_people_seen",
                                                 lower="pct_with_onward_lower", upper="pct_with_onward_upper")})

# %% [markdown]
# ## Caseload against the review's 200 to 250 people per link worker a year
# People seen in the year per link worker (the review's figure, in its units), against the NCL review's
# 200-250 (p.51). By borough: the workforce return does not tie posts to PCNs or providers.

# %%
cl = rep.caseload.assign(unit=lambda d: d["borough_code"].map(dict(zip(cells.reference.BOROUGHS["borough_code"],
                                                                              cells.reference.BOROUGHS["borough_name"]))))
pub.table("caseload", cl, f"Caseload per link worker against 200-250 a year, {ctx.area_name}", rows={"borough_code": "geo"},
          columns={"borough_code": Label("Borough code"), "unit": Label("Borough"), "fte_link_workers": Public("Link workers", "fte"),
                   "n_people_seen": Count("People seen in the year", measure="people_seen_svc"), "n_people_open": Count("Open cases at the end of the year"),
                   "annual_caseload_per_fte": Rate("People seen per link worker", count="n_people_seen", per="fte_link_workers",
                                                   multiplier=1, lower="annual_caseload_per_fte_lower",
                                                   upper="annual_caseload_per_fte_upper", fmt="number"),
                   "open_caseload_per_fte": Rate("Open cases per link worker", count="n_people_open", per="fte_link_workers",
                                                 multiplier=1, fmt="number"),
                   "position": Label("Against 200-250")},
          source=service.REVIEW_CASELOAD_SOURCE)
pub.finding(findings.caseload, priority=3)

# %% [markdown]
# ## Why are people referred, and by whom?
# Reasons (a referral can have several, so shares add to more than 100%), sources, and who does not attend,
# by area, borough and PCN. Providers are compared on waiting, contacts, onward referral and caseload above;
# crossing provider with reason, source and outcome as well would publish a cube of small cells that the
# release's disclosure control would have to suppress wholesale.

# %%
by_unit = lambda t: t[t["provider"] == "All"].reset_index(drop=True)  # noqa: E731
rs = by_unit(K(rep.reasons))
pub.table("reasons", rs, f"Reasons for referral, {ctx.area_name}", rows={**rows, "reason": "reason"},
          columns={**keys, "reason": Label("Reason"), "n_referrals_with_reason": Count("Referrals giving the reason", measure="referrals_svc"),
                   "n_referrals": Count("All referrals", measure="referrals_svc", at={"reason": "All"}),
                   "pct_of_referrals": Proportion("% of referrals", count="n_referrals_with_reason", total="n_referrals",
                                                  lower="pct_of_referrals_lower", upper="pct_of_referrals_upper")},
          notes="A referral can give several reasons: the shares add to more than 100%.")
src = by_unit(K(rep.sources))
pub.table("sources", src, f"Referral sources, did not attend and declined by source, {ctx.area_name}", rows={**rows, "source": "source"},
          columns={**keys, "source": Label("Source"), "n_referrals_from_source": Count("Referrals", measure="referrals_svc"),
                   "n_referrals": Count("All referrals", measure="referrals_svc", at={"source": "All"}),
                   "n_referrals_dna": Count("Did not attend", measure="referrals_svc", at={"outcome": "dna"}),
                   "n_referrals_declined": Count("Declined", measure="referrals_svc", at={"outcome": "declined"}),
                   "pct_of_referrals": Proportion("% of referrals", count="n_referrals_from_source", total="n_referrals",
                                                  lower="pct_of_referrals_lower", upper="pct_of_referrals_upper"),
                   "pct_dna": Proportion("% did not attend", count="n_referrals_dna", total="n_referrals_from_source",
                                         lower="pct_dna_lower", upper="pct_dna_upper"),
                   "pct_declined": Proportion("% declined", count="n_referrals_declined", total="n_referrals_from_source",
                                              lower="pct_declined_lower", upper="pct_declined_upper")})
pub.figure("dna_by_source", "Did not attend, by referral source", charts.bars, "sources", charts.alt_bars, label="source",
           value="pct_dna", lower="pct_dna_lower", upper="pct_dna_upper", where={"geo": here, "provider": "All"},
           title=f"Did not attend, by referral source, {ctx.area_name}", xlabel="Referral source", ylabel=f"% did not attend ({CI} CI)")
pub.finding(findings.sources, priority=3, area_code=here)

# %% [markdown]
# ## Is referral volume changing?
# Monthly referrals as XmR charts with the NHS England *Making Data Count* rules for special-cause
# variation (a point outside the 3-sigma limits, a run of 7 on one side of the mean, a trend of 7, two of
# three beyond 2 sigma). The limits are computed from the published (rounded) monthly counts.

# %%
mo = K(rep.monthly).assign(month=lambda d: d["month"].astype(str))
pub.table("monthly_referrals", mo, f"Referrals by month, {ctx.area_name}", rows={"geo": "geo", "month": "month"},
          columns={"unit": Label("Area or borough"), "geo": Label("Code"), "month": Label("Month"), "n_referrals": svc})
pub.view("monthly_referrals_xmr", f"XmR statistics of monthly referrals, {ctx.area_name}", of="monthly_referrals",
         select=findings.select_xmr, columns=["unit", "geo", "month", "n_referrals", "mean", "process_limit_lower", "process_limit_upper",
                                              "near_limit_lower", "near_limit_upper", "special_cause", "rule", "direction", "variation"],
         labels={"mean": ["Mean", "number"], "process_limit_lower": ["Lower process limit", "number"],
                 "process_limit_upper": ["Upper process limit", "number"], "near_limit_lower": ["Lower 2-sigma", "number"],
                 "near_limit_upper": ["Upper 2-sigma", "number"], "special_cause": "Special cause", "rule": "Rule broken",
                 "variation": "Variation", "direction": "Direction"})
pub.figure("xmr_monthly_referrals", "Monthly referrals: XmR control chart", charts.xmr, "monthly_referrals_xmr", charts.alt_xmr,
           value="n_referrals", period="month", series="unit", title=f"Monthly referrals, {ctx.area_name}", ylabel="Referrals per month")
pub.finding(findings.special_cause, priority=4)

# %% [markdown]
# ## Unmet need
# Referrals closed without an onward connection, by reason and outcome, by area, borough and PCN: the
# unmet need the review asks services to document.

# %%
un = by_unit(K(rep.unmet_need))
# all closed referrals and those of people seen (for a referral not seen every closure is without a connection)
un = un[un["outcome"].isin(["all", "seen"])].assign(outcome=lambda d: d["outcome"].map({"all": "All", "seen": "seen"}))
pub.table("unmet_need", un, f"Closed referrals with no onward connection, by reason, {ctx.area_name}",
          rows={**rows, "reason": "reason", "outcome": "outcome"},
          columns={**keys, "reason": Label("Reason"), "outcome": Label("Outcome ('All': any outcome)"),
                   "n_referrals_closed": Count("Closed referrals", measure="referrals_closed_svc"),
                   "n_referrals_closed_no_onward": Count("Closed with no onward connection", measure="closed_no_onward_svc"),
                   "pct_no_onward": Proportion("% with no onward connection", count="n_referrals_closed_no_onward",
                                               total="n_referrals_closed", lower="pct_no_onward_lower", upper="pct_no_onward_upper")},
          notes="A referral can give several reasons: it is counted under each. Referrals that did not attend or declined "
                "are closed without a connection by definition; the 'seen' rows are the service's own unmet need.")
pub.finding(findings.unmet, priority=3, area_code=here)
