"""Intervals per row from the stored companions of a metric (CI, else value ± std) and ties with the best row
(bench.report.intervals)."""

import math

import numpy as np
import pandas as pd
import pytest

from bench.report.intervals import interval, ties_with_best

NAN = float("nan")


def test_stored_ci_is_preferred_and_std_fills_rows_without_one():
    df = pd.DataFrame({"clip_score": [30.0, 28.0, 25.0, NAN],
                       "clip_score_ci_low": [29.0, NAN, 24.0, 1.0], "clip_score_ci_high": [31.5, NAN, 26.0, 2.0],
                       "clip_score_std": [9.0, 0.5, 9.0, 1.0]})
    lo, hi = interval(df, "clip_score")
    assert lo.tolist()[:3] == [29.0, 27.5, 24.0] and hi.tolist()[:3] == [31.5, 28.5, 26.0]
    assert math.isnan(lo.iloc[3]) and math.isnan(hi.iloc[3]), "a row without a value has no interval"
    assert list(lo.index) == list(df.index)


def test_only_std_gives_value_plus_minus_std():
    df = pd.DataFrame({"is": [3.0, 2.0, NAN], "is_std": [0.25, NAN, 0.1]}, index=[7, 3, 5])
    lo, hi = interval(df, "is")
    assert lo.loc[7] == 2.75 and hi.loc[7] == 3.25
    assert math.isnan(lo.loc[3]) and math.isnan(hi.loc[5])


def test_neither_companion_or_no_metric_is_none():
    df = pd.DataFrame({"fid": [10.0, 12.0], "kid_std": [0.1, 0.1]})
    assert interval(df, "fid") is None
    assert interval(df, "pickscore") is None


def test_ci_alone_leaves_rows_without_one_empty():
    df = pd.DataFrame({"fid": [10.0, 12.0], "fid_ci_low": [9.0, NAN], "fid_ci_high": [11.0, NAN]})
    lo, hi = interval(df, "fid")
    assert lo.iloc[0] == 9.0 and hi.iloc[0] == 11.0 and math.isnan(lo.iloc[1]) and math.isnan(hi.iloc[1])


def test_ties_higher_is_better():
    v = pd.Series([9.0, 10.0, 5.0], index=["a", "b", "c"])
    lo = pd.Series([8.5, 9.0, 4.0], index=v.index)
    hi = pd.Series([9.5, 11.0, 6.0], index=v.index)
    assert ties_with_best(v, lo, hi, True).tolist() == [True, True, False]
    assert ties_with_best(v, lo, hi, True).index.tolist() == ["a", "b", "c"]


def test_ties_lower_is_better_picks_the_minimum():
    v = pd.Series([5.0, 6.0, 9.0])
    lo, hi = pd.Series([4.0, 4.9, 8.0]), pd.Series([6.0, 7.0, 10.0])
    assert ties_with_best(v, lo, hi, False).tolist() == [True, True, False]
    # the same numbers read as higher-is-better: 9 is best and its [8, 10] meets nobody
    assert ties_with_best(v, lo, hi, True).tolist() == [False, False, True]


def test_touching_intervals_tie_and_disjoint_ones_do_not():
    v = pd.Series([10.0, 8.0, 7.9])
    lo, hi = pd.Series([9.0, 7.0, 6.0]), pd.Series([11.0, 9.0, 8.999])
    assert ties_with_best(v, lo, hi, True).tolist() == [True, True, False]


def test_nan_rows_never_tie_and_a_row_without_interval_is_a_point():
    v = pd.Series([NAN, 10.0, 9.5, 8.0, 9.9])
    lo = pd.Series([0.0, 9.0, NAN, NAN, 100.0])
    hi = pd.Series([100.0, 11.0, NAN, NAN, 0.0])         # the last one upside down: still [0, 100]
    assert ties_with_best(v, lo, hi, True).tolist() == [False, True, True, False, True]


def test_without_intervals_only_the_best_and_equal_values_tie():
    v = pd.Series([3.0, 1.0, 3.0, NAN])
    assert ties_with_best(v, None, None, True).tolist() == [True, False, True, False]
    assert ties_with_best(pd.Series([NAN, NAN]), None, None, True).tolist() == [False, False]


def test_duplicate_labels_and_no_direction():
    v = pd.Series([1.0, 2.0], index=["m", "m"])
    assert ties_with_best(v, pd.Series([0.5, 1.9]), pd.Series([1.5, 2.1]), True).tolist() == [False, True]
    with pytest.raises(ValueError, match="direction"):
        ties_with_best(v, None, None, None)


def test_interval_feeds_ties_on_a_frame():
    df = pd.DataFrame({"pickscore": [21.0, 20.5, 18.0], "pickscore_ci_low": [20.6, 20.0, 17.0],
                       "pickscore_ci_high": [21.4, 20.7, 19.0]})
    lo, hi = interval(df, "pickscore")
    assert ties_with_best(df["pickscore"], lo, hi, True).tolist() == [True, True, False]
    assert np.isfinite(lo).all()
