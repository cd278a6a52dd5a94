"""Feature preparation: typed columns, a seeded split, and fitted preprocessing.

The fitted parameters (medians, means, scales, category vocabularies) travel with the
model and are applied inside its ONNX graph, so serving takes raw records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipelines.spec import DatasetSpec

SPLIT_COLUMN = "__split"
LABEL_COLUMN = "__label"
ROW_COLUMN = "__row"
# The fewest rows each of train, validation and test may get: fewer cannot train, stop
# early or measure anything.
MIN_SPLIT_ROWS = 10


def split_sizes(n_rows: int, test_fraction: float, validation_fraction: float
                ) -> tuple[int, int, int]:
    """(train, val, test) row counts `assign_split` gives ``n_rows`` rows."""
    n_test = max(1, int(round(n_rows * test_fraction)))
    n_val = max(1, int(round(n_rows * validation_fraction)))
    return n_rows - n_test - n_val, n_val, n_test


def rows_needed(test_fraction: float, validation_fraction: float,
                per_split: int = MIN_SPLIT_ROWS) -> int:
    """The fewest rows that give every split at least ``per_split`` rows."""
    n = 3 * per_split
    while min(split_sizes(n, test_fraction, validation_fraction)) < per_split:
        n += 1
    return n


SPLIT_NAMES = ("train", "val", "test")


def split_codes(n_rows: int, seed: int, test_fraction: float,
                validation_fraction: float) -> np.ndarray:
    """Seeded assignment of each row to a split, as indices into `SPLIT_NAMES` (uint8)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n_rows)
    _, n_val, n_test = split_sizes(n_rows, test_fraction, validation_fraction)
    codes = np.zeros(n_rows, dtype=np.uint8)
    codes[order[:n_test]] = 2
    codes[order[n_test : n_test + n_val]] = 1
    return codes


def assign_split(n_rows: int, seed: int, test_fraction: float,
                 validation_fraction: float) -> np.ndarray:
    """Seeded assignment of each row to ``train``, ``val`` or ``test``."""
    import numpy as np

    codes = split_codes(n_rows, seed, test_fraction, validation_fraction)
    return np.array(SPLIT_NAMES, dtype=object)[codes]


def fit_preprocessing(train: pd.DataFrame, spec: DatasetSpec) -> dict[str, Any]:
    """Fit imputation, scaling and category vocabularies on training rows only.

    Raises:
        InputError: as `preprocessing_params`.
    """
    return preprocessing_params(spec, lambda col: train[col].to_numpy(dtype="float64"),
                                lambda col: train[col].dropna().unique())


def preprocessing_params(spec: DatasetSpec, numeric_values: Callable[[str], np.ndarray],
                         distinct_values: Callable[[str], Iterable[Any]]) -> dict[str, Any]:
    """Imputation, scaling and category vocabularies from the training rows' columns.

    Args:
        spec: The dataset spec.
        numeric_values: A numeric column's training values (float64, NaN where missing),
            in row order.
        distinct_values: A categorical column's distinct training values (no missing).

    Raises:
        InputError: a vocabulary over its column's ``max_categories`` or holding a value
            over its ``max_length`` (validation refuses both first; this keeps the bound
            where the vocabulary enters the model, whatever calls this).
    """
    import numpy as np

    from pipelines.ingest import InputError

    numeric = {}
    for col in spec.numeric_columns:
        values = numeric_values(col)
        finite = values[np.isfinite(values)]
        median = float(np.median(finite)) if finite.size else 0.0
        filled = np.where(np.isfinite(values), values, median)
        std = float(filled.std())
        numeric[col] = {
            "median": median,
            "mean": float(filled.mean()),
            "scale": std if std > 1e-12 else 1.0,
        }
    categorical = {}
    for col in spec.categorical_columns:
        # Index 0 is reserved for missing and unseen values.
        vocab = sorted({str(v) for v in distinct_values(col)})
        longest, most = spec.category_limits(col)
        if len(vocab) > most:
            raise InputError(
                f"{len(vocab)} distinct values in the training rows, over the cap of {most}; "
                f"raise columns.{col}.max_categories (or validation.max_categories) or group "
                "rare values in the data", file=spec.source.path, column=col,
                rule=f"at most {most} categories")
        too_long = next((v for v in vocab if len(v) > longest), None)
        if too_long is not None:
            raise InputError(
                f"a value of {len(too_long)} characters would enter the model's vocabulary; "
                f"fix the data or raise columns.{col}.max_length", file=spec.source.path,
                column=col, rule=f"values at most {longest} characters")
        categorical[col] = vocab
    return {"numeric": numeric, "categorical": categorical}


def encode(frame: pd.DataFrame, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Raw numeric matrix (NaN kept: the model imputes) and category indices.

    The category mapping is the one the ONNX graph's label encoders apply.
    """
    import numpy as np

    num_cols = list(params["numeric"])
    num = frame[num_cols].to_numpy(dtype="float32") if num_cols else np.zeros(
        (len(frame), 0), dtype="float32")
    cats = []
    for col, vocab in params["categorical"].items():
        index = {v: i + 1 for i, v in enumerate(vocab)}
        cats.append(frame[col].map(lambda v, index=index: index.get(v, 0)).to_numpy("int64"))
    cat = np.stack(cats, axis=1) if cats else np.zeros((len(frame), 0), dtype="int64")
    return num, cat


def labels(frame: pd.DataFrame) -> np.ndarray:
    return frame[LABEL_COLUMN].to_numpy(dtype="float32")


def onnx_feeds(frame: pd.DataFrame, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Inputs of the exported predictor for raw rows: numeric matrix and category strings."""
    import numpy as np

    # Always a numeric matrix, (rows, 0) for a table without numeric columns: a network
    # that reads it keeps the input in its graph; callers pass a session only its inputs.
    feeds: dict[str, np.ndarray] = {"numeric": np.asarray(
        frame[list(params["numeric"])].to_numpy(dtype="float32"), dtype="float32"
    ).reshape(len(frame), len(params["numeric"]))}
    for i, col in enumerate(params["categorical"]):
        values = frame[col].astype(object).where(frame[col].notna(), "")
        feeds[f"cat_{i}"] = np.asarray(values.astype(str), dtype=object).reshape(-1, 1)
    return feeds


class SeededSample:
    """A seeded sample of a frame's rows, gathered while its batches stream past.

    It holds what ``frame.sample(n=size, random_state=seed)`` gives for the frame of
    ``total`` rows the batches make up (default index), holding only the sampled rows.
    pandas draws the positions with ``numpy.random.RandomState(seed).choice(total, size,
    replace=False)`` and returns the rows in the order drawn, indexed by position; this
    draws the same and gathers each batch's drawn rows as it passes. Text columns may
    come as categoricals (cheaper to stream): the sample holds them as object strings,
    ``None`` for missing, as a plain read of the frame gives them.

    Args:
        total: How many rows the batches hold together.
        size: How many rows to draw (at most ``total``).
        seed: The draw's seed (``DataFrame.sample``'s ``random_state``).
        columns: Only these columns; all when None.
    """

    def __init__(self, total: int, size: int, seed: int, columns: list[str] | None = None):
        import numpy as np

        self._drawn = np.random.RandomState(seed).choice(
            total, size=size, replace=False).astype(np.intp)
        self._sorted = np.sort(self._drawn)
        self._total, self._columns = total, columns
        self._pieces: list[pd.DataFrame] = []
        self._empty: pd.DataFrame | None = None
        self._seen = 0

    def add(self, batch: pd.DataFrame) -> None:
        """Take the drawn rows among the next ``len(batch)`` rows."""
        import numpy as np

        if self._columns is not None:
            batch = batch[self._columns]
        lo, hi = np.searchsorted(self._sorted, [self._seen, self._seen + len(batch)])
        if hi > lo:
            self._pieces.append(_plain_text(batch.iloc[self._sorted[lo:hi] - self._seen]))
        elif self._empty is None:
            self._empty = _plain_text(batch.iloc[:0])
        self._seen += len(batch)

    def frame(self) -> pd.DataFrame:
        """The sample, in the order drawn, indexed by the rows' positions.

        Raises:
            ValueError: the batches held another number of rows than ``total``, or none.
        """
        import numpy as np
        import pandas as pd

        if self._seen != self._total:
            raise ValueError(f"expected {self._total} rows to sample from, read {self._seen}")
        picked = (pd.concat(self._pieces) if len(self._pieces) > 1
                  else self._pieces[0] if self._pieces else self._empty)
        if picked is None:
            raise ValueError("no batches to sample from")
        out = picked.iloc[np.searchsorted(self._sorted, self._drawn)]
        out.index = pd.Index(self._drawn)
        return out


def seeded_sample(batches: Iterable[pd.DataFrame], rows: int, n: int, seed: int = 0,
                  columns: list[str] | None = None) -> pd.DataFrame:
    """`SeededSample` of ``min(n, rows)`` rows over ``batches`` (``rows`` rows in all)."""
    sample = SeededSample(rows, min(n, rows), seed, columns)
    for batch in batches:
        sample.add(batch)
    return sample.frame()


def _plain_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with categorical columns as object values, ``None`` for missing."""
    import pandas as pd

    text = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    if not text:
        return frame
    frame = frame.copy()
    for c in text:
        frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
    return frame
