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
# # Population needs assessment by ward
#
# **Questions.** Where is the need for social prescribing? How many people are referred from each
# ward compared with what we would expect? Is the link-worker workforce where the need is?
#
# Denominators are real open data (Census 2021, ONS mid-2020 estimates, IMD 2025); referrals come
# from the extract (synthetic unless you point `data.extracts_dir` at your own). Logic lives in
# `spstudy.needs`; every table below has passed disclosure control.

# %% tags=["parameters"]
area = "ncl"          # 'ncl' or a borough: barnet, camden, enfield, haringey, islington
pack_dir = None       # set by `spstudy packs`; interactive runs write to outputs/interactive/<area>
notebook = "01_needs_assessment"

# %%
from IPython.display import display

from spstudy import figures, needs
from spstudy.disclosure import safe_label
from spstudy.publish import start

ctx = start(area, notebook, pack_dir)
p, pub, ex = ctx.params, ctx.publisher, ctx.extracts
years = ((p.study.referral_end - p.study.referral_start).days + 1) / 365.25
ref = ex.referrals[ex.referrals["borough_code"].isin(ctx.borough_codes)]
pub.section(f"Need and referrals in {ctx.area_name}",
            f"{safe_label(len(ref), p.disclosure.threshold, p.disclosure.rounding_base)} referrals between {p.study.referral_start} and {p.study.referral_end} "
            f"({years:.2f} years), against Census 2021 ward populations.")

# %% [markdown]
# ## Ward needs profile
# Population, age, deprivation, ethnicity, language, health, disability and caring by ward, and a
# composite need index (weighted mean of z-scores against all NCL wards; weights in the parameters).

# %%
profile = needs.ward_needs_profile(area, ref, ex.persons, p.needs.need_index_weights, p.needs.outreach_need_quantile, years)
cols = ["ward22_name", "borough_name", "residents", "pct_aged_65_plus", "imd2025_score", "imd2025_pct_decile1_2",
        "pct_white", "pct_asian", "pct_black", "pct_mixed", "pct_other_ethnic", "pct_poor_english",
        "pct_household_no_english", "pct_bad_health", "pct_disabled", "pct_unpaid_carers", "need_index", "need_rank"]
display(pub.table("ward_profile", profile[cols].sort_values("need_rank").round(2), "Ward needs profile (Census 2021, IMD 2025, mid-2020 estimates)",
                  counts=["residents"], source="ONS Census 2021; ONS mid-2020 estimates; MHCLG IoD 2025; spstudy need index"))
display(pub.table("indicator_definitions", needs.indicator_dictionary(), "Indicator definitions and sources"))

# %%
wards_sens, comp_sens = needs.need_index_sensitivity(profile, p.needs.need_index_weights, seed=1)
display(pub.table("need_index_sensitivity_components", comp_sens.round(3), "Sensitivity of the ward ranking: leave one component out",
                  notes="Spearman correlation between the ranking without the component and the base ranking."))
display(pub.table("need_index_sensitivity_wards", wards_sens.round(1), "Sensitivity of the ward ranking to random weights (Dirichlet, 500 draws)"))
top = profile.sort_values("need_rank").head(p.needs.top_wards_to_label)
top_sens = wards_sens.head(p.needs.top_wards_to_label)["pct_draws_top_fifth"]
pub.finding(f"Highest-need wards: {', '.join(top['ward22_name'])}. Under 500 random re-weightings of the index they stay in the "
            f"top fifth of {ctx.area_name}'s wards in {top_sens.min():.0f}% to {top_sens.max():.0f}% of draws; the ranking correlates at "
            f"rho >= {comp_sens['spearman_with_base_ranking'].min():.2f} with any ranking that leaves one component out.")

# %%
fig = figures.choropleth(profile, "need_index", area, f"Need index for social prescribing, {ctx.area_name}",
                         "Need index (z-score, higher = more need)", cmap="viridis", label_top=p.needs.top_wards_to_label)
pub.figure("map_need_index", fig, "Need index by ward",
           alt=f"Map of {len(profile)} wards in {ctx.area_name} shaded by the need index; the highest-need wards are labelled: {', '.join(top['ward22_name'])}.")
fig = figures.choropleth(profile, "imd2025_score", area, f"Deprivation (IMD 2025 score), {ctx.area_name}",
                         "IMD 2025 score (population-weighted; higher = more deprived)", cmap="cividis")
pub.figure("map_deprivation", fig, "Deprivation by ward (IMD 2025)",
           alt=f"Map of wards in {ctx.area_name} shaded by IMD 2025 score, from {profile['imd2025_score'].min():.0f} to {profile['imd2025_score'].max():.0f}.")

# %% [markdown]
# ## Referrals by ward: crude, age-standardised and observed against expected
# Crude rates per 1,000 residents per year (Byars / exact Poisson intervals), directly
# age-standardised rates (2013 European Standard Population, Dobson intervals) and the standardised
# referral ratio (observed / expected x 100, expected from NCL rates by age band and sex).

# %%
rates = profile[["ward22_name", "borough_name", "referrals", "person_years", "crude_rate", "crude_lower", "crude_upper",
                 "dsr_rate", "dsr_lower", "dsr_upper", "expected", "referral_ratio", "ratio_lower", "ratio_upper", "funnel"]]
display(pub.table("ward_referral_rates", rates.round(2), "Referral rates and standardised referral ratios by ward",
                  counts=["referrals"], derived={"referrals": ["crude_rate", "crude_lower", "crude_upper", "dsr_rate", "dsr_lower", "dsr_upper",
                                                               "referral_ratio", "ratio_lower", "ratio_upper", "funnel"]},
                  notes="Rates per 1,000 residents per year. Ratio 100 = as many referrals as NCL age-sex rates predict."))
fig = figures.funnel_plot(profile, "expected", "referral_ratio", "ratio", f"Standardised referral ratio by ward, {ctx.area_name}",
                          "Expected referrals (log scale)", "Standardised referral ratio (100 = as expected)", multiplier=100, label="ward22_name")
pub.figure("funnel_wards", fig, "Funnel plot of ward referral ratios",
           alt=f"Funnel plot: {int((profile['funnel'] != 'within limits').sum())} of {len(profile)} wards lie outside the 95% limits around a ratio of 100.")
fig = figures.choropleth(profile, "referral_ratio", area, f"Standardised referral ratio, {ctx.area_name}",
                         "Observed / expected referrals x 100", center=100)
pub.figure("map_referral_ratio", fig, "Standardised referral ratio by ward",
           alt="Map of wards shaded by referral ratio, purple below 100 (fewer referrals than expected) and orange above.")

# %%
for level, title in (("pcn_code", "PCN"), ("practice_code", "practice")):
    pr = needs.referral_rates_by_practice(ref, area, years, level)
    name = "pcn_name" if level == "pcn_code" else "practice_name"
    keep = [c for c in [name, "pcn_name", "registered_patients", "referrals", "rate", "lower", "upper", "funnel"] if c in pr.columns]
    keep = list(dict.fromkeys(keep))
    display(pub.table(f"referral_rates_by_{title.lower()}", pr[keep].round(2), f"Referrals per 1,000 registered patients by {title}",
                      counts=["referrals"], derived={"referrals": ["rate", "lower", "upper", "funnel"]}))
    fig = figures.funnel_plot(pr[pr["referrals"] > 0].assign(rate_pp=pr["rate"]), "person_years", "rate", "rate", f"Referral rate by {title}",
                              "Registered patients (log scale)", "Referrals per 1,000 registered patients per year",
                              target=1000 * pr["referrals"].sum() / pr["person_years"].sum(), multiplier=1000, label=name)
    pub.figure(f"funnel_{title.lower()}", fig, f"Funnel plot of referral rates by {title}",
               alt=f"Funnel plot of referral rates for {len(pr)} {title}s; {int((pr['funnel'].str.startswith(('above', 'below'))).sum())} lie outside the 95% limits.")

# %% [markdown]
# ## Where need is high and referrals are low
# Wards in the top fifth of NCL need with fewer referrals than expected are candidates for proactive outreach.

# %%
cand = needs.outreach_candidates(profile, p.needs.outreach_need_quantile, p.needs.outreach_referral_ratio_below)
display(pub.table("outreach_candidates", cand.round(2), "Candidate wards for proactive outreach: high need, fewer referrals than expected",
                  counts=["referrals"], derived={"referrals": ["referral_ratio", "ratio_lower", "ratio_upper"]}))
sig = cand[cand["evidence"].str.startswith("significantly")]
if len(cand):
    pub.finding(f"{len(cand)} high-need ward(s) have fewer referrals than expected" +
                (f"; in {len(sig)} ({', '.join(sig['ward22_name'].head(5))}{', ...' if len(sig) > 5 else ''}) the shortfall is statistically clear."
                 if len(sig) else "; in none is the shortfall statistically clear."))
else:
    pub.finding(f"No ward in the top fifth of NCL need has fewer referrals than expected in {ctx.area_name}.")

# %% [markdown]
# ## Workforce coverage
# Link workers per 10,000 population against the target of one FTE per 10,000 (NHS England
# Universal Personalised Care), using the NCL Training Hub review's own counts, and its published
# coverage figures checked against those counts.

# %%
cov = needs.workforce_coverage(p.workforce.target_link_workers_per_10000)
if area != "ncl":
    cov_show = cov[cov["borough_name"] == ctx.area_name]
else:
    cov_show = cov
display(pub.table("workforce_coverage", cov.round(3), "Link worker coverage by borough against the 1 per 10,000 target",
                  notes="Workforce counts from the NCL Training Hub review (2024); population as the review quotes it, else Census 2021.", round_counts=False))
bad = cov[~cov["published_consistent"]]
for _, r in cov_show.iterrows():
    pub.finding(f"{r['borough_name']}: {r['link_workers']:g} link workers for {r['population']:,} people = {r['link_workers_per_10000']:.2f} per 10,000 "
                f"against a target of {r['target_per_10000']:g}; {r['fte_gap_to_target']:.1f} more FTE would meet it.")
for _, r in bad.iterrows():
    pub.finding(f"The review's published coverage for {r['borough_name']} ({r['published_as_written']} per 10,000) is not what its own count gives "
                f"({r['link_workers']:g} / {r['population']:,} x 10,000 = {r['link_workers_per_10000']:.2f}).")
pcn = needs.pcn_coverage(ex.workforce, area, p.workforce.target_link_workers_per_10000)
if len(pcn):
    display(pub.table("workforce_coverage_by_pcn", pcn.round(3), "Link worker FTE per 10,000 registered patients by PCN (where the review gives PCN figures)",
                      round_counts=False))
