"""The release as its readers read it: the six packs built on the shipped data, opened and attacked.

One build of every area (NCL and the five boroughs, every notebook) is shared by the tests in this
module. They read the published files only (CSV, HTML, Excel, PNG, manifest, disclosure.json), never
the functions behind them:

* an attacker that tries every attack an outside review used on earlier packs (hierarchy
  differencing, same-row sums, group minus subgroups, NCL minus the boroughs, rate x denominator,
  percentage x total, a df column, figures drawn from unpublished data, numbers in sentences), and
  the LP audit; an under-protected release made from the same build must fail both;
* the same number in every pack that shows it; figures and sentences redrawn from the published
  tables alone equal the published ones; funnel flags agree with the limits drawn; nothing impossible;
  each borough pack finds the under-referral the generator planted in it;
* nothing raw, no absolute path or user name; a rerun of the release step gives the same bytes.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spstudy.inputs import reference
from spstudy.inputs.checksums import sha256
from spstudy.publish import audit as A
from spstudy.publish import cells as C
from spstudy.publish import disclosure as D
from spstudy.publish import packs, release
from tests.support import ROOT

AREAS = list(reference.AREAS)
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("release")]
RULES = D.Rules(7, 5)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    reuse = os.environ.get("SPSTUDY_TEST_RELEASE")  # developers: a release built earlier (out and private build, ':'-separated)
    if reuse:
        out, keep = (Path(x) for x in reuse.split(":"))
        return out, keep, type("R", (), {"audit": A.audit(out)})()
    out = tmp_path_factory.mktemp("release")
    keep = tmp_path_factory.mktemp("private")
    results, rel = packs.run(AREAS, out, jobs=2, keep_build=keep)
    failed = {r.area: r.failures for r in results if not r.ok}
    assert not failed, f"packs failed: {failed}"
    return out, keep, rel


def _meta(out, area):
    return json.loads((out / area / A.AUDIT_FILE).read_text())


def _table(out, area, name) -> pd.DataFrame:
    for t in _meta(out, area)["tables"]:
        if t["name"].endswith("/" + name):
            return pd.read_csv(out / area / t["file"], dtype=str, keep_default_na=False)
    raise KeyError(f"{area}: no table {name}")


def _bounds(v: str) -> tuple[float, float]:
    """What a reader knows of a published count."""
    if v == D.SUPPRESSED:
        return 1.0, math.inf
    x = float(v)
    return RULES.published_bounds(x)


def _narrow(lo, hi) -> bool:
    """Fewer possible whole values for a suppressed cell than the release promises (Rules.protection_values:
    4 with threshold 7, so a reader of every table can never rule out more than half of 1 to 7)."""
    if hi == math.inf:
        return False
    return math.floor(hi + 1e-9) - math.ceil(lo - 1e-9) + 1 < RULES.protection_values


# ---------------------------------------------------------------------------------- the release

def test_every_pack_is_built_and_passes_the_audit(built):
    out, _, rel = built
    for a in AREAS:
        d = out / a
        for f in (f"{a}_pack.html", f"{a}_tables.xlsx", "manifest.json", A.AUDIT_FILE, "analysis_plan.json"):
            assert (d / f).exists(), f"{a}: {f} missing"
    rep = A.audit(out)
    assert rep.ok and sorted(rep.packs) == sorted(AREAS), rep.text()
    assert rel.audit.ok and rep.n_suppressed > 0 and rep.n_rounded > 1000


def test_nothing_raw_and_no_machine_paths_in_any_pack(built):
    out, _, _ = built
    user = getpass.getuser()
    bad = [str(ROOT), str(Path.home()), "/tmp/", ".building-", "private"]
    ident = re.compile(r"\b(P\d{6,}|R\d{6,})\b")
    for a in AREAS:
        for f in sorted((out / a).rglob("*")):
            assert f.suffix not in (".pkl", ".pickle", ".ipynb", ".parquet"), f"raw artefact {f}"
            if f.is_dir():
                continue
            if f.suffix == ".xlsx":
                with zipfile.ZipFile(f) as z:
                    text = "".join(z.read(n).decode("utf-8", "ignore") for n in z.namelist() if n.endswith(".xml"))
            elif f.suffix == ".png":
                text = f.read_bytes()[:4096].decode("latin-1")
            else:
                text = f.read_text(errors="ignore")
            text = re.sub(r"data:image/png;base64,[^'\"]+", "", text)
            for b in bad:
                assert b not in text, f"{f.relative_to(out)} contains {b!r}"
            if user not in ("root",) and len(user) > 3:
                assert user not in text, f"{f.relative_to(out)} contains the user name"
            assert not ident.search(text), f"{f.relative_to(out)} contains a person or referral identifier"


def test_manifest_lets_a_partner_reproduce_the_pack(built):
    out, _, _ = built
    m = json.loads((out / "camden" / "manifest.json").read_text())
    for rel_path, digest in m["files_sha256"].items():
        assert sha256(out / "camden" / rel_path) == digest, rel_path
    published = {f.relative_to(out / "camden").as_posix() for f in (out / "camden").rglob("*") if f.is_file()} - {"manifest.json"}
    assert published == set(m["files_sha256"])
    assert m["requirements_lock_sha256"] == sha256(ROOT / "requirements.lock")
    assert m["packages"]["pandas"] and m["platform"] and m["seeds"]["sroi.seed"] == m["parameters"]["sroi"]["seed"]
    assert {f"evaluation.seeds.{k}": v for k, v in m["parameters"]["evaluation"]["seeds"].items()}.items() <= m["seeds"].items()
    assert m["analysis_plan_sha256"] == sha256(out / "camden" / "analysis_plan.json")
    for k in m["inputs_sha256"]:
        assert not k.startswith("/"), k


GOLDEN = ROOT / "tests" / "data" / "release_golden.sha256"


def _golden_files(out: Path) -> dict[str, str]:
    """Every table, figure, disclosure record and analysis plan of every pack (not the manifest, the
    HTML or the Excel file: those carry the commit and the build date)."""
    found = {}
    for area in AREAS:
        d = out / area
        files = [*d.glob("tables/*"), *d.glob("figures/*"), d / "disclosure.json", d / "analysis_plan.json", d / "analysis_plan.md"]
        found.update({f"{area}/{f.relative_to(d).as_posix()}": sha256(f) for f in files if f.is_file()})
    return dict(sorted(found.items()))


def test_the_packs_are_byte_identical_to_the_recorded_release(built):
    """Moving code does not move results. tests/data/release_golden.sha256 records the digests of the
    six packs' tables, figures, disclosure records and plans as built before the package was split into
    stage folders (issue 14); this build must give the same bytes. A deliberate change of output
    rewrites the record (SPSTUDY_UPDATE_GOLDEN=1) in the same commit, and the diff shows which files moved."""
    out, _, _ = built
    got = _golden_files(out)
    if os.environ.get("SPSTUDY_UPDATE_GOLDEN"):
        GOLDEN.write_text("".join(f"{v}  {k}\n" for k, v in got.items()))
    want = dict(reversed(line.split("  ", 1)) for line in GOLDEN.read_text().splitlines())
    assert set(got) == set(want), f"files added {sorted(set(got) - set(want))[:5]}, missing {sorted(set(want) - set(got))[:5]}"
    changed = sorted(k for k in want if got[k] != want[k])
    assert not changed, f"{len(changed)} of {len(want)} published files differ from the recorded release: {changed[:10]}"


def test_rerunning_the_release_gives_the_same_bytes(built, tmp_path):
    out, keep, _ = built
    b = next(keep.glob(".building-*")) if list(keep.glob(".building-*")) else keep
    info = packs._extract_info("ncl", None, None)
    release.publish_release(b, AREAS, tmp_path, packs.default_notebooks_dir(), info, packs.git_commit(), jobs=2)
    for a in AREAS:
        for f in sorted((out / a).rglob("*")):
            if f.is_file():
                assert f.read_bytes() == (tmp_path / a / f.relative_to(out / a)).read_bytes(), f"{a}/{f.relative_to(out / a)} differs"


# ------------------------------------------------------------------------------------- attacks

def _rows_by_code(out, area, table, code_col, value_col):
    t = _table(out, area, table)
    return dict(zip(t[code_col], t[value_col]))


def test_attack_hierarchy_differencing_practices_within_pcns(built):
    """A PCN's published count minus its other practices' published counts must not pin a suppressed practice."""
    out, _, _ = built
    gp = reference.gp_practices()
    found = []
    for a in AREAS:
        for tp, tpc, col in (("referral_rates_by_practice", "referral_rates_by_pcn", "referrals"),
                             ("ethnicity_recording_by_practice", "ethnicity_recording_by_pcn", "referrals")):
            code_p = "practice_code" if tp.startswith("referral") else "code"
            code_q = "pcn_code" if tp.startswith("referral") else "code"
            prac = _rows_by_code(out, a, tp, code_p, col)
            pcn = _rows_by_code(out, a, tpc, code_q, col)
            for q, v in pcn.items():
                kids = gp.loc[gp["pcn_code"] == q, "practice_code"]
                shown = [prac.get(k) for k in kids]
                if None in shown or v == D.SUPPRESSED:
                    continue
                hidden = [k for k, s in zip(kids, shown) if s == D.SUPPRESSED]
                if len(hidden) == 1:
                    lo_t, hi_t = _bounds(v)
                    others = [_bounds(s) for s in shown if s != D.SUPPRESSED]
                    lo, hi = max(1, lo_t - sum(o[1] for o in others)), hi_t - sum(o[0] for o in others)
                    if _narrow(lo, hi):
                        found.append((a, tp, hidden[0], lo, hi))
    assert not found, found


def test_attack_same_row_sums_in_completeness_tables(built):
    """referrals = recorded + not stated + not recorded: one suppressed term must not be pinned by the row."""
    out, _, _ = built
    found = []
    for a in AREAS:
        for level in ("borough", "pcn", "practice"):
            t = _table(out, a, f"ethnicity_recording_by_{level}")
            for _, r in t.iterrows():
                parts = [r["recorded"], r["not_stated"], r["not_recorded"]]
                if r["referrals"] == D.SUPPRESSED or sum(p == D.SUPPRESSED for p in parts) != 1:
                    continue
                lo_t, hi_t = _bounds(r["referrals"])
                others = [_bounds(p) for p in parts if p != D.SUPPRESSED]
                lo, hi = max(1, lo_t - sum(o[1] for o in others)), hi_t - sum(o[0] for o in others)
                if _narrow(lo, hi):
                    found.append((a, level, r["code"], lo, hi))
    assert not found, found


def test_attack_group_minus_subgroups_detailed_ethnicity(built):
    """A Census group's referrals minus its published detailed NHS categories must not pin the hidden one."""
    out, _, _ = built
    from spstudy.inputs.contract import ETHNIC_CATEGORIES, ETHNIC_TO_CENSUS5

    found = []
    for a in AREAS:
        det = _rows_by_code(out, a, "referrals_by_detailed_ethnicity", "group", "referrals")
        grp = _table(out, a, "outcome_by_ethnic_group").drop_duplicates("group").set_index("group")["referrals"]
        for g in ("Asian", "Black", "Mixed", "White", "Other"):
            kids = [ETHNIC_CATEGORIES[k] for k, v in ETHNIC_TO_CENSUS5.items() if v == g]
            shown = [det.get(k, "0") for k in kids]
            hidden = [k for k, s in zip(kids, shown) if s == D.SUPPRESSED]
            if len(hidden) == 1 and grp.get(g, D.SUPPRESSED) != D.SUPPRESSED:
                lo_t, hi_t = _bounds(grp[g])
                others = [_bounds(s) for s in shown if s != D.SUPPRESSED]
                lo, hi = max(1, lo_t - sum(o[1] for o in others)), hi_t - sum(o[0] for o in others)
                if _narrow(lo, hi):
                    found.append((a, g, hidden[0], lo, hi))
    assert not found, found


@pytest.mark.parametrize("table,key,col", [("top_languages", "group", "referrals"), ("referrals_by_detailed_ethnicity", "group", "referrals"),
                                           ("ethnicity_coding", "code", "referrals"), ("outcome_by_ethnic_group", None, "n")])
def test_attack_ncl_minus_the_boroughs(built, table, key, col):
    """The same cell in the NCL pack minus the five borough packs must not pin a borough's hidden cell."""
    out, _, _ = built
    boroughs = [a for a in AREAS if a != "ncl"]

    def cells(area):
        t = _table(out, area, table)
        k = t[key] if key else t["group"] + "|" + t["outcome"]
        return dict(zip(k, t[col]))

    ncl = cells("ncl")
    per = {b: cells(b) for b in boroughs}
    found = []
    for k, v in ncl.items():
        if v == D.SUPPRESSED or any(k not in per[b] for b in boroughs):
            continue
        shown = [per[b][k] for b in boroughs]
        hidden = [b for b, s in zip(boroughs, shown) if s == D.SUPPRESSED]
        if len(hidden) == 1:
            lo_t, hi_t = _bounds(v)
            others = [_bounds(s) for s in shown if s != D.SUPPRESSED]
            lo, hi = max(1, lo_t - sum(o[1] for o in others)), hi_t - sum(o[0] for o in others)
            if _narrow(lo, hi):
                found.append((table, k, hidden[0], lo, hi))
    assert not found, found


def test_attack_rate_and_percentage_times_denominator(built):
    """Every published rate or percentage, times its denominator, gives back at most the published
    (rounded) count, and nothing where the count is suppressed."""
    out, _, _ = built
    found = []
    for a in AREAS:
        for t in _meta(out, a)["tables"]:
            rows = pd.read_csv(out / a / t["file"], dtype=str, keep_default_na=False)
            for d in t["derived"]:
                eps = 0.5 * 10 ** -d["decimals"]
                en = 0.5 * 10 ** -d.get("denominator_decimals", 0)
                for i, r in rows.iterrows():
                    v, x, n = r[d["column"]], r[d["count"]], r[d["denominator"]]
                    if v in ("", D.SUPPRESSED):
                        continue
                    if x == D.SUPPRESSED:
                        found.append((a, t["name"], d["column"], i, "rate published for a suppressed count"))
                        continue
                    if n in ("", D.SUPPRESSED) or float(n) <= 0:
                        continue
                    v, x, n = float(v), float(x), float(n)
                    lo, hi = (v - eps) * (n - en) / d["multiplier"], (v + eps) * (n + en) / d["multiplier"]
                    if not (lo - 1e-9 <= x <= hi + 1e-9):
                        found.append((a, t["name"], d["column"], i, f"implies {lo:.2f}..{hi:.2f} but the count is {x:g}"))
    assert not found, found[:10]


def test_attack_no_df_or_n_minus_one_columns(built):
    """No published number is a count minus or plus a small constant (a df column gives back n - 1)."""
    out, _, _ = built
    found = []
    for a in AREAS:
        for t in _meta(out, a)["tables"]:
            rows = pd.read_csv(out / a / t["file"], dtype=str, keep_default_na=False)
            counts = {c["column"] for c in t["cells"]}
            if counts:  # a table of counts carries no test statistic's degrees of freedom (df = n - 1 gives n back)
                assert not [c for c in rows.columns if re.fullmatch(r"(df|dof|degrees?_of_freedom|n_minus_1)", c)], (a, t["name"])
            for c in counts:
                x = pd.to_numeric(rows[c].replace(D.SUPPRESSED, np.nan), errors="coerce")
                for other in rows.columns:
                    if other == c or other in counts or t["kinds"].get(other) == "text":
                        continue
                    y = pd.to_numeric(rows[other].replace(D.SUPPRESSED, np.nan), errors="coerce")
                    both = x.notna() & y.notna()
                    if both.sum() >= 5 and ((y[both] - (x[both] - 1)).abs() <= 2.5).mean() >= 0.9 and (y[both] % 1 == 0).all():
                        found.append((a, t["name"], c, other))  # a column that tracks the count minus one gives it back
    assert not found, found[:10]


def test_figures_and_sentences_are_redrawn_from_the_published_tables_alone(built):
    """Every figure redrawn from the pack's CSVs (no private data) is byte-identical to the published
    PNG, its alt text is the same, and so is every finding."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from spstudy.publish import charts
    from spstudy.publish.publisher import resolve

    out, _, _ = built
    for a in ("ncl", "camden", "enfield"):
        meta = _meta(out, a)
        tables = release.read_published(out / a)
        for f in meta["figures"]:
            entry = {"table": f["table"].split("/", 1)[1], "options": f["options"], "draw": f["draw"], "alt": f["alt"]}
            fig, alt, drawn = charts.render(entry, tables)
            assert alt == f["alt_text"], f"{a}: {f['name']} alt text differs"
            assert not charts.check_marks(fig, drawn, f["name"]), f"{a}: {f['name']} plots values not in its table"
            p = Path(os.environ.get("TMPDIR", "/tmp")) / f"redraw-{os.getpid()}.png"
            fig.savefig(p, dpi=110, bbox_inches="tight", metadata={"Software": None, "Title": None})
            plt.close(fig)
        for f in meta["findings"]:
            if f["text"] is None:
                continue
            assert resolve(f["fn"])(tables, **f["kwargs"]) == f["text"], f"{a}: finding {f['fn']} differs"


def test_an_under_protected_release_fails_the_audit(built, tmp_path):
    """The same build published with only per-table primary suppression and rates from unrounded
    counts (what earlier packs did) must fail the audit."""
    out, keep, _ = built
    import shutil

    for a in AREAS:
        shutil.copytree(out / a, tmp_path / a, ignore=shutil.ignore_patterns("*.html", "*.xlsx", "*.png"))
    b = next(keep.glob(".building-*")) if list(keep.glob(".building-*")) else keep
    leaked = 0
    for a in ("ncl", "camden", "enfield", "barnet", "haringey", "islington"):
        _, items = release.load_items(b, a)
        meta = json.loads((tmp_path / a / A.AUDIT_FILE).read_text())
        files = {t["name"]: t for t in meta["tables"]}
        for it in items:
            t = files.get(f"{it.notebook}/{it.spec.name}")
            if t is None or it.spec.name not in ("referral_rates_by_practice", "ethnicity_recording_by_practice"):
                continue
            raw = D.check_table(it.spec, it.raw, it.where)
            keys = D.row_keys(it.spec, raw, it.area, it.where)
            # naive: primary suppression only, rates from the unrounded counts at two decimals
            shown = pd.read_csv(tmp_path / a / t["file"], dtype=str, keep_default_na=False)
            for (r, col), k in keys.items():
                v = float(raw.at[r, col])
                shown.at[r, col] = D.SUPPRESSED if RULES.primary(v) else f"{RULES.round(v):.0f}"
            for d in t["derived"]:
                x = raw[d["count"]].astype(float)
                n = pd.to_numeric(raw[d["denominator"]], errors="coerce")
                shown[d["column"]] = [f"{xi / ni * d['multiplier']:.{d['decimals'] + 2}f}" if not RULES.primary(xi) else D.SUPPRESSED
                                      for xi, ni in zip(x, n)]
                d["decimals"] += 2
            shown.to_csv(tmp_path / a / t["file"], index=False, lineterminator="\n")
            leaked += 1
        (tmp_path / a / A.AUDIT_FILE).write_text(json.dumps(meta))
    assert leaked
    rep = A.audit(tmp_path, first=10)  # the verdict, not the whole list (solving every exposed cell takes minutes)
    assert not rep.ok and rep.leaky, "an under-protected release must fail the audit"
    assert len(rep.exposed) >= 10 and rep.stopped_early
    assert any(e.kind == "rounded" for e in rep.exposed)


# -------------------------------------------------------------------------- read as a reader does

def test_the_same_unit_has_the_same_numbers_in_every_pack(built):
    out, _, _ = built
    for table, key in (("ward_referral_rates", "ward22_code"), ("referral_rates_by_practice", "practice_code"),
                       ("referral_rates_by_pcn", "pcn_code"), ("ethnicity_recording_by_practice", "code")):
        ncl = _table(out, "ncl", table).set_index(key)
        seen = 0
        for a in AREAS[1:]:
            b = _table(out, a, table).set_index(key)
            common = [k for k in b.index if k in ncl.index and C.geo_level(k) not in ("borough", "ncl")]
            pd.testing.assert_frame_equal(b.loc[common], ncl.loc[common], obj=f"{a} {table}")
            seen += len(common)
        assert seen > (20 if table == "referral_rates_by_pcn" else 50), table


def test_funnel_flags_agree_with_the_limits_drawn(built):
    from spstudy.publish import figures as F

    out, _, _ = built
    for a in ("ncl", "camden", "enfield"):
        t = release.read_published(out / a)
        w = t["ward_referral_rates"].dropna(subset=["referral_ratio"])
        fd = F.funnel_data(w.assign(referral_ratio=w["referrals"] / w["expected"] * 100), "expected", "referral_ratio", "ratio",
                           count="referrals", multiplier=100)
        assert (fd.points["position"].to_numpy() == w["funnel"].to_numpy()).mean() > 0.97, a
        p = t["referral_rates_by_practice"]
        tot = p[p["practice_code"] == C.NCL_CODE].iloc[0]
        pts = p[(p["practice_code"] != C.NCL_CODE)].dropna(subset=["rate"])
        target = tot["referrals"] / tot["person_years"] * 1000
        fd = F.funnel_data(pts.assign(rate=pts["referrals"] / pts["person_years"] * 1000), "person_years", "rate", "rate",
                           count="referrals", target=target, multiplier=1000)
        assert (fd.points["position"].to_numpy() == pts["funnel"].to_numpy()).mean() > 0.97, a


def test_nothing_impossible_anywhere(built):
    out, _, _ = built
    for a in AREAS:
        t = release.read_published(out / a)
        for name in ("ward_referral_rates", "ward_need_and_ratio"):
            assert (t[name]["referral_ratio"].dropna() >= 0).all()
        s = t["sroi_summary"].iloc[0]
        assert (not s["payback_reached"] and math.isnan(s["payback_months"])) or s["payback_months"] <= s["benefit_period_months"]
        assert "100.0%" not in str(t["sroi_monte_carlo"]["prob_ratio_gt_1_text"].iloc[0])
        u = t["upc_uptake"].iloc[0]  # take-up is a share of the counts as published, never of the raw ones
        assert u["pct_seen"] == pytest.approx(100 * u["n_seen"] / u["n_referred"], abs=0.051), a
        for name in t._c:
            v = t[name]
            for c in v.columns:
                if c.startswith("pct") and pd.api.types.is_numeric_dtype(v[c]):
                    assert (v[c].dropna() <= 100.0001).all() and (v[c].dropna() >= 0).all(), (a, name, c)
        html = (out / a / f"{a}_pack.html").read_text()
        words = re.sub(r"<[^>]+>", " ", re.sub(r"data:image[^']+", "", html)).split()
        assert "nan" not in [w.lower().strip(".,;()") for w in words], a


LIMITS_WITHOUT_AN_ESTIMATE = ("process_limit", "near_limit")  # SPC chart limits around a mean, not an estimate's interval


def test_every_interval_is_named_for_its_estimate_and_contains_it(built):
    """One naming scheme for intervals across the release: ``<estimate>_lower`` / ``<estimate>_upper``
    beside ``<estimate>`` (or ``<estimate>_median`` for a simulated distribution), never a bare
    ``lower``/``upper`` a reader must pair by position; and every published interval holds its estimate."""
    out, _, _ = built
    checked = 0
    for a in AREAS:
        t = release.read_published(out / a)
        for name in t._c:
            v = t[name]
            cols = set(v.columns)
            assert not cols & {"lower", "upper", "lo", "hi", "lcl", "ucl"}, (a, name, sorted(cols))
            for c in sorted(cols):
                if not c.endswith("_lower"):
                    continue
                stem = c[: -len("_lower")]
                assert f"{stem}_upper" in cols, (a, name, c)
                if stem in LIMITS_WITHOUT_AN_ESTIMATE:
                    continue
                point = stem if stem in cols else f"{stem}_median"  # a distribution: its median and central range
                assert point in cols, f"{a}/{name}: {c} has no estimate column {stem!r}"
                est, lo, hi = (pd.to_numeric(v[x], errors="coerce") for x in (point, c, f"{stem}_upper"))
                ok = est.notna() & lo.notna() & hi.notna()
                bad = ok & ~((lo <= est + 1e-9 * est.abs().clip(lower=1)) & (est <= hi + 1e-9 * est.abs().clip(lower=1)))
                assert not bad.any(), f"{a}/{name}: {stem} outside [{c}, {stem}_upper] in rows {list(v.index[bad][:5])}"
                checked += int(ok.sum())
    assert checked > 1000


def test_each_borough_pack_finds_the_planted_under_referral(built):
    """synth.yaml plants each service's referral volume; relative to NCL a borough's residents are
    referred at about the planted ratio, and the borough's own pack shows it (as the NCL pack does)."""
    import yaml

    out, _, _ = built
    planted = {"barnet": 115, "camden": 50, "enfield": 22, "haringey": 225, "islington": 90}  # docs/synthetic_data.md, from synth.yaml
    ncl_out = _table(out, "ncl", "outreach_candidates")
    for b, want in planted.items():
        w = release.read_published(out / b)["ward_referral_rates"]
        ratio = 100 * w["referrals"].sum() / w["expected"].sum()
        assert abs(ratio - want) / want < 0.12, (b, ratio, want)
        mine = set(_table(out, b, "outreach_candidates")["ward22_code"])
        theirs = set(ncl_out.loc[ncl_out["borough_name"] == b.capitalize(), "ward22_code"])
        assert mine == theirs, b
    assert len(set(_table(out, "enfield", "outreach_candidates")["ward22_code"])) >= 5
    assert yaml.safe_load((ROOT / "parameters" / "synth.yaml").read_text())


def test_every_table_has_readable_headers_and_the_front_page_says_synthetic(built):
    out, _, _ = built
    html = (out / "camden" / "camden_pack.html").read_text()
    assert "SYNTHETIC DATA" in html and "runninghead" in html
    for col in ("rr_dsr_lower", "did_per_1000py", "ward22_code"):
        assert f">{col}<" not in html
    m = re.search(r"<h2 id=.key-findings.>.*?</section>", html, re.S)
    assert m and 1 <= m.group(0).count("<li>") <= 7
    assert "Enfield" not in m.group(0) and "Islington" not in m.group(0)


@pytest.mark.browser
def test_printed_pdf_keeps_every_column_header(built, tmp_path):
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium not installed (make test installs Debian's chromium when run as root)")
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader

    out, _, _ = built
    page_path = out / "camden" / "camden_pack.html"
    pdf = tmp_path / "camden.pdf"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                                    "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.goto(page_path.as_uri())
        page.emulate_media(media="print")
        page.pdf(path=str(pdf), format="A4", print_background=True, prefer_css_page_size=True)
        headers = page.eval_on_selector_all("table thead th", "els => els.map(e => e.innerText)")
        rows = page.eval_on_selector_all("table tbody tr", "els => els.length")
        browser.close()
    text = " ".join(pg.extract_text() or "" for pg in PdfReader(str(pdf)).pages)
    norm = re.sub(r"\s+", "", text)  # line breaks inside a header are fine; a header cut off the page is not
    missing = [h for h in set(headers) if re.sub(r"\s+", "", h) not in norm]
    assert not missing, missing[:20]
    assert rows > 200 and "SYNTHETICDATA" in norm


def test_excel_annex_holds_the_published_tables_cell_for_cell(built):
    """The Excel annex is read by analysts who never open the CSVs: every table sheet must hold the same
    rows and the same values as the published CSV (numbers as numbers, [c] and [x] as text)."""
    import openpyxl

    from spstudy.publish.report import NOT_AVAILABLE

    out, _, _ = built
    for a in AREAS:
        csvs = {f.name.split("__", 1)[1][:-4]: f for f in (out / a / "tables").glob("*__*.csv")}
        wb = openpyxl.load_workbook(out / a / f"{a}_tables.xlsx", read_only=False)
        seen = set()
        for ws in wb.worksheets:
            for tname, ref in ws.tables.items():
                if not re.match(r"table_\d{2}_", tname):
                    continue
                name = tname.split("_", 2)[2]
                match = [k for k in csvs if k == name or (len(tname) == 60 and k.startswith(name))]
                assert len(match) == 1, f"{a}: sheet {ws.title} table {tname} matches no single CSV ({match})"
                seen.add(match[0])
                pub = pd.read_csv(csvs[match[0]], dtype=str, keep_default_na=False)
                cells = [[c.value for c in row] for row in ws[ref]]
                body = cells[1:]
                if len(pub) == 0:
                    continue
                assert len(body) == len(pub) and len(cells[0]) == pub.shape[1], f"{a}/{tname}: shape differs from the CSV"
                for i, (xrow, crow) in enumerate(zip(body, pub.itertuples(index=False))):
                    for j, (x, c) in enumerate(zip(xrow, crow)):
                        where = f"{a}/{tname} row {i + 1} column {pub.columns[j]}"
                        if c == "":
                            assert x == NOT_AVAILABLE, f"{where}: {x!r} for an empty cell"
                        elif isinstance(x, (int, float)) and not isinstance(x, bool):
                            assert math.isclose(x, float(c), rel_tol=1e-12, abs_tol=1e-12), f"{where}: {x!r} != {c!r}"
                        else:
                            assert str(x) == c, f"{where}: {x!r} != {c!r}"
        assert seen == set(csvs), f"{a}: tables without a sheet: {sorted(set(csvs) - seen)}"
