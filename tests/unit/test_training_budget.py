"""trained_weights under a memory budget: the same artifact whatever the budget.

A tiny budget reads the splits in 64-row batches and trains from encoded files on disk;
a large one reads each split at once and trains from tensors in memory. Weights,
training summary and reference sample must be identical bit for bit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines import training
from pipelines.artifacts import read_splits, save_result
from pipelines.features import (
    LABEL_COLUMN,
    SPLIT_COLUMN,
    SeededSample,
    assign_split,
    encode,
    labels,
)
from pipelines.hashing import hash_frame
from pipelines.spec import load_spec
from pipelines.store import ArtifactStore
from tests.conftest import ADULT_CSV, fast_adult_spec, save_validated_features

ROWS = 400
TINY = 16_000  # bytes: 64-row batches, and the encoded splits go to disk
LARGE = 1 << 30  # bytes: one batch per split, encoded splits in memory


def adult_spec(tmp_path, budget: int, **overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = fast_adult_spec(tmp_path, ADULT_CSV, resources__memory_budget=budget,
                           training__epochs=3, training__batch_size=32,
                           training__reference_rows=50, training__hidden=[8], **overrides)
    return load_spec(path)


def features_frame(spec) -> pd.DataFrame:
    """The first ROWS Adult rows as validated_features stores them."""
    raw = pd.read_csv(ADULT_CSV, nrows=ROWS, na_values=["", "?"])
    frame = pd.DataFrame({"__row": np.arange(len(raw), dtype="int64"),
                          spec.target.column: raw[spec.target.column].astype(object)})
    for col in spec.columns:
        if col in spec.numeric_columns:
            frame[col] = raw[col].astype("float64")
        else:
            frame[col] = raw[col].astype(object).where(raw[col].notna(), None)
    frame[LABEL_COLUMN] = (raw[spec.target.column] == ">50K").astype("float32")
    frame[SPLIT_COLUMN] = assign_split(len(frame), 0, 0.2, 0.2)
    return frame


@pytest.fixture
def features(tmp_path):
    """A store holding a validated_features artifact of ROWS Adult rows."""
    spec = adult_spec(tmp_path, LARGE)
    frame = features_frame(spec)
    assert frame[spec.categorical_columns].isna().any().any(), \
        "the sample must hold missing categories"
    store = ArtifactStore(tmp_path / "store")
    manifest, params = save_validated_features(store, spec, frame)
    return store, manifest, frame, params


def categorical_batches(frame: pd.DataFrame, size: int):
    """Batches as `iter_frame(categories=True)` gives them: text as categoricals, each
    batch with its own categories."""
    for start in range(0, len(frame), size):
        batch = frame.iloc[start : start + size].reset_index(drop=True)
        yield batch.astype({c: "category" for c in batch.columns if batch[c].dtype == object})


def build(spec, store, manifest, tmp_path, name, **kwargs):
    from pipelines.stages.training import build_trained_weights

    return build_trained_weights(spec, store, manifest, threads=1, device="cpu",
                                 checkpoint_dir=tmp_path / name, **kwargs)


# --- encoding in batches ------------------------------------------------------------------

@pytest.mark.parametrize("on_disk", [False, True])
def test_encoding_in_batches_equals_encoding_the_whole_frame(tmp_path, features, on_disk):
    _, _, frame, params = features
    frame = frame.copy()
    # A value the vocabulary never saw must get index 0, as encode gives it.
    frame.loc[5, "workclass"] = "Never-seen"
    num, cat = encode(frame, params)
    whole = training.encode_rows(frame, params)
    for size in (64, 7, len(frame)):
        rows = training.encode_batches(categorical_batches(frame, size), params, len(frame),
                                       folder=tmp_path / f"enc{size}" if on_disk else None)
        assert rows.on_disk == on_disk
        assert rows.numeric.dtype == np.float32 and rows.labels.dtype == np.float32
        # NaN (missing numbers) kept bit for bit.
        assert rows.numeric.tobytes() == num.tobytes() == whole.numeric.tobytes()
        np.testing.assert_array_equal(rows.categories, cat)
        assert rows.labels.tobytes() == labels(frame).tobytes()
    assert cat[5, list(params["categorical"]).index("workclass")] == 0


def test_encoding_refuses_a_row_count_that_does_not_match(features):
    _, _, frame, params = features
    with pytest.raises(ValueError, match="399 rows, not the 400"):
        training.encode_batches(categorical_batches(frame.iloc[:-1], 64), params, len(frame))
    with pytest.raises(ValueError, match="more than the 300 rows"):
        training.encode_batches(categorical_batches(frame, 64), params, 300)


# --- the reference sample -----------------------------------------------------------------

@pytest.mark.parametrize("size,seed,batch", [(50, 42, 64), (50, 7, 13), (400, 0, 100),
                                             (1, 3, 400)])
def test_seeded_sample_from_batches_equals_pandas_sample(features, size, seed, batch):
    spec_columns = ["age", "workclass", "occupation", "hours-per-week", "native-country"]
    frame = features[2][spec_columns]
    expected = frame.sample(n=size, random_state=seed).reset_index(drop=True)
    sample = SeededSample(len(frame), size, seed, spec_columns)
    for part in categorical_batches(frame, batch):
        sample.add(part)
    got = sample.frame().reset_index(drop=True)  # as the stage keeps its reference
    pd.testing.assert_frame_equal(got, expected)
    assert list(got.dtypes) == list(expected.dtypes)
    assert hash_frame(got) == hash_frame(expected)


# --- the stage ----------------------------------------------------------------------------

def test_stage_gives_the_same_artifact_whatever_the_budget(tmp_path, features, monkeypatch):
    store, manifest, _, _ = features
    # Validation in several chunks, so chunking is exercised on both paths.
    monkeypatch.setattr(training, "EVAL_ROWS", 30)
    seen: list[tuple[bool, bool]] = []
    real_train = training.train

    def spying_train(train_rows, val_rows, *args, **kwargs):
        seen.append((train_rows.on_disk, val_rows.on_disk))
        return real_train(train_rows, val_rows, *args, **kwargs)

    releases = []
    real_release = training.EncodedRows.release
    monkeypatch.setattr("pipelines.stages.training.train", spying_train)
    monkeypatch.setattr(training.EncodedRows, "release",
                        lambda self: (releases.append(1), real_release(self)))
    progress = []
    results, hashes = {}, {}
    for name, budget in (("tiny", TINY), ("large", LARGE)):
        spec = adult_spec(tmp_path / name, budget)
        results[name] = build(spec, store, manifest, tmp_path, name,
                              on_progress=progress.append)
        hashes[name] = save_result(ArtifactStore(tmp_path / f"out-{name}"),
                                   results[name]).content_hash
        assert not list((tmp_path / name).glob("encoded-*")), "the scratch files are removed"
    assert seen == [(True, True), (False, False)], "tiny trains from disk, large from memory"
    assert releases, "reading from disk lets go of the pages it read"
    tiny, large = results["tiny"], results["large"]
    assert tiny.files["weights.safetensors"] == large.files["weights.safetensors"]
    assert tiny.files["training.json"] == large.files["training.json"]
    assert hash_frame(tiny.frames["reference"]) == hash_frame(large.frames["reference"])
    assert hashes["tiny"] == hashes["large"]

    # The reference is what sampling the whole train split in memory gave.
    spec = adult_spec(tmp_path / "tiny", TINY)
    train_rows, = read_splits(store, manifest, "features", ("train",), by=SPLIT_COLUMN,
                              columns=[*spec.columns, SPLIT_COLUMN])
    old = train_rows[[*spec.columns]].sample(n=50, random_state=spec.training.seed)
    pd.testing.assert_frame_equal(tiny.frames["reference"], old.reset_index(drop=True))


def test_stage_weights_equal_training_on_whole_frames(tmp_path, features):
    """The encoded data gives the weights `train` gives for the frames themselves."""
    from pipelines.stages.features import load_params

    store, manifest, frame, _ = features
    spec = adult_spec(tmp_path, TINY)
    result = build(spec, store, manifest, tmp_path, "ckpt")
    params = load_params(store, manifest)  # as stored: its keys sorted
    direct = training.train(frame[frame[SPLIT_COLUMN] == "train"],
                            frame[frame[SPLIT_COLUMN] == "val"], params, spec.training,
                            threads=1)
    assert result.files["weights.safetensors"] == training.weights_bytes(direct.state_dict)


def test_scratch_files_are_removed_when_training_fails(tmp_path, features):
    store, manifest, _, _ = features
    spec = adult_spec(tmp_path, TINY)

    class Stop(Exception):
        pass

    def stop(row):
        raise Stop

    with pytest.raises(Stop):
        build(spec, store, manifest, tmp_path, "ckpt", on_epoch=stop)
    assert not list((tmp_path / "ckpt").glob("encoded-*"))
    assert (tmp_path / "ckpt" / "checkpoint.pt").exists(), "the checkpoint stays to resume"


def test_search_runs_its_trials_on_data_read_from_disk(tmp_path, features):
    store, manifest, _, _ = features
    chosen = {}
    for name, budget in (("tiny", TINY), ("large", LARGE)):
        spec = adult_spec(tmp_path / name, budget, tuning__n_trials=2, tuning__pruner="none",
                          tuning__search_space__epochs={"low": 1, "high": 2})
        result = build(spec, store, manifest, tmp_path, name,
                       study_url=f"sqlite:///{tmp_path / name / 'optuna.db'}",
                       study_name="budget")
        assert result.metadata["trials_complete"] == 2
        chosen[name] = (result.metadata["best_params"], result.files["weights.safetensors"])
    assert chosen["tiny"] == chosen["large"]
