"""Command line: ``spstudy packs | audit | validate | import | export-coded | params | synth | --version``."""

from __future__ import annotations

import argparse
import sys


def _version() -> str:
    from importlib.metadata import version

    return version("spstudy")


def _params(argv):
    from spstudy.inputs.params import ParameterError, json_schema, load_parameters

    ap = argparse.ArgumentParser(prog="spstudy params", description="Validate and show parameters, or print the JSON schema.")
    ap.add_argument("area", nargs="?", default="ncl")
    ap.add_argument("--schema", action="store_true", help="print the JSON schema of parameter files")
    ap.add_argument("--parameters", dest="parameters_dir", help="folder of parameter files (default parameters/)")
    a = ap.parse_args(argv)
    if a.schema:
        sys.stdout.write(json_schema())
        return 0
    try:
        p = load_parameters(a.area, a.parameters_dir)
    except ParameterError as e:
        print(e, file=sys.stderr)
        return 2
    import yaml

    sys.stdout.write(yaml.safe_dump(p.to_dict(), sort_keys=False))
    return 0


def _validate(argv):
    from spstudy.inputs.extracts import ExtractError, load_extracts
    from spstudy.inputs.params import ParameterError, load_parameters

    ap = argparse.ArgumentParser(prog="spstudy validate", description="Validate an extract folder against the data contract and print the data-quality ledger.")
    ap.add_argument("--area", default="ncl")
    ap.add_argument("--extracts", default=None, help="folder with the contract tables (default: parameters data.extracts_dir)")
    ap.add_argument("--parameters", dest="parameters_dir", help="folder of parameter files (default parameters/)")
    a = ap.parse_args(argv)
    try:
        p = load_parameters(a.area, a.parameters_dir)
        ex = load_extracts(p, a.extracts)
    except (ParameterError, ExtractError) as e:
        print(f"error: {e}", file=sys.stderr)
        print("INVALID: the extract does not meet the data contract (see above); nothing was loaded.", file=sys.stderr)
        return 2
    led = ex.ledger.to_frame()
    print(led.to_string(index=False))
    read = int(led.loc[led["step"] == "rows read", "rows"].sum())
    excl = int(led.loc[led["step"] == "rows excluded", "rows"].sum())
    tables = led["table"].nunique()
    print(f"\nVALID: {tables} tables, {read:,} rows read, {excl:,} excluded under the named rules above, {read - excl:,} kept.")
    return 0


def _import(argv):
    from spstudy.inputs.extracts import ExtractError

    ap = argparse.ArgumentParser(prog="spstudy import", description="Turn a clinical-system export into the data contract's tables "
                                 "(docs/extract_specification.md says what to ask for).")
    ap.add_argument("--from", dest="kind", required=True, help="kind of export: coded-events (EMIS / SystmOne search export with "
                    "a case-management export and a registration list)")
    ap.add_argument("src", help="folder holding the export")
    ap.add_argument("--out", required=True, help="folder to write the contract tables into")
    ap.add_argument("--pool-fraction", type=float, default=None, help="sampling fraction of never-referred people, if sampled")
    ap.add_argument("--codelists", default=None, help="folder of code lists (default: the shipped spstudy/codelists)")
    a = ap.parse_args(argv)
    if a.kind != "coded-events":
        print(f"error: --from {a.kind!r} is not supported; the only kind is 'coded-events'", file=sys.stderr)
        return 2
    from spstudy.inputs.coded import import_coded_events

    try:
        res = import_coded_events(a.src, a.out, pool_fraction=a.pool_fraction, codelists_dir=a.codelists)
    except ExtractError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(res.rows.to_string(index=False))
    print(f"\nimported into {a.out}; every input row is accounted for in {a.out}/import_ledger.csv. Next: spstudy validate --extracts {a.out}")
    return 0


def _export_coded(argv):
    ap = argparse.ArgumentParser(prog="spstudy export-coded", description="Write a synthetic coded extract (the shape a clinical "
                                 "system exports) from contract tables, e.g. to try the import route.")
    ap.add_argument("--from", dest="src", default="data/extracts", help="folder of contract tables (default data/extracts)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--format", choices=("csv", "parquet"), default="csv")
    a = ap.parse_args(argv)
    from spstudy.inputs.coded import export_coded_events

    export_coded_events(a.src, a.out, fmt=a.format)
    print(f"coded extract written to {a.out}")
    return 0


def _publish(argv):
    """Build the pack from a papermill run of the notebooks (a build folder) without re-running them."""
    ap = argparse.ArgumentParser(prog="spstudy publish", description="Control, draw, audit and write the packs recorded in a build "
                                 "folder (the pack_dir given to the notebooks, one sub-folder per area).")
    ap.add_argument("build", help="folder passed as pack_dir's parent: <build>/<area>/private/... ")
    ap.add_argument("--area", action="append", dest="areas", help="areas in the build (default: every sub-folder with declarations)")
    ap.add_argument("--out", required=True, help="output folder for the packs")
    ap.add_argument("--parameters", dest="parameters_dir")
    a = ap.parse_args(argv)
    from pathlib import Path

    from spstudy.publish.packs import _extract_info, default_notebooks_dir, git_commit
    from spstudy.publish.publisher import PRIVATE
    from spstudy.publish.release import publish_release

    b = Path(a.build)
    areas = a.areas or sorted(d.name for d in b.iterdir() if (d / PRIVATE).is_dir())
    if not areas:
        print(f"error: no area with recorded declarations in {b}", file=sys.stderr)
        return 2
    res = publish_release(b, areas, Path(a.out), default_notebooks_dir(), _extract_info(areas[0], a.parameters_dir, None), git_commit(),
                          parameters_dir=a.parameters_dir)
    print(res.audit.text())
    return 0


COMMANDS = {
    "packs": ("spstudy.publish.packs", "main", "build every area's pack (NCL and the boroughs) and publish them as one audited release"),
    "audit": ("spstudy.publish.audit", "main", "audit the packs in a folder as one release: can any suppressed cell be recovered?"),
    "validate": (None, _validate, "validate an extract folder and print the data-quality ledger"),
    "import": (None, _import, "turn a clinical-system coded export into the data contract's tables"),
    "export-coded": (None, _export_coded, "write a synthetic coded export from contract tables"),
    "publish": (None, _publish, "publish the packs recorded by notebooks run with papermill into a build folder"),
    "params": (None, _params, "validate parameters / print the schema"),
    "synth": ("spstudy.synth", "main", "generate synthetic extracts in the data contract"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V", "version"):
        print(f"spstudy {_version()}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(f"usage: spstudy {{{','.join(COMMANDS)}}} [options]   (spstudy --version)\n")
        for k, (_, _, h) in COMMANDS.items():
            print(f"  {k:13s} {h}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    mod, fn, _ = COMMANDS[argv[0]]
    if mod is None:
        return int(fn(argv[1:]) or 0)
    import importlib

    return int(getattr(importlib.import_module(mod), fn)(argv[1:]) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
