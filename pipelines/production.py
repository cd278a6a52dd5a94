"""The production-batch store: what the model saw in production, and the labels that came later.

Each model has its own folder (``$TIDELINE_HOME/production/<model>`` by default); its
layout::

    predictions/<UTC date>/<time>-<pid>-<seq>.parquet   the serving service's log
    batches/<name>.parquet | .csv                       batches dropped in by users
    labels/<name>.csv | .parquet                        request_id[, row], label

A *batch* is the newest files (by name time, then modification time) that together hold
at least ``monitoring.min_batch_rows`` rows; its hash combines those files' content
hashes. Labels join the prediction log by ``request_id`` (and ``row`` for requests that
carried several records; 0 when absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.hashing import canonical_json, hash_bytes

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.ingest import StatCache
    from pipelines.spec import DatasetSpec

DATA_GLOBS = ("predictions/*/*.parquet", "batches/*.parquet", "batches/*.csv")
LABEL_GLOBS = ("labels/*.parquet", "labels/*.csv")


@dataclass(frozen=True)
class StoreFile:
    path: Path
    content_hash: str
    mtime: float

    @property
    def order(self) -> tuple[float, str]:
        return (self.mtime, self.path.name)


def scan(root: Path, stat_cache: StatCache, globs: tuple[str, ...] = DATA_GLOBS
         ) -> list[StoreFile]:
    """Every data file with its content hash (cached by file stat), oldest first."""
    files = []
    for pattern in globs:
        for path in root.glob(pattern):
            if path.name.startswith("."):
                continue  # a file being written
            content_hash, _ = stat_cache.file_hash(path)
            files.append(StoreFile(path, content_hash, path.stat().st_mtime))
    return sorted(files, key=lambda f: f.order)


@dataclass(frozen=True)
class StoreState:
    """What a production folder holds now: its data and label files and one version."""

    root: Path
    files: list[StoreFile]
    labels: list[StoreFile]
    version: str


def observe(root: Path, stat_cache: StatCache) -> StoreState:
    """The folder's state; file hashes are stat-cached, so an unchanged folder reads nothing."""
    files, labels = scan(root, stat_cache), scan(root, stat_cache, LABEL_GLOBS)
    return StoreState(root, files, labels, fingerprint(files + labels, root))


def fingerprint(files: list[StoreFile], root: Path) -> str:
    """One hash for a set of files: their relative paths and content hashes."""
    return hash_bytes(canonical_json(
        sorted([str(f.path.relative_to(root)), f.content_hash] for f in files)))


def read_file(path: Path) -> pd.DataFrame:
    import pandas as pd

    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=["", "?", "NA"])
    return pd.read_parquet(path)


def newest_batch(files: list[StoreFile], min_rows: int
                 ) -> tuple[list[StoreFile], pd.DataFrame] | None:
    """The newest files holding at least ``min_rows`` rows, and their rows; None if fewer."""
    import pandas as pd

    chosen, frames, rows = [], [], 0
    for f in reversed(files):
        frame = read_file(f.path)
        chosen.append(f)
        frames.append(frame)
        rows += len(frame)
        if rows >= min_rows:
            return list(reversed(chosen)), pd.concat(list(reversed(frames)), ignore_index=True)
    return None


def labelled_predictions(root: Path, stat_cache: StatCache) -> pd.DataFrame:
    """Prediction-log rows that have a label: features, probability, version and label."""
    import pandas as pd

    labels = [read_file(f.path) for f in scan(root, stat_cache, LABEL_GLOBS)]
    if not labels:
        return pd.DataFrame()
    label = pd.concat(labels, ignore_index=True)
    if "request_id" not in label or "label" not in label:
        raise ValueError(f"label files under {root / 'labels'} need the columns request_id "
                         "and label (and row for requests with several records)")
    if "row" not in label:
        label["row"] = 0
    label["row"] = pd.to_numeric(label["row"]).astype("int64")
    label = label.drop_duplicates(["request_id", "row"], keep="last")
    logs = [read_file(f.path) for f in scan(root, stat_cache, ("predictions/*/*.parquet",))]
    if not logs:
        return pd.DataFrame()
    log = pd.concat(logs, ignore_index=True)
    log["row"] = log["row"].astype("int64")
    return log.merge(label[["request_id", "row", "label"]], on=["request_id", "row"],
                     how="inner")


def performance(joined: pd.DataFrame, spec: DatasetSpec) -> dict[str, Any]:
    """Accuracy, AUC and calibration of the served predictions on labelled rows."""
    import numpy as np

    from pipelines.evaluation import metrics

    y = (joined["label"].astype(str) == str(spec.target.positive)).to_numpy(dtype=int)
    p = joined["probability"].to_numpy(dtype="float64")
    out = metrics(y, p)
    out["by_version"] = {str(v): int(n) for v, n in joined["model_version"].value_counts()
                         .items()}
    out["roc_auc"] = None if np.isnan(out["roc_auc"]) else out["roc_auc"]
    return out


def training_rows(joined: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Labelled production rows in the source's shape: feature columns and the target."""
    frame = joined[list(spec.columns)].copy()
    frame[spec.target.column] = joined["label"].astype(str)
    return frame


def labels_version(root: Path, stat_cache: StatCache) -> str | None:
    """Content hash of the label files and the prediction log, or None without labels."""
    labels = scan(root, stat_cache, LABEL_GLOBS)
    if not labels:
        return None
    logs = scan(root, stat_cache, ("predictions/*/*.parquet",))
    return fingerprint(labels + logs, root)


def labelled_training_rows(root: Path, stat_cache: StatCache,
                           spec: DatasetSpec) -> pd.DataFrame | None:
    """Labelled production rows in the source's shape, or None when there are none."""
    joined = labelled_predictions(root, stat_cache)
    return training_rows(joined, spec) if len(joined) else None
