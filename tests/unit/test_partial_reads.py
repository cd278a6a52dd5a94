"""Reading only the rows and columns a stage needs gives what filtering in memory gives."""

import numpy as np
import pandas as pd

from pipelines.artifacts import StageResult, read_frame, read_splits, save_result
from pipelines.features import SPLIT_COLUMN
from pipelines.store import ArtifactStore


def test_a_split_read_from_parquet_equals_the_split_filtered_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(["a", "b", None], 500),
                          SPLIT_COLUMN: rng.choice(["train", "val", "test"], 500)})
    store = ArtifactStore(tmp_path / "store")
    manifest = save_result(store, StageResult(kind="t", frames={"features": frame}))
    whole = read_frame(store, manifest, "features")
    parts = read_splits(store, manifest, "features", ("test", "train"), by=SPLIT_COLUMN,
                        columns=["c", SPLIT_COLUMN])
    for split, part in zip(("test", "train"), parts, strict=True):
        expected = whole.loc[whole[SPLIT_COLUMN] == split, ["c", SPLIT_COLUMN]]
        assert list(part.columns) == ["c", SPLIT_COLUMN]
        pd.testing.assert_frame_equal(part.reset_index(drop=True),
                                      expected.reset_index(drop=True))


def test_predictions_in_batches_equal_one_call():
    import torch

    from pipelines.export import export_predictor
    from pipelines.features import onnx_feeds
    from pipelines.quantize import predict, predict_rows, session
    from pipelines.training import build_model

    params = {"numeric": {"x": {"median": 0.0, "mean": 0.0, "scale": 1.0}},
              "categorical": {"c": ["a", "b"]}}
    torch.manual_seed(0)
    model = build_model(params, "mlp", {"hidden": [4], "dropout": 0.0}).eval()
    sess = session(export_predictor(model, params))
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"x": rng.normal(size=1000), "c": rng.choice(["a", "b", "z"], 1000)})
    whole = predict(sess, onnx_feeds(rows, params))
    np.testing.assert_array_equal(predict_rows(sess, rows, params, batch=128), whole)
