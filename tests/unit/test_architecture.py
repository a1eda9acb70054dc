"""The import rule of the package (docs/architecture.md): the folders are the stages of the data flow,
inputs -> methods -> analyses -> publish, and no module imports from a later stage. Analyses never
import the publisher, so the disclosure rule can only be applied in one place. The synthetic-data
generator (``synth/``) stands beside the flow: it may use inputs and methods, and nothing in the flow
imports it. ``cli.py`` is the command line over all of them and nothing imports it."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PKG = next(d for d in Path(__file__).resolve().parents if (d / "pyproject.toml").exists()) / "spstudy"
ORDER = {"inputs": 0, "methods": 1, "analyses": 2, "publish": 3}
BESIDE = {"synth", "cli"}  # not in the flow


def _stage_of_module(dotted: str) -> str | None:
    """'spstudy.methods.stats' -> 'methods'; 'spstudy.cli' -> 'cli'; 'spstudy' -> None."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "spstudy" else None


def _modules():
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        yield p, ".".join(rel.parts)


def _imports(path: Path, dotted: str) -> set[str]:
    """Stages (first folder under spstudy/) that a module imports from."""
    out = set()
    package = dotted.rsplit(".", 1)[0] if path.name != "__init__.py" else dotted
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = package.split(".")
                base = base[: len(base) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
                names = [target] if n.module else [target + "." + a.name for a in n.names]
            else:
                names = [n.module] if n.module else []
                if n.module == "spstudy":
                    names = ["spstudy." + a.name for a in n.names]
            out.update(s for s in map(_stage_of_module, names) if s)
        elif isinstance(n, ast.Import):
            out.update(s for s in (_stage_of_module(a.name) for a in n.names) if s)
    return out


def test_the_folders_are_the_stages():
    """Every module sits in a stage folder (or is the command line); no stray module at the top."""
    top = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert top == {"cli"}, f"modules outside a stage folder: {sorted(top - {'cli'})}"
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(ORDER) | {"synth"}, folders


def test_nothing_imports_from_a_later_stage():
    bad = []
    for path, dotted in _modules():
        stage = _stage_of_module(dotted)
        for dep in sorted(_imports(path, dotted) - {stage}):
            if dep == "cli":
                bad.append(f"{dotted} imports the command line")
            elif dep == "synth" and stage != "cli":
                bad.append(f"{dotted} ({stage}) imports the generator")
            elif stage == "synth" and dep in ("analyses", "publish"):
                bad.append(f"{dotted} (synth) imports {dep}")
            elif stage in ORDER and dep in ORDER and ORDER[dep] > ORDER[stage]:
                bad.append(f"{dotted} ({stage}) imports {dep}")
    assert not bad, "imports against the flow inputs -> methods -> analyses -> publish: " + "; ".join(bad)


def test_the_rule_checker_sees_a_violation(tmp_path):
    """The checker itself: an analysis that imports the publisher is caught, relative or absolute."""
    f = tmp_path / "needs.py"
    f.write_text("from ..publish import disclosure\nfrom spstudy.publish.cells import measure\nimport spstudy.methods.stats\n")
    assert _imports(f, "spstudy.analyses.needs") == {"publish", "methods"}


def test_only_the_publisher_knows_the_disclosure_rule():
    """No input, method, analysis or generator module reads the threshold or rounds a count for
    publication (the parameter model that declares the rule is the one exception)."""
    bad = []
    for path, dotted in _modules():
        stage = _stage_of_module(dotted)
        if stage in ("inputs", "methods", "analyses", "synth") and dotted != "spstudy.inputs.params":
            text = path.read_text()
            for word in ("rounding_base", "disclosure.threshold", "p.disclosure", "params.disclosure", "protection_values"):
                if word in text:
                    bad.append(f"{dotted} mentions {word}")
    assert not bad, bad


NOTEBOOKS = PKG.parent / "notebooks"


def _calls_and_attributes(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            yield node


def test_no_result_travels_in_dataframe_attrs():
    """Results are typed (dataclasses holding tidy tables), never ``DataFrame.attrs``: attrs are lost
    by most pandas operations and by Parquet, so a value read from them can silently be missing.
    The only use allowed is clearing them before a table is written."""
    bad = []
    files = [p for p, _ in _modules()] + sorted(NOTEBOOKS.glob("*.py"))
    for path in files:
        tree = ast.parse(path.read_text())
        cleared = {id(n.targets[0]) for n in ast.walk(tree) if isinstance(n, ast.Assign) and len(n.targets) == 1
                   and isinstance(n.targets[0], ast.Attribute) and n.targets[0].attr == "attrs"
                   and isinstance(n.value, ast.Dict) and not n.value.keys}
        for node in _calls_and_attributes(tree):
            if node.attr == "attrs" and id(node) not in cleared:
                bad.append(f"{path.parent.name}/{path.name}:{node.lineno}")
    assert not bad, bad


def test_no_pickles_between_notebooks():
    """Results pass between notebooks as Parquet tables (``EvaluationResult.to_parquet``), never as
    pickles: no module or notebook imports pickle, joblib, dill or cloudpickle."""
    bad = []
    files = [p for p, _ in _modules()] + sorted(NOTEBOOKS.glob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in ("pickle", "joblib", "dill", "cloudpickle")]
        if ".to_pickle(" in path.read_text() or "read_pickle(" in path.read_text():
            bad.append(f"{path.name} uses pandas pickles")
    assert not bad, bad


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_methods_and_analyses_take_plain_values_not_the_parameters():
    """No parameter object inside a method: only an adapter named ``*_from_parameters`` (which turns
    the parameters into plain values for a notebook) takes one, and no method or analysis loads them."""
    bad = []
    for path, dotted in _modules():
        if _stage_of_module(dotted) not in ("methods", "analyses"):
            continue
        tree = ast.parse(path.read_text())
        for f in _functions(tree):
            names = [a.arg for a in f.args.args + f.args.kwonlyargs]
            if {"params", "parameters"} & set(names) and not f.name.endswith("_from_parameters") and not f.name.startswith("_"):
                bad.append(f"{dotted}.{f.name} takes the parameters")
        for imp in _imports(path, dotted):
            if imp.startswith("spstudy.inputs.params"):
                bad.append(f"{dotted} imports {imp}")
    assert not bad, bad


def test_the_area_is_resolved_once():
    """An area key ('ncl', 'camden') becomes a :class:`spstudy.inputs.reference.Area` in one place
    (``reference.area``; the notebook context hands it out as ``ctx.scope``). Methods and analyses
    receive the Area and never look an area up or test its key; notebooks never branch on the key."""
    bad = []
    for path, dotted in _modules():
        if _stage_of_module(dotted) not in ("methods", "analyses"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "area" and isinstance(node.value, ast.Name) and node.value.id == "reference":
                bad.append(f"{dotted}:{node.lineno} calls reference.area")
            if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value == "ncl" for c in node.comparators):
                bad.append(f"{dotted}:{node.lineno} compares with 'ncl'")
    for nb in sorted(NOTEBOOKS.glob("*.py")):
        tree = ast.parse(nb.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "area":
                bad.append(f"{nb.name}:{node.lineno} branches on the area key")
            if isinstance(node, ast.Attribute) and node.attr == "borough_codes" and isinstance(node.value, ast.Name) and node.value.id == "reference":
                bad.append(f"{nb.name}:{node.lineno} looks up the boroughs itself")
    assert not bad, bad


def test_the_notebook_checks_see_a_violation(tmp_path, monkeypatch):
    """The notebook checks above are not vacuous: a notebook that branches on the area key or reads
    a result from ``attrs`` is caught."""
    nb = tmp_path / "notebooks"
    nb.mkdir()
    (nb / "09_bad.py").write_text('area = "ncl"\nif area == "ncl":\n    x = adj.attrs["dispersion"]\n')
    monkeypatch.setitem(globals(), "NOTEBOOKS", nb)
    with pytest.raises(AssertionError, match="branches on the area key"):
        test_the_area_is_resolved_once()
    with pytest.raises(AssertionError, match="09_bad.py:3"):
        test_no_result_travels_in_dataframe_attrs()


def _inline_column_checks(tree: ast.AST) -> list[int]:
    """Lines of a column check written by hand: ``[c for c in need if c not in df.columns]``, or an ``if`` on
    ``df.columns`` that raises."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ListComp):
            for gen in node.generators:
                for cond in gen.ifs:
                    if (isinstance(cond, ast.Compare) and any(isinstance(o, ast.NotIn) for o in cond.ops)
                            and any(isinstance(c, ast.Attribute) and c.attr == "columns" for c in cond.comparators)):
                        lines.append(node.lineno)
        if isinstance(node, ast.If) and any(isinstance(b, ast.Raise) for b in node.body) \
                and any(isinstance(a, ast.Attribute) and a.attr == "columns" for a in ast.walk(node.test)):
            lines.append(node.lineno)  # if "x" not in df.columns: raise ... / if not need <= set(df.columns): raise ...
    return sorted(lines)


def _in_methods_and_analyses(checker, skip: tuple[str, ...] = ()) -> list[str]:
    """What ``checker(tree)`` finds in every method and analysis module, as 'module:finding'."""
    bad = []
    for path, dotted in _modules():
        if _stage_of_module(dotted) in ("methods", "analyses") and dotted not in skip:
            bad += [f"{dotted}:{b}" for b in checker(ast.parse(path.read_text()))]
    return bad


def test_the_column_check_is_written_once():
    """Methods and analyses check their input tables with :func:`spstudy.methods.checks.require_columns`
    (which names the argument, the missing columns and the columns present), never a hand-written
    ``[c for c in need if c not in df.columns]``. (The input contract in ``inputs/`` is a different
    check: it names the file and collects every problem of an extract before raising.)"""
    bad = _in_methods_and_analyses(_inline_column_checks, skip=("spstudy.methods.checks",))
    assert not bad, bad
    assert _inline_column_checks(ast.parse("m = [c for c in need if c not in df.columns]")) == [1]
    assert _inline_column_checks(ast.parse("if not need <= set(df.columns):\n    raise ValueError(need)\n"
                                           "if 'w' in df.columns:\n    x = 1")) == [1]


def test_require_columns_names_the_argument_the_missing_and_the_present():
    import pandas as pd

    from spstudy.methods.checks import require_columns
    df = pd.DataFrame({"a": [1], "b": [2]})
    assert require_columns(df, "a", "x") == ["a"]
    assert require_columns(["a", "b"], ["b", "a"], "x") == ["b", "a"]
    with pytest.raises(ValueError, match=r"^`counts`: missing column\(s\) \['c', 'd'\] \(columns: \['a', 'b'\]\); see here$"):
        require_columns(df, ["a", "c", "d"], "counts", "see here")


def _tuple_of_tables_returns(tree: ast.AST) -> list[str]:
    """Public functions annotated to return a tuple holding a DataFrame, and NamedTuple results."""
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_") and node.returns is not None:
            ann = ast.unparse(node.returns)
            if ann.startswith(("tuple[", "Tuple[")) and "DataFrame" in ann:
                bad.append(f"{node.name} -> {ann}")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_") and node.returns is None \
                and any(isinstance(r, ast.Return) and isinstance(r.value, ast.Tuple) for r in ast.walk(node)):
            bad.append(f"{node.name} returns an unannotated tuple")
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("NamedTuple") for b in node.bases):
            bad.append(f"class {node.name}(NamedTuple)")
    return bad


def test_results_that_hold_several_tables_are_typed_not_tuples():
    """A method or analysis that returns more than one table returns a frozen dataclass whose fields
    name the tables (``cohort(...).flow``), never a tuple the caller must unpack in the right order."""
    bad = _in_methods_and_analyses(_tuple_of_tables_returns)
    assert not bad, bad
    sample = "class R(typing.NamedTuple):\n    a: int\ndef f() -> tuple[pd.DataFrame, dict]:\n    pass\ndef _g() -> tuple[pd.DataFrame, int]:\n    pass"
    assert _tuple_of_tables_returns(ast.parse(sample)) == ["class R(NamedTuple)", "f -> tuple[pd.DataFrame, dict]"]
    assert _tuple_of_tables_returns(ast.parse("def g(d):\n    return d, 1")) == ["g returns an unannotated tuple"]


def _unchecked_area_arguments(tree: ast.AST) -> list[str]:
    """Public functions with an argument annotated ``reference.Area`` that do not pass it to ``reference.as_area``."""
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            args = [a.arg for a in node.args.args + node.args.kwonlyargs if a.annotation is not None and ast.unparse(a.annotation) == "reference.Area"]
            checked = {c.args[0].id for c in ast.walk(node) if isinstance(c, ast.Call) and ast.unparse(c.func) == "reference.as_area"
                       and c.args and isinstance(c.args[0], ast.Name)}
            bad += [f"{node.name}({a})" for a in args if a not in checked]
    return bad


def test_every_area_argument_is_checked_with_a_clear_error():
    """An analysis given a key ('camden') where it takes an Area says so and how to fix it (a TypeError
    from ``reference.as_area``), instead of an AttributeError on ``.borough_codes`` deep inside."""
    bad = _in_methods_and_analyses(_unchecked_area_arguments)
    assert not bad, bad
    sample = "def f(area: reference.Area, other: reference.Area):\n    area = reference.as_area(area, 'area')"
    assert _unchecked_area_arguments(ast.parse(sample)) == ["f(other)"]

    from spstudy.analyses import needs
    from spstudy.inputs import reference

    with pytest.raises(TypeError, match=r"^`area`: expected a spstudy.inputs.reference.Area, got str 'camden' \(for a key use reference.area\('camden'\)\)$"):
        needs.ward_indicators("camden")
    assert reference.as_area(reference.area("camden")) is reference.area("camden")


def _written_levels(tree: ast.AST) -> list[int]:
    """Lines of string constants that write a confidence level ('95%') instead of saying the study's;
    funnel control limits ('95% and 99.8%') are fixed conventions, not the study's level."""
    out, inside = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):  # an f-string (adjacent pieces joined) is judged whole
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            inside |= {id(v) for v in node.values}
            if "95%" in text and "99.8%" not in text:
                out.append(node.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in inside and isinstance(node.value, str) and "95%" in node.value \
                and "99.8%" not in node.value:
            out.append(node.lineno)
    return sorted(out)


def test_labels_and_sentences_say_the_study_confidence_level_not_a_written_95():
    """Notebooks, findings, charts and the report label intervals with ``pub.ci`` / ``tables.ci``
    (parameters study.confidence), so a pack built at 90% never says '95%'."""
    bad = []
    for path in sorted(NOTEBOOKS.glob("*.py")) + [PKG / "publish" / f for f in ("findings.py", "charts.py", "report.py", "disclosure.py")]:
        tree = ast.parse(path.read_text())
        docstrings = {n.body[0].value.lineno for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Module))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        bad += [f"{path.name}:{ln}" for ln in _written_levels(tree) if ln not in docstrings]
    assert not bad, bad
    assert _written_levels(ast.parse('x = "Lower 95% limit"\ny = f"Lower {CI} limit"\nz = "95% and 99.8% limits"\nw = f"{a} 95% CI"')) == [1, 4]
