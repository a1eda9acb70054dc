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
# ward compared with what NCL's rates for their age and sex would predict? Is the link-worker
# workforce where the need is?
#
# Denominators are real open data (Census 2021, ONS mid-2020 estimates, IMD 2025); referrals come
# from the extract. A ward's referrals are those of its residents, whichever borough's service took
# them, and its expected referrals come from NCL age-sex rates: the same numbers in every pack.

# %% tags=["parameters"]
area = "ncl"          # 'ncl' or a borough: barnet, camden, enfield, haringey, islington
pack_dir = None       # set by `spstudy packs`; without it the notebook previews its outputs
notebook = "01_needs_assessment"

# %%
from spstudy.publish.publisher import start

ctx = start(globals())  # validates the parameters (a misspelt injected one is an error) and sets up the publisher

from spstudy.analyses import needs
from spstudy.inputs import reference
from spstudy.publish import charts, findings
from spstudy.publish.disclosure import Count, Estimate, Label, Public, Rate

p, pub, ex = ctx.params, ctx.publisher, ctx.extracts
conf = p.study.confidence  # the level of every interval below (parameters: study.confidence)
CI = pub.ci  # that level as labels say it, e.g. '95%'
years = ((p.study.referral_end - p.study.referral_start).days + 1) / 365.25
W = p.needs.need_index_weights
pub.section(f"Need and referrals in {ctx.area_name}",
            f"Referrals between {p.study.referral_start} and {p.study.referral_end} against Census 2021 ward populations. "
            f"Expected referrals use {ctx.params.needs.reference_area.upper()} referral rates by age band and sex, pooled so that no "
            "stratum is small and taken from the published (rounded) counts.")

# %% [markdown]
# ## Ward needs profile
# Population, age, deprivation, ethnicity, language, health, disability and caring by ward, and a
# composite need index (weighted mean of z-scores against all NCL wards; weights in the parameters).

# %%
ref_area = reference.area(p.needs.reference_area)
# expected counts come from the reference population's age-sex rates, pooled and rounded by the publisher
ref_rates = pub.reference_rates(needs.reference_referral_rates(ex.referrals, ex.persons, years, ref_area))
profile = needs.ward_needs_profile(ctx.scope, referrals=ex.referrals, reference_rates=ref_rates, persons=ex.persons, weights=W,
                                   years=years, reference_area=ref_area, confidence=conf)
ward = {"ward22_code": Label("Ward code"), "ward22_name": Label("Ward"), "borough_name": Label("Borough")}
pct = lambda label: Public(label, "percent")  # noqa: E731
pub.table("ward_profile", profile.sort_values("need_rank"), "Ward needs profile (Census 2021, IMD 2025, mid-2020 estimates)",
          rows={"ward22_code": "geo"},
          columns={**ward, "residents": Public("Usual residents (Census 2021)", "count"),
                   "pct_aged_65_plus": pct("Aged 65+ (%)"), "imd2025_score": Public("IMD 2025 score", "number"),
                   "imd2025_pct_decile1_2": pct("In the 20% most deprived LSOAs (%)"), "pct_white": pct("White (%)"),
                   "pct_asian": pct("Asian (%)"), "pct_black": pct("Black (%)"), "pct_mixed": pct("Mixed (%)"),
                   "pct_other_ethnic": pct("Other ethnic group (%)"), "pct_poor_english": pct("Cannot speak English well (%)"),
                   "pct_household_no_english": pct("Households with no English speaker (%)"), "pct_bad_health": pct("Bad health (%)"),
                   "pct_disabled": pct("Disabled (%)"), "pct_unpaid_carers": pct("Unpaid carers (%)"),
                   "need_index": Public("Need index (z-score)", "z"), "need_rank": Public("Need rank among NCL wards", "integer")},
          source="ONS Census 2021; ONS mid-2020 estimates; MHCLG IoD 2025; spstudy need index")
pub.table("indicator_definitions", needs.indicator_dictionary(), "Indicator definitions and sources",
          columns={"indicator": Label("Indicator"), "description": Label("Definition and source")})

# %%
sens = needs.need_index_sensitivity(profile, W, draws=p.needs.sensitivity_draws, seed=p.needs.sensitivity_seed)
pub.table("need_index_sensitivity_components", sens.components, "Sensitivity of the ward ranking: leave one component out",
          columns={"component_left_out": Label("Component left out"), "weight": Public("Its weight", "share"),
                   "spearman_with_base_ranking": Public("Spearman correlation with the ranking", "share")})
pub.table("need_index_sensitivity_wards", sens.wards, f"Sensitivity of the ward ranking to random weights ({p.needs.sensitivity_draws} draws)",
          rows={"ward22_code": "geo"},
          columns={**ward, "need_rank": Public("Need rank among NCL wards", "integer"), "rank_median": Public("Median rank", "number"),
                   "rank_lower": Public("Rank, 5th percentile", "number"), "rank_upper": Public("Rank, 95th percentile", "number"),
                   "pct_draws_top_fifth": Public("Draws in the top fifth of NCL wards (%)", "percent")})
pub.finding(findings.highest_need, priority=2, top=p.needs.top_wards_to_label)

# %%
pub.figure("map_need_index", "Need index by ward", charts.map_values, "ward_profile", charts.alt_map_values,
           column="need_index", area=area, title=f"Need index for social prescribing, {ctx.area_name}",
           legend="Need index (z-score, higher = more need)", label_top=p.needs.top_wards_to_label, label_by="need_index")
pub.figure("map_deprivation", "Deprivation by ward (IMD 2025)", charts.map_values, "ward_profile", charts.alt_map_values,
           column="imd2025_score", area=area, title=f"Deprivation (IMD 2025 score), {ctx.area_name}",
           legend="IMD 2025 score (population-weighted; higher = more deprived)", cmap="cividis")

# %% [markdown]
# ## Referrals by ward: crude, age-standardised and observed against expected
# Crude rates per 1,000 residents per year (Byars / exact Poisson intervals), directly
# age-standardised rates (2013 European Standard Population, Dobson intervals) and the standardised
# referral ratio (observed / expected x 100, expected from NCL rates by age band and sex).

# %%
ref = Count("Referrals of residents", measure="referrals_res")
pub.table("ward_referral_rates", profile, "Referral rates and standardised referral ratios by ward",
          rows={"ward22_code": "geo"},
          columns={**ward, "referrals": ref, "person_years": Public("Person-years (residents x years)", "person_years"),
                   "crude_rate": Rate("Crude rate per 1,000 per year", count="referrals", per="person_years", multiplier=1000,
                                      lower="crude_rate_lower", upper="crude_rate_upper"),
                   "dsr_rate": Estimate("Age-standardised rate per 1,000 per year", ("referrals",), "rate"),
                   "dsr_rate_lower": Estimate(f"Age-standardised rate: lower {CI} limit", ("referrals",), "rate"),
                   "dsr_rate_upper": Estimate(f"Age-standardised rate: upper {CI} limit", ("referrals",), "rate"),
                   "expected": Public("Expected referrals (NCL age-sex rates)", "number"),
                   "referral_ratio": Rate("Standardised referral ratio (100 = as expected)", count="referrals", per="expected",
                                          multiplier=100, method="ratio", lower="referral_ratio_lower", upper="referral_ratio_upper",
                                          flag="funnel", target=1.0, fmt="index")},
          notes="Ratio 100 = as many referrals as NCL age-sex rates predict. Rates, ratios and their intervals are computed from the "
                "published (rounded) counts.")
pub.finding(findings.ward_ratios, priority=3)
pub.figure("funnel_wards", "Funnel plot of ward referral ratios", charts.funnel, "ward_referral_rates", charts.alt_funnel,
           x="expected", count="referrals", y="referral_ratio", statistic="ratio", multiplier=100, label="ward22_name",
           title=f"Standardised referral ratio by ward, {ctx.area_name}", xlabel="Expected referrals (log scale)",
           ylabel="Standardised referral ratio (100 = as expected)", unit_name="wards")
pub.figure("map_referral_ratio", "Standardised referral ratio by ward", charts.map_ratio, "ward_referral_rates", charts.alt_map_ratio,
           column="referral_ratio", area=area, title=f"Standardised referral ratio, {ctx.area_name}", legend="Observed / expected x 100")

# %%
for level, unit in (("pcn_code", "PCN"), ("practice_code", "practice")):
    pr = needs.referral_rates_by_practice(ctx.scope, referrals=ex.referrals, years=years, level=level,
                                          reference_area=reference.area(p.needs.reference_area),
                                          reference_row=True, confidence=conf)
    ncl_code = reference.area(p.needs.reference_area).code
    name = "pcn_name" if level == "pcn_code" else "practice_name"
    cols = {level: Label(f"{unit} code"), name: Label(unit)}
    if level == "practice_code":
        cols["pcn_name"] = Label("PCN")
    cols.update({"registered_patients": Public("Registered patients (May 2022)", "count"),
                 "person_years": Public("Registered person-years", "person_years"),
                 "referrals": Count("Referrals", measure="referrals_svc"),
                 "rate": Rate("Referrals per 1,000 registered patients per year", count="referrals", per="person_years", multiplier=1000,
                              lower="rate_lower", upper="rate_upper", flag="funnel", target_row=ncl_code)})
    pub.table(f"referral_rates_by_{unit.lower()}", pr, f"Referrals per 1,000 registered patients by {unit}", rows={level: "geo"},
              columns=cols, notes="The last row is the NCL reference: funnel limits are drawn around its rate.")
    pub.figure(f"funnel_{unit.lower()}", f"Funnel plot of referral rates by {unit}", charts.funnel, f"referral_rates_by_{unit.lower()}",
               charts.alt_funnel, x="person_years", count="referrals", y="rate", statistic="rate", multiplier=1000, label=name,
               total_row=ncl_code, geo=level, target_label="NCL rate", title=f"Referral rate by {unit}, {ctx.area_name}",
               xlabel="Registered person-years (log scale)", ylabel="Referrals per 1,000 registered patients per year",
               unit_name=f"{unit}s")
pub.finding(findings.practice_variation, priority=4)

# %% [markdown]
# ## Where need is high and referrals are low
# Wards in the top fifth of NCL need with fewer referrals than expected are candidates for proactive outreach.

# %%
cut = needs.need_cut(W, p.needs.outreach_need_quantile)
pub.table("ward_need_and_ratio", profile, "Need index and standardised referral ratio by ward", rows={"ward22_code": "geo"},
          columns={**ward, "need_index": Public("Need index (z-score)", "z"), "need_rank": Public("Need rank among NCL wards", "integer"),
                   "referrals": ref, "expected": Public("Expected referrals", "number"),
                   "referral_ratio": Rate("Standardised referral ratio", count="referrals", per="expected", multiplier=100,
                                          method="ratio", lower="referral_ratio_lower", upper="referral_ratio_upper", fmt="index")},
          show=False)
pub.view("outreach_candidates", "Candidate wards for proactive outreach: high need, fewer referrals than expected",
         of="ward_need_and_ratio", select=findings.select_outreach, need_cut=cut, ratio_below=p.needs.outreach_referral_ratio_below,
         columns=["ward22_code", "ward22_name", "borough_name", "need_index", "need_rank", "referrals", "expected", "referral_ratio",
                  "referral_ratio_lower", "referral_ratio_upper", "evidence"], labels={"evidence": "Evidence"},
         notes=f"Top fifth of NCL need (need index at least {cut:.2f}) and a standardised referral ratio below "
               f"{p.needs.outreach_referral_ratio_below:g}.")
pub.finding(findings.outreach, priority=1)

# %% [markdown]
# ## Workforce coverage
# Link workers per 10,000 population against the target of one FTE per 10,000 (NHS England
# Universal Personalised Care), using the NCL Training Hub review's own counts in the units it gives
# them, and its published coverage figures checked against those counts.

# %%
cov = needs.workforce_coverage(p.workforce.target_link_workers_per_10000)
pub.table("workforce_coverage", cov, "Link workers by borough against the 1 per 10,000 target (NCL review 2024)",
          columns={"borough_code": Label("Borough code"), "borough_name": Label("Borough"), "population": Public("Population", "count"),
                   "population_source": Label("Population source"), "link_workers": Public("Link workers", "fte"),
                   "link_worker_unit": Label("Unit (as the review gives it)"), "link_worker_basis": Label("Basis"),
                   "link_workers_per_10000": Public("Link workers per 10,000", "per_10000"),
                   "target_per_10000": Public("Target per 10,000", "per_10000"),
                   "gap_to_target": Public("Short of the target", "fte"),
                   "published_as_written": Label("Coverage as the review publishes it"),
                   "published_consistent": Label("Published coverage matches the review's own count")},
          source="NCL Training Hub, Social Prescribing in NCL General Practice (2024); Census 2021 where the review gives no population")
pub.table("workforce_review_totals", needs.workforce_totals(), "The review's NCL totals against the sum of its borough figures",
          columns={"role": Label("Role"), "ncl_stated_total": Public("NCL total stated", "fte"),
                   "sum_of_boroughs": Public("Sum of borough figures", "fte"), "difference": Public("Difference", "fte"),
                   "boroughs_without_figure": Label("Boroughs without a figure"), "units": Label("Units"), "flag": Label("Check")},
          source="NCL Training Hub review (2024), p.13 and borough sections")
here = ctx.scope.only_borough  # a borough pack leads with its own borough; the NCL pack with none
pub.finding(findings.workforce, priority=2, area_code=here)
pub.finding(findings.workforce_review_checks, priority=5, area_code=here)
units = needs.review_link_worker_units() if ctx.synthetic else None
pcn = needs.pcn_coverage(ctx.local.workforce, ctx.scope, p.workforce.target_link_workers_per_10000, units=units)
pub.table("workforce_coverage_by_pcn", pcn, "Link workers per 10,000 registered patients by PCN",
          columns={"borough_name": Label("Borough"), "pcn_code": Label("PCN code"), "pcn_name": Label("PCN"),
                   "registered_patients": Public("Registered patients", "count"), "link_workers_own": Public("Link workers employed by the PCN", "fte"),
                   "link_workers_allocated": Public("Share of borough-wide providers' link workers", "fte"),
                   "link_workers": Public("Link workers", "fte"), "unit": Label("Unit"), "per_10000": Public("Per 10,000", "per_10000"),
                   "gap_to_target": Public("Short of the target", "fte"), "allocation": Label("How allocated")},
          notes="Borough-wide providers' link workers are shared among the PCNs they serve in proportion to registered patients "
                "(assumption A13).")
