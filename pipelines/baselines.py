"""Baselines every card shows: scikit-learn models on the candidate's rows and features.

Logistic regression (median-imputed, standardized numerics; one-hot categories) and
histogram gradient boosting (native missing values and categories) are fitted on the
candidate's training rows, stop early on its validation rows (boosting only), and score
its test rows, so a user sees at once whether the network earns its place. Every fitted
parameter (medians, scales, vocabularies) comes from the training rows alone.

Both fits are deterministic (fixed seed, no random subsampling, pinned thread count), so
the card that holds their metrics has the same bytes on every run; how long each fit took
is a fact of the run, reported beside the card and never stored in it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SEED = 0
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
class BaselineFit:
    """One baseline's test-row probabilities and the seconds its fit took (a run fact)."""

    name: str
    probabilities: np.ndarray
    fit_seconds: float

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
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    y = train[label].to_numpy(dtype=int)
    out = []
    with threadpool_limits(limits=threads):
        started = time.perf_counter()
        design = _logistic_design(train, numeric, categorical)
        logistic = LogisticRegression(C=1.0, max_iter=2000, random_state=SEED)
        logistic.fit(design(train), y)
        seconds = time.perf_counter() - started
        out.append(BaselineFit(LOGISTIC, logistic.predict_proba(design(test))[:, 1], seconds))

        started = time.perf_counter()
        design = _boosting_design(train, numeric, categorical)
        mask = np.array([False] * len(numeric) + [True] * len(categorical), dtype=bool)
        boosting = HistGradientBoostingClassifier(
            max_iter=MAX_ITER, early_stopping=True, n_iter_no_change=PATIENCE,
            scoring="loss", categorical_features=mask if mask.any() else None,
            random_state=SEED)
        boosting.fit(design(train), y, X_val=design(val), y_val=val[label].to_numpy(dtype=int))
        seconds = time.perf_counter() - started
        out.append(BaselineFit(BOOSTING, boosting.predict_proba(design(test))[:, 1], seconds))
    return out
