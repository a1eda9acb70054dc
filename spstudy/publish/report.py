"""The pack a reader gets: one HTML report (Jinja2 template) and one Excel annex (gptables), both
made from the controlled release only (never from raw data).

HTML: title page (saying "synthetic data" when the extract's own metadata says so, with the same
warning on every printed page), contents, at most seven key findings in order of importance, one
section per analysis opening with its question, a limitations section, then annexes: glossary,
methods and sources, data quality, output checking (every table, the rule applied, what was
suppressed and the audit's verdict), data sources and licence, parameters. Tables carry human labels
with units; numbers are right-aligned at one precision per kind of quantity; an empty table says
"None."; it prints to A4 without losing rows or columns (wide tables on landscape pages).

Excel: the Government Analysis Function spreadsheet guidance through ``gptables`` (cover, contents,
notes sheet, one table per sheet with readable headers, notes referenced from the tables).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from importlib.metadata import version
from pathlib import Path

import jinja2
import mistune
import pandas as pd
import yaml

from spstudy.inputs import reference
from spstudy.publish import disclosure as D
from spstudy.publish.release import MAX_KEY_FINDINGS, _notebook_intro, sanitise_text

NOT_AVAILABLE = "[x]"

GLOSSARY = [  # "{ci}": the pack's confidence level (parameters study.confidence), filled in by glossary()
    ("Standardised referral ratio", "Referrals observed in an area divided by the referrals expected if its residents were referred at NCL's rates for their age and sex, times 100. 100 = as expected; 50 = half as many."),
    ("Directly standardised rate", "A rate recalculated as if the area had the age structure of the 2013 European Standard Population, so areas with older or younger populations can be compared."),
    ("Confidence interval ({ci})", "The range of values consistent with the data; if the study were repeated many times, {ci} of such ranges would include the true value."),
    ("Funnel plot", "A chart of each unit's value against its size, with control limits: points outside the 99.8% limits differ from the reference by more than chance would usually produce."),
    ("Rate ratio", "One group's rate divided by another's: 0.8 means 20% lower, 1 the same."),
    ("Matched comparison group", "Registered people who were never referred, chosen to resemble the referred people in age, sex, deprivation, ethnic group and earlier GP and A&E use."),
    ("Propensity score", "The modelled chance that a person is referred, given their characteristics; people with similar scores are matched."),
    ("Standardised mean difference (SMD)", "The difference between referred people and their comparators on a characteristic, in standard deviations. Below 0.1 is usually taken as well balanced."),
    ("Difference in differences (DiD)", "The change in referred people's use minus the change in their comparators' use over the same months: the part of the change that social prescribing may explain."),
    ("Naive before/after", "Referred people's use after referral against their own use before it, with no comparison group. People are referred at a peak, so their use falls anyway: this overstates any effect."),
    ("Regression to the mean", "People picked because their use is unusually high will, on average, have lower use later without any intervention."),
    ("Washout", "The months just before referral, left out of the baseline because the rise in use that prompts a referral would inflate it."),
    ("Intention to treat (ITT)", "Everyone referred, whether or not they took up the offer. Per protocol: only people seen by a link worker."),
    ("Event study", "Effects estimated month by month around referral; before referral they should be near 1 if the comparison group shows what would have happened."),
    ("Placebo test", "The same analysis with a fake referral date when nothing happened: an 'effect' there shows bias."),
    ("E-value", "How strongly an unmeasured factor would have to be linked to both referral and the outcome to explain away the estimate."),
    ("SROI ratio", "Social return on investment: the valued outcomes (in pounds, under stated assumptions) per pound spent. It is not cash saved."),
    ("WELLBY", "A wellbeing-adjusted life year: one point of life satisfaction (0 to 10) for one person for one year, valued by HM Treasury."),
    ("Monte Carlo", "Repeating the SROI calculation thousands of times with inputs drawn from their uncertainty ranges; the median and the middle {ci} are reported."),
    ("XmR chart", "A statistical process control chart of monthly values with limits showing the range of common-cause variation; points beyond or runs on one side show special causes."),
    ("[c]", "Suppressed to protect confidentiality (see the output-checking annex)."),
]

LIMITATIONS = [
    "Matching balances what is recorded (age, sex, deprivation, ethnic group, earlier GP and A&E use). It cannot balance why a GP referred someone on a given day if the record does not show it: a crisis that would have passed anyway can look like an effect. The event study, placebo test and verdicts show how far the comparison can be trusted.",
    "Wellbeing (ONS4, WEMWBS, SWEMWBS) has no comparison group: the pack reports change among people seen, not an effect, and follow-up scores are missing more often for people who did not improve.",
    "SROI is not cash saved: appointments avoided free capacity that other patients use, and wellbeing values are not money anyone receives. The ratio depends on stated proxies and assumptions (docs/assumptions.md).",
    "Equity analyses use Census 2021 denominators; the age structure within each ethnic group comes from registered patients. Ethnicity and language are missing for some referrals; the pack shows how much the answers depend on that.",
    "Workforce figures are those of the NCL review (2024), in the units it gives (FTE, headcount or not stated); they do not add up to the review's own NCL totals.",
    "Disclosure control protects against what can be computed from the published tables and the relations between them (see the output-checking annex); it cannot protect against knowledge from outside the release.",
]

def glossary(confidence: float) -> list[tuple[str, str]]:
    """The glossary with the pack's confidence level written in ('95%')."""
    from spstudy.methods.stats import confidence_label

    ci = confidence_label(confidence)
    return [(t.replace("{ci}", ci), d.replace("{ci}", ci)) for t, d in GLOSSARY]


def disclosure_method(rules) -> tuple[str, str]:
    """The methods-annex entry for disclosure control, from the rules the release was controlled with."""
    return ("Disclosure control",
            f"Counts 1 to {rules.threshold} suppressed, others rounded to the nearest {rules.rounding_base} (NHS Digital HES/ECDS "
            "guidance; OpenSAFELY output checking); secondary suppression over the whole release until a linear-programming attack "
            f"(HiGHS) narrows no suppressed cell to fewer than {rules.protection_values} possible values and recovers no rounded count "
            "exactly; rates and percentages from rounded counts.")


def ledger_count(v, rules) -> str:
    """A data-quality ledger row count as published: through the release's rule for counts."""
    try:
        n = float(v)
    except (TypeError, ValueError):
        return str(v)
    if rules.primary(n):
        return "[c]"
    return f"{rules.round(n):,.0f}"


METHODS = [
    ("Proportions", "Wilson score interval (Newcombe 1998, Stat Med 17:857), as PHEindicatormethods::phe_proportion."),
    ("Crude rates", "Byars' approximation to the exact Poisson interval for counts of 10 or more, exact Poisson below (PHEindicatormethods::phe_rate; Breslow & Day 1987)."),
    ("Directly standardised rates", "2013 European Standard Population, Dobson et al. (1991, Stat Med 10:457) intervals; not shown for counts under 10."),
    ("Indirectly standardised ratios", "Observed / expected x 100, expected from NCL age-sex rates from all NCL referrals, the same reference in every pack; intervals on the observed count (PHEindicatormethods::calculate_ISRatio)."),
    ("Slope and relative index of inequality", "Weighted regression on the cumulative population rank of deprivation quantiles, simulated intervals (PHEindicatormethods::phe_sii; Low & Low 2004)."),
    ("Funnel plots", "Control limits at 95% and 99.8% (Spiegelhalter 2005, Stat Med 24:1185; PHE funnel plot guidance)."),
    ("Index of disparity", "Mean absolute deviation of group rates from the reference rate, as a percentage of it (Pearcy & Keppel 2002)."),
    ("Propensity score matching", "Logistic regression with flexible age; greedy nearest-neighbour matching on the logit with a 0.2 SD caliper (Austin 2011, Pharm Stat 10:150), exact on sex and PCN; balance as standardised mean differences (MatchIt / cobalt conventions)."),
    ("Difference in differences", "Ratio of rate ratios from a Poisson GLM with log person-time offset and cluster-robust errors by matched set; absolute difference per 1,000 person-years with a cluster bootstrap."),
    ("Wellbeing change", "Paired change in ONS4 items and (S)WEMWBS (SWEMWBS on the Warwick Rasch metric), paired t-test and Wilcoxon signed-rank test (Maheswaran et al. 2012)."),
    ("Social return on investment", "Cabinet Office / Social Value UK guide (2012): impact map, deadweight, attribution, displacement, drop-off, Green Book discounting (3.5%), Monte Carlo uncertainty, tornado and break-even."),
    ("Statistical process control", "XmR charts with NHS England 'Making Data Count' rules for special-cause variation."),

]


def _md(text: str) -> str:
    return mistune.html(text or "")


def _inline(text: str) -> str:
    return _md(text).strip().removeprefix("<p>").removesuffix("</p>").strip()


def human_table(c: D.Controlled) -> pd.DataFrame:
    """The published table with readable headers; missing values shown as a dash."""
    cols = c.spec.full_columns()
    out = c.shown.copy()
    out = out.where(out != "", NOT_AVAILABLE)
    return out.rename(columns={k: cols[k].label for k in out.columns})


def table_html(c: D.Controlled, anchor: str) -> str:
    cols = c.spec.full_columns()
    df = c.shown
    kinds = [cols[k].kind for k in df.columns]
    head = "".join(f"<th scope='col'>{html.escape(cols[k].label)}</th>" for k in df.columns)
    notes = []
    if c.spec.notes:
        notes.append(html.escape(c.spec.notes))
    if c.spec.source:
        notes.append("Source: " + html.escape(c.spec.source))
    if c.n_suppressed:
        notes.append(f"[c]: suppressed to protect confidentiality ({c.primary} small count(s), {c.secondary} to stop them being recovered "
                     "from other published numbers, and values computed from them).")
    if (df == "").to_numpy().any():
        notes.append(f"{NOT_AVAILABLE}: not available or not applicable.")
    note = f"<p class='note'>{' '.join(notes)}</p>" if notes else ""
    wide = " wide" if len(df.columns) > 9 else ""
    if not len(df):
        return f"<div class='table-wrap{wide}' id='{anchor}'><p><strong>{html.escape(c.spec.title)}</strong></p><p>None.</p></div>{note}"
    rows = []
    for r in df.itertuples(index=False):
        cells = []
        for v, k in zip(r, kinds):
            cls = "t" if k == "text" else "n"
            cells.append(f"<td class='{cls}'>{html.escape(v if v != '' else NOT_AVAILABLE)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class='table-wrap{wide}' id='{anchor}'><table><caption>{html.escape(c.spec.title)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{note}")


def _blocks(pack, nb: str, entries: list) -> list[str]:
    out = []
    for e in entries:
        k = e["kind"]
        if k == "section":
            out.append(f"<h3>{html.escape(e['title'])}</h3>" + _md(e.get("text", "")))
        elif k == "text":
            out.append(_md(e["text"]))
        elif k == "document":  # its headings sit below the pack's own (h4 and lower), folded so it does not swamp the section
            body = re.sub(r"(?m)^(#{1,3}) ", lambda m: "#" * min(len(m.group(1)) + 3, 6) + " ", e["text"])
            out.append(f"<h3 id='{nb}-{e['name']}'>{html.escape(e['title'])}</h3><details open><summary>The plan</summary>"
                       + _md(body) + "</details>")
        elif k == "finding":
            t = pack.texts.get((nb, e["order"]))
            if t:
                out.append(f"<div class='finding'>{_md(t)}</div>")
        elif k in ("table", "view") and e.get("show", True):
            out.append(table_html(pack.controlled[e["name"]], f"{nb}-{e['name']}"))
        elif k == "figure":
            path, alt = pack.figures[e["name"]]
            b64 = base64.b64encode(Path(path).read_bytes()).decode()
            out.append(f"<figure id='{nb}-{e['name']}'><img src='data:image/png;base64,{b64}' alt='{html.escape(alt, quote=True)}'>"
                       f"<figcaption>{html.escape(e['title'])}</figcaption></figure>")
    return out


def output_checks(pack, rules: D.Rules) -> pd.DataFrame:
    rows = []
    for name, c in pack.controlled.items():
        cols = c.spec.columns
        counts = [k for k, s in cols.items() if isinstance(s, D.Count)]
        derived = [k for k, s in cols.items() if isinstance(s, (D.Rate, D.Proportion))]
        est = [k for k, s in cols.items() if isinstance(s, D.Estimate)]
        if counts:
            rule = (f"counts suppressed 1-{rules.threshold}, rounded to {rules.rounding_base}; linked protection across the release"
                    + ("; rates and percentages recomputed from rounded counts" if derived else "")
                    + ("; estimates suppressed with their counts" if est else ""))
        else:
            rule = "no counts of patients (public data, parameters or modelled values)"
        rows.append({"table": c.spec.title, "notebook": c.notebook, "counts_published": int(sum((~c.suppressed[k]).sum() for k in counts)),
                     "primary_suppressed": c.primary, "secondary_suppressed": c.secondary,
                     "cells_suppressed": c.n_suppressed, "rule": rule})
    return pd.DataFrame(rows)


def write_pack(pack, st: Path, info: dict, rules: D.Rules, prot, rep, commit: str, notebooks_dir: Path):
    """HTML and Excel of one pack (the tables, figures and disclosure metadata are already in ``st``)."""
    write_html(pack, st, info, rules, rep, commit, notebooks_dir)
    write_pack_excel(pack, st, info, rules)


def write_pack_excel(pack, st: Path, info: dict, rules: D.Rules):
    """The pack's Excel annex (gptables): one sheet per table, the output-checking sheet, notes and cover."""
    title = f"Social prescribing evaluation pack: {reference.area(pack.area).name}"
    write_excel(pack, st / f"{pack.area}_tables.xlsx", title, bool(info.get("synthetic")), info, rules, output_checks(pack, rules),
                pack.params.to_dict())


def write_html(pack, st: Path, info: dict, rules: D.Rules, rep, commit: str, notebooks_dir: Path):
    """The pack's HTML page (Jinja2): findings, sections, tables, figures and annexes."""
    area = pack.area
    name = reference.area(area).name
    title = f"Social prescribing evaluation pack: {name}"
    synthetic = bool(info.get("synthetic"))
    by_nb: dict[str, list] = {}
    for e in pack.entries:
        by_nb.setdefault(e["notebook"], []).append(e)
    sections = []
    for i, (nb, items) in enumerate(sorted(by_nb.items()), start=1):
        t, intro = _notebook_intro(nb, notebooks_dir)
        sections.append({"id": f"s{i}", "title": t, "intro": _md(intro), "blocks": _blocks(pack, nb, items)})
    key = sorted(pack.findings, key=lambda f: (f[0], f[1], f[2]))[:MAX_KEY_FINDINGS]
    checks = output_checks(pack, rules)
    verdict = ("<p class='verdict-pass'><strong>Audit: PASS.</strong> " + html.escape(rep.text().splitlines()[0]) + " "
               + html.escape(rep.text().splitlines()[1]) + "</p>") if rep.ok else "<p class='verdict-fail'>Audit failed</p>"
    chk = checks.rename(columns={"table": "Table", "notebook": "Analysis", "counts_published": "Counts published",
                                 "primary_suppressed": "Suppressed: small counts", "secondary_suppressed": "Suppressed: to protect others",
                                 "cells_suppressed": "Cells shown [c] (incl. derived values)", "rule": "Rule applied"})
    annexes = [
        {"id": "glossary", "title": "Annex A: Glossary",
         "html": "<dl class='glossary'>" + "".join(f"<dt>{html.escape(t)}</dt><dd>{html.escape(d)}</dd>" for t, d in glossary(pack.params.study.confidence)) + "</dl>"},
        {"id": "methods", "title": "Annex B: Methods and sources",
         "html": "<dl class='glossary'>" + "".join(f"<dt>{html.escape(m)}</dt><dd>{html.escape(t)}</dd>"
                                                   for m, t in METHODS + [disclosure_method(rules)]) + "</dl>"},
    ]
    if pack.ledger is not None and len(pack.ledger):
        led = pack.ledger.assign(rows=pack.ledger["rows"].map(lambda v: ledger_count(v, rules))).rename(columns={"table": "Table", "file": "File", "step": "Step", "rule": "Rule", "rows": "Rows", "note": "Note"})
        led = led.astype(str).replace({"nan": ""})
        annexes.append({"id": "data-quality", "title": "Annex C: Data quality",
                        "html": "<p>Every row of every extract table is accounted for: rows read, rows excluded (with the rule that allowed "
                                "it) and rows kept. These are counts of records in the extract, not of people in a published group; they are "
                                f"shown under the same rule as every other count (1 to {rules.threshold} as [c], others to the nearest "
                                f"{rules.rounding_base}).</p>"
                                + led.to_html(index=False, border=0, escape=True, classes="ledger")})
    annexes.append({"id": "output-checking", "title": "Annex D: Output checking (disclosure control)",
                    "html": f"<p>{html.escape(rules.note())}</p>{verdict}<p>The audit solves, by linear programming over every table of every "
                            "pack published together and the relations between their cells (totals, practice within PCN within borough within "
                            "NCL, ward within borough, detailed within broad categories, the same cell in another pack, rates with their "
                            "denominators), the smallest and largest value each suppressed cell and rounded count can take. It does not "
                            "consider relations it is not told about, non-linear inversions (of a standardised rate's interval or a model), "
                            "or knowledge from outside the release.</p>" + chk.to_html(index=False, border=0, escape=True)})
    annexes.append({"id": "sources", "title": "Annex E: Data sources and licence",
                    "html": f"<p>{html.escape(_data_label(info))}</p><p>{html.escape(reference.ATTRIBUTION)}</p>"})
    params = pack.params.to_dict()
    annexes.append({"id": "parameters", "title": "Annex F: Parameters used",
                    "html": "<pre>" + html.escape(sanitise_text(yaml.safe_dump(params, sort_keys=False))) + "</pre>"})
    env = jinja2.Environment(loader=jinja2.PackageLoader("spstudy.publish", "templates"), autoescape=jinja2.select_autoescape(["html"]),
                             keep_trailing_newline=True)
    weaker = params["disclosure"].get("weaker_control_reason")
    out = env.get_template("pack.html.j2").render(
        title=title, area_name=name, synthetic=synthetic, period=f"{params['study']['referral_start']} to {params['study']['referral_end']}",
        data_label=_data_label(info), version=version("spstudy"), commit=commit[:12], threshold=rules.threshold,
        rounding_base=rules.rounding_base, n_packs=len(rep.packs), weaker=weaker,
        key_findings=[_inline(f[3]) for f in key], sections=sections, limitations=[html.escape(x) for x in LIMITATIONS], annexes=annexes)
    (st / f"{area}_pack.html").write_text(sanitise_text(out))


def _data_label(info: dict) -> str:
    if info.get("synthetic"):
        return ("Synthetic data: " + info.get("description", "generated by spstudy.synth") +
                f" (generator {info.get('generator', 'spstudy.synth')} {info.get('generator_version', '')}, seed {info.get('seed', '?')}).")
    return "Extract supplied by the user (see the manifest for its checksums)."


def write_excel(pack, path: Path, title: str, synthetic: bool, info: dict, rules: D.Rules, checks: pd.DataFrame, params: dict):
    import warnings

    import gptables as gpt

    sheets = {}
    notes = [("disclosure", rules.note()), ("dash", f"{NOT_AVAILABLE} = not available or not applicable."),
             ("licence", reference.ATTRIBUTION)]
    for i, (name, c) in enumerate(pack.controlled.items(), start=1):
        df = human_table(c)
        for col in df.columns:  # numbers as numbers, [c] and the dash as text
            conv = pd.to_numeric(df[col], errors="coerce")
            if conv.notna().sum() == (df[col] != NOT_AVAILABLE).sum() - (df[col] == D.SUPPRESSED).sum() and conv.notna().any():
                df[col] = [x if pd.notna(x) else v for x, v in zip(conv, df[col])]
        tnotes = []
        if c.spec.notes:
            ref = f"t{i}"
            notes.append((ref, c.spec.notes))
            tnotes.append(f"$${ref}$$")
        sheets[f"Table_{i:02d}"] = gpt.GPTable(
            table=df if len(df) else pd.DataFrame({"Result": ["None."]}), table_name=f"table_{i:02d}_{name}"[:60],
            title=c.spec.title + " $$disclosure$$ " + " ".join(tnotes),
            source=("Source: " + c.spec.source) if c.spec.source else "Source: spstudy analysis of the extract",
            instructions="This worksheet contains one table. Suppressed cells are shown as [c]; dashes mean not available.",
            index_columns={})
    i = len(sheets) + 1
    sheets[f"Table_{i:02d}"] = gpt.GPTable(
        table=checks.rename(columns={"table": "Table", "notebook": "Analysis", "counts_published": "Counts published",
                                     "primary_suppressed": "Suppressed small counts", "secondary_suppressed": "Suppressed to protect others",
                                     "cells_suppressed": "Cells shown [c]", "rule": "Rule applied"}),
        table_name="output_checking", title="Output checking: the disclosure rule applied to each table $$disclosure$$",
        source="Source: spstudy release audit", instructions="This worksheet contains one table.", index_columns={})
    intro = [f"Every table published in the {title.split(': ')[-1]} pack, one per sheet."]
    if synthetic:
        intro.insert(0, "SYNTHETIC DATA: every patient-level number comes from data generated by spstudy; no real person is in it.")
    cover = gpt.Cover(title=title, intro=intro + [f"Referrals {params['study']['referral_start']} to {params['study']['referral_end']}."],
                      about=[rules.note(), reference.ATTRIBUTION], contact=["spstudy engineers: see the project README for how to report a problem."])
    notes_table = pd.DataFrame({"Note reference": [n for n, _ in notes], "Note text": [t for _, t in notes]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wb = gpt.produce_workbook(filename=str(path), sheets=sheets, cover=cover, notes_table=notes_table)
        wb.set_properties({"title": title, "author": "spstudy", "created": dt.datetime(2000, 1, 1)})
        wb.close()
