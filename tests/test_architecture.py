"""The import rule of the package (docs/architecture.md): the data flows inputs -> methods -> analyses ->
publish, and no module imports from a later stage. Analyses never import the publisher, so the
disclosure rule can only be applied in one place. The synthetic-data generator stands beside the flow:
it may use inputs and methods, and nothing imports it."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PKG = Path(__file__).resolve().parent.parent / "spstudy"

STAGES = {
    "inputs": ["contract", "reference", "params", "extracts", "coded", "checksums"],
    "methods": ["stats", "matching", "engine", "wellbeing", "sroi", "spc", "diagnostics", "power", "subgroups", "plan"],
    "analyses": ["needs", "equity", "evaluation", "service", "valuation", "claims", "worlds"],
    "publish": ["cells", "disclosure", "audit", "publish", "release", "report", "charts", "figures", "findings", "packs", "cli"],
    "synth": ["synth"],
}
ORDER = {"inputs": 0, "methods": 1, "analyses": 2, "publish": 3}
STAGE = {m: s for s, ms in STAGES.items() for m in ms}


def _imports(path: Path) -> set[str]:
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            if n.level == 1:
                out.update([n.module.split(".")[0]] if n.module else [a.name for a in n.names])
            elif n.level == 0 and n.module and n.module.split(".")[0] == "spstudy":
                parts = n.module.split(".")
                out.update([parts[1]] if len(parts) > 1 else [a.name for a in n.names])
        elif isinstance(n, ast.Import):
            out.update(a.name.split(".")[1] for a in n.names if a.name.startswith("spstudy."))
    return out


def test_every_module_has_a_stage():
    mods = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert mods == set(STAGE), f"modules without a stage: {sorted(mods - set(STAGE))}; stages naming no module: {sorted(set(STAGE) - mods)}"


def test_nothing_imports_from_a_later_stage():
    bad = []
    for m, stage in STAGE.items():
        for dep in sorted(_imports(PKG / f"{m}.py") & set(STAGE)):
            d = STAGE[dep]
            if d == "synth" and stage != "synth":
                bad.append(f"{m} ({stage}) imports the generator {dep}")
            elif stage == "synth" and d in ("analyses", "publish"):
                bad.append(f"{m} (synth) imports {dep} ({d})")
            elif stage != "synth" and d != "synth" and ORDER[d] > ORDER[stage]:
                bad.append(f"{m} ({stage}) imports {dep} ({d})")
    assert not bad, "imports against the flow inputs -> methods -> analyses -> publish: " + "; ".join(bad)


def test_only_the_publisher_knows_the_disclosure_rule():
    """No analysis or method reads the threshold or rounds a count for publication."""
    bad = []
    for m, stage in STAGE.items():
        if stage in ("inputs", "methods", "analyses", "synth") and m != "params":
            text = (PKG / f"{m}.py").read_text()
            for word in ("rounding_base", "disclosure.threshold", "p.disclosure", "params.disclosure"):
                if word in text:
                    bad.append(f"{m} mentions {word}")
    assert not bad, bad
