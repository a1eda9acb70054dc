"""Where the project is: the folder that holds ``parameters/``, ``data/``, ``notebooks/`` and ``outputs/``.

The package never assumes it sits inside a checkout, so it works installed (``pip install .``) as well
as editable. The project folder is ``$SPSTUDY_PROJECT`` when set, otherwise the nearest folder at or
above the working directory that holds ``parameters/ncl.yaml`` and a ``notebooks/`` folder (so a
notebook opened in ``notebooks/`` and a test run from the checkout both find it). The batch runner
sets ``$SPSTUDY_PROJECT`` for every kernel it starts.

Files that belong to the package itself (the 2013 European Standard Population, the SWEMWBS
conversion table, the code lists, the pack template) are package data: :func:`package_file`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

ENV = "SPSTUDY_PROJECT"


class ProjectNotFound(RuntimeError):
    pass


def _is_project(d: Path) -> bool:
    return (d / "parameters" / "ncl.yaml").is_file() and (d / "notebooks").is_dir()


def root() -> Path:
    """The project folder (see the module docstring). Raises ProjectNotFound with what to do."""
    env = os.environ.get(ENV)
    if env:
        d = Path(env).expanduser().resolve()
        if not _is_project(d):
            raise ProjectNotFound(f"${ENV}={env}: not a spstudy project folder (no parameters/ncl.yaml and notebooks/)")
        return d
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if _is_project(d):
            return d
    raise ProjectNotFound(f"no spstudy project folder at or above {here} (one with parameters/ncl.yaml and notebooks/): "
                          f"run from inside the project or set ${ENV}")


def root_or_none() -> Path | None:
    try:
        return root()
    except ProjectNotFound:
        return None


def parameters_dir() -> Path:
    return root() / "parameters"


def notebooks_dir() -> Path:
    return root() / "notebooks"


def outputs_dir() -> Path:
    return root() / "outputs"


def package_file(*parts: str) -> Path:
    """A file shipped inside the package, e.g. ``package_file("data", "esp2013.csv")``."""
    p = resources.files("spstudy").joinpath(*parts)
    return Path(str(p))
