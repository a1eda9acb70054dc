"""Integration tests of packs; what the subject's tests check and their sources: tests/support/packs.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from spstudy.publish import packs
from tests.support import ROOT
from tests.support.packs import BIN, BROKEN_NB, OK_NB, _nbdir

pytestmark = pytest.mark.integration


def test_a_failing_notebook_names_its_cause_and_publishes_nothing(tmp_path):
    d = _nbdir(tmp_path, **{"01_ok": OK_NB.format(name="01_ok", sleep=0), "02_broken": BROKEN_NB.format(name="02_broken")})
    res, rel = packs.run(["camden", "enfield"], tmp_path / "out", jobs=2, notebooks_dir=d, log=lambda s: None)
    assert rel is None and all(not r.ok for r in res)
    assert all("RuntimeError: deliberate failure in the notebook" in r.failures["02_broken"] for r in res)
    assert not (tmp_path / "out" / "camden").exists()  # a failed release never looks finished
    assert (tmp_path / "out" / "camden.failed" / "notebooks_not_for_publication" / "01_ok.ipynb").exists()
    assert not list((tmp_path / "out").glob(".building-*"))


def test_a_small_custom_release_is_published_audited_and_byte_identical_on_a_rerun(tmp_path):
    d = _nbdir(tmp_path, **{"01_ok": OK_NB.format(name="01_ok", sleep=0)})
    for out in ("a", "b"):
        res, rel = packs.run(["camden"], tmp_path / out, jobs=1, notebooks_dir=d, log=lambda s: None)
        assert res[0].ok and rel.audit.ok, res[0].failures
    a, b = tmp_path / "a" / "camden", tmp_path / "b" / "camden"
    shown = (a / "tables" / "01_ok__small.csv").read_text()
    assert "[c]" in shown and ",40" in shown  # 3 suppressed; 40 rounds to 40
    files = sorted(f.relative_to(a) for f in a.rglob("*") if f.is_file())
    assert files and files == sorted(f.relative_to(b) for f in b.rglob("*") if f.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs between two runs"


def test_two_runs_into_the_same_folder_do_not_touch_each_other(tmp_path):
    d = _nbdir(tmp_path, **{"01_ok": OK_NB.format(name="01_ok", sleep=3)})
    env = dict(os.environ, PYTHONPATH=str(ROOT), SPSTUDY_PROJECT=str(ROOT))
    cmd = [sys.executable, "-m", "spstudy.cli", "packs", "--out", str(tmp_path / "out"), "--jobs", "1"]
    script = ("import sys; from pathlib import Path; from spstudy.publish import packs; "
              f"r, rel = packs.run([sys.argv[1]], Path(r'{tmp_path / 'out'}'), 1, notebooks_dir=Path(r'{d}'), log=lambda s: None); "
              "sys.exit(0 if r[0].ok else 1)")
    procs = [subprocess.Popen([sys.executable, "-c", script, a], env=env, cwd=tmp_path) for a in ("camden", "enfield")]
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0] and cmd
    assert (tmp_path / "out" / "camden" / "manifest.json").exists() and (tmp_path / "out" / "enfield" / "manifest.json").exists()
    assert not list((tmp_path / "out").glob(".building-*"))


def test_ctrl_c_stops_the_build_publishes_nothing_and_starts_no_queued_area(tmp_path):
    d = _nbdir(tmp_path, **{"01_slow": OK_NB.format(name="01_slow", sleep=120)})
    script = ("import sys; from pathlib import Path; from spstudy.publish import packs; "
              f"sys.exit(packs.main(['--borough', 'camden', '--borough', 'enfield', '--borough', 'haringey', '--jobs', '1', "
              f"'--out', r'{tmp_path / 'out'}']))")
    env = dict(os.environ, PYTHONPATH=str(ROOT), SPSTUDY_PROJECT=str(ROOT))
    # point the runner at the slow notebook folder
    script = script.replace("from spstudy.publish import packs; ", f"from spstudy.publish import packs; packs.NOTEBOOKS_DIR = Path(r'{d}'); ")
    p = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob(".building-*/camden/notebooks")) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # the first area's notebook is running
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)  # a build that ignored Ctrl-C would run on for minutes
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "nothing published" in err
    assert not any((tmp_path / "out" / a).exists() for a in ("camden", "enfield", "haringey"))
    assert not list((tmp_path / "out").glob(".building-*"))
    assert not re.search(r"^\s+(ok|FAIL)\s+(enfield|haringey)", err, re.M)  # queued areas never started


def test_papermill_as_the_readme_documents_it(tmp_path):
    """jupytext to .ipynb, papermill with -p area and -p pack_dir, then spstudy publish: HTML and Excel."""
    nb = tmp_path / "05.ipynb"
    subprocess.run([str(BIN / "jupytext"), "--to", "ipynb", str(ROOT / "notebooks" / "05_service_delivery.py"), "-o", str(nb)],
                   check=True, capture_output=True)
    build = tmp_path / "build"
    r = subprocess.run([str(BIN / "papermill"), str(nb), str(tmp_path / "05_out.ipynb"), "-k", "spstudy", "-p", "area", "camden",
                        "-p", "pack_dir", str(build / "camden"), "-p", "notebook", "05_service_delivery", "--cwd", str(ROOT / "notebooks")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([str(BIN / "spstudy"), "publish", str(build), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (tmp_path / "out" / "camden" / "camden_pack.html").exists() and (tmp_path / "out" / "camden" / "camden_tables.xlsx").exists()
    r = subprocess.run([str(BIN / "papermill"), str(nb), str(tmp_path / "bad.ipynb"), "-k", "spstudy", "-p", "aera", "camden",
                        "--cwd", str(ROOT / "notebooks")], capture_output=True, text=True)
    assert r.returncode != 0 and "unknown notebook parameter 'aera'" in (r.stdout + r.stderr)


def test_notebooks_pass_nbval_when_explored_interactively(tmp_path):
    """nbval (lax) runs every notebook as an analyst would in JupyterLab (preview mode), for Camden."""
    import jupytext

    for nb in packs.notebooks():
        n = jupytext.read(nb)
        for c in n.cells:
            if "parameters" in c.metadata.get("tags", []):
                c.source = c.source.replace('area = "ncl"', 'area = "camden"')
        n.metadata["kernelspec"] = {"name": "spstudy", "display_name": "spstudy (Python 3)", "language": "python"}
        jupytext.write(n, tmp_path / f"{nb.stem}.ipynb", fmt="ipynb")
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "--nbval-lax",
                        "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), "-q", str(tmp_path)],
                       cwd=ROOT / "notebooks", capture_output=True, text=True, timeout=1800,
                       env=dict(os.environ, SPSTUDY_PROJECT=str(ROOT)))  # the copies live outside the project folder
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"\d+ passed", r.stdout)


def test_command_line_version_and_validate_verdict():
    r = subprocess.run([str(BIN / "spstudy"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and re.fullmatch(r"spstudy \d+\.\d+\.\d+\n", r.stdout)
    r = subprocess.run([str(BIN / "spstudy"), "validate", "--area", "camden"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1].startswith("VALID:")
    r = subprocess.run([str(BIN / "spstudy"), "validate", "--extracts", "/nonexistent-folder"], capture_output=True, text=True)
    assert r.returncode == 2 and "INVALID" in r.stderr


def test_keep_notebooks_marks_them_not_for_publication(tmp_path):
    d = _nbdir(tmp_path, **{"01_ok": OK_NB.format(name="01_ok", sleep=0)})
    res, rel = packs.run(["camden"], tmp_path / "out", jobs=1, notebooks_dir=d, keep_notebooks=True, log=lambda s: None)
    assert res[0].ok
    nfp = tmp_path / "out" / "camden" / "not_for_publication"
    assert (nfp / "README.txt").read_text().startswith("NOT FOR PUBLICATION")
    text = (nfp / "01_ok.ipynb").read_text()
    assert str(tmp_path) not in text and "papermill" not in json.loads(text)["metadata"]

