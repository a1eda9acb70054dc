"""The batch runner and the ways analysts run notebooks: failures, Ctrl-C, concurrent runs, parameters,
papermill as the README documents it, nbval, determinism of a pack, the command line.

Unit tests of this subject; the others are in tests/*/test_packs.py."""

from __future__ import annotations

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

