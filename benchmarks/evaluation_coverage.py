"""Coverage, bias and verdicts of the evaluation over many seeds of each simulated world.

Runs :func:`spstudy.analyses.worlds.simulate_world` + :func:`spstudy.analyses.worlds.evaluate_world` for every world
in ``spstudy.analyses.worlds.WORLDS`` and ``--seeds`` seeds, and prints, per world, setting and window:
the mean truth, the mean matched DiD and trend-adjusted estimates, the share of 95% intervals
covering the truth and excluding 1 (false positives in the null world), the headline's coverage
and false-positive rate, and how often each verdict was given. Printed, never asserted (the
asserted checks are in tests/simulation/test_worlds.py at a size that fits the test suite).

    PYTHONPATH=$PWD nice -n 10 python benchmarks/evaluation_coverage.py --seeds 50 [--worlds null trend_selection] [--cohorts itt per_protocol]
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

from spstudy.analyses import worlds as W


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--worlds", nargs="*", default=list(W.WORLDS))
    ap.add_argument("--cohorts", nargs="*", default=["itt"])
    ap.add_argument("--n-referred", type=int, default=1500)
    ap.add_argument("--csv", default=None, help="also write the per-run scorecards here")
    a = ap.parse_args(argv)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    design = W.world_design(cohorts=tuple(a.cohorts))
    rows = []
    t0 = time.perf_counter()
    for name in a.worlds:
        for i in range(a.seeds):
            w = W.simulate_world(name, a.first_seed + i, n_referred=a.n_referred)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = W.evaluate_world(w, design)
            rows.append(W.scorecard(w, r))
    d = pd.concat(rows, ignore_index=True)
    d["verdict_short"] = d["verdict"].str.split(":").str[0]
    if a.csv:
        d.to_csv(a.csv, index=False)
    keys = ["world", "setting", "window_months", "cohort"]
    summary = d.groupby(keys, sort=False).agg(
        runs=("truth", "size"), truth=("truth", "mean"), matched_did=("matched_did", "mean"), matched_did_covers=("matched_did_covers", "mean"),
        matched_did_excludes_1=("matched_did_excludes_1", "mean"), trend_adjusted=("trend_adjusted", "mean"),
        trend_adjusted_covers=("trend_adjusted_covers", "mean"), headline_covers=("headline_covers", "mean"),
        headline_false_positive=("headline_excludes_1", "mean"))
    verdicts = d.groupby(keys + ["verdict_short", "headline_estimator"], sort=False).size().unstack(["verdict_short", "headline_estimator"], fill_value=0)
    print(f"{len(d)} estimates from {len(rows)} runs in {time.perf_counter() - t0:.0f} s (n_referred {a.n_referred}, cohorts {a.cohorts})\n")
    print("Coverage and bias (95% intervals; headline = the estimate the verdict puts forward, 'none' counts as no claim)")
    print(summary.round(3).to_string())
    print("\nVerdicts (counts of runs)")
    print(verdicts.to_string())
    null = d[d["world"] == "null"]
    if len(null):
        print(f"\nNull world: {int(null['headline_excludes_1'].sum())} of {len(null)} headline intervals exclude 1 "
              f"({100 * null['headline_excludes_1'].mean():.1f}%; nominal 5%); matched DiD {100 * null['matched_did_excludes_1'].mean():.1f}%")


if __name__ == "__main__":
    main()
