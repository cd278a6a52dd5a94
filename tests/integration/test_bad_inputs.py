"""Bad raw input through real Dagster runs after a good one: a clear error, nothing lost."""

import io

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
    return {
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
        source.write_bytes(data)
        result = chain.run()
        assert not result.success, kind
        text = failure_text(result)
        assert str(source) in text, (kind, text)
        for fragment in expected:
            assert fragment in text, (kind, fragment, text)
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
    source.write_bytes(_csv(frame))
    chain = chain_factory(fast_adult_spec(tmp_path, source))
    result = chain.run()
    assert result.success
    meta = materializations(result)["validated_features"]
    assert meta["quarantined_rows"] == 2
    store = chain.store()
    manifest = store.get_manifest(meta["content_hash"])
    quarantine = pd.read_parquet(io.BytesIO(store.get_bytes(manifest.files["quarantine"])))
    assert dict(zip(quarantine["__row"], quarantine["__reasons"])) == {
        5: "age: values within [16.0, 100.0]", 9: "sex: values in the allowed set"}
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks["value_ranges"] is False and checks["allowed_categories"] is False
    assert checks["null_limits"] is True and checks["failed_row_share"] is True
