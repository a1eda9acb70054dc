"""The packs tests (tests/*/test_packs.py): shared inputs, helpers and fixtures.

The batch runner and the ways analysts run notebooks: failures, Ctrl-C, concurrent runs, parameters,
papermill as the README documents it, nbval, determinism of a pack, the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

BIN = Path(sys.executable).parent

HEADER = '# %% tags=["parameters"]\narea = "ncl"\npack_dir = None\nnotebook = "{name}"\n'
OK_NB = HEADER + (
    "# %%\nfrom spstudy.publish.publisher import start\n\nctx = start(globals())\n\n"
    "import pandas as pd\nimport time\nfrom spstudy.publish.disclosure import Count, Label\n"
    "time.sleep({sleep})\n"
    "ctx.publisher.table('small', pd.DataFrame({{'group': ['a', 'b'], 'n': [3, 40]}}), 'A small table',\n"
    "                    columns={{'group': Label('Group'), 'n': Count('People')}}, rows={{'group': 'g'}})\n")
BROKEN_NB = HEADER + '# %%\nraise RuntimeError("deliberate failure in the notebook")\n'


def _nbdir(tmp_path, **nbs) -> Path:
    d = tmp_path / "nb"
    d.mkdir(exist_ok=True)
    for name, text in nbs.items():
        (d / f"{name}.py").write_text(text)
    return d


