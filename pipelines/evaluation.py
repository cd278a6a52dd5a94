"""Held-out metrics, calibration and latency for each model variant."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5, bins: int = 10) -> dict:
    """ROC AUC, accuracy, F1, log loss, Brier score and expected calibration error."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype="float64"), 1e-7, 1 - 1e-7)
    pred = (p >= threshold).astype(int)
    cal = calibration(y, p, bins)
    weights = np.asarray(cal["count"], dtype=float)
    mean_p = np.array([np.nan if v is None else v for v in cal["mean_predicted"]])
    frac = np.array([np.nan if v is None else v for v in cal["fraction_positive"]])
    gaps = np.abs(mean_p - frac)
    ece = float((weights * np.nan_to_num(gaps)).sum() / max(weights.sum(), 1))
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": ece,
        "rows": int(len(y)),
        "positive_rate": float(y.mean()),
    }


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, list]:
    """Reliability table over equal-width probability bins."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out: dict[str, list] = {"mean_predicted": [], "fraction_positive": [], "count": []}
    for b in range(bins):
        mask = which == b
        out["count"].append(int(mask.sum()))
        out["mean_predicted"].append(float(p[mask].mean()) if mask.any() else None)
        out["fraction_positive"].append(float(y[mask].mean()) if mask.any() else None)
    return out


def roc_points(y: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def latency(sess: Any, feeds: dict[str, np.ndarray], batch: int, repeats: int = 30) -> dict:
    """Median and p95 milliseconds per call at a given batch size."""
    names = {i.name for i in sess.get_inputs()}
    n = len(next(iter(feeds.values())))
    idx = np.arange(batch) % n
    batch_feeds = {k: v[idx] for k, v in feeds.items() if k in names}
    sess.run(None, batch_feeds)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, batch_feeds)
        times.append((time.perf_counter() - t) * 1000)
    return {"batch": batch, "median_ms": float(np.median(times)),
            "p95_ms": float(np.percentile(times, 95))}
