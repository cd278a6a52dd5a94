"""validated_features in batches: the memory budget changes batch sizes, never the result.

A tiny budget reads, validates and writes the source 64 rows at a time; a large one in a
single batch. Every stored output (features, quarantine, preprocessing, rule outcomes)
must be byte-for-byte the same, and the same as validating the whole table in memory.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.artifacts import StageFailure, read_frame, read_json, save_result
from pipelines.features import (
    LABEL_COLUMN,
    ROW_COLUMN,
    SPLIT_COLUMN,
    assign_split,
    fit_preprocessing,
)
from pipelines.ingest import parse_raw
from pipelines.spec import load_spec
from pipelines.stages.features import build_features
from pipelines.stages.raw import snapshot_source
from pipelines.store import ArtifactStore
from pipelines.validation import validate
from tests.conftest import ADULT_CSV, write_spec

TINY, LARGE = "1MB", "8GB"


def _noisy_source(tmp_path, fmt: str = "csv"):
    """2,000 Adult rows with faults spread over the whole file (so over many batches)."""
    frame = pd.read_csv(ADULT_CSV, dtype=str, keep_default_na=False).head(2000).reset_index(
        drop=True)
    rng = np.random.default_rng(3)
    for col, bad in (("age", "abc"), ("age", "250"), ("workclass", "x" * 300),
                     ("hours-per-week", "inf")):
        if col in frame.columns:
            frame.loc[rng.choice(len(frame), 7, replace=False), col] = bad
    path = tmp_path / f"noisy.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        typed = frame.replace({"": None, "?": None})
        typed["age"] = pd.to_numeric(typed["age"], errors="coerce").astype("Int64")
        typed.to_parquet(path, index=False)
    return path


def _run(tmp_path, source, budget: str, name: str, **overrides):
    spec = load_spec(write_spec(tmp_path / f"{name}.yaml", "adult", source,
                                resources__memory_budget=budget, **overrides))
    store = ArtifactStore(tmp_path / f"store-{name}")
    raw = save_result(store, snapshot_source(spec, store))
    manifest = save_result(store, build_features(spec, store, raw))
    return spec, store, manifest


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_tiny_budget_gives_the_same_features_as_one_batch(tmp_path, fmt):
    source = _noisy_source(tmp_path, fmt)
    overrides = {"validation__max_failed_fraction": 0.5} | (
        {"source__format": "parquet", "columns__age__max_null_fraction": 0.01}
        if fmt == "parquet" else {})
    _, tiny_store, tiny = _run(tmp_path, source, TINY, "tiny", **overrides)
    _, _, large = _run(tmp_path, source, LARGE, "large", **overrides)
    assert tiny.files == large.files and tiny.info == large.info
    assert tiny.content_hash == large.content_hash
    quarantine = read_frame(tiny_store, tiny, "quarantine")
    assert len(quarantine) >= 20 and quarantine[ROW_COLUMN].is_monotonic_increasing
    # Examples name rows of the whole file, not of the batch they were found in.
    checks = read_json(tiny_store, tiny, "validation.json")
    rows = [int(e.split(":")[0].split()[1]) for c in checks for e in c["examples"]
            if e.startswith("row ")]
    assert max(rows) >= 64


def test_batches_give_what_validating_the_whole_table_in_memory_gives(tmp_path):
    source = _noisy_source(tmp_path)
    spec, store, manifest = _run(tmp_path, source, TINY, "tiny",
                                 validation__max_failed_fraction=0.5)
    whole = validate(parse_raw(source.read_bytes(), fmt="csv", file=str(source),
                               na_values=spec.source.na_values), spec)
    clean = whole.clean
    clean[LABEL_COLUMN] = (clean[spec.target.column] == str(spec.target.positive)).astype(
        "float32")
    clean[SPLIT_COLUMN] = assign_split(len(clean), spec.split.seed, spec.split.test_fraction,
                                       spec.split.validation_fraction)
    features = read_frame(store, manifest, "features")
    pd.testing.assert_frame_equal(features, clean)
    quarantine = read_frame(store, manifest, "quarantine")
    assert quarantine[ROW_COLUMN].tolist() == whole.quarantine[ROW_COLUMN].tolist()
    assert quarantine["__reasons"].tolist() == whole.quarantine["__reasons"].tolist()
    params = fit_preprocessing(clean[clean[SPLIT_COLUMN] == "train"], spec)
    assert read_json(store, manifest, "preprocess.json") == params


def test_the_quarantine_limit_is_judged_on_the_whole_table_not_per_batch(tmp_path):
    source = _noisy_source(tmp_path)
    limit = 0.03
    _, store, manifest = _run(tmp_path, source, TINY, "ok",
                              validation__max_failed_fraction=limit)
    bad = read_frame(store, manifest, "quarantine")[ROW_COLUMN].to_numpy()
    assert len(bad) / 2000 <= limit < np.bincount(bad // 64).max() / 64  # a batch is over
    with pytest.raises(StageFailure) as failed:
        _run(tmp_path, source, TINY, "strict", validation__max_failed_fraction=0.001)
    message = str(failed.value).splitlines()[0]
    assert f"{len(bad)} of 2000 rows" in message and "validation.max_failed_fraction" in message


def test_long_passes_report_rows_done_rate_and_time_left(tmp_path, monkeypatch):
    import pipelines.progress

    monkeypatch.setattr(pipelines.progress, "EVERY_S", 0.0)  # every batch, for the test
    source = _noisy_source(tmp_path)
    spec = load_spec(write_spec(tmp_path / "s.yaml", "adult", source,
                                resources__memory_budget=TINY,
                                validation__max_failed_fraction=0.5))
    store = ArtifactStore(tmp_path / "store")
    raw = save_result(store, snapshot_source(spec, store))
    lines: list[str] = []
    build_features(spec, store, raw, on_progress=lines.append)
    validated = [line for line in lines if line.startswith("validated: ")]
    assert len(validated) == 2000 // 64 + 1  # a line per 64-row batch
    assert validated[-1].startswith("validated: 2,000 rows (32 batches")
    split = [line for line in lines if line.startswith("labelled and split: ")]
    assert split and "s left" in split[0] and " of " in split[0]


def test_frames_written_in_batches_check_under_make_verify(tmp_path):
    """An empty quarantine, a text column with no value and nullable integers keep their
    stored types, and `make verify` hashes them as they were named."""
    import pyarrow as pa

    from pipelines.artifacts import FrameWriter, StageResult
    from pipelines.verify import verify_store

    store = ArtifactStore(tmp_path / "store")
    schema = pa.schema([("n", pa.int64()), ("text", pa.string())])
    frames = {}
    with FrameWriter(store, schema) as empty:
        frames["empty"] = empty.close()
    with FrameWriter(store, schema) as gaps:
        gaps.write(pd.DataFrame({"n": pd.array([1, None], dtype="Int64"), "text": [None, None]}))
        frames["gaps"] = gaps.close()
    save_result(store, StageResult(kind="t", frames=frames))
    assert verify_store(store, grace_s=0).problems == []


def _write_table(path, frame: pd.DataFrame, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(path)  # with pandas' index: an empty first header cell
    else:
        frame.to_parquet(path)  # a filtered frame: its index is stored as a column


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_source_saved_with_its_index_reads_at_any_budget(tmp_path, fmt):
    frame = pd.read_csv(ADULT_CSV, dtype=str, keep_default_na=False).reset_index(drop=True)
    frame = frame.iloc[100:900]  # a filtered frame: its index does not start at 0
    if fmt == "parquet":
        frame = frame.replace({"": None, "?": None}).astype({"workclass": "category"})
    source = tmp_path / f"indexed.{fmt}"
    _write_table(source, frame, fmt)
    overrides = {"validation__max_failed_fraction": 0.5} | (
        {"source__format": "parquet"} if fmt == "parquet" else {})
    _, store, tiny = _run(tmp_path, source, TINY, "tiny", **overrides)
    _, _, large = _run(tmp_path, source, LARGE, "large", **overrides)
    assert tiny.content_hash == large.content_hash
    assert len(read_frame(store, tiny, "features")) + tiny.info["rows"]["quarantined"] == 800


def test_a_missing_column_is_reported_with_the_whole_tables_counts(tmp_path):
    source = _noisy_source(tmp_path)
    frame = pd.read_csv(source, dtype=str, keep_default_na=False).drop(columns=["education"])
    frame.to_csv(source, index=False)
    messages = []
    for budget in (TINY, LARGE):
        with pytest.raises(StageFailure) as failed:
            _run(tmp_path, source, budget, f"missing-{budget}")
        messages.append(str(failed.value))
    assert messages[0] == messages[1]
    assert "'education'" in messages[0].splitlines()[0]
    assert "column 'age': rule 'values are numbers': 7 rows" in messages[0]
