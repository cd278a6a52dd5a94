import pandas as pd
import pytest

from pipelines.features import LABEL_COLUMN, SPLIT_COLUMN, assign_split, fit_preprocessing
from pipelines.spec import DatasetSpec, TrainingSpec
from pipelines.training import train, weights_bytes


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns={"target": "y"})
    spec = DatasetSpec.model_validate({
        "name": "bc", "source": {"path": "x.parquet"}, "target": {"column": "y", "positive": 1},
        "columns": {c: {"type": "numeric"} for c in frame.columns if c != "y"}})
    frame[LABEL_COLUMN] = frame["y"].astype("float32")
    frame[SPLIT_COLUMN] = assign_split(len(frame), 0, 0.2, 0.2)
    train_rows = frame[frame[SPLIT_COLUMN] == "train"]
    return train_rows, frame[frame[SPLIT_COLUMN] == "val"], fit_preprocessing(train_rows, spec)


class Stop(Exception):
    pass


def test_resume_from_checkpoint_gives_identical_weights(tmp_path, data):
    train_rows, val_rows, params = data
    cfg = TrainingSpec(epochs=6, patience=10, hidden=[16], batch_size=64, seed=3)
    full = train(train_rows, val_rows, params, cfg, threads=1)

    def interrupt(row):
        if row["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train(train_rows, val_rows, params, cfg, threads=1, checkpoint_dir=tmp_path,
              on_epoch=interrupt)
    seen = []
    resumed = train(train_rows, val_rows, params, cfg, threads=1, checkpoint_dir=tmp_path,
                    on_epoch=lambda row: seen.append(row["epoch"]))
    assert seen == [3, 4, 5], "the resumed run starts after the last checkpointed epoch"
    assert weights_bytes(resumed.state_dict) == weights_bytes(full.state_dict)
    assert pd.DataFrame(resumed.history).equals(pd.DataFrame(full.history))


def test_training_learns(data):
    train_rows, val_rows, params = data
    cfg = TrainingSpec(epochs=15, hidden=[16], batch_size=32, learning_rate=3e-3)
    result = train(train_rows, val_rows, params, cfg, threads=1)
    assert result.history[result.best_epoch]["val_auc"] > 0.95
