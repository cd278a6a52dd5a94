"""The bootstrap over confusion counts gives the intervals row resampling gives."""

import numpy as np
import pandas as pd
import pytest

from pipelines import fairness
from tests.conftest import ADULT_CSV


def _row_resampling(y, p, groups, *, min_group_size, bootstrap, seed):
    """The straightforward bootstrap: resample rows, rebuild fairlearn's MetricFrame."""
    y = np.asarray(y, dtype=int)
    pred = (np.asarray(p) >= 0.5).astype(int)
    groups = np.asarray(groups, dtype=object).astype(str)
    by_group = fairness._frame(y, pred, groups).by_group
    eligible = [g for g in by_group.index if by_group.loc[g, "count"] >= min_group_size]
    samples = {"demographic_parity_difference": [], "equalized_odds_difference": []}
    rng = np.random.default_rng(seed)
    for _ in range(bootstrap):
        idx = rng.integers(0, len(y), len(y))
        present = [g for g in eligible if (groups[idx] == g).any()]
        if len(present) < 2:
            continue
        boot = fairness._frame(y[idx], pred[idx], groups[idx]).by_group
        for name, value in fairness._differences(boot, present).items():
            samples[name].append(value)
    return {k: [np.percentile(v, 2.5), np.percentile(v, 97.5)] for k, v in samples.items()}


@pytest.mark.parametrize("column", ["sex", "race"])
def test_count_bootstrap_matches_row_resampling_within_monte_carlo_error(column):
    frame = pd.read_csv(ADULT_CSV).iloc[:2000]
    rng = np.random.default_rng(5)
    y = (frame["income-per-year"] == ">50K").to_numpy(dtype=int)
    # An imperfect classifier, so every rate varies between groups and draws.
    p = np.clip(0.35 * y + rng.random(len(y)) * 0.8, 0, 1)
    groups = frame[column].to_numpy()
    new = fairness.assess(y, p, groups, min_group_size=20, bootstrap=400, seed=3)
    old = _row_resampling(y, p, groups, min_group_size=20, bootstrap=400, seed=3)
    for name, (low, high) in old.items():
        got = new["intervals"][name]
        # Percentile bounds from 400 draws each: a few hundredths of Monte-Carlo error.
        assert abs(got[0] - low) <= 0.03 and abs(got[1] - high) <= 0.03, (name, got, low, high)
        assert got[1] - got[0] > 0.005  # a real interval, not a point


def test_the_bootstrap_is_seeded_and_skips_draws_without_two_groups():
    y = np.array([0, 1] * 50)
    p = np.linspace(0, 1, 100)
    groups = np.array(["a"] * 98 + ["b"] * 2)
    first = fairness.assess(y, p, groups, min_group_size=1, bootstrap=200, seed=9)
    again = fairness.assess(y, p, groups, min_group_size=1, bootstrap=200, seed=9)
    assert first["intervals"] == again["intervals"]
    # Group b has 2 rows of 100: about 13% of draws miss it and are skipped, as before.
    samples = fairness._bootstrap(y, (p >= 0.5).astype(int), groups.astype(str), ["a", "b"],
                                  200, 9)
    assert 150 <= len(samples["demographic_parity_difference"]) < 200
    one = fairness.assess(y, p, groups, min_group_size=10, bootstrap=50, seed=1)
    assert all(np.isnan(v).all() for v in one["intervals"].values())
