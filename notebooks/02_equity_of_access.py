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
# # Equity of access by ethnicity and language
#
# **Questions.** Is ethnicity and language recorded well enough to answer equity questions? Are some
# ethnic groups, and people who speak little English, referred to social prescribing less often than
# their share of the population, once age, sex and deprivation are allowed for? Once referred, do they
# attend? How much do the answers depend on the referrals whose ethnicity was not recorded?
#
# Denominators are real open data (Census 2021 TS021, TS025, TS029; IMD 2025); referrals and the registered
# population come from the extract (synthetic unless you point `data.extracts_dir` at your own). Logic
# lives in `spstudy.equity`; every table below has passed disclosure control.

# %% tags=["parameters"]
area = "ncl"          # 'ncl' or a borough: barnet, camden, enfield, haringey, islington
pack_dir = None       # set by `spstudy packs`; interactive runs write to outputs/interactive/<area>
notebook = "02_equity_of_access"

# %%
from IPython.display import display

from spstudy import equity, figures
from spstudy.contract import CENSUS5_GROUPS, NOT_RECORDED
from spstudy.publish import start

ctx = start(area, notebook, pack_dir)
p, pub, ex = ctx.params, ctx.publisher, ctx.extracts
thr, base = p.disclosure.threshold, p.disclosure.rounding_base
REF = p.equity.reference_ethnic_group
REF_LANG = equity.PROFICIENCY_LABELS[p.equity.reference_language_group]
SEED, M = 2024, 20
data = equity.prepare(ex, area, p.study.referral_start, p.study.referral_end, equity.read_pool_fraction(p.extracts_path()))
refs = data.referrals
pub.section(f"Equity of access in {ctx.area_name}",
            f"{equity.safe_count(len(refs), thr, base)} referrals between {p.study.referral_start} and {p.study.referral_end}, "
            f"against Census 2021 populations and the registered population of the area's practices "
            f"(non-referred people sampled at {data.pool_fraction:.0%} and weighted by {1 / data.pool_fraction:g}). "
            f"Rate ratios compare with the {REF} group (parameter `equity.reference_ethnic_group`) and with the area average.")

# %% [markdown]
# ## How ethnicity and language are coded
# NHS ethnic category codes A-S map to the Census 2021 five groups (Chinese is Asian, as in Census 2021);
# `Z` is *not stated* and an empty field *not recorded*: both stay as their own categories in every table.

# %%
display(pub.table("ethnicity_coding", equity.coding_table(refs), "NHS ethnic category codes, their Census 2021 group and referrals",
                  counts=["referrals"], groups=[[]], source="NHS Data Dictionary (Ethnic Category); ONS Census 2021 classification"))
detail = equity.registered_representation(data, "ethnic_detail", equity.DETAILED_GROUPS)
rep_der = {"referrals": ["pct_of_referrals", "rate", "lower", "upper", "pct_of_recorded", "representation_ratio", "rr_lower", "rr_upper"],
           "registered_py": ["rate", "lower", "upper", "pct_of_registered", "representation_ratio", "rr_lower", "rr_upper"]}
display(pub.table("referrals_by_detailed_ethnicity", detail.round(3), "Referrals by detailed ethnic category against the registered population",
                  counts=["referrals", "registered_py"], derived=rep_der, groups=[[]],
                  notes="Rate per 1,000 registered person-years (weighted registered population, no Census denominator exists for the "
                        "detailed categories). Representation ratio = share of recorded referrals / share of the recorded registered "
                        "population (1 = referred in proportion)."))

# %% [markdown]
# ## Recording completeness
# Share of referrals with an ethnic group (code A-S) and with a main language, by borough, PCN, practice and
# quarter (Wilson 95% intervals; funnel limits at 95% and 99.8% around the area's share).

# %%
overall = equity.recording_completeness(refs, None)
by_borough = equity.recording_completeness(refs, "borough_name")
cnt = ["referrals", "recorded", "not_stated", "not_recorded"]
der = {"recorded": ["pct_recorded", "lower", "upper", "funnel"], "referrals": ["pct_recorded", "lower", "upper", "funnel"]}
display(pub.table("completeness_by_borough", by_borough.round(2), "Recording of ethnicity and main language among referrals, by borough",
                  counts=cnt, derived=der, groups=[["field"]]))
by_quarter = equity.recording_completeness(refs, ["borough_name", "quarter"])
display(pub.table("completeness_by_quarter", by_quarter.round(2), "Recording completeness by borough and quarter of referral",
                  counts=cnt, derived=der, groups=[["field", "borough_name"]]))
fig = figures.line_with_intervals(equity.controlled(by_quarter[by_quarter["field"] == "ethnicity"], cnt, der, thr, base),
                                  "quarter", "pct_recorded", "lower", "upper", "borough_name",
                                  f"Referrals with an ethnic group recorded, by quarter, {ctx.area_name}", "Quarter of referral",
                                  "% of referrals with ethnicity recorded (95% CI)", ylim=(0, 100))
pub.figure("completeness_trend", fig, "Ethnicity recording by quarter",
           alt=f"Line chart of the percentage of referrals with an ethnic group recorded in each quarter by borough; overall "
               f"{overall.loc[overall['field'] == 'ethnicity', 'pct_recorded'].iloc[0]:.0f}%.")
for level, name in (("pcn_name", "PCN"), ("practice_name", "practice")):
    t = equity.recording_completeness(refs, ["borough_name", level])
    display(pub.table(f"completeness_by_{name.lower()}", t.round(2), f"Recording completeness by {name}", counts=cnt, derived=der,
                      groups=[["field", "borough_name"]]))
    e = t[t["field"] == "ethnicity"]
    shown = equity.controlled(e, cnt, der, thr, base).dropna(subset=["pct_recorded"])
    shown = shown[shown["referrals"] > 0]
    target = float(overall.loc[overall["field"] == "ethnicity", "pct_recorded"].iloc[0])
    low = e[e["funnel"].str.startswith("below")]
    fig = figures.funnel_plot(shown, "referrals", "pct_recorded", "proportion", f"Ethnicity recording by {name}, {ctx.area_name}",
                              "Referrals (log scale)", "% with ethnicity recorded", target=target, multiplier=100,
                              label=level if len(low) <= 5 else None)
    where = "; ".join(f"{b}: {n}" for b, n in low["borough_name"].value_counts().items())
    pub.figure(f"completeness_funnel_{name.lower()}", fig, f"Funnel plot of ethnicity recording by {name}",
               alt=f"Funnel plot of the share of referrals with ethnicity recorded for {len(shown)} {name}s (those with small counts are "
                   f"not shown) around the area's {target:.0f}%; {len(low)} lie below the 95% limit" + (f" ({where})." if len(low) else "."))

# %%
trust = equity.trust_statement(overall, by_borough)
pub.text(trust)
pub.finding(trust.split(". ")[0].replace("**", "") + ".")

# %% [markdown]
# ## Referral rates by ethnic group
# Crude and age-standardised referral rates per 1,000 residents per year, rate ratios against the reference
# group and the area average, and the representation ratio (share of recorded referrals / share of residents).

# %%
pub.text(equity.DENOMINATOR_NOTE)
eth = equity.ethnicity_rates(data, REF)
rate_cols = ["pct_of_referrals", "crude_rate", "crude_lower", "crude_upper", "dsr", "dsr_lower", "dsr_upper", "rr_crude",
             "rr_crude_lower", "rr_crude_upper", "rr_dsr", "rr_dsr_lower", "rr_dsr_upper", "rr_area", "rr_area_lower",
             "rr_area_upper", "pct_of_recorded", "representation_ratio"]
display(pub.table("rates_by_ethnic_group", eth.round(3), f"Referral rates per 1,000 residents per year by ethnic group, {ctx.area_name}",
                  counts=["referrals"], derived={"referrals": rate_cols}, groups=[[]],
                  notes=f"Rate ratios against the {REF} group (rr_crude, rr_dsr) and the area average (rr_area = representation ratio). "
                        "Not stated and not recorded referrals have no denominator.",
                  source="ONS Census 2021 TS021 (LSOA); registered-population age structure from the extract"))
fp = eth[eth["group"].isin(CENSUS5_GROUPS)]
fig, long = equity.rate_ratio_forest(fp, {"Crude, vs " + REF: "rr_crude", "Age-standardised, vs " + REF: "rr_dsr", "Crude, vs area average": "rr_area"},
                                     REF, f"Referral rate ratios by ethnic group, {ctx.area_name}", "Rate ratio (log scale; 1 = same rate)", thr, base)
pub.figure("forest_ethnicity_rates", fig, "Referral rate ratios by ethnic group (crude and age-standardised)",
           alt="Forest plot of crude and age-standardised referral rate ratios with 95% intervals for each Census 2021 ethnic group, "
               f"against the {REF} group and the area average; age-standardised: "
               + equity.describe_ratios(fp[fp["group"] != REF], "rr_dsr", "rr_dsr_lower", "rr_dsr_upper", threshold=thr),
           data=long, counts=["referrals"], derived={"referrals": ["rate_ratio", "lower", "upper"]})
disp = equity.disparity_index(eth, "dsr", "residents")
pub.text(f"**Index of disparity** across the five groups' age-standardised rates: {disp['id_total']:.1f}% of the area's rate "
         f"(reference: the population-weighted rate of all groups) and {disp['id_best']:.1f}% of the highest group rate. "
         f"{disp['formula']}; Keppel et al. (2005) Vital Health Stat 2(141) for the choice of reference. 0 means equal rates.")

# %% [markdown]
# ### Proficiency in English
# The same measures by proficiency in English (Census 2021 TS029, residents aged 3 and over), against people
# whose main language is English (parameter `equity.reference_language_group`).

# %%
prof = equity.proficiency_rates(data, p.equity.reference_language_group)
display(pub.table("rates_by_english_proficiency", prof.round(3), f"Referral rates per 1,000 residents aged 3+ per year by proficiency in English, {ctx.area_name}",
                  counts=["referrals"], derived={"referrals": rate_cols}, groups=[[]],
                  source="ONS Census 2021 TS029 (MSOA); registered-population age structure from the extract"))
fpp = prof[prof["group"] != NOT_RECORDED]
fig, long = equity.rate_ratio_forest(fpp, {"Crude": "rr_crude", "Age-standardised": "rr_dsr"}, REF_LANG,
                                     f"Referral rate ratios by proficiency in English, {ctx.area_name}",
                                     "Rate ratio (log scale; 1 = same rate as main language English)", thr, base)
pub.figure("forest_proficiency_rates", fig, "Referral rate ratios by proficiency in English",
           alt="Forest plot of crude and age-standardised referral rate ratios by proficiency in English against residents whose main "
               "language is English; age-standardised: " + equity.describe_ratios(fpp[fpp["group"] != REF_LANG], "rr_dsr", "rr_dsr_lower",
                                                                                   "rr_dsr_upper", threshold=thr),
           data=long, counts=["referrals"], derived={"referrals": ["rate_ratio", "lower", "upper"]})

# %% [markdown]
# ## Adjusted comparison and the effect of missing ethnicity
# Rate ratios adjusted for age, sex and deprivation (and borough for NCL) from a quasi-Poisson model of the
# registered population, under four treatments of the referrals whose ethnicity is not stated or not recorded.

# %%
frame = equity.model_frame(data)
adj = equity.adjusted_rate_ratios(frame, REF)
sens = equity.missing_ethnicity_sensitivity(frame, REF, m=M, seed=SEED)
pub.text(equity.MODEL_NOTE.format(borough=" x borough" if "borough_code" in adj.attrs["adjusted_for"] else "",
                                  dispersion=adj.attrs["dispersion"], m=M, seed=SEED))
display(pub.table("adjusted_rate_ratios", adj.drop(columns=["log_rr", "se"]).round(4), "Adjusted referral rate ratios by ethnic group (complete cases)",
                  counts=["referrals", "exposure"], derived={"referrals": ["rate_ratio", "lower", "upper", "p"],
                                                             "exposure": ["rate_ratio", "lower", "upper", "p"]},
                  notes=f"Reference: {REF}. Exposure = weighted registered person-years aged 16+ with the group recorded."))
sens = sens.merge(adj[["group", "referrals"]].rename(columns={"referrals": "recorded_referrals"}), on="group", how="left")
display(pub.table("missing_ethnicity_sensitivity", sens.round(4), "Adjusted rate ratios under four treatments of missing ethnicity",
                  counts=["recorded_referrals"], derived={"recorded_referrals": ["rate_ratio", "lower", "upper", "log_rr", "se", "fmi"]},
                  notes="fmi = fraction of missing information (multiple imputation). missing_referrals = referrals (aged 16+) "
                        "without a recorded group."))
plot = equity.sensitivity_plot_frame(sens, REF)
safe = equity.controlled(plot, ["recorded_referrals"], {"recorded_referrals": ["rate_ratio", "lower", "upper"]}, thr, base)
fig = figures.forest_plot(safe, "label", "rate_ratio", "lower", "upper", f"Adjusted referral rate ratios vs {REF}, {ctx.area_name}",
                          "Adjusted rate ratio (log scale; 1 = same rate)", group="method")
figures.tidy_ratio_axis(fig, legend="none")
pub.figure("forest_adjusted_sensitivity", fig, "Adjusted rate ratios: complete cases, multiple imputation and bounds",
           alt="Forest plot of adjusted referral rate ratios for each ethnic group against the reference group under complete cases, "
               "multiple imputation and the two bounds; complete cases: "
               + equity.describe_ratios(adj[adj["group"] != REF], "rate_ratio", "lower", "upper", threshold=thr))

# %% [markdown]
# ## Uptake and outcome
# What happened after referral, and who referred, by ethnic group (Wilson 95% intervals), and the odds of not
# attending adjusted for age, sex, deprivation and referral source.

# %%
out = equity.outcome_by_group(refs)
display(pub.table("outcome_by_ethnic_group", out.round(2), "Referral outcome by ethnic group", counts=["n", "referrals"],
                  derived={"n": ["pct", "lower", "upper"], "referrals": ["pct", "lower", "upper"]}, groups=[["group"]]))
src = equity.source_by_group(refs)
display(pub.table("source_by_ethnic_group", src.round(2), "Referral source by ethnic group (self-referral and GP referral)",
                  counts=["n", "referrals"], derived={"n": ["pct", "lower", "upper"], "referrals": ["pct", "lower", "upper"]},
                  groups=[["group"]]))
dna_share = equity.controlled(out[out["outcome"] == "dna"], ["n", "referrals"], {"n": ["pct", "lower", "upper"],
                                                                                "referrals": ["pct", "lower", "upper"]}, thr, base)
fig = figures.bar_with_intervals(dna_share, "group", "pct", "lower", "upper", f"Did not attend, by ethnic group, {ctx.area_name}",
                                 "Ethnic group", "% of referrals not attending (95% CI)",
                                 reference=100 * (refs["outcome"] == "dna").mean(), reference_label="All referrals")
pub.figure("dna_by_ethnic_group", fig, "Did-not-attend rate by ethnic group",
           alt="Bar chart of the percentage of referrals that did not attend in each ethnic group, with 95% intervals and the "
               f"all-referrals rate of {100 * (refs['outcome'] == 'dna').mean():.0f}% as a dashed line.")
dna = equity.dna_model(refs, REF)
dna_der = {"n": ["odds_ratio", "lower", "upper", "p"], "events": ["odds_ratio", "lower", "upper", "p"]}
display(pub.table("dna_odds_ratios", equity.readable_terms(dna)[["label", "reference_label", "n", "events", "odds_ratio", "lower", "upper", "p"]].round(4),
                  "Odds of not attending: logistic regression (odds ratios, 95% CI)", counts=["n", "events"], derived=dna_der,
                  notes=f"Reference: {REF}, GP referral, age 16-29, female, IMD quintile 1; "
                        f"{equity.safe_count(dna.attrs['n'], thr, base)} referrals. n and events: referrals and non-attendances at each "
                        "level. Not stated and not recorded ethnicity are kept as their own categories."))
terms = equity.controlled(equity.readable_terms(dna[dna["factor"] != ""]), ["n", "events"], dna_der, thr, base)
fig = figures.forest_plot(terms, "label", "odds_ratio", "lower", "upper", f"Odds of not attending, {ctx.area_name}",
                          "Adjusted odds ratio (log scale; 1 = same odds)", group="factor")
figures.tidy_ratio_axis(fig, legend="none")
eth_terms = terms[terms["factor"] == "ethnic_group"].rename(columns={"level": "group"})
pub.figure("forest_dna", fig, "Adjusted odds ratios for not attending",
           alt="Forest plot of adjusted odds ratios for not attending by ethnic group, age band, sex, deprivation quintile, referral "
               "source and borough; ethnic groups: " + equity.describe_ratios(eth_terms, "odds_ratio", "lower", "upper", count=None))

# %% [markdown]
# ## Inequality by deprivation
# Referral rates by IMD 2025 national quintile (or decile: parameter `equity.deprivation_quintiles`) of the LSOA of
# residence (Census 2021 residents), with the slope and relative index of inequality (Low & Low 2004, as
# PHEindicatormethods `phe_sii`).

# %%
Q = p.equity.deprivation_quintiles
qname = "quintile" if Q == 5 else "decile"
dep = equity.deprivation_rates(data, Q)
sii = equity.deprivation_sii(dep, seed=SEED)
display(pub.table("rates_by_deprivation", dep.round(3), f"Referral rates per 1,000 residents per year by IMD 2025 {qname} (1 = most deprived)",
                  counts=["referrals"], derived={"referrals": ["rate", "lower", "upper"]}, groups=[[]]))
display(pub.table("sii_rii", sii.round(4), f"Slope and relative index of inequality of referral rates across IMD 2025 {qname}s",
                  notes="SII: modelled difference in rate between the least and the most deprived ends of the area's population (per 1,000 "
                        "per year; negative = more referrals where more deprived). RII: their ratio. " + sii.attrs.get("note", "")))
fig = figures.bar_with_intervals(equity.controlled(dep, ["referrals"], {"referrals": ["rate", "lower", "upper"]}, thr, base),
                                 "imd_quantile", "rate", "lower", "upper", f"Referral rate by deprivation, {ctx.area_name}",
                                 f"IMD 2025 national {qname} (1 = most deprived)", "Referrals per 1,000 residents per year (95% CI)")
pub.figure("rates_by_deprivation", fig, "Referral rates by deprivation",
           alt=f"Bar chart of referral rates per 1,000 residents per year for each IMD 2025 {qname} with 95% intervals" +
               (f"; slope index of inequality {sii['sii'].iloc[0]:.1f} per 1,000 ({sii['sii_lower'].iloc[0]:.1f} to "
                f"{sii['sii_upper'].iloc[0]:.1f})." if len(sii) else "."))

# %% [markdown]
# ## Language and interpreter need
# Proficiency in English and household language among residents (Census 2021 TS029 / TS025) against referrals,
# the most common recorded main languages, and interpreter need.

# %%
display(pub.table("english_proficiency_residents_vs_referrals", equity.proficiency_comparison(data).round(3),
                  "Proficiency in English: residents aged 3+ (Census 2021) against referrals with proficiency recorded",
                  counts=["residents", "referrals"], derived={"referrals": ["pct_referrals", "lower", "upper", "representation_ratio"]},
                  groups=[[]], source="ONS Census 2021 TS029 (MSOA)"))
display(pub.table("household_language", equity.household_language(area).round(2), "Household language (Census 2021 TS025), households in the area's wards",
                  source="ONS Census 2021 TS025, ward estimates derived from output areas", round_counts=False))
nonen = equity.main_language_not_english(data)
display(pub.table("main_language_not_english", nonen.round(2), "Main language not English: residents, registered patients and referrals",
                  counts=["numerator", "denominator"], derived={"numerator": ["pct", "lower", "upper"],
                                                                "denominator": ["pct", "lower", "upper"]}))
langs = equity.top_languages(data, 10)
display(pub.table("top_languages", langs.round(3), "Most common recorded main languages among referrals",
                  counts=["referrals", "registered_py"], derived=rep_der,
                  notes="Representation against the weighted registered population with the language recorded."))
interp = equity.interpreter_need(refs)
display(pub.table("interpreter_need", interp.round(2), "Interpreter needed among referrals with it recorded, overall and by proficiency in English",
                  counts=["recorded", "interpreter_needed"], derived={"interpreter_needed": ["pct", "lower", "upper"],
                                                                      "recorded": ["pct", "lower", "upper"]}, groups=[[]]))

# %% [markdown]
# ## Summary

# %%
summary = equity.plain_english_summary({
    "area_name": ctx.area_name, "referrals": len(refs), "completeness": overall, "adjusted": adj, "sensitivity": sens,
    "reference_group": REF, "proficiency": prof, "reference_language": REF_LANG, "dna": dna, "sii": sii,
    "threshold": thr, "rounding_base": base})
pub.finding(summary)
print(summary)
