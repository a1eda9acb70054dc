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
# **Question.** Did social prescribing change GP and A&E use, and wellbeing, compared with people like
# those referred who were not referred? And can this area's data answer that at all?
#
# People are referred when their GP use peaks, so their use falls afterwards whatever happens: a raw
# before/after count ("70% fewer GP visits") mixes any effect with this regression to the mean. The
# pack shows the raw figure beside a matched difference in differences and a trend-adjusted estimate,
# and states for each outcome a verdict from written rules (credible, sensitive, or not credible) that
# decides what may be headlined and valued. The plan below was fixed before any outcome was computed.

# %% tags=["parameters"]
area = "ncl"          # 'ncl' or a borough: barnet, camden, enfield, haringey, islington
pack_dir = None       # set by `spstudy packs`; without it the notebook previews its outputs
notebook = "03_service_use_evaluation"

# %%
from spstudy.publish.publisher import start

ctx = start(globals())  # validates the parameters (a misspelt injected one is an error) and sets up the publisher

from spstudy.analyses import claims, evaluation
from spstudy.inputs import reference
from spstudy.methods import plan, power, subgroups, wellbeing
from spstudy.publish import charts, findings
from spstudy.publish.disclosure import Count, Estimate, Label, Proportion, Public

p, pub, ex = ctx.params, ctx.publisher, ctx.extracts
conf = p.study.confidence  # the level of every interval below (parameters: study.confidence)
CI = pub.ci  # that level as labels say it, e.g. '95%'
design = evaluation.design_from_parameters(p)
W = max(p.evaluation.windows_months)
factors = ["ethnic_group", "imd_quintile", "age_band", "main_reason"] + (["borough"] if ctx.scope.several_boroughs else [])

# %% [markdown]
# ## Pre-specified analysis plan
# Written from the parameters before any outcome is computed; its SHA-256 is in the manifest, and any
# difference from a plan registered in `parameters/evaluation_plan.json` is listed as a deviation.

# %%
pl = plan.plan_from_parameters(
    p.to_dict(), covariates=evaluation.ps_covariates(design), seeds=dict(p.evaluation.seeds.model_dump()),
    subgroups={"factors": factors, "defined_by": "referred member of each matched set", "main_reason_rule": "first",
               "min_matched_sets": 20, "interaction_test": "Wald test of subgroup x treated x post terms, cluster-robust by matched set",
               "multiplicity": "Holm over all interaction tests; Holm over all subgroup estimates"},
    verdict_rules=dict(p.evaluation.verdict.model_dump()),
    estimators={"main": "matched difference in differences (Poisson, cluster-robust by matched set)",
                "robust": "trend-adjusted comparative interrupted time series", "sensitivity": "E-values; elective admissions as negative control",
                "power": "minimum detectable effect (Bloom 1995)", "wellbeing_attrition": "complete case, IPW, bounds"}, confidence=conf)
plan_json = plan.canonical_json(pl).decode()
plan_hash = plan.plan_sha256(pl)
registered = ctx.parameters_dir / "evaluation_plan.json"
pub.document("analysis_plan", f"Analysis plan {plan_hash[:12]}", plan.plan_markdown(pl),
             files={"analysis_plan.json": plan_json, "analysis_plan.md": plan.plan_markdown(pl)})
if registered.exists():
    dev = plan.deviations(registered, pl)
    pub.table("plan_deviations", dev.table, "Deviations from the registered analysis plan",
              columns={c: Label(c.replace("_", " ").capitalize()) for c in dev.table.columns})
else:
    pub.text("No analysis plan was registered before this run (`parameters/evaluation_plan.json`), so there is nothing to compare it "
             "with; the plan above is what this run did.")

# %%
res = evaluation.run(ex, design, ctx.scope, engine=p.evaluation.engine)
res.to_parquet(ctx.shared("evaluation")) if ctx.build_dir else None
d = subgroups.add_subgroup_columns(res.units, ex.referrals, reference.gp_practices(), reference.BOROUGHS)
pairs = res.match.pairs
by_cohort = {"setting": "All", "window_months": "All"}
rows_e = {"setting": "setting", "window_months": "window_months", "cohort": "cohort"}
ecols = {"setting": Label("Outcome"), "window_months": Public("Months after referral", "integer"), "cohort": Label("Cohort")}
rr = lambda label, src=(): Estimate(label, src)  # noqa: E731

# %% [markdown]
# ## What this area's data can detect
# The smallest fall (as a ratio of rate ratios) that the matched design would detect with 80% power at
# the 5% level, from the cohort's size and its use before referral only (Bloom 1995). Shown before any result.

# %%
mde = power.minimum_detectable_effects(d, pairs, settings=("gp", "ae"), windows_months=p.evaluation.windows_months,
                                       cohorts=("itt", "per_protocol"), by="borough",
                                       target_reductions={"gp": p.evaluation.upc_expectations.gp_reduction,
                                                          "ae": p.evaluation.upc_expectations.ae_reduction}, confidence=conf)
pub.table("power_mde", mde.table, f"Minimum detectable effect (80% power, two-sided {100 * (1 - conf):.3g}%)", rows={**rows_e, "group": "subgroup_borough"},
          columns={"group": Label("Borough"), **ecols,
                   "n_matched_sets": Count("Matched referred people", measure="matched_referred", at=by_cohort),
                   "events_baseline_treated": Count("Referred people's events in the baseline window"),
                   "events_baseline_comparator": Count("Comparators' events in the baseline window"),
                   "mde_rate_ratio": rr("Smallest detectable ratio of rate ratios", ("n_matched_sets",)),
                   "mde_pct_change": Estimate("Smallest detectable change (%)", ("n_matched_sets",), "percent"),
                   "target_pct_change": Public("NHS England expectation (%)", "percent"),
                   "powered_for_target": Label("Can detect the expectation")},
          notes="Post-referral events are not used. 'All' is the whole area.")
pub.finding(findings.power_statement, priority=4)

# %% [markdown]
# ## Cohort and matching
# Referred people (first referral in the study period) and registered people never referred at any time,
# each given a pseudo-index date in the same months. Propensity score on age (spline and bands), sex,
# deprivation, ethnic group and prior GP/A&E use; nearest neighbour on the logit within 0.2 SD, exact on
# sex and PCN.

# %%
pub.table("cohort_flow", res.cohort_flow, "Cohort: who is in the evaluation", columns={"step": Label("Step"), "n": Count("People")})
pub.table("matching_sample_sizes", res.sample_sizes, "Matching: sample sizes (MatchIt conventions)", rows={"step": "step", "group": "group"},
          columns={"step": Label("Step"), "group": Label("Group"), "n": Count("People")})
pub.table("balance_summary", res.balance_summary, "Balance after matching: the largest standardised mean difference",
          rows={"sample": "sample", "matched_on": "matched_on", "cohort": "cohort"},
          columns={"cohort": Label("Cohort"), "sample": Label("Sample"), "matched_on": Label("Matching variable"),
                   "n_variables": Public("Variables", "integer"), "n_at_or_above_threshold": Public("At or above the threshold", "integer"),
                   "max_abs_smd": Estimate("Largest |SMD|", (), "smd"), "variable_with_max": Label("Variable")},
          notes="Use in the baseline, washout and last month is not matched on, by design (referral follows a peak in use).")
sm = lambda label: Estimate(label, (), "smd")  # noqa: E731
pub.table("balance", res.balance, "Covariate balance before and after matching", rows={"variable": "variable", "sample": "sample"},
          columns={"variable": Label("Variable"), "sample": Label("Sample"), "smd": sm("Standardised mean difference"),
                   "matched_on": Label("Matching variable")}, show=False,
          notes="Group means and variance ratios are not published: a mean of a binary variable over a known group is a count.")
pub.finding(findings.balance, priority=4, threshold=p.evaluation.smd_threshold)
pub.figure("love_plot", "Balance before and after matching (Love plot)", charts.love, "balance", charts.alt_love,
           threshold=p.evaluation.smd_threshold)
hist = evaluation.score_histogram(res.units)
pub.table("propensity_score_distribution", hist, "Propensity score distribution, referred and comparators",
          rows={"panel": "panel", "group": "group", "score_from": "band"},
          columns={"panel": Label("Sample"), "group": Label("Group"), "score_from": Public("Score from", "share"), "score_to": Public("Score to", "share"),
                   "n": Count("People")}, show=False,
          notes="Fixed score bands (0 to 1 in twentieths). After matching, comparators are weighted by their matching weight.")
pub.figure("ps_overlap", "Propensity score overlap", charts.histogram, "propensity_score_distribution", charts.alt_histogram,
           group="group", lower="score_from", upper="score_to", count="n", panel="panel", title="Propensity score overlap",
           xlabel="Propensity score")

# %% [markdown]
# ## Effects on GP and A&E use, and the verdicts
# Naive: referred people's rate after referral over their rate before. Matched: the change in referred
# people minus the change in their matched comparators (ratio of rate ratios; Poisson, cluster-robust by
# matched set). Trend-adjusted: the effect against a straight-line extrapolation of the pre-referral
# difference. The verdict decides which estimate is the headline and whether it may be valued.

# %%
vcols = {**ecols, "verdict": Label("Verdict"), "headline_estimator": Label("Headline estimate"),
         "n_referred": Count("Matched referred people", measure="matched_referred", at=by_cohort),
         "rate_ratio": rr("Rate ratio", ("n_referred",)), "rate_ratio_lower": rr(f"Lower {CI} limit", ("n_referred",)),
         "rate_ratio_upper": rr(f"Upper {CI} limit", ("n_referred",)), "e_value": rr("E-value", ("n_referred",)),
         "valued": Label("Valued in the SROI"), "reason": Label("Why")}
pub.table("verdicts", res.verdicts, "Verdict for each outcome: what the pack may claim", rows=rows_e, columns=vcols,
          notes="Rules in the README ('How the evaluation works') and docs/assumptions.md E1-E9. A not-credible estimate is never the "
                "headline and never valued.")
est = res.estimates
pub.table("estimates", est, "Every estimate: naive, matched, trend-adjusted and conventional designs", rows={**rows_e, "estimator": "estimator"},
          columns={**ecols, "estimator": Label("Estimator"), "n_referred": Count("Referred people", measure=None),
                   "rate_ratio": rr("Rate ratio", ("n_referred",)), "rate_ratio_lower": rr(f"Lower {CI} limit", ("n_referred",)),
                   "rate_ratio_upper": rr(f"Upper {CI} limit", ("n_referred",)),
                   "verdict": Label("Verdict"), "headline": Label("Headline")},
          notes="Differences in events per person-year are not published: with the rates before and after they would give the "
                "person-years and so the exact event counts.")
for s in ("gp", "ae"):
    pub.finding(findings.effect, priority=1, setting=s, window_months=W, cohort="itt")
    pub.finding(findings.naive_against_headline, priority=2, setting=s, window_months=W)
pub.figure("estimates_forest", "Naive, matched and trend-adjusted estimates", charts.forest, "estimates", charts.alt_forest,
           label=["setting", "window_months", "estimator"], est="rate_ratio", lower="rate_ratio_lower", upper="rate_ratio_upper",
           group="estimator", where={"cohort": "itt", "setting": ["gp", "ae"], "estimator": ["naive", "matched_did", "trend_adjusted"]},
           title=f"Change in use after referral, all referred, {ctx.area_name}", xlabel="Rate ratio (log scale; 1 = no change)")
nv = res.naive
pub.table("rates_naive", nv, "Referred people only: rates before and after referral", rows=rows_e,
          columns={**ecols, "n_referred": Count("Referred people", measure="evaluated_referred", at=by_cohort),
                   "events_pre": Count("Events before"), "events_post": Count("Events after"),
                   "rate_ratio": rr("Rate ratio after / before", ("events_pre", "events_post")),
                   "rate_ratio_lower": rr(f"Lower {CI} limit", ("events_pre", "events_post")), "rate_ratio_upper": rr(f"Upper {CI} limit", ("events_pre", "events_post"))},
          show=False)
pub.table("rates_matched", res.matched, "Ratio of rate ratios, referred against matched comparators", rows=rows_e,
          columns={**ecols, "n_treated": Count("Matched referred people", measure="matched_referred", at=by_cohort),
                   "ratio_of_rate_ratios": rr("Ratio of rate ratios", ("n_treated",)), "ratio_of_rate_ratios_lower": rr(f"Lower {CI} limit", ("n_treated",)),
                   "ratio_of_rate_ratios_upper": rr(f"Upper {CI} limit", ("n_treated",)),
                   "did_per_1000py": Estimate("Difference in differences per 1,000 person-years", ("n_treated",), "rate")}, show=False)

# %% [markdown]
# ## Checks: event study, pre-trends, placebo, negative control, E-values
# Per-month effects relative to the baseline window with intervals at the `study.confidence` level (fixed-effects Poisson with
# matched-set x month effects, clustered by set); a joint test of the clean pre-period; the placebo
# nearest referral; elective admissions as a negative control; and how strong an unmeasured confounder
# would have to be to explain each headline away.

# %%
es = res.event_study
pub.table("event_study", es, "Event study: use of referred people relative to comparators, month by month",
          rows={"setting": "setting", "cohort": "cohort", "month": "month"},
          columns={"setting": Label("Outcome"), "cohort": Label("Cohort"), "month": Public("Month from referral", "integer"),
                   "n_sets": Count("Matched sets"), "events_referred": Count("Events, referred"), "events_comparators": Count("Events, comparators"),
                   "rate_ratio": rr("Rate ratio against the baseline", ("events_referred", "events_comparators")),
                   "rate_ratio_lower": rr(f"Lower {CI} limit", ("events_referred", "events_comparators")),
                   "rate_ratio_upper": rr(f"Upper {CI} limit", ("events_referred", "events_comparators"))}, show=False)
pub.figure("event_study_plot", "Event study: per-month effects relative to the baseline window", charts.event_study, "event_study",
           charts.alt_event_study, month="month", est="rate_ratio", lower="rate_ratio_lower", upper="rate_ratio_upper", panel="setting",
           where={"cohort": "itt", "setting": ["gp", "ae"]}, reference_month=-5,
           title=f"Use of referred people relative to matched comparators, all referred, {ctx.area_name}")
pt = res.pretrend
pub.table("pretrend", pt, "Pre-trend test, where the rise starts, and the first months after referral", rows={"setting": "setting", "cohort": "cohort"},
          columns={"setting": Label("Outcome"), "cohort": Label("Cohort"), "pretrend_p": Estimate("Pre-trend test p", (), "p"),
                   "baseline_deviation_ratio": rr("Baseline against the clean months"),
                   "baseline_deviation_ratio_lower": rr(f"Lower {CI} limit"), "baseline_deviation_ratio_upper": rr(f"Upper {CI} limit"),
                   "rise_onset_month": Public("Month the rise starts", "integer"), "washout_first_month": Public("Washout starts", "integer"),
                   "rise_starts_before_washout": Label("Rise starts before the washout")})
pub.table("placebo", res.placebo, "Placebo nearest referral: the design run with referral moved earlier", rows={"setting": "setting", "cohort": "cohort"},
          columns={"setting": Label("Outcome"), "cohort": Label("Cohort"), "shift_months": Public("Months earlier", "integer"),
                   "window_months": Public("Window (months)", "integer"), "n_treated": Count("Matched referred people"),
                   "rate_ratio": rr("Rate ratio", ("n_treated",)), "rate_ratio_lower": rr(f"Lower {CI} limit", ("n_treated",)),
                   "rate_ratio_upper": rr(f"Upper {CI} limit", ("n_treated",))})
pub.finding(findings.rise_and_placebo, priority=3)
pub.table("negative_control", res.negative_control, "Negative control: elective admissions through the same design", rows=rows_e,
          columns={**ecols, "status": Label("Status"), "n_referred": Count("Matched referred people", measure=None),
                   "rate_ratio": rr("Rate ratio", ("n_referred",)), "rate_ratio_lower": rr(f"Lower {CI} limit", ("n_referred",)),
                   "rate_ratio_upper": rr(f"Upper {CI} limit", ("n_referred",))})
pub.finding(findings.negative_control, priority=3, window_months=W)
pub.table("e_values", res.e_values, "E-values of the estimates", rows={**rows_e, "estimator": "estimator"},
          columns={**ecols, "estimator": Label("Estimator"), "rate_ratio": rr("Rate ratio"), "e_value": rr("E-value"),
                   "e_value_ci": rr("E-value of the confidence limit"), "headline": Label("Headline")})
pub.finding(findings.e_values, priority=4)

# %% [markdown]
# ## Who benefits
# The matched estimate within subgroups defined by the referred member of each matched set, with an
# interaction test per factor and Holm's adjustment for the number of tests.

# %%
sg = subgroups.subgroup_effects(d, pairs, factors, settings=("gp", "ae"), windows_months=[W], cohorts=("itt",), min_matched_sets=20, confidence=conf)
sub_dims = {"by": "factor", "dims": {"ethnic_group": "ethnicity", "imd_quintile": "imd_quintile", "age_band": "age_band_eval",
                                     "main_reason": "main_reason", "borough": "subgroup_borough"}}
pub.table("subgroup_effects", sg.estimates, "Effects by subgroup (matched difference in differences)", rows={**rows_e, "subgroup": sub_dims},
          columns={"factor": Label("Factor"), "subgroup": Label("Subgroup"), **ecols,
                   "n_matched_sets": Count("Matched referred people", measure="matched_referred", at=by_cohort),
                   "ratio_of_rate_ratios": rr("Ratio of rate ratios", ("n_matched_sets",)),
                   "ratio_of_rate_ratios_lower": rr(f"Lower {CI} limit", ("n_matched_sets",)),
                   "ratio_of_rate_ratios_upper": rr(f"Upper {CI} limit", ("n_matched_sets",)),
                   "p_holm": Estimate("Holm-adjusted p", ("n_matched_sets",), "p"), "status": Label("Status")})
pub.table("subgroup_interactions", sg.interactions, "Does the effect differ between subgroups? (interaction tests)",
          rows={**rows_e, "factor": "factor"},
          columns={"factor": Label("Factor"), **ecols, "chi2": Estimate("Chi-squared", (), "number"), "df": Public("Degrees of freedom", "integer"),
                   "p_interaction": Estimate("p", (), "p"), "p_interaction_holm": Estimate("Holm-adjusted p", (), "p"),
                   "n_tests": Public("Tests in the family", "integer"), "subgroups_not_tested": Label("Too small to test")})
pub.finding(findings.who_benefits, priority=3)

# %% [markdown]
# ## The boroughs' own claims, on one method
# Each borough's published figure from the NCL review beside the naive and matched estimates from the
# same data for the same borough and outcome.

# %%
if ctx.scope.several_boroughs:  # the boroughs' claims side by side, in the pack that covers them all
    specs = claims.claim_specs(claims.review_facts())
    ce = claims.claim_estimates(d, pairs, specs, hiu_min_ae_12m=p.evaluation.high_intensity_ae_per_year, confidence=conf)
    ct = claims.claims_table(specs, ce.naive, ce.matched, ce.shares)
    cl = lambda label: Estimate(label, ("n_referred",), "percent")  # noqa: E731
    pub.table("claims_vs_estimates", ct, "The boroughs' published figures beside the naive and matched estimates", rows={"claim_id": "claim"},
              columns={"claim_id": Label("Claim"), "borough": Label("Borough"), "population": Label("Who"),
                       "claimed_value": Public("Published figure", "number"), "claimed_unit": Label("Unit"),
                       "claim_sample_size": Public("Sample the review gives", "integer"), "source": Label("Source"),
                       "n_referred": Count("Referred people in the same group", measure=None),
                       "naive_estimate": cl("Naive before/after (%)"), "matched_estimate": cl("Matched (%)"),
                       "matched_estimate_lower": cl(f"Matched: lower {CI} limit"), "matched_estimate_upper": cl(f"Matched: upper {CI} limit"),
                       "statement": Label("What the matched design supports")})
    pub.finding(findings.claims, priority=2)

# %% [markdown]
# ## Against NHS England's Universal Personalised Care expectations

# %%
upc_x = p.evaluation.upc_expectations.model_dump()
pub.table("upc_uptake", evaluation.upc_uptake(res.units, upc_x), "Take-up against the Universal Personalised Care expectation",
          columns={"measure": Label("Measure"), "expected": Public("Expected (%)", "percent"),
                   "n_referred": Count("Referred people", measure="evaluated_referred", at={"cohort": "itt", **by_cohort}),
                   "n_seen": Count("Seen by a link worker", measure="evaluated_referred", at={"cohort": "per_protocol", **by_cohort}),
                   "pct_seen": Proportion("Observed: % seen", count="n_seen", total="n_referred", lower="pct_seen_lower",
                                          upper="pct_seen_upper")})
upc = evaluation.upc_comparison(res.units, res.matched, upc_x)
pub.table("upc_comparison", upc, "Observed against the Universal Personalised Care expectations",
          columns={"measure": Label("Measure"), "expected": Public("Expected", "percent"), "observed": Estimate("Observed", (), "percent"),
                   "observed_lower": Estimate(f"Lower {CI} limit", (), "percent"), "observed_upper": Estimate(f"Upper {CI} limit", (), "percent")},
          notes="Observed GP and A&E changes are the matched estimates whatever their verdict: read them with the verdicts above.")

# %% [markdown]
# ## Wellbeing
# Paired change among people seen with baseline and follow-up scores, with no comparison group (change,
# not effect), beside estimates that allow for follow-up being missing more often for people who did
# not improve: inverse-probability weighting and bounds.

# %%
seen_ids = d.loc[(d["treated"] == 1) & (d["seen"] == 1), "referral_id"]
wb_change = evaluation.wellbeing_change(ctx.local.wellbeing, seen_ids, p.evaluation.wellbeing_thresholds.model_dump(), p.study.confidence).change
if ctx.build_dir:
    wb_change.to_parquet(ctx.shared("evaluation") / "wellbeing_change.parquet")
if len(wb_change):
    w = lambda label: Estimate(label, ("n_pairs",), "score")  # noqa: E731
    pub.table("wellbeing_change", wb_change, "Paired change in wellbeing among people seen", rows={"measure": "measure"},
              columns={"measure": Label("Measure"), "n_pairs": Count("People with both scores"), "mean_baseline": w("Mean at first contact"),
                       "mean_follow_up": w("Mean at follow-up"), "mean_change": w("Mean change"), "mean_change_lower": w(f"Lower {CI} limit"),
                       "mean_change_upper": w(f"Upper {CI} limit"), "n_improved": Count("Improved meaningfully"),
                       "pct_improved": Proportion("% improved meaningfully", count="n_improved", total="n_pairs")})
    seen = d[(d["treated"] == 1) & (d["seen"] == 1)]
    sc = wellbeing.score_instruments(ctx.local.wellbeing.loc[ctx.local.wellbeing["referral_id"].isin(set(seen["referral_id"])),
                                                      ["referral_id", "timepoint", "instrument", "item", "score"]])
    cov = ["age_band", "sex", "imd_q", "ethnic_group"] + (["borough"] if ctx.scope.several_boroughs else [])
    wa = wellbeing.attrition_adjusted_changes(sc, seen[["referral_id"] + cov], cov, confidence=conf)
    a = lambda label, kind="score": Estimate(label, ("n_baseline", "n_followed_up"), kind)  # noqa: E731
    pub.table("wellbeing_attrition_adjusted", wa.estimates, "Wellbeing change allowing for missing follow-up",
              rows={"measure": "measure", "method": "method"},
              columns={"measure": Label("Measure"), "method": Label("Method"), "assumption": Label("Assumption"),
                       "n_baseline": Count("People with a baseline score"), "n_followed_up": Count("With a follow-up score"),
                       "mean_change": a("Mean change"), "mean_change_lower": a(f"Lower {CI} limit"), "mean_change_upper": a(f"Upper {CI} limit"),
                       "bound_low": a("Bound: low", "integer"), "bound_high": a("Bound: high", "integer"),
                       "tipping_point_delta": a("Tipping point (points)", "integer"),
                       "status": Label("Status")})
    pub.finding(findings.wellbeing, priority=3)
else:
    pub.text("No wellbeing measurements for this area's referred cohort.")
