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
# # Matched pre/post service-use evaluation
#
# **Question.** Did social prescribing change GP and A&E use, and wellbeing, compared with people
# like those referred who were not referred?
#
# People are referred when their GP use peaks, so their use falls afterwards whatever happens:
# a raw before/after count ("70% fewer GP visits") mixes any effect with this regression to the
# mean. This notebook shows the raw figure and the matched difference in differences side by side.
# Logic: `spstudy.evaluation` (cohort, matching, effects), `spstudy.engine` (event counts on DuckDB).

# %% tags=["parameters"]
area = "ncl"
pack_dir = None
notebook = "03_service_use_evaluation"

# %%
import pickle

from IPython.display import display

from spstudy import evaluation, matching
from spstudy.disclosure import safe_label
from spstudy.publish import start

ctx = start(area, notebook, pack_dir)
p, pub, ex = ctx.params, ctx.publisher, ctx.extracts
engine = p.evaluation.engine  # parameters: evaluation.engine (duckdb, spark or pandas)
res = evaluation.run(ex, p, area, engine=engine)
w = max(p.evaluation.windows_months)
n_ = lambda x: safe_label(x, p.disclosure.threshold, p.disclosure.rounding_base)  # counts of people in text are rounded too

# %% [markdown]
# ## Cohort and matching
# Referred people (first referral in the study period) and registered people never referred, each
# given a pseudo-index date in the same months. Matching: propensity score on age, sex,
# deprivation, ethnic group and prior GP/A&E use; nearest neighbour on the logit with a caliper of
# 0.2 SD, exact on sex and PCN.

# %%
flow, sizes = evaluation.sample_sizes(res["match"], res["flow"])
display(pub.table("cohort_flow", flow, "Cohort: who is in the evaluation", counts=["n"]))
display(pub.table("matching_sample_sizes", sizes.fillna(0), "Matching: sample sizes (MatchIt conventions)", counts=[c for c in ("Control", "Treated") if c in sizes.columns]))
lost = res["match"].n_treated_lost_to_caliper + res["match"].n_treated_no_controls_in_stratum + res["match"].n_treated_pool_exhausted
n_t = int(res["data"]["treated"].sum())
if lost:
    pub.text(f"{n_(lost)} of {n_(n_t)} referred people found no comparator within the caliper or their stratum. The estimate is for the matched "
             "referred people, who may differ from all referred people (the estimand is no longer the effect in all referred).")

# %%
bal = res["balance"]
show = bal.pivot_table(index="variable", columns="sample", values="smd", sort=False).reset_index()
display(pub.table("balance", bal.round(3), "Covariate balance before and after matching", notes=f"Standardised mean differences; target |SMD| < {p.evaluation.smd_threshold}."))
adj = bal[bal["sample"] == "Adjusted"]
psv = set(evaluation.ps_covariates(p)) | {"ps"}
in_ps = adj[adj["variable"].str.startswith(tuple(psv))]
other = adj[~adj.index.isin(in_ps.index)]
pub.finding(f"After matching, {int((in_ps['smd'].abs() < p.evaluation.smd_threshold).sum())} of {len(in_ps)} matching variables have |SMD| < "
            f"{p.evaluation.smd_threshold} (largest {in_ps['smd'].abs().max():.3f}; before matching the largest was "
            f"{bal[bal['sample'] == 'Unadjusted']['smd'].abs().max():.2f}). Use in the last six months before referral is not matched on, by design: "
            f"it differs by up to {other['smd'].abs().max():.2f} SD because referral follows a peak in use, and the DiD baseline and washout handle it.")
fig = matching.love_plot(bal, threshold=p.evaluation.smd_threshold).figure
pub.figure("love_plot", fig, "Balance before and after matching (Love plot)",
           alt=f"Love plot: absolute standardised mean differences for {adj.shape[0]} covariates before and after matching; after matching all but "
               f"{int((adj['smd'].abs() >= p.evaluation.smd_threshold).sum())} lie below the 0.1 line.")
fig = matching.overlap_plot(res["data"], "treated", "ps", matched="weight").figure
pub.figure("ps_overlap", fig, "Propensity score overlap", alt="Histograms of the propensity score for referred and comparator people, before and after matching, showing the overlap.")

# %% [markdown]
# ## Effects on GP and A&E use
# Naive: referred people's rate after referral over their rate before. Matched: the change in
# referred people minus the change in their matched comparators (difference in differences),
# as a ratio of rate ratios (Poisson GLM, cluster-robust errors by matched set) and as an
# absolute difference per 1,000 person-years (cluster bootstrap).

# %%
sbs = res["side_by_side"]
display(pub.table("naive_vs_matched", sbs.round(2), "Naive before/after against matched difference in differences (% change)",
                  counts=["n_referred", "n_matched_referred"], notes="Per protocol = people seen by a link worker; ITT = all referred."))
display(pub.table("rates_matched", res["matched"].round(3), "Rates per 1,000 person-years before and after, referred and matched comparators",
                  counts=["n_treated"]))
display(pub.table("rates_naive", res["naive"].round(3), "Referred people only: rates before and after referral", counts=["n_referred", "events_pre", "events_post"],
                  derived={"events_pre": ["rate_pre"], "events_post": ["rate_post"]}))
for s, name in (("gp", "GP appointments"), ("ae", "A&E attendances")):
    r = sbs[(sbs["setting"] == s) & (sbs["window_months"] == w) & (sbs["cohort"] == "itt")].iloc[0]
    pub.finding(f"{name}, {w} months, all referred: the raw before/after change is {r['naive_pct_change']:+.0f}%; against matched comparators it is "
                f"{r['matched_pct_change']:+.0f}% (95% CI {r['matched_lower']:+.0f}% to {r['matched_upper']:+.0f}%). "
                + (f"The raw figure overstates the effect: about {100 * (r['naive_pct_change'] - r['matched_pct_change']) / r['naive_pct_change']:.0f}% "
                   "of the raw fall would have happened anyway." if r["naive_pct_change"] < r["matched_pct_change"] < 0 else
                   "The raw figure overstates the effect." if r["naive_pct_change"] < r["matched_pct_change"] else ""))
fig = evaluation.naive_vs_matched_plot(sbs)
pub.figure("naive_vs_matched_plot", fig, "Naive and matched estimates", alt="Forest plot comparing the naive before/after % change with the matched difference-in-differences % change and 95% intervals, for GP and A&E use.")

# %% [markdown]
# ## Event study and placebo test
# Monthly rates around the index date for matched referred people and comparators; a placebo
# index 12 months earlier should show no effect.

# %%
es = evaluation.event_study(ex.activity, res["data"], res["match"].pairs, engine=engine)
fig = evaluation.event_study_plot(es)
pub.figure("event_study", fig, "Monthly GP and A&E rates around referral", data=es.round(2), counts=["events_unweighted"],
           derived={"events_unweighted": ["rate_per_1000py"]},
           alt="Line charts of monthly GP and A&E rates per 1,000 person-years from 12 months before to 12 months after referral: referred people rise to a peak just before referral and fall back; matched comparators stay flat.")
pl = evaluation.placebo(ex, p, area, engine=engine)
display(pub.table("placebo", pl.round(3), f"Placebo test: index date {p.evaluation.placebo_shift_months} months earlier", counts=["n_treated"]))
gp_pl = pl[pl["setting"] == "gp"].iloc[0]
pub.finding(f"Placebo test (index {p.evaluation.placebo_shift_months} months early): GP ratio of rate ratios {gp_pl['ratio_of_rate_ratios']:.2f} "
            f"(95% CI {gp_pl['rrr_lower']:.2f} to {gp_pl['rrr_upper']:.2f})" + (", consistent with no effect where none can exist." if gp_pl["rrr_lower"] <= 1 <= gp_pl["rrr_upper"] else
                                                                                ": the design shows an 'effect' where none can exist, so some bias remains."))

# %% [markdown]
# ## Against NHS England's Universal Personalised Care expectations

# %%
upc = evaluation.upc_comparison(res["data"], res["matched"], p.evaluation.upc_expectations)
display(pub.table("upc_comparison", upc.round(1), "Observed against the Universal Personalised Care expectations"))

# %% [markdown]
# ## Wellbeing
# Paired change among people seen with baseline and follow-up scores. There is no comparison group
# for wellbeing, so this is change, not effect; the attrition table shows whether those who
# returned a follow-up differed at baseline.

# %%
seen = res["data"].loc[(res["data"]["treated"] == 1) & (res["data"]["seen"] == 1), "referral_id"]
wb_change, wb_att = evaluation.wellbeing_change(ex.wellbeing, seen, p.evaluation.wellbeing_thresholds)
if len(wb_change):
    stat_cols = [c for c in wb_change.columns if c not in ("measure", "higher_is_better", "n_pairs", "n_improved", "n_worsened", "confidence", "threshold", "wilcoxon_method")]
    display(pub.table("wellbeing_change", wb_change.round(3), "Paired change in wellbeing among people seen",
                      counts=["n_pairs", "n_improved", "n_worsened"],
                      derived={"n_pairs": stat_cols, "n_improved": ["pct_improved", "pct_improved_lower", "pct_improved_upper", "pct_no_meaningful_change"],
                               "n_worsened": ["pct_worsened", "pct_worsened_lower", "pct_worsened_upper", "pct_no_meaningful_change"]}))
    if len(wb_att):
        display(pub.table("wellbeing_attrition", wb_att.round(3), "Attrition: baseline scores of people with and without follow-up", counts=["n"],
                          derived={"n": ["pct_of_baseline", "mean_baseline", "sd_baseline", "ci_lower", "ci_upper", "p_value"]}))
    for _, r in wb_change.iterrows():
        if r["measure"] in ("wemwbs_total", "swemwbs_metric", "ons4_life_satisfaction"):
            pub.finding(f"{evaluation.MEASURE_LABELS.get(r['measure'], r['measure'])}: mean change {r['mean_change']:+.2f} (95% CI {r['ci_lower']:+.2f} to {r['ci_upper']:+.2f}) in {n_(int(r['n_pairs']))} people seen with a follow-up score (no comparison group: change, not effect).")
else:
    pub.text("No wellbeing measurements for this area's referred cohort.")

# %%
# Hand the effect estimates to the SROI notebook (not published: intermediate results of this pack)
with open(ctx.work_dir / "evaluation.pkl", "wb") as fh:
    pickle.dump({"matched": res["matched"], "n_referred": n_t, "n_seen": int(res["data"].loc[res["data"]["treated"] == 1, "seen"].sum()),
                 "wellbeing_change": wb_change}, fh)
