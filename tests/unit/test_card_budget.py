"""quantized_weights and model_card under a memory budget: the same artifacts at any budget.

A tiny budget streams the splits 64 rows at a time; a large one reads each split in one
batch. Models, parity, card, gate and predictions must be identical bit for bit; the int8
calibration rows are pandas' seeded sample of the training split, gathered from the
stream; the baselines are fitted on at most a fixed number of rows, a seeded sample of a
larger split, and the card says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import baselines, quantize
from pipelines.artifacts import iter_frame, read_file, read_frame, read_splits, save_result
from pipelines.features import LABEL_COLUMN, ROW_COLUMN, SPLIT_COLUMN, seeded_sample
from pipelines.spec import load_spec
from pipelines.store import ArtifactStore
from tests.conftest import ADULT_CSV, fast_adult_spec

ROWS = 600
TINY, LARGE = "1MB", "8GB"  # 64-row batches; one batch per split


def _spec(folder: Path, source: Path, budget: str):
    folder.mkdir(parents=True, exist_ok=True)
    return load_spec(fast_adult_spec(folder, source, resources__memory_budget=budget,
                                     training__hidden=[8]))


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Features and trained weights of the first ROWS Adult rows, in one store."""
    from pipelines.stages.features import build_features
    from pipelines.stages.raw import snapshot_source
    from pipelines.stages.training import build_trained_weights

    tmp = tmp_path_factory.mktemp("card_budget")
    source = tmp / "adult.csv"
    source.write_text("".join(ADULT_CSV.read_text().splitlines(keepends=True)[:ROWS + 1]))
    spec = _spec(tmp / "large", source, LARGE)
    store = ArtifactStore(tmp / "store")
    raw = save_result(store, snapshot_source(spec, store))
    features = save_result(store, build_features(spec, store, raw))
    weights = save_result(store, build_trained_weights(
        spec, store, features, threads=1, device="cpu", checkpoint_dir=tmp / "checkpoints"))
    return {"tmp": tmp, "source": source, "store": store, "features": features,
            "weights": weights}


def _run(chain, budget: str, champion=None):
    """quantized_weights then model_card at a budget; their manifests and card result."""
    from pipelines.stages.model_card import build_card
    from pipelines.stages.quantization import build_variants

    spec = _spec(chain["tmp"] / budget, chain["source"], budget)
    store, features, weights = chain["store"], chain["features"], chain["weights"]
    variants = save_result(store, build_variants(spec, store, features, weights))
    lineage = {"validated_features": features.content_hash,
               "trained_weights": weights.content_hash,
               "quantized_weights": variants.content_hash}
    card = build_card(spec, store, features, weights, variants, lineage,
                      champion=champion(variants) if champion else None)
    return variants, save_result(store, card), card


def _assert_identical(chain, champion=None):
    """Both stages at a tiny and a large budget; returns the large run's card result."""
    from pipelines.resources import batch_rows, memory_budget
    from pipelines.stages.model_card import ROW_BYTES

    tiny_spec = _spec(chain["tmp"] / "check", chain["source"], TINY)
    assert batch_rows(memory_budget(tiny_spec), ROW_BYTES) == 64, "the tiny run streams"
    small_v, small_c, _ = _run(chain, TINY, champion)
    large_v, large_c, card = _run(chain, LARGE, champion)
    # Same content hashes: every model file, parity.json, card.json, gate.json, plots and
    # the predictions frame.
    assert small_v.files == large_v.files
    assert small_v.content_hash == large_v.content_hash
    assert small_c.files == large_c.files
    assert small_c.content_hash == large_c.content_hash
    store = chain["store"]
    assert read_file(store, small_c, "card.json") == read_file(store, large_c, "card.json")
    return large_v, large_c, card


def test_both_stages_store_the_same_artifacts_at_any_budget(chain):
    variants, card_manifest, card = _assert_identical(chain)
    store, features = chain["store"], chain["features"]
    assert {"model_int8.onnx", "model_fp16.onnx", "parity.json"} <= set(variants.files)
    # The predictions frame: the test rows in stored order, their labels, each variant.
    test = read_splits(store, features, "features", ("test",), by=SPLIT_COLUMN,
                       columns=[ROW_COLUMN, LABEL_COLUMN, SPLIT_COLUMN])[0]
    predictions = read_frame(store, card_manifest, "predictions")
    published = variants.info["published"]
    assert list(predictions.columns) == [ROW_COLUMN, LABEL_COLUMN,
                                         *(f"p_{v}" for v in published)]
    pd.testing.assert_frame_equal(predictions[[ROW_COLUMN, LABEL_COLUMN]],
                                  test[[ROW_COLUMN, LABEL_COLUMN]])
    assert predictions["p_fp32"].dtype == "float64"
    # Below the cap the baselines use every training row, and the settings are unchanged.
    stored = json.loads(read_file(store, card_manifest, "card.json"))
    for name, entry in stored["baselines"].items():
        assert entry["train_rows"] == features.info["rows"]["train"]
        assert entry["settings"] == baselines.SETTINGS[name]
    assert stored["baselines"][baselines.BOOSTING]["validation_rows"] == \
        features.info["rows"]["val"]
    assert card.metadata["test_rows"] == len(test)


def test_capped_baselines_and_short_score_chunks_are_budget_independent(chain, monkeypatch):
    """A cap under both splits' sizes (a seeded sample of each), and session calls that
    cut across the streamed batches: still the same artifacts at any budget."""
    rows = chain["features"].info["rows"]
    cap = 50
    assert rows["train"] > cap and rows["val"] > cap
    monkeypatch.setattr(baselines, "BASELINE_MAX_TRAIN_ROWS", cap)
    monkeypatch.setattr(quantize, "SCORE_ROWS", 37)
    _, card_manifest, _ = _assert_identical(chain)
    store = chain["store"]
    stored = json.loads(read_file(store, card_manifest, "card.json"))
    markdown = read_file(store, card_manifest, "card.md").decode()
    for entry in stored["baselines"].values():
        assert entry["train_rows"] == cap
        note = f"fitted on a seeded sample of {cap:,} of the {rows['train']:,} training rows"
        assert note in entry["settings"] and note in markdown
    boosting = stored["baselines"][baselines.BOOSTING]
    assert boosting["validation_rows"] == cap
    assert (f"early stopping on a seeded sample of {cap} of the {rows['val']} validation rows"
            in boosting["settings"])


@pytest.mark.parametrize("extra_column", [False, True])
def test_the_champion_is_scored_on_the_same_rows_at_any_budget(chain, extra_column):
    """A champion is scored in the same pass; one needing a column the rows lack is not."""
    from pipelines.artifacts import StageResult
    from pipelines.deploy import DeployedModel, ModelInputs

    store = chain["store"]

    def champion(variants):
        params = json.loads(read_file(store, variants, "preprocess.json"))
        if extra_column:
            params["numeric"] = params["numeric"] | {"shoe_size": {"median": 0.0}}
        manifest = save_result(store, StageResult(kind="quantized_weights", files={
            "preprocess.json": json.dumps(params).encode(),
            "model_fp32.onnx": read_file(store, variants, "model_fp32.onnx")}))
        return DeployedModel(version=7, trained_weights="b3:tw", quantized_weights=(
            manifest.content_hash), model_card="b3:card", inputs=ModelInputs(), variants={})

    _, card_manifest, card = _assert_identical(chain, champion)
    stored = json.loads(read_file(store, card_manifest, "card.json"))
    assert card.metadata["champion_version"] == "7"
    if extra_column:
        assert stored["champion"]["missing_columns"] == ["shoe_size"]
        assert stored["champion"]["metrics"] is None
    else:
        # The same fp32 model: the champion's metrics and fairness are the candidate's.
        assert stored["champion"]["metrics"] == stored["variants"]["fp32"]["metrics"]
        assert stored["champion"]["fairness"] == stored["fairness"]


def _plain(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categorical columns as object strings, None for missing (as a plain read gives)."""
    out = frame.copy()
    for c in categorical:
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def _split(chain, split: str, batch: int, categories: bool, columns=None):
    return iter_frame(chain["store"], chain["features"], "features", batch_rows=batch,
                      columns=columns, where=(SPLIT_COLUMN, split), categories=categories)


@pytest.mark.parametrize("n", [128, 10_000])
def test_the_calibration_gather_is_pandas_seeded_sample(chain, n):
    """Rows, order, values, index and dtypes: the int8 model is calibrated on the rows
    ``train_rows.sample(n, random_state=0)`` picked when the split was read whole."""
    from pipelines.stages.quantization import CALIBRATION_SEED

    store, features = chain["store"], chain["features"]
    columns = [*load_spec(next(chain["tmp"].glob("large/*.yaml"))).columns, SPLIT_COLUMN]
    train = read_splits(store, features, "features", ("train",), by=SPLIT_COLUMN,
                        columns=columns)[0]
    expected = train.sample(n=min(n, len(train)), random_state=CALIBRATION_SEED)
    for batch, categories in ((64, True), (7, False), (100_000, True), (100_000, False)):
        got = seeded_sample(_split(chain, "train", batch, categories, columns),
                                     len(train), n, seed=CALIBRATION_SEED)
        pd.testing.assert_frame_equal(got, expected)
        # Missing text is None, as in the plain read (the frame check lets NaN pass).
        assert got.map(type).equals(expected.map(type))
    with pytest.raises(ValueError, match="expected"):
        seeded_sample(_split(chain, "train", 64, False, columns), len(train) + 1, n)


def test_baseline_rows_are_a_seeded_sample_above_the_cap_and_fit_as_plain_rows(chain):
    store, features = chain["store"], chain["features"]
    params = json.loads(read_file(store, features, "preprocess.json"))
    numeric, categorical = list(params["numeric"]), list(params["categorical"])
    columns = [*numeric, *categorical, LABEL_COLUMN]
    train, val, test = read_splits(store, features, "features", ("train", "val", "test"),
                                   by=SPLIT_COLUMN, columns=columns)

    def gather(split, batch, rows, cap=None, seed=0):
        return baselines.gather_rows(_split(chain, split, batch, True, columns), rows,
                                     numeric=numeric, categorical=categorical,
                                     label=LABEL_COLUMN, seed=seed, cap=cap)

    # Under the cap: every row, in order, with compact columns holding the same values.
    whole, sample = gather("train", 64, len(train))
    assert sample == baselines.RowSample(len(train), len(train)) and not sample.sampled
    assert all(isinstance(whole[c].dtype, pd.CategoricalDtype) for c in categorical)
    pd.testing.assert_frame_equal(_plain(whole, categorical), train)
    # Over it: the rows at the seed's positions, in stored order, whatever the batches.
    capped, sample = gather("train", 64, len(train), cap=100, seed=4)
    assert sample == baselines.RowSample(100, len(train)) and sample.sampled
    positions = np.sort(np.random.default_rng(4).choice(len(train), 100, replace=False))
    pd.testing.assert_frame_equal(_plain(capped, categorical),
                                  train.iloc[positions].reset_index(drop=True))
    pd.testing.assert_frame_equal(gather("train", 7, len(train), cap=100, seed=4)[0], capped)
    assert not gather("train", 64, len(train), cap=100, seed=5)[0].equals(capped)

    # Compact rows (categoricals, batch-scored test rows) give the plain frames' fits.
    plain = {b.name: b.probabilities for b in baselines.fit_baselines(
        train, val, test, numeric, categorical, LABEL_COLUMN)}
    fitted = baselines.fit(whole, gather("val", 64, len(val))[0], numeric, categorical,
                           LABEL_COLUMN)
    parts = [fitted.predict(b) for b in _split(chain, "test", 64, True, columns) if len(b)]
    for name, p in plain.items():
        np.testing.assert_array_equal(np.concatenate([q[name] for q in parts]), p)


def test_fairness_from_streamed_group_codes_equals_fairness_from_names():
    from pipelines.fairness import GroupCoder, assess, assess_codes

    frame = pd.read_csv(ADULT_CSV).iloc[:1500]
    rng = np.random.default_rng(2)
    y = (frame["income-per-year"] == ">50K").to_numpy(dtype=int)
    p = np.clip(0.4 * y + rng.random(len(y)) * 0.7, 0, 1)
    for column in ("race", "workclass"):
        values = frame[column]
        assert values.isna().any() or column == "race"
        names = values.astype(object).where(values.notna(), "missing")
        expected = assess(y, p, names, min_group_size=20, bootstrap=100, seed=1)
        coder = GroupCoder()
        for start in range(0, len(values), 64):
            coder.add(values.iloc[start:start + 64].astype("category"))
        codes, groups = coder.finish()
        assert list(groups) == sorted(set(names))
        got = assess_codes(y, p, codes, groups, min_group_size=20, bootstrap=100, seed=1)
        assert json.dumps(got) == json.dumps(expected)


def test_scoring_in_fixed_chunks_does_not_depend_on_how_rows_arrive(chain):
    """One-row batches (a filtered batch can hold one test row) give the probabilities of
    the whole split scored at once: ONNX Runtime's one-row path can differ in the last bits,
    so rows are scored in fixed chunks, never batch by batch."""
    store = chain["store"]
    weights = chain["weights"]
    params = json.loads(read_file(store, weights, "preprocess.json"))
    sess = quantize.session(read_file(store, weights, "model_fp32.onnx"))
    test = read_splits(store, chain["features"], "features", ("test",), by=SPLIT_COLUMN)[0]
    whole = quantize.predict_rows(sess, test, params)

    class Broken:
        def get_inputs(self):
            return sess.get_inputs()

        def run(self, *args):
            raise RuntimeError("cannot run")

    scorer = quantize.ChunkedScorer({"fp32": sess, "broken": Broken()}, params, head_rows=5,
                                    chunk_rows=16, tolerate=["broken"])
    for batch in _split(chain, "test", 64, True):
        for i in range(len(batch)):
            scorer.add(batch.iloc[i:i + 1])
    scored = scorer.finish()
    np.testing.assert_array_equal(scored["fp32"], whole)
    assert set(scored) == {"fp32"} and str(scorer.failures["broken"]) == "cannot run"
    assert len(scorer.head["numeric"]) == 5
    strict = quantize.ChunkedScorer({"broken": Broken()}, params)
    strict.add(test)
    with pytest.raises(RuntimeError, match="cannot run"):
        strict.finish()
