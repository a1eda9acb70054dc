"""What the tests share: the project folder, and (one module per subject) the inputs, helpers and
fixtures of a subject whose tests are of several kinds and so live in several folders."""

from pathlib import Path

ROOT = next(d for d in Path(__file__).resolve().parents if (d / "pyproject.toml").exists())
SHIPPED = ROOT / "data" / "extracts"  # the shipped synthetic extract
TRUTH = ROOT / "data" / "truth" / "truth.json"  # what its generator planted
