"""Render a pack's HTML report and Excel annex from its published artefacts (never from raw data).

The HTML is one self-contained file (inline CSS, figures embedded as PNG with alt text) without
code: title page, contents, key findings, one section per analysis, then annexes (methods,
data quality, data sources and licence, parameters). The Excel workbook follows the Government
Analysis Function spreadsheet guidance: a cover sheet, a contents sheet, a notes sheet and one
table per sheet. Both are deterministic for the same artefacts.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path

import mistune
import pandas as pd
import yaml

from . import reference
from .publish import read_artefacts

NOTEBOOK_TITLES = {
    "01_needs_assessment": "Population needs assessment by ward",
    "02_equity_of_access": "Equity of access by ethnicity and language",
    "03_service_use_evaluation": "Matched pre/post service-use evaluation",
    "04_social_return_on_investment": "Social return on investment",
}

CSS = """
body{font-family:Arial,Helvetica,sans-serif;max-width:1100px;margin:0 auto;padding:0 1.5em;color:#0b0c0c;line-height:1.5}
h1{font-size:2.2em;margin-top:1.2em}h2{border-bottom:3px solid #005eb8;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.5em}.title-page{padding:3em 0;border-bottom:6px solid #005eb8}
.subtitle{font-size:1.3em;color:#425563}.meta{color:#425563}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}caption{text-align:left;font-weight:bold;margin-bottom:.3em}
th,td{border:1px solid #b1b4b6;padding:.25em .5em;text-align:right}th{background:#f3f2f1}
td:first-child,th:first-child{text-align:left}.table-wrap{overflow-x:auto;max-height:32em;overflow-y:auto}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto}figcaption{font-weight:bold}
.finding{background:#e8f1f8;border-left:5px solid #005eb8;padding:.5em 1em;margin:.8em 0}
.note{color:#505a5f;font-size:.9em}nav ol{line-height:1.8}.failed{background:#fde8e8;border-left:5px solid #d4351c;padding:.5em 1em}
"""

METHODS = [
    ("Proportions", "Wilson score interval (Newcombe 1998, Stat Med 17:857), as PHEindicatormethods::phe_proportion."),
    ("Crude rates", "Byars' approximation to the exact Poisson interval for counts of 10 or more, exact Poisson (chi-squared) below (PHEindicatormethods::phe_rate; Breslow & Day 1987)."),
    ("Directly standardised rates", "2013 European Standard Population, Dobson et al. (1991, Stat Med 10:457) intervals; not shown for counts under 10 (Fingertips convention)."),
    ("Indirectly standardised ratios", "Observed / expected x 100, expected from NCL age-band rates; Byars/exact intervals on the observed count (PHEindicatormethods::calculate_ISRatio)."),
    ("Slope and relative index of inequality", "Weighted regression on the midpoint of the cumulative population rank of deprivation quantiles, with simulated intervals (PHEindicatormethods::phe_sii; Low & Low 2004)."),
    ("Funnel plots", "Control limits at 95% and 99.8% around the NCL value (Spiegelhalter 2005, Stat Med 24:1185; PHE funnel plot guidance)."),
    ("Index of disparity", "Mean absolute deviation of group rates from the reference rate, as a percentage of it (Pearcy & Keppel 2002, Public Health Reports 117:273)."),
    ("Propensity score matching", "Unpenalised logistic regression; greedy nearest-neighbour matching on the logit with a caliper of 0.2 SD (Austin 2011, Pharm Stat 10:150), exact on sex and PCN where possible; balance as standardised mean differences (MatchIt / cobalt conventions; target |SMD| < 0.1)."),
    ("Difference in differences", "Change in the rate of GP appointments and A&E attendances per 1,000 person-years in referred people minus the change in matched comparators; ratio of rate ratios from a Poisson GLM with log person-time offset and cluster-robust errors by matched set."),
    ("Wellbeing change", "Paired change in ONS4 items and (S)WEMWBS (SWEMWBS converted to the metric score with the Warwick Rasch table), paired t-test, Wilcoxon signed-rank test, effect size and % meaningful change (Maheswaran et al. 2012)."),
    ("Social return on investment", "Cabinet Office / Social Value UK guide (2012): impact map, deadweight, attribution, displacement, drop-off, Green Book discounting (3.5%), Monte Carlo uncertainty carried from the effect estimates, tornado chart and break-even values."),
    ("Disclosure control", "Counts 1-7 suppressed with secondary suppression; other counts rounded to the nearest 5 (NHS Digital HES/ECDS guidance; OpenSAFELY)."),
]


def _md(text: str) -> str:
    return mistune.html(text or "")


def _table_html(path: Path, title: str, notes: str, source: str, suppression_note: str, n_suppressed: int, anchor: str) -> str:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    head = "".join(f"<th scope='col'>{html.escape(c)}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in df.itertuples(index=False))
    extra = []
    if notes:
        extra.append(html.escape(notes))
    if source:
        extra.append("Source: " + html.escape(source))
    if n_suppressed:
        extra.append(html.escape(suppression_note))
    note = f"<p class='note'>{' '.join(extra)}</p>" if extra else ""
    return (f"<div class='table-wrap' id='{anchor}'><table><caption>{html.escape(title)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>{note}")


def render_html(pack_dir: Path, area: str, params: dict, ledger: pd.DataFrame | None, failed: dict[str, str] | None = None,
                commit: str = "", data_label: str = "") -> str:
    arts = read_artefacts(pack_dir)
    by_nb: dict[str, list[dict]] = {}
    for a in arts:
        by_nb.setdefault(a["notebook"], []).append(a)
    title = f"Social prescribing evaluation pack: {reference.area_name(area)}"
    contents, body, findings = [], [], []
    for i, (nb, items) in enumerate(sorted(by_nb.items()), start=1):
        sec_id = f"s{i}"
        nb_title = NOTEBOOK_TITLES.get(nb, nb.replace("_", " "))
        contents.append(f"<li><a href='#{sec_id}'>{html.escape(nb_title)}</a></li>")
        parts = [f"<h2 id='{sec_id}'>{i}. {html.escape(nb_title)}</h2>"]
        for a in items:
            k = a["kind"]
            if k == "section":
                parts.append(f"<h3>{html.escape(a['title'])}</h3>" + _md(a.get("text", "")))
            elif k == "text":
                parts.append(_md(a["text"]))
            elif k == "finding":
                parts.append(f"<div class='finding'>{_md(a['text'])}</div>")
                findings.append((nb_title, a["text"]))
            elif k == "table":
                if a["name"].endswith("_data"):
                    continue  # figure data: in Excel/CSV, not repeated in the report body
                parts.append(_table_html(pack_dir / "artefacts" / nb / a["file"], a["title"], a.get("notes", ""), a.get("source", ""),
                                         a.get("suppression_note", ""), a.get("n_suppressed", 0), f"{nb}-{a['name']}"))
            elif k == "figure":
                b64 = base64.b64encode((pack_dir / "artefacts" / nb / a["file"]).read_bytes()).decode()
                parts.append(f"<figure id='{nb}-{a['name']}'><img src='data:image/png;base64,{b64}' alt='{html.escape(a['alt'], quote=True)}'>"
                             f"<figcaption>{html.escape(a['title'])}</figcaption></figure>")
        body.append("\n".join(parts))
    for nb, err in sorted((failed or {}).items()):
        body.append(f"<div class='failed'><h2>{html.escape(nb)} did not complete</h2><pre>{html.escape(err[-2000:])}</pre></div>")
    n = len(body)
    annex = []
    annex.append(("methods", "Annex A: Methods and sources",
                  "<dl>" + "".join(f"<dt><strong>{html.escape(m)}</strong></dt><dd>{html.escape(t)}</dd>" for m, t in METHODS) + "</dl>"))
    tabs = [a for a in arts if a["kind"] == "table"]
    n_sup = sum(a.get("n_suppressed", 0) for a in tabs)
    sup_rows = "".join(f"<tr><td>{html.escape(a['title'])}</td><td>{a['n_suppressed']}</td></tr>" for a in tabs if a.get("n_suppressed"))
    disclosure = (f"<h3>Disclosure control</h3><p>{n_sup} cell(s) in {sum(1 for a in tabs if a.get('n_suppressed'))} of {len(tabs)} tables are "
                  f"suppressed (shown [c]): counts from 1 to {params['disclosure']['threshold']}, values computed from them, and cells that "
                  f"would let one be recovered from a total. Other counts are rounded to the nearest {params['disclosure']['rounding_base']}.</p>"
                  + (f"<table><thead><tr><th>table</th><th>suppressed cells</th></tr></thead><tbody>{sup_rows}</tbody></table>" if sup_rows else ""))
    if ledger is not None and len(ledger):
        annex.append(("data-quality", "Annex B: Data quality",
                      "<p>Every row of every extract table is accounted for: rows read, rows excluded (with the rule that "
                      "allowed it) and rows kept.</p>" + ledger.to_html(index=False, border=0, escape=True) + disclosure))
    annex.append(("sources", "Annex C: Data sources and licence",
                  f"<p>{html.escape(data_label)}</p><p>{html.escape(reference.ATTRIBUTION)}</p>"
                  "<p>Patient-level data in this pack are synthetic unless stated otherwise: generated by spstudy to the data contract, "
                  "calibrated to Census 2021 and the NCL Training Hub review of social prescribing (2024). No person can be identified.</p>"))
    annex.append(("parameters", "Annex D: Parameters used",
                  "<pre>" + html.escape(yaml.safe_dump(params, sort_keys=False)) + "</pre>" + (f"<p class='note'>Code version: {html.escape(commit)}</p>" if commit else "")))
    for aid, atitle, _ in annex:
        contents.append(f"<li><a href='#{aid}'>{html.escape(atitle)}</a></li>")
    key = "".join(f"<li><strong>{html.escape(t)}:</strong> {_md(f).removeprefix('<p>').removesuffix('</p>').strip()}</li>" for t, f in findings)
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<header class='title-page'><h1>{html.escape(title)}</h1>",
        "<p class='subtitle'>Needs, equity of access, matched service-use evaluation and social return on investment</p>",
        f"<p class='meta'>Referrals {params['study']['referral_start']} to {params['study']['referral_end']}. Produced by spstudy.</p></header>",
        f"<nav aria-label='Contents'><h2 id='contents'>Contents</h2><ol>{''.join(contents)}</ol></nav>",
        f"<section><h2 id='key-findings'>Key findings</h2><ul>{key}</ul></section>" if findings else "",
        *[f"<section>{b}</section>" for b in body],
        *[f"<section><h2 id='{aid}'>{html.escape(t)}</h2>{h}</section>" for aid, t, h in annex],
        "</body></html>",
    ]
    return "\n".join(x for x in out if x) + "\n"


def write_excel(pack_dir: Path, path: Path, area: str, ledger: pd.DataFrame | None):
    """Excel annex: cover, contents, notes, then one sheet per published table (Analysis Function guidance)."""
    import xlsxwriter

    arts = [a for a in read_artefacts(pack_dir) if a["kind"] == "table"]
    wb = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False})
    wb.set_properties({"title": f"spstudy tables: {reference.area_name(area)}", "author": "spstudy",
                       "created": dt.datetime(2000, 1, 1)})
    bold = wb.add_format({"bold": True})
    h1 = wb.add_format({"bold": True, "font_size": 16})
    cover = wb.add_worksheet("Cover")
    cover.write(0, 0, f"Social prescribing evaluation tables: {reference.area_name(area)}", h1)
    lines = ["This workbook holds every table published in the pack, one table per sheet.",
             "Suppressed cells are shown as [c]; see the Notes sheet.",
             reference.ATTRIBUTION,
             "Patient-level data are synthetic unless stated otherwise."]
    for i, t in enumerate(lines, start=2):
        cover.write(i, 0, t)
    cover.set_column(0, 0, 120)
    contents = wb.add_worksheet("Contents")
    contents.write_row(0, 0, ["Sheet", "Table", "Analysis", "Suppressed cells"], bold)
    notes = wb.add_worksheet("Notes")
    notes.write_row(0, 0, ["Note number", "Note"], bold)
    note_rows = [("1", "[c] = suppressed to protect confidentiality: a count between 1 and the threshold, a value computed from one, or a cell that would let one be recovered from a total. Other counts are rounded to the nearest 5."),
                 ("2", reference.ATTRIBUTION)]
    tables = list(arts)
    if ledger is not None:
        tables.append({"name": "data_quality_ledger", "title": "Data-quality ledger: rows read, excluded and kept", "notebook": "packs", "n_suppressed": 0})
    for i, a in enumerate(tables, start=1):
        sheet = f"Table_{i:02d}"
        contents.write_url(i, 0, f"internal:'{sheet}'!A1", string=sheet)
        contents.write_row(i, 1, [a["title"], NOTEBOOK_TITLES.get(a["notebook"], a["notebook"]), a.get("n_suppressed", 0)])
        ws = wb.add_worksheet(sheet)
        ws.write(0, 0, a["title"], bold)
        ws.write(1, 0, "Suppressed cells are shown as [c] (note 1)." + (f" {a.get('notes', '')}" if a.get("notes") else ""))
        if a["name"] == "data_quality_ledger":
            df = ledger.astype(object).where(ledger.notna(), "").astype(str)
        else:
            df = pd.read_csv(pack_dir / "artefacts" / a["notebook"] / a["file"], dtype=str, keep_default_na=False)
        ws.write_row(3, 0, list(df.columns), bold)
        for r, row in enumerate(df.itertuples(index=False), start=4):
            for c, v in enumerate(row):
                try:
                    num = float(v)
                except ValueError:
                    ws.write_string(r, c, v)
                    continue
                if num != num or num in (float("inf"), float("-inf")):
                    ws.write_blank(r, c, None)  # missing / not computable
                else:
                    ws.write_number(r, c, num)
        ws.set_column(0, max(len(df.columns) - 1, 0), 18)
    for i, (k, t) in enumerate(note_rows, start=1):
        notes.write_row(i, 0, [k, t])
    contents.set_column(0, 0, 12)
    contents.set_column(1, 1, 80)
    notes.set_column(1, 1, 120)
    wb.close()
