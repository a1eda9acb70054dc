"""Time load_extracts on the shipped extract: this branch's loader against main's (before the
validation added for issue 13), interleaved runs, median seconds. Not asserted anywhere.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/load_extracts_timing.py [runs]
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _main_loader():
    """main's extracts.py and contract.py as a throw-away package (reference data from this checkout)."""
    d = Path(tempfile.mkdtemp()) / "spmain"
    d.mkdir()
    for name in ("extracts", "contract"):
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"main:spstudy/{name}.py"], capture_output=True, text=True, check=True).stdout
        (d / f"{name}.py").write_text(src)
    (d / "reference.py").write_text("from spstudy.inputs.reference import *  # noqa\nfrom spstudy.inputs.reference import BOROUGHS  # noqa\n")
    (d / "__init__.py").write_text("")
    sys.path.insert(0, str(d.parent))
    return importlib.import_module("spmain.extracts").load_extracts


def main(runs: int = 3):
    from spstudy.inputs.extracts import load_extracts
    from spstudy.inputs.params import load_parameters

    p = load_parameters("ncl")
    old = _main_loader()
    times = {"main": [], "branch": []}
    for _ in range(runs):
        for name, fn in (("main", old), ("branch", load_extracts)):
            t = time.perf_counter()
            ex = fn(p)
            times[name].append(time.perf_counter() - t)
            del ex
    for k, v in times.items():
        print(f"{k:7s} median {statistics.median(v):.2f} s  runs {', '.join(f'{x:.2f}' for x in v)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
