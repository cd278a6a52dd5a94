"""Fairness per sensitive column with fairlearn: per-group rates, differences, intervals.

Groups smaller than ``min_group_size`` are reported but left out of the differences that
the gate judges; bootstrap intervals resample the held-out rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RATES = ("selection_rate", "true_positive_rate", "false_positive_rate")


def _frame(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> Any:
    from fairlearn.metrics import (
        MetricFrame,
        count,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    return MetricFrame(
        metrics={"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
                 "false_positive_rate": false_positive_rate, "count": count},
        y_true=y, y_pred=pred, sensitive_features=groups)


def _differences(by_group: Any, eligible: list[str]) -> dict[str, float]:
    rows = by_group.loc[eligible]
    if len(rows) < 2:
        return {"demographic_parity_difference": 0.0, "equalized_odds_difference": 0.0}
    spread = {m: float(rows[m].max() - rows[m].min()) for m in RATES}
    return {"demographic_parity_difference": spread["selection_rate"],
            "equalized_odds_difference": max(spread["true_positive_rate"],
                                             spread["false_positive_rate"])}


def assess(y: np.ndarray, p: np.ndarray, groups: np.ndarray, *, min_group_size: int,
           bootstrap: int, seed: int, threshold: float = 0.5) -> dict[str, Any]:
    """Per-group rates and between-group differences with bootstrap intervals.

    Returns:
        ``groups``: {group: {rate: value, count, gated}}; ``differences``: {name: value};
        ``intervals``: {name: [low, high]} (95%, over eligible groups).
    """
    y = np.asarray(y, dtype=int)
    pred = (np.asarray(p) >= threshold).astype(int)
    groups = np.asarray(groups, dtype=object).astype(str)
    frame = _frame(y, pred, groups)
    by_group = frame.by_group
    eligible = [g for g in by_group.index if by_group.loc[g, "count"] >= min_group_size]
    out_groups = {
        str(g): {m: float(by_group.loc[g, m]) for m in RATES}
        | {"count": int(by_group.loc[g, "count"]), "gated": g in eligible}
        for g in by_group.index}
    differences = _differences(by_group, eligible)
    samples: dict[str, list[float]] = {k: [] for k in differences}
    rng = np.random.default_rng(seed)
    for _ in range(bootstrap):
        idx = rng.integers(0, len(y), len(y))
        present = [g for g in eligible if (groups[idx] == g).any()]
        if len(present) < 2:
            continue
        boot = _frame(y[idx], pred[idx], groups[idx]).by_group
        for k, v in _differences(boot, present).items():
            samples[k].append(v)
    intervals = {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
                 if v else [float("nan"), float("nan")] for k, v in samples.items()}
    return {"groups": out_groups, "differences": differences, "intervals": intervals,
            "min_group_size": min_group_size}
