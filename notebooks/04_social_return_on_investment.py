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
#   spstudy:
#     after:
#     - 03_service_use_evaluation
# ---

# %% [markdown]
# # Social return on investment
#
# **Question.** What is the social return on the money spent on link workers, and how sure can we be?
#
# Method: the Cabinet Office / Social Value UK SROI guide (2012). Outcomes come from the matched
# evaluation (notebook 03) and only where its verdict allows them to be valued, never from raw
# before/after counts; every financial proxy and assumption is a parameter with its source; the
# uncertainty of the effect estimates and of the assumptions is carried into the ratio by Monte Carlo.
# **SROI is not cash saved**: GP appointments "avoided" free capacity that other patients use, and
# wellbeing values are not money anyone receives.

# %% tags=["parameters"]
area = "ncl"          # 'ncl' or a borough: barnet, camden, enfield, haringey, islington
pack_dir = None       # set by `spstudy packs`; without it the notebook previews its outputs
notebook = "04_social_return_on_investment"

# %%
from spstudy.publish.publisher import start

ctx = start(globals())  # validates the parameters (a misspelt injected one is an error) and sets up the publisher

import pandas as pd

from spstudy.analyses import evaluation, needs, valuation
from spstudy.publish import charts, findings
from spstudy.publish.disclosure import Count, Estimate, Label, Public

p, pub = ctx.params, ctx.publisher
conf = p.study.confidence  # the level of every interval below (parameters: study.confidence)
if ctx.build_dir:  # in a build, notebook 03 has written its result (Parquet tables, no pickle)
    shared = ctx.shared("evaluation")
    res = evaluation.EvaluationResult.read_parquet(shared)
    wbc = pd.read_parquet(shared / "wellbeing_change.parquet") if (shared / "wellbeing_change.parquet").exists() else pd.DataFrame()
else:  # run on its own (interactive): run the evaluation now
    ex = ctx.extracts
    res = evaluation.run(ex, evaluation.design_from_parameters(p), ctx.scope, engine=p.evaluation.engine)
    seen = res.units.loc[(res.units["treated"] == 1) & (res.units["seen"] == 1), "referral_id"]
    wbc = evaluation.wellbeing_change(ctx.local.wellbeing, seen, p.evaluation.wellbeing_thresholds.model_dump(), p.study.confidence).change
cov = needs.workforce_coverage(p.workforce.target_link_workers_per_10000)
fte = float(cov.loc[ctx.scope.covers(cov["borough_code"]).to_numpy(), "link_workers"].sum())
# Quantities are people x effect per person: computed from the people counts as published (rounded), so
# dividing a published quantity by a published effect gives back only what the pack already shows.
if len(wbc):
    wbc = wbc.assign(n_pairs=wbc["n_pairs"].map(pub.count_as_published))
out = valuation.analyse(res.sroi_inputs(), n_referred=pub.count_as_published(res.n_referred), wellbeing_change=wbc, link_worker_fte=fte,
                        assumptions=valuation.assumptions_from_parameters(p), seed=p.sroi.seed, credibility=res.verdict_mapping(), confidence=conf)

# %% [markdown]
# ## Impact map
# One row per outcome: stakeholder, indicator, quantity, financial proxy (source and price year),
# deadweight, attribution, displacement, drop-off and duration. An outcome whose effect estimate is not
# credible, or whose wellbeing measure has no published valuation, is listed with the reason and not valued.

# %%
est = lambda label, fmt="number": Estimate(label, ("people",), fmt)  # noqa: E731
pub.table("impact_map", out.impact_map, f"SROI impact map ({p.sroi.price_year} prices)", rows={"outcome": "sroi_outcome"},
          columns={"stakeholder": Label("Stakeholder"), "outcome": Label("Outcome"), "indicator": Label("Indicator"),
                   "people": Count("People (referred, or with a measured wellbeing change)"),
                   "effect_per_person": est("Effect per person (modelled)", "number"), "quantity": est("Quantity (modelled)"),
                   "financial_proxy": Public("Financial proxy (GBP)", "money"), "proxy_source": Label("Proxy source"),
                   "deadweight": Public("Deadweight", "share"), "attribution": Public("Attribution", "share"),
                   "displacement": Public("Displacement", "share"), "drop_off": Public("Drop-off", "share"),
                   "duration_years": Public("Duration (years)", "number"), "credibility": Label("Evaluation verdict"),
                   "valued": Label("Valued"), "valuation_note": Label("Why not valued"), "notes": Label("Notes")},
          notes="Quantities are modelled from effect estimates, not counts of people.")
pub.table("investment", out.investment, "Investment: link-worker service cost per year (GBP)",
          columns={"fte": Public("Link workers (review figure)", "fte"), "point": Public("Central cost (GBP)", "money"),
                   "low": Public("Low (GBP)", "money"), "high": Public("High (GBP)", "money")},
          notes=f"Link workers (NCL review 2024, in its units) x PSSRU 2024 band 4 cost GBP {p.sroi.link_worker_annual_cost:,.0f}, plus "
                f"{p.sroi.management_overhead[0]:.0%}-{p.sroi.management_overhead[1]:.0%} management costs; high = band 5.")

# %% [markdown]
# ## The ratio and its uncertainty
# The point estimate at the central assumptions, and the Monte Carlo median with the middle of the
# draws (95% of them at the default `study.confidence`): the median is the typical ratio once every uncertain input varies together.

# %%
money = lambda label: Estimate(label, (), "money")  # noqa: E731
ratio = lambda label: Estimate(label, (), "ratio")  # noqa: E731
pub.table("sroi_summary", out.summary, "SROI point estimate",
          columns={"investment": Public("Investment (GBP)", "money"), "present_value": money("Present value of outcomes (GBP)"),
                   "npv": money("Net present value (GBP)"), "sroi_ratio": ratio("SROI ratio"),
                   "ratio_service_use_only": ratio("Ratio from GP and A&E use alone"), "payback_months": Estimate("Payback (months)", (), "months"),
                   "payback_reached": Label("Payback within the benefit period"), "benefit_period_months": Public("Benefit period (months)", "integer"),
                   "unvalued_outcomes": Label("Not valued"), "note": Label("Note")})
pub.table("sroi_monte_carlo", out.monte_carlo, f"Monte Carlo ({p.sroi.monte_carlo_draws:,} draws, seed {p.sroi.seed}): SROI ratio",
          columns={"n": Public("Draws", "integer"), "ratio_median": ratio("Median ratio"), "ratio_lower": ratio(f"{50 * (1 - conf):g}th percentile"),
                   "ratio_upper": ratio(f"{50 * (1 + conf):g}th percentile"), "prob_ratio_gt_1_text": Label("Probability the ratio exceeds 1")})
pub.finding(findings.sroi_ratio, priority=2)
pub.finding(findings.payback, priority=4)
pub.table("tornado", out.tornado, "One-way sensitivity of the SROI ratio (each input at its low and high value)",
          columns={"input": Label("Input"), "low": Estimate("Low value", (), "number"), "high": Estimate("High value", (), "number"),
                   "ratio_low": ratio("Ratio at low"), "ratio_high": ratio("Ratio at high"), "base_ratio": ratio("Base ratio")})
pub.figure("tornado_plot", "One-way sensitivity of the SROI ratio (tornado)", charts.tornado, "tornado", charts.alt_tornado)
pub.table("break_even", out.break_even, "Break-even value of each input (the value at which the ratio equals 1)",
          columns={"input": Label("Input"), "break_even_value": Estimate("Break-even value", (), "number"),
                   "low": Estimate("Low value", (), "number"), "high": Estimate("High value", (), "number")},
          notes="Blank where no value in a plausible range brings the ratio to 1.")
