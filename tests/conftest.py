"""Shared fixtures (the tiny extract of tests/support/tables.py) and the rule that every test carries
the kind marker of its folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (and in CI): a failure is reproducible, never a flake.
settings.register_profile("spstudy", derandomize=True, print_blob=True)
settings.load_profile("spstudy")

from tests.support.tables import tiny_tables


@pytest.fixture
def tiny(tmp_path):
    return tiny_tables(), tmp_path / "extract"


KINDS = ("unit", "known_answer", "simulation", "integration", "e2e")


def pytest_collection_modifyitems(config, items):
    """Every test says what kind it is (one of KINDS) and lives in the folder of that kind, so the
    suite's shape can be read and run by kind (``pytest tests/known_answer``)."""
    missing = [it.nodeid for it in items if sum(1 for k in KINDS if it.get_closest_marker(k)) != 1]
    if missing:
        raise pytest.UsageError("every test needs exactly one kind marker (" + ", ".join(KINDS) + "); missing or ambiguous on:\n  "
                                + "\n  ".join(missing[:40]) + (f"\n  ... and {len(missing) - 40} more" if len(missing) > 40 else ""))
    misplaced = [f"{it.nodeid} (marked {k})" for it in items for k in KINDS
                 if it.get_closest_marker(k) and Path(str(it.path)).parent.name != k]
    if misplaced:
        raise pytest.UsageError("a test lives in the folder of its kind (tests/unit/, tests/known_answer/, tests/simulation/, "
                                "tests/integration/, tests/e2e/); misplaced:\n  " + "\n  ".join(misplaced[:40]))
