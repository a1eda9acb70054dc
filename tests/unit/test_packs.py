"""Unit tests of packs; what the subject's tests check and their sources: tests/support/packs.py."""

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

