"""Disclosure control. Rules from the NHS Digital HES analysis guide (counts 1-7 suppressed, others
rounded to the nearest 5) and OpenSAFELY's output-checking guidance (secondary suppression of cells
that let a suppressed one be recovered from a total)."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from spstudy.disclosure import SUPPRESSED, check_published, control, safe_label


def test_primary_suppression_and_rounding():
    df = pd.DataFrame({"ward": list("abcde"), "n": [0, 1, 7, 8, 123], "rate": [0.0, 1.1, 7.7, 8.8, 12.3]})
    ct = control(df, ["n"], threshold=7, rounding_base=5, derived={"n": ["rate"]})
    shown = ct.display()
    assert shown["n"].tolist() == [0, SUPPRESSED, SUPPRESSED, 10, 125]
    assert shown["rate"].tolist() == [0.0, SUPPRESSED, SUPPRESSED, 8.8, 12.3]  # rates not rounded
    assert ct.n_suppressed == 4


def test_secondary_suppression_protects_the_total():
    # one small cell in a ward: recoverable from the ward total, so the next smallest goes too
    df = pd.DataFrame({"ward": ["w1"] * 3 + ["w2"] * 3, "group": list("xyz") * 2, "n": [3, 40, 50, 20, 30, 40]})
    ct = control(df, ["n"], groups=[["ward"]])
    sup = ct.suppressed["n"].tolist()
    assert sup == [True, True, False, False, False, False]
    # and across both margins (ward and group): the 'x' column now has one... no: x has w1 only suppressed
    ct2 = control(df, ["n"], groups=[["ward"], ["group"]])
    s2 = ct2.suppressed["n"].to_numpy().reshape(2, 3)
    for row in s2:
        assert row.sum() != 1
    for col in s2.T:
        assert col.sum() != 1


def test_zero_is_not_used_for_secondary_suppression():
    df = pd.DataFrame({"g": ["a"] * 3, "n": [2, 0, 30]})
    ct = control(df, ["n"], groups=[["g"]])
    assert ct.suppressed["n"].tolist() == [True, False, True]


def test_safe_label():
    assert safe_label(3) == SUPPRESSED and safe_label(0) == "0" and safe_label(12) == "10" and safe_label(1234) == "1,235"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=6, max_size=24).filter(lambda xs: len(xs) % 3 == 0))
def test_property_no_small_count_visible_and_no_lone_suppression(xs):
    n = len(xs) // 3
    df = pd.DataFrame({"row": np.repeat(np.arange(n), 3), "col": list(range(3)) * n, "n": xs})
    ct = control(df, ["n"], groups=[["row"], ["col"]])
    shown = ct.display()
    assert not check_published(shown, ["n"], 7)
    m = ct.suppressed["n"].to_numpy().reshape(n, 3)
    vals = np.array(xs).reshape(n, 3)
    for axis_groups in (m, m.T):
        for i, g in enumerate(axis_groups):
            # a lone suppressed cell is only allowed when every other cell in its group is zero
            if g.sum() == 1:
                other = (vals if axis_groups is m else vals.T)[i][~g]
                assert (other == 0).all()


def test_counts_in_figure_text_are_controlled():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spstudy.publish import sanitise_figure_counts

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="Treated (n=1,704)")
    ax.plot([0, 1], [1, 0], label="Control (n=5)")
    ax.set_title("Matched units (N = 12)")
    ax.legend()
    assert sanitise_figure_counts(fig, 7, 5) >= 3
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["Treated (n=1,705)", "Control (n=[c])"]
    assert ax.get_title() == "Matched units (N=10)"
    plt.close(fig)
