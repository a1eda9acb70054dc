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
# Rates against Census 2021 residents count every referral of the area's residents, whichever NCL
# service took it; tables about services (recording, outcomes, models) count the referrals made by the
# area's practices. Denominators are real open data (Census 2021 TS021, TS025, TS029; IMD 2025).

# %% tags=["parameters"]
area = "ncl"          # 'ncl' or a borough: barnet, camden, enfield, haringey, islington
pack_dir = None       # set by `spstudy packs`; without it the notebook previews its outputs
notebook = "02_equity_of_access"

# %%
from spstudy.publish.publisher import start

ctx = start(globals())  # validates the parameters (a misspelt injected one is an error) and sets up the publisher

from spstudy.analyses import equity
from spstudy.inputs.contract import CENSUS5_GROUPS, NOT_RECORDED
from spstudy.methods import coding
from spstudy.publish import cells, charts, findings
from spstudy.publish.disclosure import Count, Estimate, Label, Proportion, Public, Rate, RateRatio

p, pub, ex = ctx.params, ctx.publisher, ctx.extracts
conf = p.study.confidence  # the level of every interval below (parameters: study.confidence)
CI = pub.ci  # that level as labels say it, e.g. '95%'
REF = p.equity.reference_ethnic_group
REF_LANG = coding.PROFICIENCY_LABELS[p.equity.reference_language_group]
here, NCL = ctx.scope.code, cells.NCL_CODE
data = equity.prepare(ex, ctx.scope, p.study.referral_start, p.study.referral_end, ctx.pool_fraction)
refs = data.referrals
pub.section(f"Equity of access in {ctx.area_name}",
            f"Referrals between {p.study.referral_start} and {p.study.referral_end}, against Census 2021 populations and the "
            f"registered population of the area's practices (people never referred are sampled at {data.pool_fraction:.0%} in the "
            f"extract and weighted by {1 / data.pool_fraction:g}). Rate ratios compare with the {REF} group "
            "(parameter `equity.reference_ethnic_group`).")
svc = Count("Referrals", measure="referrals_svc")
res = Count("Referrals of residents", measure="referrals_res")

# %% [markdown]
# ## How ethnicity and language are coded
# NHS ethnic category codes A-S map to the Census 2021 five groups (Chinese is Asian, as in Census 2021);
# `Z` is *not stated* and an empty field *not recorded*: both stay as their own categories in every table.

# %%
pub.table("ethnicity_coding", equity.coding_table(refs), "NHS ethnic category codes, their Census 2021 group and referrals",
          rows={"code": "ethnicity"}, columns={"code": Label("Code"), "nhs_category": Label("NHS ethnic category"),
                                               "census2021_group": Label("Census 2021 group"), "referrals": svc},
          source="NHS Data Dictionary (Ethnic Category); ONS Census 2021 classification")
detail = equity.registered_representation(data, "ethnic_detail", coding.DETAILED_GROUPS, confidence=conf)
pub.table("referrals_by_detailed_ethnicity", detail, "Referrals by detailed ethnic category against the registered population",
          rows={"group": "ethnicity"},
          columns={"group": Label("Ethnic category"), "referrals": svc,
                   "registered_py": Count("Registered person-years (weighted)", measure="registered_py", continuous=True),
                   "rate": Rate("Referrals per 1,000 registered person-years", count="referrals", per="registered_py", multiplier=1000,
                                lower="rate_lower", upper="rate_upper")},
          notes="No Census denominator exists for the detailed categories: the denominator is the registered population of the "
                "area's practices (weighted for the extract's sampling).")

# %% [markdown]
# ## Recording completeness
# Share of referrals with an ethnic group (code A-S) and with a main language, by borough, PCN, practice and
# quarter (Wilson intervals at the level of `study.confidence`, 95% by default; funnel control limits at 95% and 99.8% around the area's share).

# %%
def completeness_columns(field, unit, quarter=False):
    tree = "ethnicity" if field == "ethnicity" else "language"
    cols = {"code": Label(f"{unit} code"), "name": Label(unit)}
    if quarter:
        cols["quarter"] = Label("Quarter")
    cols.update({"referrals": svc, "recorded": Count(f"{field.capitalize()} recorded", measure="referrals_svc", at={tree: "Recorded"}),
                 "not_recorded": Count("Not recorded", measure="referrals_svc", at={tree: NOT_RECORDED})})
    if field == "ethnicity":
        cols["not_stated"] = Count("Not stated (code Z)", measure="referrals_svc", at={tree: "Not stated"})
    cols["pct_recorded"] = Proportion(f"{field.capitalize()} recorded (%)", count="recorded", total="referrals",
                                      lower="pct_recorded_lower", upper="pct_recorded_upper",
                                      flag=None if quarter else "funnel", target_row=None if quarter else NCL)
    return cols


levels = [("borough", "Borough"), ("pcn", "PCN"), ("practice", "Practice")]
for field in ("ethnicity", "language"):
    for level, unit in levels:
        t = equity.completeness_table(refs, field, level, here, ctx.area_name, reference_referrals=data.all_referrals,
                                      reference_code=NCL, reference_name="North Central London (reference)", confidence=conf)
        if field == "language" and level == "practice":
            continue
        pub.table(f"{field}_recording_by_{level}", t, f"{field.capitalize()} recording by {unit.lower()}, {ctx.area_name}",
                  rows={"code": "geo"}, columns=completeness_columns(field, unit),
                  notes="The last rows are the whole area and NCL: funnel limits are drawn around NCL's share in every pack.")
q = equity.completeness_table(refs, "ethnicity", "borough", here, ctx.area_name, by_quarter=True, confidence=conf)
pub.table("ethnicity_recording_by_quarter", q, f"Ethnicity recording by quarter, {ctx.area_name}", rows={"code": "geo", "quarter": "quarter"},
          columns=completeness_columns("ethnicity", "Area", quarter=True))
pub.figure("completeness_trend", "Ethnicity recording by quarter", charts.lines, "ethnicity_recording_by_quarter", charts.alt_lines,
           x="quarter", y="pct_recorded", lower="pct_recorded_lower", upper="pct_recorded_upper", series="name",
           title=f"Referrals with an ethnic group recorded, by quarter, {ctx.area_name}", xlabel="Quarter of referral",
           ylabel=f"% of referrals with ethnicity recorded ({CI} CI)", ylim=[0, 100])
for level, unit in levels[1:]:
    pub.figure(f"completeness_funnel_{level}", f"Funnel plot of ethnicity recording by {unit.lower()}", charts.funnel,
               f"ethnicity_recording_by_{level}", charts.alt_funnel, x="referrals", count="recorded", y="pct_recorded",
               statistic="proportion", multiplier=100, total_row=NCL, geo="code", target_label="NCL share", exclude_rows=[here],
               title=f"Ethnicity recording by {unit.lower()}, {ctx.area_name}", xlabel="Referrals (log scale)",
               ylabel="% with ethnicity recorded", unit_name=f"{unit.lower()}s")
pub.finding(findings.recording, priority=2, area_code=here)

# %% [markdown]
# ## Referral rates by ethnic group
# Crude and age-standardised referral rates per 1,000 residents per year, and rate ratios against the
# reference group.

# %%
pub.text(equity.DENOMINATOR_NOTE)
rate_cols = lambda group_label, at: {  # noqa: E731
    "group": Label(group_label), "referrals": res, "residents": Public("Residents (Census 2021)", "count"),
    "crude_rate": Rate("Crude rate per 1,000 per year", count="referrals", per="person_years", multiplier=1000,
                       lower="crude_rate_lower", upper="crude_rate_upper"),
    "person_years": Public("Person-years (residents x years)", "person_years"),
    "rr_crude": RateRatio("Crude rate ratio", count="referrals", per="person_years", key="group", reference=at,
                          lower="rr_crude_lower", upper="rr_crude_upper"),
    "dsr": Estimate("Age-standardised rate per 1,000 per year", ("referrals",), "rate"),
    "dsr_lower": Estimate(f"Age-standardised rate: lower {CI} limit", ("referrals",), "rate"),
    "dsr_upper": Estimate(f"Age-standardised rate: upper {CI} limit", ("referrals",), "rate"),
    "rr_dsr": Estimate("Age-standardised rate ratio", ("referrals",)),
    "rr_dsr_lower": Estimate(f"Age-standardised rate ratio: lower {CI} limit", ("referrals",)),
    "rr_dsr_upper": Estimate(f"Age-standardised rate ratio: upper {CI} limit", ("referrals",)),
    "note": Label("Note")}
eth = equity.ethnicity_rates(data, REF, confidence=conf).assign(person_years=lambda d: d["residents"] * data.years)
pub.table("rates_by_ethnic_group", eth, f"Referral rates per 1,000 residents per year by ethnic group, {ctx.area_name}",
          rows={"group": "ethnicity"}, columns=rate_cols("Ethnic group", REF),
          notes=f"Rate ratios against the {REF} group. Not stated and not recorded referrals have no denominator.",
          source="ONS Census 2021 TS021 (LSOA); registered-population age structure from the extract")
forest_measures = {"Crude": ["rr_crude", "rr_crude_lower", "rr_crude_upper"], "Age-standardised": ["rr_dsr", "rr_dsr_lower", "rr_dsr_upper"]}
pub.figure("forest_ethnicity_rates", "Referral rate ratios by ethnic group (crude and age-standardised)", charts.forest,
           "rates_by_ethnic_group", charts.alt_forest, label="group", measures=forest_measures,
           where={"group": [g for g in CENSUS5_GROUPS if g != REF]},
           title=f"Referral rate ratios by ethnic group vs {REF}, {ctx.area_name}", xlabel="Rate ratio (log scale; 1 = same rate)")

# %% [markdown]
# ### Proficiency in English
# The same measures by proficiency in English (Census 2021 TS029, residents aged 3 and over), against people
# whose main language is English (parameter `equity.reference_language_group`).

# %%
prof = equity.proficiency_rates(data, p.equity.reference_language_group, confidence=conf).assign(person_years=lambda d: d["residents"] * data.years)
pub.table("rates_by_english_proficiency", prof, f"Referral rates per 1,000 residents aged 3+ per year by proficiency in English, {ctx.area_name}",
          rows={"group": "proficiency"}, columns=rate_cols("Proficiency in English", REF_LANG),
          source="ONS Census 2021 TS029 (MSOA); registered-population age structure from the extract")
pub.figure("forest_proficiency_rates", "Referral rate ratios by proficiency in English", charts.forest, "rates_by_english_proficiency",
           charts.alt_forest, label="group", measures=forest_measures,
           where={"group": [g for g in coding.PROFICIENCY_LABELS.values() if g != REF_LANG]},
           title=f"Referral rate ratios by proficiency in English, {ctx.area_name}",
           xlabel="Rate ratio (log scale; 1 = same rate as main language English)")
pub.finding(findings.proficiency, priority=3)

# %% [markdown]
# ## Adjusted comparison and the effect of missing ethnicity
# Rate ratios adjusted for age, sex and deprivation (and borough for NCL) from a quasi-Poisson model of the
# registered population, under four treatments of the referrals whose ethnicity is not stated or not recorded.

# %%
frame = equity.model_frame(data)
adj = equity.adjusted_rate_ratios(frame, REF, confidence=conf)
seed, m_imp = p.equity.imputation_seed, p.equity.imputations
sens = equity.missing_ethnicity_sensitivity(frame, REF, m=m_imp, seed=seed, confidence=conf)
pub.text(equity.MODEL_NOTE.format(borough=" x borough" if "borough_code" in adj.adjusted_for else "",
                                  dispersion=adj.dispersion, m=m_imp, seed=seed))
model_n = Count("Referrals in the model (aged 16+)")
model_py = Count("Registered person-years in the model (weighted)", continuous=True)
est = lambda label: Estimate(label, ("referrals", "exposure"))  # noqa: E731
pub.table("adjusted_rate_ratios", adj.table, "Adjusted referral rate ratios by ethnic group (complete cases)", rows={"group": "ethnicity"},
          columns={"group": Label("Ethnic group"), "referrals": model_n, "exposure": model_py, "rate_ratio": est("Adjusted rate ratio"),
                   "rate_ratio_lower": est(f"Lower {CI} limit"), "rate_ratio_upper": est(f"Upper {CI} limit"), "p": Estimate("p-value", ("referrals", "exposure"), "p")},
          notes=f"Reference: {REF}. Exposure = weighted registered person-years aged 16+ with the group recorded.")
sest = lambda label, fmt="ratio": Estimate(label, (), fmt)  # noqa: E731
pub.table("missing_ethnicity_sensitivity", sens, "Adjusted rate ratios under four treatments of missing ethnicity",
          rows={"method": "method", "group": "ethnicity"},
          columns={"method": Label("Treatment of missing ethnicity"), "group": Label("Ethnic group"),
                   "rate_ratio": sest("Adjusted rate ratio"), "rate_ratio_lower": sest(f"Lower {CI} limit"), "rate_ratio_upper": sest(f"Upper {CI} limit"),
                   "fmi": sest("Fraction of missing information", "share")},
          notes="Model estimates from the whole registered population; groups too small to estimate are left blank.")
pub.figure("forest_adjusted_sensitivity", "Adjusted rate ratios: complete cases, multiple imputation and bounds", charts.forest,
           "missing_ethnicity_sensitivity", charts.alt_forest, label="group", est="rate_ratio", lower="rate_ratio_lower", upper="rate_ratio_upper",
           group="method", where={"group": [g for g in CENSUS5_GROUPS if g != REF]},
           title=f"Adjusted referral rate ratios vs {REF}, {ctx.area_name}", xlabel="Adjusted rate ratio (log scale; 1 = same rate)")
pub.finding(findings.adjusted_ratios, priority=1, reference=REF)

# %% [markdown]
# ## Uptake and outcome
# What happened after referral, and who referred, by ethnic group (Wilson intervals at the `study.confidence` level), and the odds of not
# attending adjusted for age, sex, deprivation and referral source.

# %%
def share_columns(value_col, value_label, tree):
    return {"group": Label("Ethnic group"), value_col: Label(value_label), "n": Count("Referrals", measure="referrals_svc"),
            "referrals": Count("All referrals in the group", measure="referrals_svc", at={tree: "All"}),
            "pct": Proportion("% of the group's referrals", count="n", total="referrals", lower="pct_lower", upper="pct_upper")}


out = equity.outcome_by_group(refs, total=True, confidence=conf)
pub.table("outcome_by_ethnic_group", out, "Referral outcome by ethnic group", rows={"group": "ethnicity", "outcome": "outcome"},
          columns=share_columns("outcome", "Outcome", "outcome"))
src = equity.source_by_group(refs, total=True, confidence=conf)
pub.table("source_by_ethnic_group", src, "Referral source by ethnic group", rows={"group": "ethnicity", "source": "source"},
          columns=share_columns("source", "Source", "source"))
pub.figure("dna_by_ethnic_group", "Did-not-attend rate by ethnic group", charts.bars, "outcome_by_ethnic_group", charts.alt_bars,
           label="group", value="pct", lower="pct_lower", upper="pct_upper", where={"outcome": "dna"}, reference_row="All",
           reference_label="All referrals", title=f"Did not attend, by ethnic group, {ctx.area_name}", xlabel="Ethnic group",
           ylabel=f"% of referrals not attending ({CI} CI)")
dna = equity.readable_terms(equity.dna_model(refs, REF, confidence=conf))
factor_dims = {"by": "factor", "dims": {"ethnic_group": "ethnicity", "sex": "sex", "imd_quintile": "imd_quintile", "source": "source",
                                        "model_age_band": "model_age_band", "borough_code": "geo"}}
dest = lambda label, fmt="ratio": Estimate(label, ("n", "events"), fmt)  # noqa: E731
pub.table("dna_odds_ratios", dna, f"Odds of not attending: logistic regression (odds ratios, {CI} CI)", rows={"level": factor_dims},
          columns={"factor": Label("Factor"), "level": Label("Level"), "label": Label("Term"), "reference_label": Label("Compared with"),
                   "n": Count("Referrals", measure="referrals_svc_adults"),
                   "events": Count("Did not attend", measure="referrals_svc_adults", at={"outcome": "dna"}),
                   "odds_ratio": dest("Adjusted odds ratio"), "odds_ratio_lower": dest(f"Lower {CI} limit"), "odds_ratio_upper": dest(f"Upper {CI} limit"),
                   "p": dest("p-value", "p")},
          notes=f"Referrals aged 16+ with a known IMD quintile. Reference: {REF}, GP referral, age 16-29, female, IMD quintile 1. "
                "Not stated and not recorded ethnicity are kept as their own categories.")
pub.figure("forest_dna", "Adjusted odds ratios for not attending", charts.forest, "dna_odds_ratios", charts.alt_forest,
           label="label", est="odds_ratio", lower="odds_ratio_lower", upper="odds_ratio_upper", group="factor",
           where={"factor": ["ethnic_group", "model_age_band", "sex", "imd_quintile", "source", "borough_code"]},
           title=f"Odds of not attending, {ctx.area_name}", xlabel="Adjusted odds ratio (log scale; 1 = same odds)", legend="none")
pub.finding(findings.dna, priority=2, reference=REF)

# %% [markdown]
# ## Inequality by deprivation
# Referral rates by IMD 2025 national quintile (or decile: parameter `equity.deprivation_quintiles`) of the LSOA of
# residence (Census 2021 residents), with the slope and relative index of inequality (Low & Low 2004, as
# PHEindicatormethods `phe_sii`).

# %%
Q = p.equity.deprivation_quintiles
qname = "quintile" if Q == 5 else "decile"
dep = equity.deprivation_rates(data, Q, confidence=conf).assign(person_years=lambda d: d["residents"] * data.years)
sii = equity.deprivation_sii(dep, seed=p.equity.sii_seed, confidence=conf)
pub.table("rates_by_deprivation", dep, f"Referral rates per 1,000 residents per year by IMD 2025 {qname} (1 = most deprived)",
          rows={"imd_quantile": f"imd_{qname}"},
          columns={"imd_quantile": Public(f"IMD 2025 {qname}", "integer"), "residents": Public("Residents (Census 2021)", "count"),
                   "person_years": Public("Person-years", "person_years"), "referrals": res,
                   "rate": Rate("Referrals per 1,000 residents per year", count="referrals", per="person_years", multiplier=1000,
                                lower="rate_lower", upper="rate_upper")})
sest2 = lambda label: Estimate(label, (), "rate")  # noqa: E731
pub.table("sii_rii", sii, f"Slope and relative index of inequality of referral rates across IMD 2025 {qname}s",
          columns={"sii": sest2("Slope index of inequality (per 1,000 per year)"), "sii_lower": sest2(f"SII: lower {CI} limit"),
                   "sii_upper": sest2(f"SII: upper {CI} limit"), "rii": Estimate("Relative index of inequality", ()),
                   "rii_lower": Estimate(f"RII: lower {CI} limit", ()), "rii_upper": Estimate(f"RII: upper {CI} limit", ())},
          notes="SII: modelled difference in rate between the least and the most deprived ends of the area's population (negative = "
                "more referrals where more deprived). RII: their ratio." + ("" if len(sii) else " " + equity.SII_NOT_COMPUTED.capitalize() + "."))
pub.figure("bar_rates_by_deprivation", "Referral rates by deprivation", charts.bars, "rates_by_deprivation", charts.alt_bars,
           label="imd_quantile", value="rate", lower="rate_lower", upper="rate_upper", title=f"Referral rate by deprivation, {ctx.area_name}",
           xlabel=f"IMD 2025 national {qname} (1 = most deprived)", ylabel=f"Referrals per 1,000 residents per year ({CI} CI)")
pub.finding(findings.deprivation, priority=3)

# %% [markdown]
# ## Language and interpreter need
# Proficiency in English among residents (Census 2021 TS029) against referrals with it recorded, household
# language (TS025), the most common recorded main languages, and interpreter need.

# %%
pc = equity.proficiency_comparison(data, total=True, confidence=conf)
pub.table("english_proficiency_residents_vs_referrals", pc,
          "Proficiency in English: residents aged 3+ (Census 2021) against referrals of residents with it recorded",
          rows={"group": "proficiency"},
          columns={"group": Label("Proficiency in English"), "residents": Public("Residents aged 3+", "count"),
                   "pct_residents": Public("% of residents", "percent"), "referrals": res,
                   "recorded": Count("Referrals with proficiency recorded", measure="referrals_res", at={"proficiency": "Recorded"}),
                   "pct_referrals": Proportion("% of referrals with it recorded", count="referrals", total="recorded",
                                               lower="pct_referrals_lower", upper="pct_referrals_upper")},
          source="ONS Census 2021 TS029 (MSOA)")
pub.table("household_language", equity.household_language(ctx.scope), "Household language (Census 2021 TS025), households in the area's wards",
          columns={"category": Label("Household language"), "households": Public("Households", "count"), "pct": Public("%", "percent")},
          source="ONS Census 2021 TS025, ward estimates derived from output areas")
langs = equity.top_languages(data, 10)
pub.table("top_languages", langs, "Most common recorded main languages among referrals", rows={"group": "language"},
          columns={"group": Label("Main language"), "referrals": svc,
                   "registered_py": Count("Registered person-years (weighted)", measure="registered_py", continuous=True),
                   "rate": Rate("Referrals per 1,000 registered person-years", count="referrals", per="registered_py", multiplier=1000,
                                lower="rate_lower", upper="rate_upper")},
          notes="Against the weighted registered population with the language recorded.")
interp = equity.interpreter_need(refs, confidence=conf)
pub.table("interpreter_need", interp, "Interpreter needed among referrals with it recorded, overall and by proficiency in English",
          rows={"group": "proficiency"},
          columns={"group": Label("Proficiency in English"),
                   "recorded": Count("Referrals with interpreter need recorded", measure="referrals_svc", at={"interpreter": "Recorded"}),
                   "interpreter_needed": Count("Interpreter needed", measure="referrals_svc", at={"interpreter": "Interpreter needed"}),
                   "pct": Proportion("% needing an interpreter", count="interpreter_needed", total="recorded", lower="pct_lower", upper="pct_upper")})
