"""Bad raw input through real Dagster runs after a good one: a clear error, nothing lost."""

import gzip
import io
import json

import pandas as pd
import pytest

from tests.conftest import CHAIN, failure_text, fast_adult_spec, materializations

pytestmark = pytest.mark.slow


def _frame(sample) -> pd.DataFrame:
    return pd.read_csv(sample, dtype=str, keep_default_na=False).reset_index(drop=True)


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _poison(frame: pd.DataFrame, column: str, value: str, share: float = 0.3) -> bytes:
    frame = frame.copy()
    frame.loc[: int(len(frame) * share), column] = value
    return _csv(frame)


def _mutations(frame: pd.DataFrame) -> dict[str, tuple[bytes, list[str]]]:
    dup = _csv(frame).decode().split("\n", 1)
    duplicate_header = (dup[0].replace("workclass", "age") + "\n" + dup[1]).encode()
    good = _csv(frame)
    cut = good.index(b"\n", len(good) // 2)
    bad_encoding = good[:cut] + b"\n33,Private,1,Bachelors,13,Divorced,Sales,Wife,White," \
                                b"Female,0,0,40,Fran\xe7e,<=50K" + good[cut:]
    target_drift = frame.copy()
    target_drift.loc[:59, "income-per-year"] = "unknown"
    wide = frame.copy()
    wide["occupation"] = [f"occupation-{i}" for i in range(len(wide))]
    return {
        # The target is a contract: a few rows outside target.classes (under the 2 % row
        # limit) still fail the run, naming the values and their counts.
        "target outside classes": (_csv(target_drift), [
            "column 'income-per-year': rule 'values in target.classes'",
            "60 rows hold values outside target.classes", "'unknown' (60 rows)",
            "add them to target.classes"]),
        "over-large vocabulary": (_csv(wide), [
            "column 'occupation': rule 'at most 1000 categories'",
            "3000 distinct values among the rows kept, over the cap of 1000",
            "raise columns.occupation.max_categories"]),
        "over-long categories": (_poison(frame, "native-country", "z" * 2000), [
            "rule 'at most 2.0% of rows quarantined'",
            "column 'native-country' broke 'values at most 200 characters",
            "(2000 characters)"]),
        "wrong delimiter": (frame.to_csv(index=False, sep=";").encode(), [
            "rule 'csv delimiter'", "one column where the spec expects 14: is the delimiter "
            "';'?", "source.delimiter"]),
        "gzip under .csv": (gzip.compress(_csv(frame)), [
            "rule 'uncompressed file'", "gzip-compressed bytes under a .csv name",
            "gunzip -c"]),
        "one row": (_csv(frame.head(1)), [
            "rule 'enough rows to split'", "1 row of data", "needs at least 95 rows"]),
        "directory": (None, ["rule 'source is a file'", "is a directory",
                             "point source.path"]),
        "missing column": (_csv(frame.drop(columns=["age"])), ["'age'", "column exists"]),
        "wrong type": (_poison(frame, "age", "forty"), ["'age'", "values are numbers"]),
        "NaN": (_poison(frame, "capital-gain", "NaN"), ["'capital-gain'", "missing"]),
        "inf": (_poison(frame, "hours-per-week", "inf"), ["'hours-per-week'", "infinite"]),
        "out of range": (_poison(frame, "age", "500"), ["'age'", "within [16.0, 100.0]"]),
        "unseen category": (_poison(frame, "sex", "Unknown"), ["'sex'", "allowed set"]),
        "empty file": (b"", ["empty"]),
        "duplicate header": (duplicate_header, ["duplicate column names", "'age'"]),
        "bad encoding": (bad_encoding, ["encoding", "not valid utf-8", "line"]),
    }


def _latest(chain) -> dict:
    out = {}
    for asset in CHAIN:
        event = chain.latest(asset)
        out[asset] = (event.run_id, event.asset_materialization.metadata["content_hash"].value)
    return out


def test_bad_csv_inputs_fail_clearly_and_lose_nothing(tmp_path, adult_sample, chain_factory):
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    chain = chain_factory(fast_adult_spec(tmp_path, source))
    assert chain.run().success
    before = _latest(chain)
    good_frame = _frame(adult_sample)
    for kind, (data, expected) in _mutations(good_frame).items():
        if data is None:  # the source path is a folder
            source.unlink()
            source.mkdir()
        else:
            source.write_bytes(data)
        result = chain.run()
        if data is None:
            source.rmdir()
            source.write_bytes(b"")
        assert not result.success, kind
        text = failure_text(result)
        # The step's message (what the UI shows) starts with the one line a user reads.
        line = text.strip().splitlines()[0]
        assert line.startswith(str(source)), (kind, text)
        for fragment in expected:
            assert fragment in line, (kind, fragment, line)
        assert "Traceback" not in text and len(line) < 600, (kind, line)
        assert _latest(chain) == before, f"{kind} changed a latest materialization"


def test_truncated_parquet_fails_clearly(tmp_path, adult_sample, chain_factory):
    source = tmp_path / "adult.parquet"
    frame = _frame(adult_sample).replace("", None)
    frame.to_parquet(source, index=False)
    chain = chain_factory(fast_adult_spec(tmp_path, source, source__format="parquet"))
    assert chain.run().success
    before = _latest(chain)
    data = source.read_bytes()
    source.write_bytes(data[: len(data) // 2])
    result = chain.run()
    assert not result.success
    text = failure_text(result)
    assert str(source) in text and "Parquet" in text
    assert _latest(chain) == before


def test_a_few_bad_rows_are_quarantined_with_reasons(tmp_path, adult_sample, chain_factory):
    source = tmp_path / "adult.csv"
    frame = _frame(adult_sample)
    frame.loc[5, "age"] = "500"
    frame.loc[9, "sex"] = "Unknown"
    frame.loc[12, "occupation"] = "x" * 1_000_000  # no category list: bounded by max_length
    source.write_bytes(_csv(frame))
    chain = chain_factory(fast_adult_spec(tmp_path, source))
    result = chain.run()
    assert result.success
    meta = materializations(result)["validated_features"]
    assert meta["quarantined_rows"] == 3
    store = chain.store()
    manifest = store.get_manifest(meta["content_hash"])
    quarantine = pd.read_parquet(io.BytesIO(store.get_bytes(manifest.files["quarantine"])))
    assert dict(zip(quarantine["__row"], quarantine["__reasons"])) == {
        5: "age: values within [16.0, 100.0]", 9: "sex: values in the allowed set",
        12: "occupation: values at most 200 characters (columns.occupation.max_length)"}
    # The over-long value is kept in quarantine but never enters the model's vocabulary.
    vocab = json.loads(store.get_bytes(manifest.files["preprocess.json"]))["categorical"]
    assert max(len(v) for values in vocab.values() for v in values) <= 200
    assert len(vocab["occupation"]) < 20
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks["value_ranges"] is False and checks["allowed_categories"] is False
    assert checks["category_limits"] is False
    assert checks["null_limits"] is True and checks["failed_row_share"] is True
    assert checks["target_classes"] is True
