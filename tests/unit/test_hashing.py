import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.hashing import canonical_json, hash_frame, hash_json


def frame():
    return pd.DataFrame({"a": [1.0, -0.0, np.nan], "b": ["x", None, "zz"], "c": [1, 2, 3]})


def test_frame_hash_ignores_index_and_file_format():
    df = frame()
    reindexed = df.set_axis([10, 11, 12])
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=True), buf, compression="zstd")
    from_parquet = pd.read_parquet(io.BytesIO(buf.getvalue()))
    from_parquet = from_parquet.reset_index(drop=True)
    assert hash_frame(df) == hash_frame(reindexed) == hash_frame(from_parquet)


def test_frame_hash_sees_values_types_and_names():
    base = hash_frame(frame())
    changed_value = frame().assign(c=[1, 2, 4])
    changed_type = frame().assign(c=[1.0, 2.0, 3.0])
    renamed = frame().rename(columns={"c": "d"})
    reordered = frame()[["b", "a", "c"]]
    null_vs_empty = frame().assign(b=["x", "", "zz"])
    hashes = {hash_frame(f) for f in (changed_value, changed_type, renamed, reordered,
                                      null_vs_empty)}
    assert base not in hashes and len(hashes) == 5


def test_float_normalisation():
    a = pd.DataFrame({"x": [0.0, float("nan")]})
    b = pd.DataFrame({"x": [-0.0, np.float64(np.nan) * -1]})
    assert hash_frame(a) == hash_frame(b)


def test_string_chunks_and_slices_hash_alike():
    df = pd.DataFrame({"s": ["alpha", "beta", "gamma", "delta"]})
    table = pa.Table.from_pandas(df, preserve_index=False)
    sliced = pa.concat_tables([table.slice(0, 1), table.slice(1, 3)])
    from pipelines.hashing import hash_table

    assert hash_table(sliced) == hash_table(table) == hash_frame(df)


def test_canonical_json_is_order_free():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
    assert hash_json({"x": float("nan")}) == hash_json({"x": float("nan")})


def test_float32_normalisation_and_integer_nulls():
    a = pd.DataFrame({"x": np.array([0.0, 1.5], dtype="float32")})
    b = pd.DataFrame({"x": np.array([-0.0, 1.5], dtype="float32")})
    assert hash_frame(a) == hash_frame(b)
    with_null = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")})
    zero = pd.DataFrame({"n": pd.array([1, 0, 3], dtype="Int64")})
    assert hash_frame(with_null) != hash_frame(zero)


def test_a_table_hashed_in_batches_hashes_as_whole_timestamps_and_gaps_included():

    from pipelines.hashing import FrameHasher, hash_table

    frame = pd.DataFrame({
        "when": pd.to_datetime(["2020-01-01", None, "2021-05-05"] * 5),
        "x": [1.5, float("nan"), -0.0] * 5, "c": ["a", None, "b"] * 5,
        "n": pd.array([1, None, 3] * 5, dtype="Int64")})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for rows in (1, 2, 4, 15):
        hasher = FrameHasher()
        for batch in table.to_batches(max_chunksize=rows):
            hasher.update(batch)
        assert hasher.hexdigest() == hash_table(table), rows
    later = frame.assign(when=frame["when"] + pd.Timedelta(seconds=1))
    assert hash_table(pa.Table.from_pandas(later, preserve_index=False)) != hash_table(table)
