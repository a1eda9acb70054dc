"""Rewrite environment.yml's pip pins from pyproject.toml (direct and test dependencies) at the
versions in requirements.lock, so conda users get exactly what `make` installs. Run by `make lock`."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    lock: dict[str, tuple[str, str]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = (s.strip() for s in line.split("=="))
            lock[name.lower().replace("_", "-")] = (name, version)
    pins = []
    for spec in declared:
        key = re.split(r"[<>=\[ ]", spec)[0].strip().lower().replace("_", "-")
        if key not in lock:
            raise SystemExit(f"{key} is declared in pyproject.toml but missing from requirements.lock: run `make lock`")
        pins.append("      - {}=={}".format(*lock[key]))
    env = ROOT / "environment.yml"
    head = env.read_text().split("  - pip:\n")[0] + "  - pip:\n"
    env.write_text(head + "\n".join(pins) + "\n")


if __name__ == "__main__":
    main()
