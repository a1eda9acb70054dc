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
# # Social return on investment
#
# **Question.** What is the social return on the money spent on link workers, and how sure can we be?
#
# Method: the Cabinet Office / Social Value UK SROI guide (2012). Outcomes come from the matched
# evaluation (notebook 03), not from raw before/after counts; every financial proxy and assumption is
# a parameter with its source; uncertainty from the effect estimates and the assumption ranges is
# carried into the ratio by Monte Carlo. Logic: `spstudy.valuation` and `spstudy.sroi`.
#
# **What SROI can and cannot claim.** The ratio says how the valued outcomes compare with the cost,
# under the stated proxies and assumptions. It is not cash saved: GP appointments "avoided" free
# capacity that is used by other patients, and wellbeing values are not money anyone receives.

# %% tags=["parameters"]
area = "ncl"
pack_dir = None
notebook = "04_social_return_on_investment"

# %%
import pickle

import pandas as pd
from IPython.display import display

from spstudy import evaluation, needs, sroi, valuation
from spstudy.publish import start

ctx = start(area, notebook, pack_dir)
p, pub = ctx.params, ctx.publisher
cached = ctx.work_dir / "evaluation.pkl"
if cached.exists():  # written by notebook 03 in the same pack
    ev = pickle.loads(cached.read_bytes())
else:  # interactive run on its own: run the evaluation now
    r = evaluation.run(ctx.extracts, p, area)
    seen = r["data"].loc[(r["data"]["treated"] == 1) & (r["data"]["seen"] == 1), "referral_id"]
    wbc, _ = evaluation.wellbeing_change(ctx.extracts.wellbeing, seen, p.evaluation.wellbeing_thresholds)
    ev = {"matched": r["matched"], "n_referred": int(r["data"]["treated"].sum()), "n_seen": int(r["data"]["seen"].sum()), "wellbeing_change": wbc}
wbc = ev["wellbeing_change"]
ls = None
if len(wbc) and (wbc["measure"] == "ons4_life_satisfaction").any():
    row = wbc[wbc["measure"] == "ons4_life_satisfaction"].iloc[0]
    ls = {"mean_change": row["mean_change"], "lower": row["ci_lower"], "upper": row["ci_upper"], "n_pairs": row["n_pairs"]}
cov = needs.workforce_coverage(p.workforce.target_link_workers_per_10000)
fte = cov["link_workers"].sum() if area == "ncl" else float(cov.loc[cov["borough_name"] == ctx.area_name, "link_workers"].iloc[0])
out = valuation.analyse(p, ev["matched"], ev["n_referred"], ev["n_seen"], ls, fte)

# %% [markdown]
# ## Impact map
# One row per outcome: stakeholder, indicator, quantity, financial proxy (source and price year),
# deadweight, attribution, displacement, drop-off and duration.

# %%
display(pub.table("impact_map", out["impact_map"].round(3), f"SROI impact map ({p.sroi.price_year} prices)",
                  notes="Quantities are modelled from effect estimates, not counts of people, so they are not rounded.", round_counts=False))
inv = out["investment"]
display(pub.table("investment", pd.DataFrame([inv]).round(0), "Investment: link-worker service cost per year (GBP)",
                  notes=f"{inv['fte']:g} FTE link workers (NCL review 2024) x PSSRU 2024 band 4 cost GBP {p.sroi.link_worker_annual_cost:,}, "
                        f"plus {p.sroi.management_overhead[0]:.0%}-{p.sroi.management_overhead[1]:.0%} management costs; high = band 5.", round_counts=False))

# %% [markdown]
# ## The ratio and its uncertainty

# %%
s = out["summary"]
display(pub.table("sroi_summary", s.round(3), "SROI point estimate", round_counts=False))
mc = out["monte_carlo"]
display(pub.table("sroi_monte_carlo", mc.summary.round(3), f"Monte Carlo ({p.sroi.monte_carlo_draws:,} draws): SROI ratio", round_counts=False))
m = mc.summary.iloc[0]
pub.finding(f"Social return: GBP {m['ratio_median']:.2f} of valued outcomes per GBP 1 invested (95% interval {m['ratio_q025']:.2f} to {m['ratio_q975']:.2f}); "
            f"probability the ratio exceeds 1: {m['prob_ratio_gt_1']:.0%}.")
fig = sroi.tornado_plot(out["tornado"]).figure
pub.figure("tornado", fig, "One-way sensitivity of the SROI ratio (tornado)", data=out["tornado"].round(4),
           alt="Tornado chart of the SROI ratio at the low and high value of each input, widest swing at the top.")
display(pub.table("break_even", out["break_even"].round(4), "Break-even value of each input (the value at which the ratio equals 1)",
                  notes="Empty where no value in a plausible range brings the ratio to 1."))
