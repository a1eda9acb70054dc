"""The evaluation on the shipped synthetic sample: runtime, headline estimates, verdicts and the
planted truth beside them (printed, never asserted).

    PYTHONPATH=$PWD nice -n 10 python benchmarks/evaluation_shipped.py ncl camden
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import pandas as pd

from spstudy.analyses import evaluation as E
from spstudy.inputs import project, reference
from spstudy.inputs.extracts import load_extracts
from spstudy.inputs.params import load_parameters


def main(areas):
    pd.set_option("display.width", 220)
    pd.set_option("display.max_columns", 30)
    truth = json.loads((project.root() / "data" / "truth" / "truth.json").read_text())["service_use"]
    p = load_parameters("ncl")
    t0 = time.perf_counter()
    ex = load_extracts(p)
    print(f"load_extracts: {time.perf_counter() - t0:.1f} s")
    for area in areas:
        pa = load_parameters(area)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = E.run(ex, E.design_from_parameters(pa), reference.area(area), engine=pa.evaluation.engine)
        secs = time.perf_counter() - t0
        v = r.verdicts.copy()
        v["truth_ncl"] = [truth[s][f"{w}m"]["itt_rate_ratio_referred" if c == "itt" else "att_rate_ratio_seen"] for s, w, c in
                          zip(v["setting"], v["window_months"], v["cohort"])]
        m = r.estimates[r.estimates["estimator"] == "matched_did"].set_index(["setting", "window_months", "cohort"])
        v["matched_did"] = [m.loc[(s, w, c), "rate_ratio"] for s, w, c in zip(v["setting"], v["window_months"], v["cohort"])]
        v["verdict"] = v["verdict"].str.split(":").str[0]
        b = r.balance_summary
        smd = b.loc[(b["sample"] == "Adjusted") & b["matched_on"], "max_abs_smd"].max()
        print(f"\n== {area}: evaluation.run {secs:.1f} s; referred in the cohort {r.n_referred}; largest |SMD| after matching {smd:.3f}")
        print(v[["setting", "window_months", "cohort", "verdict", "headline_estimator", "rate_ratio", "rate_ratio_lower", "rate_ratio_upper",
                 "e_value", "e_value_ci", "matched_did", "truth_ncl"]].round(3).to_string(index=False))
        print(r.pretrend[["setting", "cohort", "pretrend_p", "baseline_deviation_ratio", "rise_onset_month", "transient"]].round(3).to_string(index=False))
        print(r.placebo[["setting", "cohort", "rate_ratio", "rate_ratio_lower", "rate_ratio_upper"]].round(3).to_string(index=False))
        nc = r.negative_control
        if "estimator" in nc.columns:
            print(nc[["setting", "window_months", "cohort", "estimator", "rate_ratio", "rate_ratio_lower", "rate_ratio_upper"]].round(3).to_string(index=False))
        else:
            print(nc.to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1:] or ["ncl", "camden"])
