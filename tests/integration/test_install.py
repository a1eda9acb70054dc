"""spstudy works as an installed package, not only as the editable checkout `make` installs: the wheel
carries its own data (code lists, the pack template, the standard population, the SWEMWBS table) and
finds the project folder from the working directory or $SPSTUDY_PROJECT, never from where it is
installed."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.integration

SCRIPT = r"""
import sys
from pathlib import Path
import spstudy
assert Path(spstudy.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), spstudy.__file__
from spstudy.inputs import project, reference
from spstudy.inputs.params import load_parameters
from spstudy.inputs.coded import load_codelist
from spstudy.methods import stats, wellbeing
p = load_parameters("camden")
assert reference.reference_dir() == Path(sys.argv[2]) / "data" / "reference", reference.reference_dir()
assert len(reference.wards()) == 107
assert len(stats.esp2013()) == 19
assert len(load_codelist("ethnicity").table) > 0
assert wellbeing.swemwbs_metric(7) > 0
import jinja2
assert jinja2.Environment(loader=jinja2.PackageLoader("spstudy.publish", "templates")).get_template("pack.html.j2") is not None
print("ok", p.area)
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    d = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check", str(ROOT), "-w", str(d)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = d.glob("spstudy-*.whl")
    site = d / "site"
    with zipfile.ZipFile(whl) as z:
        z.extractall(site)
    return site


def _run(site: Path, cwd: Path, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("SPSTUDY_PROJECT", "SPSTUDY_REFERENCE")}
    e.update(PYTHONPATH=str(site), **env)
    return subprocess.run([sys.executable, "-c", SCRIPT, str(site), str(ROOT)], cwd=cwd, env=e, capture_output=True, text=True)


def test_the_wheel_runs_from_inside_the_project(installed):
    r = _run(installed, ROOT / "notebooks")  # a notebook opened in notebooks/ finds the project above it
    assert r.returncode == 0 and "ok camden" in r.stdout, r.stderr[-3000:]


def test_the_wheel_runs_from_anywhere_with_spstudy_project(installed, tmp_path):
    r = _run(installed, tmp_path, SPSTUDY_PROJECT=str(ROOT))
    assert r.returncode == 0 and "ok camden" in r.stdout, r.stderr[-3000:]


def test_outside_a_project_the_error_says_what_to_do(installed, tmp_path):
    r = _run(installed, tmp_path)
    assert r.returncode != 0
    assert "ProjectNotFound" in r.stderr and "SPSTUDY_PROJECT" in r.stderr and str(tmp_path.resolve()) in r.stderr
