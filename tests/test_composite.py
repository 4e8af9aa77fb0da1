import math

import numpy as np
import pandas as pd
import pytest

from bench.composite import add_mmhm, compute_bounds, load_bounds, mmhm, save_bounds


def test_mmhm_matches_a_hand_computation():
    fid, is_, clip, pick = [10.0, 20.0, 30.0], [3.0, 2.0, 1.0], [30.0, 25.0, 20.0], [20.0, 21.0, 22.0]
    got = mmhm(fid, is_, clip, pick)
    # row 1: u = (20-20)/... no: fid u = (30-20)/20 = 0.5; is u = 0.5; clip u = 0.5; pick u = 0.5
    assert got[1] == pytest.approx(4 / (4 / (1e-3 + 0.5)))
    # row 0: u_fid = 1, u_is = 1, u_clip = 1, u_pick = 0
    assert got[0] == pytest.approx(4 / (3 / 1.001 + 1 / 1e-3))
    assert got[0] < 0.004, "one metric at the bottom drags the harmonic mean down"


def test_best_possible_value_is_1_001_and_constant_columns_count_as_one():
    got = mmhm([1.0, 2.0], [5.0, 4.0], [30.0, 30.0], [7.0, 7.0])   # clip and pick constant
    assert got[0] == pytest.approx(1.001)
    assert got[1] == pytest.approx(4 / (2 / 1.001 + 2 / 1e-3))
    assert mmhm([3.0], [3.0], [3.0], [3.0])[0] == pytest.approx(1.001)


def test_bounds_reuse_and_values_outside_unit_range(tmp_path):
    b = compute_bounds([10, 30], [1, 3], [20, 30], [20, 22])
    assert b == {"fid": [10, 30], "is": [1, 3], "clip": [20, 30], "pick": [20, 22]}
    path = tmp_path / "bounds.json"
    save_bounds(b, path)
    assert load_bounds(path) == b
    got = mmhm([5.0], [4.0], [35.0], [23.0], bounds=load_bounds(path))
    u = [(30 - 5) / 20, (4 - 1) / 2, (35 - 20) / 10, (23 - 20) / 2]
    assert got[0] == pytest.approx(4 / sum(1 / (1e-3 + x) for x in u))
    assert got[0] > 1.001, "reused bounds are not clipped"
    with pytest.raises(ValueError, match="not an MMHM bounds file"):
        (tmp_path / "bad.json").write_text("{}")
        load_bounds(tmp_path / "bad.json")


def test_missing_input_gives_nan_and_does_not_shape_bounds():
    got = mmhm([10.0, 20.0, 15.0], [1.0, 2.0, float("nan")], [1.0, 2.0, 5.0], [1.0, 2.0, 3.0])
    assert math.isnan(got[2])
    assert got[1] == pytest.approx(4 / (1 / 1e-3 + 3 / 1.001))


def test_add_mmhm_per_dataset_and_excludes_real_rows():
    df = pd.DataFrame({
        "suite": ["s"] * 5, "dataset": ["a", "a", "b", "b", "a"], "family": ["flow"] * 4 + ["real"],
        "fid": [10, 20, 10, 40, 0.1], "is": [2, 1, 2, 1, 9], "clip_score": [30, 20, 30, 20, 40],
        "pickscore": [20, 19, 20, 19, 25]})
    out = add_mmhm(df)
    assert out["mmhm"].iloc[0] == pytest.approx(1.001) and out["mmhm"].iloc[2] == pytest.approx(1.001)
    assert np.isnan(out["mmhm"].iloc[4])
    assert out["mmhm"].iloc[1] == pytest.approx(4 / (4 / 1e-3))
