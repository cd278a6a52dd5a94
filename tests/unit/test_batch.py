"""Batch scoring: a table read as training reads its source, scored by a real exported model."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from pipelines.artifacts import StageFailure, StageResult, save_result
from pipelines.hashing import canonical_json
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore
from tests.conftest import override

PARAMS = {"numeric": {"age": {"median": 40.0, "mean": 41.0, "scale": 12.0},
                      "hours": {"median": 38.0, "mean": 40.0, "scale": 9.0}},
          "categorical": {"color": ["blue", "green", "red"]}}


@pytest.fixture(scope="module")
def fp32() -> bytes:
    """A tiny predictor exported by the pipelines' own export (random weights, seeded)."""
    import torch

    from pipelines.export import export_predictor
    from pipelines.training import build_model

    torch.manual_seed(3)
    model = build_model(PARAMS, "mlp", {"hidden": [6], "dropout": 0.0}).eval()
    return export_predictor(model, PARAMS)


def _spec(tmp_path, **over) -> DatasetSpec:
    raw = {"name": "toy", "source": {"path": str(tmp_path / "train.csv"), "na_values": ["", "?"]},
           "target": {"column": "y", "positive": "yes", "classes": ["no", "yes"]},
           "columns": {"age": {"type": "numeric"}, "hours": {"type": "numeric"},
                       "color": {"type": "categorical"}},
           "validation": {"max_failed_fraction": 0.2}}
    return DatasetSpec.model_validate(override(raw, over))


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


def _model(store: ArtifactStore, fp32: bytes, version: int = 7):
    from pipelines.batch import ScoringModel

    manifest = save_result(store, StageResult(
        kind="quantized_weights",
        files={"model_fp32.onnx": fp32, "preprocess.json": canonical_json(PARAMS)}))
    import hashlib

    return ScoringModel(version=version, quantized_weights=manifest.content_hash,
                        fp32_sha256=hashlib.sha256(fp32).hexdigest())


def _score(spec, store, model, path, *, id_column=None, chunk_rows=3):
    from pipelines.batch import table_format
    from pipelines.stages.batch import score_table, table_source

    return score_table(spec, store, model,
                       table_source(spec, path, str(path), table_format(str(path))),
                       id_column, chunk_rows=chunk_rows)


def _predictions(store, result) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(store.get_bytes(result.stored["predictions.parquet"])))


def _direct(fp32: bytes, age, hours, color) -> np.ndarray:
    """What onnxruntime itself gives for these raw values (NaN / "" mean missing)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"])
    feeds = {"numeric": np.array([age, hours], dtype="float32").T,
             "cat_0": np.array(color, dtype=object).reshape(-1, 1)}
    return np.asarray(sess.run(None, feeds)[0], dtype="float64").reshape(-1)


def test_a_csv_table_is_scored_in_chunks_as_onnxruntime_scores_it(tmp_path, store, fp32):
    table = tmp_path / "batch.csv"
    # Padded categories, a missing number ("?" is in na_values), an unseen colour, an extra
    # column the model does not take, ids that are not row numbers.
    table.write_text("id,age,extra,hours,color\n"
                     "a1,25,x,40,red\n"
                     "a2,?,x,50, blue \n"
                     "a3,61,x,12,green\n"
                     "a4,33,x,45,purple\n"
                     "a5,47,x,,red\n"
                     "a6,19,x,60,\n"
                     "a7,80,x,8,blue\n")
    spec = _spec(tmp_path)
    model = _model(store, fp32)
    result = _score(spec, store, model, table, id_column="id", chunk_rows=3)
    out = _predictions(store, result)
    assert list(out.columns) == ["row_id", "probability", "label", "model_version"]
    assert out["row_id"].tolist() == [f"a{i}" for i in range(1, 8)]
    assert (out["model_version"] == 7).all()
    nan = float("nan")
    expected = _direct(fp32, [25, nan, 61, 33, 47, 19, 80], [40, 50, 12, 45, nan, 60, 8],
                       ["red", "blue", "green", "purple", "red", "", "blue"])
    np.testing.assert_array_equal(out["probability"].to_numpy(), expected)
    assert out["label"].tolist() == ["yes" if p >= 0.5 else "no" for p in expected]
    assert result.metadata["rows"] == 7 and result.metadata["chunks"] == 3
    assert result.metadata["positive_share"] == pytest.approx((expected >= 0.5).mean(), abs=1e-6)
    assert result.metadata["model_version"] == 7
    assert "| a1 |" in result.metadata["preview"].text
    # Chunking never changes a row's score.
    whole = _predictions(store, _score(spec, store, model, table, id_column="id",
                                       chunk_rows=1000))
    pd.testing.assert_frame_equal(whole, out)


def test_a_parquet_table_without_id_column_is_numbered_across_chunks(tmp_path, store, fp32):
    frame = pd.DataFrame({"color": ["red", "blue", None, "green", "red"],
                          "age": [30.0, np.nan, 44.0, 52.0, 23.0],
                          "hours": [40, 38, 20, 50, 45]})
    table = tmp_path / "batch.parquet"
    frame.to_parquet(table, index=False)
    result = _score(_spec(tmp_path), store, _model(store, fp32, version=2), table, chunk_rows=2)
    out = _predictions(store, result)
    assert out["row_id"].tolist() == [0, 1, 2, 3, 4]
    assert out["model_version"].tolist() == [2] * 5
    np.testing.assert_array_equal(
        out["probability"].to_numpy(),
        _direct(fp32, frame["age"], frame["hours"], ["red", "blue", "", "green", "red"]))


def test_a_missing_feature_column_fails_in_one_line_naming_file_and_column(
        tmp_path, store, fp32):
    table = tmp_path / "batch.csv"
    table.write_text("age,color\n30,red\n")
    with pytest.raises(StageFailure) as err:
        _score(_spec(tmp_path), store, _model(store, fp32), table)
    message = str(err.value)
    assert "\n" not in message
    assert str(table) in message and "'hours'" in message and "column exists" in message


def test_a_missing_id_column_names_the_setting(tmp_path, store, fp32):
    table = tmp_path / "batch.csv"
    table.write_text("age,hours,color\n30,40,red\n")
    with pytest.raises(StageFailure, match="deployment.batch.id_column 'key'"):
        _score(_spec(tmp_path), store, _model(store, fp32), table, id_column="key")


def test_the_spec_delimiter_and_a_wrong_one(tmp_path, store, fp32):
    table = tmp_path / "batch.csv"
    table.write_text("age;hours;color\n30;40;red\n50;20;blue\n")
    spec = _spec(tmp_path, source__delimiter=";")
    out = _predictions(store, _score(spec, store, _model(store, fp32), table))
    np.testing.assert_array_equal(out["probability"].to_numpy(),
                                  _direct(fp32, [30, 50], [40, 20], ["red", "blue"]))
    with pytest.raises(StageFailure, match="source.delimiter: ';'"):
        _score(_spec(tmp_path), store, _model(store, fp32), table)


def test_rows_the_model_cannot_take_stay_unscored_within_the_limit(tmp_path, store, fp32):
    rows = [f"{20 + i},40,red\n" for i in range(9)]
    table = tmp_path / "batch.csv"
    table.write_text("age,hours,color\n" + "".join(rows) + "old,40,red\n")
    result = _score(_spec(tmp_path), store, _model(store, fp32), table)
    out = _predictions(store, result)
    assert out["probability"].isna().tolist() == [False] * 9 + [True]
    assert out["label"].isna().tolist() == [False] * 9 + [True]
    assert result.metadata["unscored_rows"] == 1
    assert result.metadata["unscored_examples"] == ["row 9, column 'age': 'old' is not a number"]
    # Over validation.max_failed_fraction (0.2 here) the stage fails, naming the column.
    table.write_text("age,hours,color\n" + "".join(rows[:3])
                     + "old,40,red\nyoung,40,red\ninf,1,red\n")
    with pytest.raises(StageFailure, match=r"3 of 6 rows .*'age' \(3\)"):
        _score(_spec(tmp_path), store, _model(store, fp32), table)


def test_a_header_without_rows_and_a_compressed_file_are_refused(tmp_path, store, fp32):
    import gzip

    table = tmp_path / "batch.csv"
    table.write_text("age,hours,color\n")
    with pytest.raises(StageFailure, match="no data rows"):
        _score(_spec(tmp_path), store, _model(store, fp32), table)
    table.write_bytes(gzip.compress(b"age,hours,color\n1,2,red\n"))
    with pytest.raises(StageFailure, match="gzip-compressed"):
        _score(_spec(tmp_path), store, _model(store, fp32), table)


def test_a_model_file_that_does_not_match_its_deployment_record_is_refused(
        tmp_path, store, fp32):
    from dataclasses import replace

    table = tmp_path / "batch.csv"
    table.write_text("age,hours,color\n30,40,red\n")
    model = replace(_model(store, fp32), fp32_sha256="0" * 64)
    with pytest.raises(StageFailure, match="version 7: model_fp32.onnx .* does not match"):
        _score(_spec(tmp_path), store, model, table)


def test_the_batch_key_takes_what_shapes_the_output():
    from pipelines.spec import DatasetSpec

    base = {"name": "toy", "source": {"path": "/d/train.csv"},
            "target": {"column": "y", "positive": "yes"},
            "columns": {"age": {"type": "numeric"}},
            "deployment": {"batch": {"source": "/d/batch.csv"}}}

    def config(**batch):
        raw = base | {"deployment": {"batch": {"source": "/d/batch.csv"} | batch}}
        return DatasetSpec.model_validate(raw).stage_config("batch_predictions")

    assert config() == config(source="/elsewhere/batch.csv") == config(schedule="0 3 * * *")
    assert config(id_column="id") != config()
    assert config(source="/d/batch.parquet")["source"]["format"] == "parquet"
    assert config()["source"]["format"] == "csv"
