"""Drift between a production batch and the champion's training reference.

Every column gets the test the spec pins (method and threshold), so a verdict does not
change with the batch size the way Evidently's defaults do. Two engines compute the same
statistics: Evidently (its report, with plots, kept as HTML) and a fast path on NumPy and
SciPy with the same formulas, used when a batch is too large for Evidently to finish in
reasonable time. The per-column verdicts of the two agree (tested, and measured on 1M rows
by ``bench/drift.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.spec import DatasetSpec

P_VALUE_METHODS = ("ks", "chisquare")


@dataclass(frozen=True)
class ColumnTest:
    column: str
    kind: str  # "numeric" or "categorical"
    method: str
    threshold: float
    weight: float


def column_tests(spec: DatasetSpec, columns: list[str] | None = None) -> list[ColumnTest]:
    """The pinned test of every monitored column (the spec's columns by default)."""
    mon = spec.monitoring
    tests = []
    for col in columns or list(spec.columns):
        kind = spec.columns[col].type
        default = mon.numeric if kind == "numeric" else mon.categorical
        override = mon.columns.get(col)
        tests.append(ColumnTest(
            col, kind, (override and override.method) or default.method,
            (override and override.threshold) or default.threshold,
            override.weight if override else 1.0))
    return tests


def _clean(values: Any, kind: str) -> np.ndarray:
    """Values without missing (and, for numbers, infinite) entries, as Evidently drops them."""
    import pandas as pd

    series = pd.Series(values)
    if kind == "numeric":
        if series.dtype.kind != "f":
            series = pd.to_numeric(series, errors="coerce")
        array = series.to_numpy(dtype="float64")
        return array[np.isfinite(array)]
    return series.dropna().to_numpy()


def _binned(ref: np.ndarray, cur: np.ndarray, kind: str, fill_zeroes: bool,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Shares per bin as Evidently bins them.

    Sturges edges over both samples for numeric columns with more than 20 distinct
    reference values, one bin per value otherwise.
    """
    if kind == "numeric" and len(np.unique(ref)) > 20:
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        # Equal-width bins by count and range: NumPy's fast path, same counts as the edges.
        span = (edges[0], edges[-1])
        ref_p = np.histogram(ref, len(edges) - 1, span)[0] / len(ref)
        cur_p = np.histogram(cur, len(edges) - 1, span)[0] / len(cur)
    else:
        keys, ref_counts, cur_counts = _category_counts(ref, cur)
        ref_p, cur_p = ref_counts / len(ref), cur_counts / len(cur)
    if fill_zeroes:
        for p in (ref_p, cur_p):
            smallest = p[p != 0].min()
            p[p == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return ref_p, cur_p


def _category_counts(ref: np.ndarray, cur: np.ndarray):
    keys = np.unique(np.concatenate([np.unique(ref), np.unique(cur)]))
    ref_counts = np.zeros(len(keys))
    cur_counts = np.zeros(len(keys))
    r_keys, r_n = np.unique(ref, return_counts=True)
    c_keys, c_n = np.unique(cur, return_counts=True)
    ref_counts[np.searchsorted(keys, r_keys)] = r_n
    cur_counts[np.searchsorted(keys, c_keys)] = c_n
    return keys, ref_counts, cur_counts


def statistic(method: str, ref: np.ndarray, cur: np.ndarray, kind: str) -> float:
    """The method's statistic (p-value or distance), as Evidently computes it."""
    from scipy import stats
    from scipy.spatial import distance

    if method == "ks":
        return float(stats.ks_2samp(ref.astype(float), cur.astype(float))[1])
    if method == "wasserstein":
        ref, cur = ref.astype(float), cur.astype(float)
        return float(_wasserstein(ref, cur) / max(float(np.std(ref)), 0.001))
    if method == "psi":
        ref_p, cur_p = _binned(ref, cur, kind, fill_zeroes=True)
        return float(np.sum((ref_p - cur_p) * np.log(ref_p / cur_p)))
    if method == "jensenshannon":
        ref_p, cur_p = _binned(ref, cur, kind, fill_zeroes=False)
        return float(distance.jensenshannon(ref_p, cur_p, np.e))
    if method == "chisquare":
        _, ref_counts, cur_counts = _category_counts(ref, cur)
        expected = ref_counts * (len(cur) / len(ref))
        return float(stats.chisquare(cur_counts, expected)[1])
    raise ValueError(f"unknown drift method {method!r}")


def _wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """First Wasserstein distance of two samples: the area between their empirical CDFs.

    The integral ``scipy.stats.wasserstein_distance`` computes, with one sort of both
    samples. The smaller sample's count at each sorted position comes from where its
    values land (a search of the smaller sample into the merged one, then a running sum);
    the larger sample's is the position minus it. Inside a run of tied values those counts
    are off, but such steps have zero width, so the sum is exact.
    """
    if len(u) > len(v):
        u, v = v, u
    values = np.sort(np.concatenate([u, v]))
    last = np.searchsorted(values, u, side="right") - 1
    count_u = np.cumsum(np.bincount(last, minlength=len(values)))[:-1]
    count_v = np.arange(1, len(values)) - count_u
    return float(np.sum(np.abs(count_u / len(u) - count_v / len(v)) * np.diff(values)))


def drifted(method: str, value: float, threshold: float) -> bool:
    if method == "ks":
        return value <= threshold
    if method == "chisquare":
        return value < threshold
    return value >= threshold


def fast_path(reference: pd.DataFrame, current: pd.DataFrame,
              tests: list[ColumnTest]) -> list[dict[str, Any]]:
    """Per-column statistics and verdicts without Evidently.

    Columns run in parallel threads: the sorts and histograms release the GIL.
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(t: ColumnTest) -> dict[str, Any]:
        ref, cur = _clean(reference[t.column], t.kind), _clean(current[t.column], t.kind)
        value = statistic(t.method, ref, cur, t.kind) if len(ref) and len(cur) else float("nan")
        return _row(t, value, drifted(t.method, value, t.threshold))

    with ThreadPoolExecutor(max(1, min(len(tests), os.cpu_count() or 1))) as pool:
        return list(pool.map(one, tests))


def _row(t: ColumnTest, value: float, is_drifted: bool) -> dict[str, Any]:
    return {"column": t.column, "type": t.kind, "method": t.method,
            "statistic": "p-value" if t.method in P_VALUE_METHODS else "distance",
            "value": value, "threshold": t.threshold, "drifted": bool(is_drifted),
            "weight": t.weight}


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame,
                     tests: list[ColumnTest]) -> tuple[list[dict[str, Any]], bytes]:
    """Per-column results from an Evidently report, and the report's HTML."""
    import os
    import tempfile

    os.environ.setdefault("DO_NOT_TRACK", "1")
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[t.column for t in tests if t.kind == "numeric"],
        categorical_columns=[t.column for t in tests if t.kind == "categorical"])
    columns = [t.column for t in tests]
    ref = Dataset.from_pandas(_typed(reference[columns], tests), data_definition=definition)
    cur = Dataset.from_pandas(_typed(current[columns], tests), data_definition=definition)
    preset = DataDriftPreset(
        columns=columns, per_column_method={t.column: t.method for t in tests},
        per_column_threshold={t.column: t.threshold for t in tests})
    snapshot = Report([preset]).run(cur, ref)  # current first, then reference
    results = _evidently_values(snapshot.dict())
    rows = []
    for t in tests:
        value = results.get(t.column, float("nan"))
        rows.append(_row(t, value, drifted(t.method, value, t.threshold)))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "report.html")
        snapshot.save_html(path)
        with open(path, "rb") as f:
            html = f.read()
    return rows, html


def _typed(frame: pd.DataFrame, tests: list[ColumnTest]) -> pd.DataFrame:
    import pandas as pd

    out = frame.reset_index(drop=True)
    for t in tests:
        if t.kind == "numeric":
            out[t.column] = pd.to_numeric(out[t.column], errors="coerce")
        else:
            out[t.column] = out[t.column].astype(object).where(out[t.column].notna(), None)
    return out


def _evidently_values(snapshot: dict[str, Any]) -> dict[str, float]:
    """Column → drift statistic from a snapshot's ValueDrift metrics."""
    values = {}
    for metric in snapshot.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift") and "column" in config:
            value = metric.get("value")
            if isinstance(value, dict):
                value = value.get("value")
            values[config["column"]] = float(value)
    return values


def drift_score(rows: list[dict[str, Any]]) -> float:
    """Weighted share of drifted columns."""
    total = sum(r["weight"] for r in rows)
    return float(sum(r["weight"] for r in rows if r["drifted"]) / total) if total else 0.0


def drift_plot(rows: list[dict[str, Any]], score: float, threshold: float) -> bytes:
    """Each column's test against its threshold (1 = at the threshold), drifted ones in red.

    Distances are shown as value ÷ threshold and p-values as threshold ÷ value, so a bar
    past the dashed line is a drifted column whichever test judged it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.figures import png

    def ratio(r: dict[str, Any]) -> float:
        value, limit = float(r["value"]), float(r["threshold"])
        if r["statistic"] == "p-value":
            return limit / max(value, 1e-12)
        return value / limit if limit > 0 else 0.0

    ordered = sorted(rows, key=ratio)
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.32 * len(ordered) + 1.2)))
    # Shown between 1/1000 and 1e6 of the threshold (a p-value of 1e-150 is just "far").
    ratios = [min(max(ratio(r), 1e-3), 1e6) for r in ordered]
    ax.barh([f"{r['column']} ({r['method']})" for r in ordered], ratios,
            color=["#c0392b" if r["drifted"] else "#4a7fb5" for r in ordered])
    ax.axvline(1.0, color="k", ls="--", lw=1)
    ax.set_xscale("log")
    ax.tick_params(axis="y", labelsize=8)
    drifted = sum(bool(r["drifted"]) for r in rows)
    ax.set(xlabel="test statistic against its threshold (> 1: drifted)",
           title=f"Drift score {score:.3f} (retrain at ≥ {threshold:g})\n"
                 f"{drifted} of {len(rows)} columns drifted")
    out = png(fig)
    plt.close(fig)
    return out
