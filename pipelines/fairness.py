"""Fairness per sensitive column with fairlearn: per-group rates, differences, intervals.

Groups smaller than ``min_group_size`` are reported but left out of the differences that
the gate judges; bootstrap intervals resample the held-out rows.

Every rate is a ratio of a group's confusion counts, so resampling N rows with
replacement is the same as drawing the counts of the (group, label, prediction) cells
from a multinomial with the observed cell frequencies. The bootstrap draws those counts
directly: one pass over the rows to count, then work that grows with the number of cells
and draws, not with the rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

RATES = ("selection_rate", "true_positive_rate", "false_positive_rate")
# The group of a row whose sensitive value is missing.
MISSING = "missing"


class GroupCoder:
    """Per-row group codes of one sensitive column, built from batches of its values.

    A row's group is its value as text (``"missing"`` when absent), as :func:`assess`
    reads it; each row is held as a small integer, not as a string.
    """

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._parts: list[np.ndarray] = []

    def add(self, values: pd.Series) -> None:
        """Take the next rows' values (any dtype; categoricals are cheapest)."""
        text = np.asarray(values.astype(object).where(values.notna(), MISSING),
                          dtype=object).astype(str)
        seen, inverse = np.unique(text, return_inverse=True)
        lookup = np.array([self._index.setdefault(g, len(self._index)) for g in seen.tolist()],
                          dtype=np.int32)
        self._parts.append(lookup[inverse.reshape(-1)] if len(seen)
                           else np.zeros(0, dtype=np.int32))

    def finish(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """Every row's code and the group names, sorted; code ``i`` is ``names[i]``."""
        names = tuple(sorted(self._index))
        remap = np.empty(len(names), dtype=np.int32)
        for new, name in enumerate(names):
            remap[self._index[name]] = new
        codes = (np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.int32))
        return remap[codes], names


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
    names, codes = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    return assess_codes(y, p, codes.reshape(-1), tuple(names.tolist()),
                        min_group_size=min_group_size, bootstrap=bootstrap, seed=seed,
                        threshold=threshold)


def assess_codes(y: np.ndarray, p: np.ndarray, codes: np.ndarray, names: tuple[str, ...], *,
                 min_group_size: int, bootstrap: int, seed: int,
                 threshold: float = 0.5) -> dict[str, Any]:
    """:func:`assess` for groups given as per-row codes into ``names``.

    ``names`` are sorted (as :class:`GroupCoder` gives them); the result is the one the
    names themselves give.
    """
    y = np.asarray(y, dtype=int)
    pred = (np.asarray(p) >= threshold).astype(int)
    codes = np.asarray(codes)
    by_group = _frame(y, pred, codes).by_group
    # Codes follow the names' order, so the groups come out in the order (and with the
    # values) the names themselves give.
    by_group.index = [names[int(i)] for i in by_group.index]
    eligible = [g for g in by_group.index if by_group.loc[g, "count"] >= min_group_size]
    out_groups = {
        str(g): {m: float(by_group.loc[g, m]) for m in RATES}
        | {"count": int(by_group.loc[g, "count"]), "gated": g in eligible}
        for g in by_group.index}
    differences = _differences(by_group, eligible)
    position = {name: i for i, name in enumerate(names)}
    samples = _bootstrap(y, pred, codes, [position[g] for g in eligible], bootstrap, seed)
    intervals = {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
                 if v else [float("nan"), float("nan")] for k, v in samples.items()}
    return {"groups": out_groups, "differences": differences, "intervals": intervals,
            "min_group_size": min_group_size}


def _bootstrap(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, eligible: list[Any],
               draws: int, seed: int) -> dict[str, list[float]]:
    """Bootstrap samples of the differences over the eligible groups, from cell counts.

    A draw where fewer than two eligible groups are present is skipped, as a row
    resample without them would be. A rate whose denominator is zero in a draw is 0, as
    fairlearn reports it.
    """
    names = ("demographic_parity_difference", "equalized_odds_difference")
    samples: dict[str, list[float]] = {k: [] for k in names}
    if draws <= 0 or len(eligible) < 2:  # no draw would have two groups to compare
        return samples
    # Rows of groups too small to be gated still count towards N (they are resampled
    # too); they share the last group index, which no difference looks at.
    names_seen, inverse = np.unique(groups, return_inverse=True)
    position = {g: i for i, g in enumerate(eligible)}
    lookup = np.array([position.get(g, len(eligible)) for g in names_seen], dtype=np.int64)
    gid = lookup[inverse]
    cells = gid * 4 + y * 2 + pred  # (group, label, prediction)
    k = len(eligible) + 1
    counts = np.bincount(cells, minlength=4 * k).astype(np.float64)
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(len(y), counts / counts.sum(), size=draws).reshape(draws, k, 4)
    drawn = drawn[:, : len(eligible), :].astype(np.float64)  # [draws, groups, cell]
    tn, fp, fn, tp = (drawn[..., c] for c in range(4))  # cell = label * 2 + prediction
    size = tn + fp + fn + tp
    present = size > 0

    def rate(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    def spread(values: np.ndarray) -> np.ndarray:
        hi = np.where(present, values, -np.inf).max(axis=1)
        lo = np.where(present, values, np.inf).min(axis=1)
        return hi - lo

    keep = present.sum(axis=1) >= 2
    dp = spread(rate(fp + tp, size))
    eo = np.maximum(spread(rate(tp, tp + fn)), spread(rate(fp, fp + tn)))
    samples["demographic_parity_difference"] = dp[keep].tolist()
    samples["equalized_odds_difference"] = eo[keep].tolist()
    return samples
