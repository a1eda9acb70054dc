"""End-to-end: the batch run builds every pack from the shipped data; outputs pass disclosure
scans; a second run gives identical tables; a failing notebook does not stop the others; the
notebooks pass nbval; a pack renders in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from spstudy import packs, reference
from spstudy.params import load_parameters

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packs")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("packs")
    results = packs.run(list(reference.AREAS), out, jobs=2)
    return out, results


def test_every_pack_is_built(built):
    out, results = built
    failed = {r.area: r.failures for r in results if not r.ok}
    assert not failed, f"packs failed: {failed}"
    for area in reference.AREAS:
        d = out / area
        assert (d / f"{area}_pack.html").exists() and (d / f"{area}_tables.xlsx").exists() and (d / "manifest.json").exists()
        nbs = sorted(p.stem for p in (d / "notebooks").glob("*.ipynb"))
        assert nbs == [p.stem for p in packs.notebooks()]
        assert list((d / "tables").glob("*.csv")), f"{area}: no tables"
    assert not list(out.glob(".building-*")) and not list(out.glob("*.failed"))


IDENTIFIER = re.compile(r"\b(P\d{6,}|R\d{6,})\b")


def _scan_values(values, counts_cols, threshold, where):
    problems = []
    for c in counts_cols:
        if c not in values.columns:
            continue
        v = pd.to_numeric(values[c], errors="coerce")
        bad = (v >= 1) & (v <= threshold)
        if bad.any():
            problems.append(f"{where}: column {c} has {int(bad.sum())} count(s) in 1..{threshold}")
    return problems


def test_no_small_counts_or_identifiers_in_any_output(built):
    out, _ = built
    threshold = load_parameters("ncl").disclosure.threshold
    problems = []
    for area in reference.AREAS:
        d = out / area
        arts = packs.read_artefacts(d)
        tables = {a["file"]: a for a in arts if a["kind"] == "table"}
        for f in sorted((d / "tables").glob("*.csv")):
            text = f.read_text()
            if IDENTIFIER.search(text):
                problems.append(f"{f}: person or referral identifier")
            meta = tables.get(f.name.split("__", 1)[-1])
            if meta:
                problems += _scan_values(pd.read_csv(f, dtype=str), meta["counts"], threshold, str(f))
        html = (d / f"{area}_pack.html").read_text()
        if IDENTIFIER.search(re.sub(r"data:image/png;base64,[^']+", "", html)):
            problems.append(f"{area}: identifier in HTML")
        # the Excel workbook holds the same controlled tables
        with zipfile.ZipFile(d / f"{area}_tables.xlsx") as z:
            xml = "".join(z.read(n).decode("utf-8", "ignore") for n in z.namelist() if n.endswith(".xml"))
        if IDENTIFIER.search(xml):
            problems.append(f"{area}: identifier in Excel")
        for nb in (d / "notebooks").glob("*.ipynb"):
            if IDENTIFIER.search(nb.read_text()):
                problems.append(f"{nb}: identifier in executed notebook output")
    assert not problems, "\n".join(problems[:20])


def test_excel_has_cover_contents_notes_and_one_table_per_sheet(built):
    import openpyxl

    out, _ = built
    wb = openpyxl.load_workbook(out / "camden" / "camden_tables.xlsx", read_only=True)
    assert wb.sheetnames[:3] == ["Cover", "Contents", "Notes"]
    n_tables = len([a for a in packs.read_artefacts(out / "camden") if a["kind"] == "table"]) + 1  # + ledger
    assert len(wb.sheetnames) == 3 + n_tables


def test_manifest_reproduces_inputs_and_outputs(built):
    out, _ = built
    m = json.loads((out / "barnet" / "manifest.json").read_text())
    assert m["area"] == "barnet" and m["parameters"]["area"] == "barnet"
    for rel, digest in m["inputs_sha256"].items():
        assert packs.sha256(ROOT / rel) == digest, rel
    for rel, digest in m["tables_sha256"].items():
        assert packs.sha256(out / "barnet" / rel) == digest
    assert m["packages"]["pandas"] and m["seed"] is not None


def test_second_run_gives_identical_tables(built, tmp_path):
    out, _ = built
    again = packs.run(["islington"], tmp_path, jobs=1)
    assert again[0].ok, again[0].failures
    first = json.loads((out / "islington" / "manifest.json").read_text())["tables_sha256"]
    second = json.loads((tmp_path / "islington" / "manifest.json").read_text())["tables_sha256"]
    assert first == second
    assert packs.sha256(out / "islington" / "islington_pack.html") == packs.sha256(tmp_path / "islington" / "islington_pack.html")


def test_failing_notebook_does_not_stop_the_others(tmp_path, monkeypatch):
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    (nbdir / "01_ok.py").write_text(
        '# %% tags=["parameters"]\narea = "ncl"\npack_dir = None\nnotebook = "01_ok"\n'
        "# %%\nfrom spstudy.publish import start\nctx = start(area, notebook, pack_dir)\nctx.publisher.finding('fine')\n")
    (nbdir / "02_broken.py").write_text('# %% tags=["parameters"]\narea = "ncl"\npack_dir = None\nnotebook = "02_broken"\n# %%\nraise RuntimeError("deliberate")\n')
    monkeypatch.setattr(packs, "NOTEBOOKS_DIR", nbdir)
    res = packs.run(["camden", "enfield"], tmp_path / "out", jobs=2)
    assert all(not r.ok for r in res)
    assert all("deliberate" in r.failures["02_broken"] for r in res)
    assert (tmp_path / "out" / "camden.failed" / "notebooks" / "01_ok.ipynb").exists()
    assert not (tmp_path / "out" / "camden").exists()  # a failed pack never looks finished


def test_interrupted_build_leaves_no_finished_looking_pack(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(packs, "run_notebook", boom)
    with pytest.raises(KeyboardInterrupt):
        packs.run(["camden"], tmp_path, jobs=1)
    assert not (tmp_path / "camden").exists() and not list(tmp_path.glob(".building-*"))


def test_invalid_parameters_stop_before_any_notebook(tmp_path, monkeypatch):
    from spstudy import params as P

    bad = tmp_path / "parameters"
    shutil.copytree(ROOT / "parameters", bad)
    (bad / "camden.yaml").write_text("area: camden\ndisclosure:\n  threshhold: 5\n")
    monkeypatch.setattr(P, "PARAMETERS_DIR", bad)
    with pytest.raises(P.ParameterError, match="camden.yaml: key 'disclosure.threshhold'"):
        packs.run(["camden"], tmp_path / "out", jobs=1)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_notebooks_pass_nbval(tmp_path):
    """nbval (lax) runs every notebook interactively with default parameters."""
    import jupytext

    for nb in packs.notebooks():
        jupytext.write(jupytext.read(nb), tmp_path / f"{nb.stem}.ipynb", fmt="ipynb")
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "--nbval-lax",
                        "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), "-q", str(tmp_path)],
                       cwd=ROOT / "notebooks", capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"\d+ passed", r.stdout)


@pytest.mark.browser
def test_pack_renders_in_headless_chromium(built):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium not installed (make test installs Debian's chromium when run as root)")
    from playwright.sync_api import sync_playwright

    out, _ = built
    page_path = out / "camden" / "camden_pack.html"
    shots = ROOT / "test-output"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                                    "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(page_path.as_uri())
        assert page.title().startswith("Social prescribing evaluation pack: Camden")
        headings = page.locator("h2").all_inner_texts()
        for expected in ("Contents", "Key findings", "Annex A: Methods and sources", "Annex B: Data quality",
                         "Annex C: Data sources and licence", "Annex D: Parameters used"):
            assert expected in headings
        for title in ("Population needs assessment by ward",):
            assert any(title in h for h in headings)
        imgs = page.locator("figure img")
        assert imgs.count() > 0
        for i in range(imgs.count()):
            img = imgs.nth(i)
            assert img.get_attribute("alt")
            assert img.evaluate("e => e.complete && e.naturalWidth > 0")
        links = page.locator("nav a")
        for i in range(links.count()):
            target = links.nth(i).get_attribute("href")
            assert page.locator(target).count() == 1, f"contents link {target} has no target"
        page.screenshot(path=str(shots / "camden_pack.png"), full_page=False)
        browser.close()
    assert (shots / "camden_pack.png").stat().st_size > 10_000


def test_relative_output_folder_with_parallel_jobs(tmp_path, monkeypatch):
    """`spstudy packs --out outputs` (relative) with two jobs: papermill changes the process's working
    directory while a notebook runs, so every path the runner uses must be absolute."""
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    (nbdir / "01_ok.py").write_text(
        '# %% tags=["parameters"]\narea = "ncl"\npack_dir = None\nnotebook = "01_ok"\n'
        "# %%\nimport time\nfrom spstudy.publish import start\nctx = start(area, notebook, pack_dir)\ntime.sleep(1)\nctx.publisher.finding('fine')\n")
    monkeypatch.setattr(packs, "NOTEBOOKS_DIR", nbdir)
    monkeypatch.chdir(tmp_path)
    res = packs.run(["camden", "enfield", "haringey"], Path("rel_out"), jobs=2)
    assert all(r.ok for r in res), [r.failures for r in res]
    assert sorted(p.name for p in (tmp_path / "rel_out").iterdir()) == ["camden", "enfield", "haringey"]
