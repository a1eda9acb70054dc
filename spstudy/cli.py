"""Command line: ``spstudy packs | synth | params | validate``."""

from __future__ import annotations

import argparse
import sys


def _params(argv):
    from .params import ParameterError, json_schema, load_parameters

    ap = argparse.ArgumentParser(prog="spstudy params", description="Validate and show parameters, or print the JSON schema.")
    ap.add_argument("area", nargs="?", default="ncl")
    ap.add_argument("--schema", action="store_true", help="print the JSON schema of parameter files")
    a = ap.parse_args(argv)
    if a.schema:
        sys.stdout.write(json_schema())
        return 0
    try:
        p = load_parameters(a.area)
    except ParameterError as e:
        print(e, file=sys.stderr)
        return 2
    import yaml

    sys.stdout.write(yaml.safe_dump(p.to_dict(), sort_keys=False))
    return 0


def _validate(argv):
    from .extracts import ExtractError, load_extracts
    from .params import ParameterError, load_parameters

    ap = argparse.ArgumentParser(prog="spstudy validate", description="Validate an extract folder against the data contract and print the data-quality ledger.")
    ap.add_argument("--area", default="ncl")
    ap.add_argument("--extracts", default=None, help="folder with the five tables (default: parameters data.extracts_dir)")
    a = ap.parse_args(argv)
    try:
        p = load_parameters(a.area)
        ex = load_extracts(p, a.extracts)
    except (ParameterError, ExtractError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(ex.ledger.to_frame().to_string(index=False))
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "packs": ("spstudy.packs", "main", "run every analysis notebook for each borough and build the packs"),
        "synth": ("spstudy.synth", "main", "generate synthetic extracts in the data contract"),
        "params": (None, _params, "validate parameters / print the schema"),
        "validate": (None, _validate, "validate an extract folder and print the data-quality ledger"),
    }
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: spstudy {packs,synth,params,validate} [options]\n")
        for k, (_, _, h) in commands.items():
            print(f"  {k:9s} {h}")
        return 0 if (not argv or argv[0] in ("-h", "--help")) else 2
    mod, fn, _ = commands[argv[0]]
    if mod is None:
        return int(fn(argv[1:]) or 0)
    import importlib

    return int(getattr(importlib.import_module(mod), fn)(argv[1:]) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
