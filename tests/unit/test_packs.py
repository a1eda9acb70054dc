"""Unit tests of packs; what the subject's tests check and their sources: tests/support/packs.py."""

from __future__ import annotations

import os
import shutil

import pytest

from spstudy.inputs.params import ParameterError
from spstudy.publish import packs
from tests.support import ROOT

pytestmark = pytest.mark.unit


def test_invalid_or_misspelt_parameters_stop_before_anything_runs(tmp_path, monkeypatch):
    from spstudy.inputs import params as P
    from spstudy.publish.publisher import start

    bad = tmp_path / "parameters"
    shutil.copytree(ROOT / "parameters", bad)
    (bad / "camden.yaml").write_text("area: camden\ndisclosure:\n  threshhold: 5\n")
    with pytest.raises(P.ParameterError, match="camden.yaml: key 'disclosure.threshhold'"):
        packs.run(["camden"], tmp_path / "out", jobs=1, parameters_dir=bad)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # papermill -p aera camden injects `aera`: the notebook stops instead of running for NCL
    with pytest.raises(ParameterError, match="unknown notebook parameter 'aera'.*did you mean 'area'"):
        start({"area": "ncl", "notebook": "x", "pack_dir": None, "aera": "camden"})



def test_the_build_reads_the_sampling_fraction_of_the_extract_it_was_given(tmp_path):
    """`spstudy packs --extracts DIR`: the equity weights come from DIR's extract_info.json (a complete
    extract has none: fraction 1), not from the parameters' shipped synthetic extract (0.25)."""
    import json

    from spstudy.inputs.params import load_parameters
    from spstudy.publish.publisher import Context, Publisher

    p = load_parameters("camden")
    pub = Publisher("camden", "nb", p, "preview")
    assert Context("camden", "nb", p, pub).pool_fraction == 0.25  # the shipped extract
    assert Context("camden", "nb", p, pub, extract_dir=tmp_path).pool_fraction == 1.0
    (tmp_path / "extract_info.json").write_text(json.dumps({"pool_fraction": 0.5}))
    assert Context("camden", "nb", p, pub, extract_dir=tmp_path).pool_fraction == 0.5


def test_an_areas_notebooks_run_as_independent_chains_unless_one_builds_on_another(tmp_path):
    """A notebook that declares ``spstudy: {after: [...]}`` in its header runs after, and in the same
    kernel as, the notebook it builds on (04 reads 03's shared result); the rest may run in parallel."""
    header = "# ---\n# jupyter:\n#   spstudy:\n#     after:\n#     - {dep}\n# ---\n\n"
    d = tmp_path / "nb"
    d.mkdir()
    for name, dep in (("01_a", None), ("02_b", None), ("03_c", None), ("04_d", "03_c"), ("05_e", "04_d"), ("06_f", None)):
        (d / f"{name}.py").write_text((header.format(dep=dep) if dep else "") + "# %%\nx = 1\n")
    got = [[p.stem for p in c] for c in packs.chains(packs.notebooks(directory=d))]
    assert got == [["01_a"], ["02_b"], ["03_c", "04_d", "05_e"], ["06_f"]]
    units = packs.units_of(["camden", "enfield"], tmp_path / "build", packs.notebooks(directory=d))
    assert [(u["area"], [p.rsplit("/", 1)[1] for p in u["notebooks"]]) for u in units][:2] == [
        ("camden", ["03_c.py", "04_d.py", "05_e.py"]), ("camden", ["01_a.py"])]  # the longest chain of each area starts first
    assert len(units) == 8
    # a dependency left out of the run, misspelt, or later in name order would be a race: an error
    with pytest.raises(SystemExit, match="not selected: add --notebook 03_c"):
        packs.chains(packs.notebooks(["04_d"], directory=d))
    (d / "07_g.py").write_text(header.format(dep="99_missing") + "# %%\nx = 1\n")
    with pytest.raises(SystemExit, match="not a notebook"):
        packs.chains(packs.notebooks(directory=d))
    (d / "07_g.py").write_text(header.format(dep="08_h") + "# %%\nx = 1\n")
    (d / "08_h.py").write_text("# %%\nx = 1\n")
    with pytest.raises(SystemExit, match="not an earlier notebook"):
        packs.chains(packs.notebooks(directory=d))
    # the shipped notebooks: only the SROI notebook builds on another (the evaluation's shared result)
    shipped = [[p.stem for p in c] for c in packs.chains(packs.notebooks())]
    assert ["03_service_use_evaluation", "04_social_return_on_investment"] in shipped and len(shipped) == 4


def _square(x):
    import time

    time.sleep(0.1)  # long enough that both workers take tasks
    return x * x


def _fail():
    raise ValueError("deliberate failure in a release task")


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_release_task_pool_returns_results_in_order_and_reports_a_failing_task(jobs, tmp_path):
    """The release's figures and Excel annexes run as forked tasks: results come back by task, whatever
    worker ran them; a failing task's error reaches the caller, and cancelling leaves no worker behind."""
    from spstudy.publish.release import TaskPool

    tasks = [lambda i=i: (_square(i), os.getpid()) for i in range(12)]
    pool = TaskPool(tasks, jobs)
    got = [pool.result(i) for i in range(12)]
    pool.close()
    assert [g[0] for g in got] == [i * i for i in range(12)]
    assert (len({g[1] for g in got}) > 1 or jobs == 1) and (jobs > 1 or {g[1] for g in got} == {os.getpid()})
    pool = TaskPool([lambda: 1, _fail, lambda: (tmp_path / "late").write_text("x")], jobs)
    assert pool.result(0) == 1
    with pytest.raises(ValueError, match="deliberate failure"):
        pool.result(1)
    pool.close(cancel=True)
