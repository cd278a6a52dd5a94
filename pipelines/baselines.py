"""Baselines every card shows: scikit-learn models on the candidate's rows and features.

Logistic regression (median-imputed, standardized numerics; one-hot categories) and
histogram gradient boosting (native missing values and categories) are fitted on the
candidate's training rows, stop early on its validation rows (boosting only), and score
its test rows, so a user sees at once whether the network earns its place. Every fitted
parameter (medians, scales, vocabularies) comes from the training rows alone.

A split larger than ``BASELINE_MAX_TRAIN_ROWS`` rows is represented by a seeded sample of
that many of its rows (the card says so); smaller splits are used whole. The cap is a
constant, not a share of the memory budget, so the card is the same at any budget.

Both fits are deterministic (fixed seeds, pinned thread count), so the card that holds
their metrics has the same bytes on every run; how long each fit took is a fact of the
run, reported beside the card and never stored in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SEED = 0
# The most training rows (and validation rows) a baseline is fitted on; a larger split is
# represented by a seeded sample of this many rows, drawn with these seeds.
BASELINE_MAX_TRAIN_ROWS = 1_000_000
TRAIN_SAMPLE_SEED = 0
VALIDATION_SAMPLE_SEED = 1
# Histogram boosting: at most this many rounds, stopping once the validation loss has not
# improved for ``PATIENCE`` rounds; categories beyond ``MAX_CATEGORIES`` (its bin limit)
# share one code.
MAX_ITER = 200
PATIENCE = 10
MAX_CATEGORIES = 255
LOGISTIC = "logistic_regression"
BOOSTING = "hist_gradient_boosting"
TITLES = {LOGISTIC: "logistic regression", BOOSTING: "histogram gradient boosting"}
SETTINGS = {
    LOGISTIC: "scikit-learn LogisticRegression (lbfgs, C=1); numerics median-imputed and "
              "standardized, categories one-hot with a missing indicator",
    BOOSTING: f"scikit-learn HistGradientBoostingClassifier (at most {MAX_ITER} rounds, "
              f"early stopping on the validation rows after {PATIENCE}); native missing "
              "values and categories",
}


@dataclass(frozen=True)
class RowSample:
    """How many of a split's rows the baselines are fitted on (all, or a seeded sample)."""

    rows: int
    of: int

    @property
    def sampled(self) -> bool:
        return self.rows < self.of


def describe(name: str, train: RowSample, validation: RowSample) -> str:
    """The settings text of a baseline on the card, naming the samples it was fitted on."""
    text = SETTINGS[name]
    if train.sampled:
        text += (f"; fitted on a seeded sample of {train.rows:,} of the {train.of:,} "
                 "training rows")
    if name == BOOSTING and validation.sampled:
        text += (f"; early stopping on a seeded sample of {validation.rows:,} of the "
                 f"{validation.of:,} validation rows")
    return text


@dataclass(frozen=True)
class BaselineFit:
    """One baseline's test-row probabilities and what its fit took (run facts).

    ``fit_seconds`` is wall time; ``cpu_seconds`` the process CPU time (all threads) the
    fit used, what its cost is priced on.
    """

    name: str
    probabilities: np.ndarray
    fit_seconds: float
    cpu_seconds: float = 0.0

    @property
    def title(self) -> str:
        return TITLES[self.name]


@dataclass(frozen=True)
class _Vocabulary:
    """Training-row categories of one column, most frequent first (ties by value)."""

    values: tuple[str, ...]

    @classmethod
    def fit(cls, column: pd.Series) -> _Vocabulary:
        counts = column.dropna().astype(str).value_counts()
        return cls(tuple(v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))

    def codes(self, column: pd.Series, limit: int | None = None) -> np.ndarray:
        """Index per row (NaN for missing or unseen); indices ≥ ``limit - 1`` share one."""
        import numpy as np

        index = {v: float(i if limit is None else min(i, limit - 1))
                 for i, v in enumerate(self.values)}
        out = np.full(len(column), np.nan)
        present = column.notna().to_numpy()
        out[present] = column[present].astype(str).map(index).to_numpy(dtype="float64")
        return out


def _numeric(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    import numpy as np

    if not columns:
        return np.zeros((len(frame), 0))
    values = frame[columns].to_numpy(dtype="float64")
    return np.where(np.isfinite(values), values, np.nan)


def _logistic_design(train: pd.DataFrame, numeric: list[str], categorical: list[str]):
    """A transform fitted on ``train``: frame -> standardized numerics and one-hot columns.

    The result is a sparse matrix.
    """
    import numpy as np

    num = _numeric(train, numeric)
    medians = np.array([np.nanmedian(c) if np.isfinite(c).any() else 0.0 for c in num.T])
    filled = np.where(np.isnan(num), medians, num)
    means = filled.mean(axis=0)
    scales = filled.std(axis=0)
    scales = np.where(scales > 1e-12, scales, 1.0)
    vocabularies = [_Vocabulary.fit(train[c]) for c in categorical]

    def transform(frame: pd.DataFrame) -> Any:
        from scipy import sparse

        x = _numeric(frame, numeric)
        parts = [sparse.csr_matrix((np.where(np.isnan(x), medians, x) - means) / scales)]
        n = len(frame)
        for col, vocab in zip(categorical, vocabularies):
            # One-hot as a sparse matrix: a dense one is rows × categories of float64
            # (gigabytes at millions of rows) for one non-zero per row.
            codes = vocab.codes(frame[col])
            known = np.flatnonzero(~np.isnan(codes))
            missing = np.flatnonzero(frame[col].isna().to_numpy())
            width = len(vocab.values) + 1
            rows = np.concatenate([known, missing])
            cols = np.concatenate([codes[known].astype(np.int64),
                                   np.full(len(missing), width - 1, dtype=np.int64)])
            parts.append(sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                           shape=(n, width)))
        return sparse.hstack(parts, format="csr")

    return transform


def _boosting_design(train: pd.DataFrame, numeric: list[str], categorical: list[str]):
    """A transform fitted on ``train``: raw numerics (NaN kept) and category codes."""
    import numpy as np

    vocabularies = [_Vocabulary.fit(train[c]) for c in categorical]

    def transform(frame: pd.DataFrame) -> np.ndarray:
        parts = [_numeric(frame, numeric)]
        parts += [v.codes(frame[c], MAX_CATEGORIES)[:, None]
                  for c, v in zip(categorical, vocabularies)]
        return np.hstack(parts)

    return transform


def gather_rows(batches: Iterable[pd.DataFrame], rows: int, *, numeric: list[str],
                categorical: list[str], label: str, seed: int,
                cap: int | None = None) -> tuple[pd.DataFrame, RowSample]:
    """A split's rows for fitting, gathered from its batches: all, or a seeded sample.

    All rows when there are at most ``cap``, else a seeded sample of ``cap`` of them; rows
    stay in stored order. Only the sampled rows are kept, compactly: numerics as
    float64 (what the fits read), categories as a pandas categorical (one small integer
    per row), the label as stored.

    Args:
        batches: The split's rows in stored order, in batches of any size.
        rows: How many rows the batches hold.
        numeric: Numeric columns (kept as float64).
        categorical: Categorical columns (kept as pandas categoricals).
        label: The label column (kept as stored).
        seed: The sample's seed.
        cap: The most rows kept; default ``BASELINE_MAX_TRAIN_ROWS``.

    Raises:
        ValueError: The batches hold a different number of rows than ``rows``.
    """
    import numpy as np
    import pandas as pd

    cap = BASELINE_MAX_TRAIN_ROWS if cap is None else cap
    keep = (None if rows <= cap
            else np.sort(np.random.default_rng(seed).choice(rows, size=cap, replace=False)))
    numbers: dict[str, list[np.ndarray]] = {c: [] for c in numeric}
    labels: list[np.ndarray] = []
    codes: dict[str, list[np.ndarray]] = {c: [] for c in categorical}
    vocab: dict[str, dict[Any, int]] = {c: {} for c in categorical}
    label_dtype = None
    start = 0
    for batch in batches:
        n = len(batch)
        if keep is not None:
            lo, hi = np.searchsorted(keep, [start, start + n])
            batch = batch.iloc[keep[lo:hi] - start]
        start += n
        for c in numeric:
            numbers[c].append(batch[c].to_numpy(dtype="float64"))
        labels.append(batch[label].to_numpy())
        label_dtype = batch[label].dtype
        for c in categorical:
            values = batch[c]
            cat = values.cat if isinstance(values.dtype, pd.CategoricalDtype) else \
                values.astype("category").cat
            # The batch's categories -> codes in one vocabulary across batches; -1 (the
            # last entry) stays missing.
            lookup = np.array([vocab[c].setdefault(v, len(vocab[c])) for v in cat.categories]
                              + [-1], dtype=np.int32)
            codes[c].append(lookup[cat.codes.to_numpy()])
    if start != rows:
        raise ValueError(f"expected {rows} rows to gather, read {start}")

    def joined(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    out = {c: joined(numbers[c], "float64") for c in numeric}
    for c in categorical:
        # Categories sorted, so the frame does not depend on where batches were cut.
        names = sorted(vocab[c], key=str)
        remap = np.empty(len(names) + 1, dtype=np.int32)
        remap[-1] = -1
        for new, value in enumerate(names):
            remap[vocab[c][value]] = new
        out[c] = pd.Categorical.from_codes(remap[joined(codes[c], np.int32)],
                                           categories=names)
    out[label] = joined(labels, label_dtype if label_dtype is not None else "float32")
    frame = pd.DataFrame(out)
    return frame, RowSample(len(frame), rows)


@dataclass(frozen=True)
class _Model:
    name: str
    design: Callable[[pd.DataFrame], Any]
    model: Any
    fit_seconds: float
    cpu_seconds: float


@dataclass(frozen=True)
class FittedBaselines:
    """Both baselines, fitted: they score rows in batches of any size.

    A row's probability does not depend on the other rows in its batch.
    """

    models: tuple[_Model, ...]

    def predict(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """Each baseline's probabilities for ``rows`` (in the caller's thread limits)."""
        return {m.name: m.model.predict_proba(m.design(rows))[:, 1] for m in self.models}

    def results(self, probabilities: dict[str, np.ndarray]) -> list[BaselineFit]:
        """The fits as records, with the test-row probabilities they gave."""
        return [BaselineFit(m.name, probabilities[m.name], m.fit_seconds, m.cpu_seconds)
                for m in self.models]


def fit(train: pd.DataFrame, val: pd.DataFrame, numeric: list[str], categorical: list[str],
        label: str, threads: int = 1) -> FittedBaselines:
    """Fit both baselines on ``train``; boosting stops early on ``val``.

    Args:
        train: The training rows (text columns as strings or categoricals).
        val: The validation rows (early stopping for boosting; unused by the regression).
        numeric: Numeric feature columns (float, NaN for missing).
        categorical: Categorical feature columns (strings, missing as None/NaN).
        label: The 0/1 label column.
        threads: The thread count for BLAS and OpenMP while fitting.
    """
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from pipelines.cost import process_cpu_seconds

    y = train[label].to_numpy(dtype=int)
    models = []
    with threadpool_limits(limits=threads):
        started, cpu = time.perf_counter(), process_cpu_seconds()
        design = _logistic_design(train, numeric, categorical)
        logistic = LogisticRegression(C=1.0, max_iter=2000, random_state=SEED)
        logistic.fit(design(train), y)
        models.append(_Model(LOGISTIC, design, logistic, time.perf_counter() - started,
                             process_cpu_seconds() - cpu))

        started, cpu = time.perf_counter(), process_cpu_seconds()
        design = _boosting_design(train, numeric, categorical)
        mask = np.array([False] * len(numeric) + [True] * len(categorical), dtype=bool)
        boosting = HistGradientBoostingClassifier(
            max_iter=MAX_ITER, early_stopping=True, n_iter_no_change=PATIENCE,
            scoring="loss", categorical_features=mask if mask.any() else None,
            random_state=SEED)
        boosting.fit(design(train), y, X_val=design(val), y_val=val[label].to_numpy(dtype=int))
        models.append(_Model(BOOSTING, design, boosting, time.perf_counter() - started,
                             process_cpu_seconds() - cpu))
    return FittedBaselines(tuple(models))


def fit_baselines(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame,
                  numeric: list[str], categorical: list[str], label: str,
                  threads: int = 1) -> list[BaselineFit]:
    """Fit both baselines on ``train`` (boosting stops early on ``val``); score ``test``.

    Args:
        train: The candidate's training rows.
        val: Its validation rows (early stopping for boosting; unused by the regression).
        test: Its test rows.
        numeric: Numeric feature columns (float, NaN for missing).
        categorical: Categorical feature columns (strings, missing as None/NaN).
        label: The 0/1 label column.
        threads: The thread count for BLAS and OpenMP while fitting and scoring.
    """
    from threadpoolctl import threadpool_limits

    fitted = fit(train, val, numeric, categorical, label, threads=threads)
    with threadpool_limits(limits=threads):
        return fitted.results(fitted.predict(test))
