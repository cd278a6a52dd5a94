"""A header that names a column twice: ``source.duplicate_columns`` decides what happens.

``error`` refuses the file (saying how to choose otherwise), ``keep_first`` reads the first
copy, ``keep_identical`` reads one copy once every copy of a column the spec reads has
matched it in every batch, and fails naming the column and the first row that differs.
"""

import csv
import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.ingest import InputError, parse_raw, read_raw_batches
from tests.conftest import REPO

COMPAS_SAMPLE = REPO / "tests" / "data" / "compas_sample.csv"


def _read_all(data: bytes, fmt: str = "csv", batch_rows: int = 2, **kwargs) -> pd.DataFrame:
    """Every batch of a small file, read a few rows at a time."""
    _, batches = read_raw_batches(io.BytesIO(data), fmt=fmt, file="in." + fmt,
                                  batch_rows=batch_rows, **kwargs)
    return pd.concat(list(batches), ignore_index=True)


def _parquet(columns: list[pa.Array], names: list[str]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns, names=names), buf)
    return buf.getvalue()


# `a` is repeated and its copies agree; `b` is repeated and its copies differ at row 3.
CSV = b"a,b,c,a,b\n1,x,p,1,x\n2,y,q,2,y\n3,z,r,3,z\n4,w,s,4,DIFF\n5,v,t,5,v\n"


def test_error_names_the_repeats_and_how_to_choose_a_policy():
    with pytest.raises(InputError) as err:
        parse_raw(CSV, fmt="csv", file="in.csv")
    message = str(err.value)
    assert err.value.rule == "unique header" and err.value.column == "a"
    assert message.startswith("in.csv, column 'a'")
    assert "['a', 'b']" in message and "source.duplicate_columns" in message
    assert "keep_first" in message and "keep_identical" in message


def test_keep_first_reads_the_first_copy_of_each_name():
    frame = _read_all(CSV, duplicate_columns="keep_first")
    assert list(frame.columns) == ["a", "b", "c"]
    assert frame["b"].tolist() == ["x", "y", "z", "w", "v"]
    assert frame["a"].tolist() == ["1", "2", "3", "4", "5"]


def test_keep_first_schema_matches_the_batches():
    schema, batches = read_raw_batches(io.BytesIO(CSV), fmt="csv", file="in.csv", batch_rows=10,
                                       duplicate_columns="keep_first")
    assert schema.names == ["a", "b", "c"] == list(next(batches).columns)


def test_keep_identical_fails_at_the_first_row_that_differs_in_a_later_batch():
    # Batches of two rows: the copies of `b` agree in the first batch and differ in the
    # second, so the row number counts from the start of the file.
    schema, batches = read_raw_batches(io.BytesIO(CSV), fmt="csv", file="in.csv", batch_rows=2,
                                       duplicate_columns="keep_identical")
    assert schema.names == ["a", "b", "c"]
    first = next(batches)
    assert first["b"].tolist() == ["x", "y"]
    with pytest.raises(InputError) as err:
        list(batches)
    message = str(err.value)
    assert err.value.rule == "repeated columns identical" and err.value.column == "b"
    assert message.startswith("in.csv, column 'b'")
    assert "row 3" in message and "'DIFF'" in message and "'w'" in message
    assert "columns 2, 5" in message
    assert "keep_first" in message and "rename" in message
    assert "\n" not in message


def test_keep_identical_reads_one_copy_when_the_copies_agree():
    data = b"a,b,a\n1,,1\n2,y,2\n,z,\n"
    frame = _read_all(data, duplicate_columns="keep_identical")
    assert list(frame.columns) == ["a", "b"]
    # Missing in both copies counts as the same value.
    assert frame["a"].tolist()[:2] == ["1", "2"] and pd.isna(frame["a"].iloc[2])


def test_keep_identical_compares_text_as_written():
    with pytest.raises(InputError, match=r"row 0 \('1.0' against '1'\)"):
        _read_all(b"a,a\n1,1.0\n", duplicate_columns="keep_identical")


def test_keep_identical_ignores_copies_of_columns_the_spec_does_not_read():
    # `b` differs but the spec reads only `a` and `c`: the first copy of `b` is kept, as
    # unlisted columns are ignored.
    frame = _read_all(CSV, duplicate_columns="keep_identical", read_columns={"a", "c"})
    assert list(frame.columns) == ["a", "b", "c"] and frame["b"].iloc[3] == "w"
    with pytest.raises(InputError, match="column 'b'"):
        _read_all(CSV, duplicate_columns="keep_identical", read_columns={"a", "b"})


def test_a_real_column_named_like_a_pandas_copy_is_not_confused_with_one():
    # pandas would call the second `a` "a.2" here, as "a.1" is taken by a real column.
    data = b"a,b,a,a.1\n1,2,1,real\n"
    frame = _read_all(data, duplicate_columns="keep_identical")
    assert list(frame.columns) == ["a", "b", "a.1"]
    assert frame.iloc[0].tolist() == ["1", "2", "real"]


def test_names_repeated_after_stripping_spaces_are_repeats():
    frame = _read_all(b"a , a\n1,2\n", duplicate_columns="keep_first")
    assert list(frame.columns) == ["a"] and frame["a"].tolist() == ["1"]


def test_parquet_duplicate_field_names_follow_the_policy():
    data = _parquet([pa.array([1, 2, None, 4]), pa.array(["p", "q", "r", "s"]),
                     pa.array([1, 2, None, 5])], ["x", "y", "x"])
    with pytest.raises(InputError) as err:
        parse_raw(data, fmt="parquet", file="in.parquet")
    assert err.value.rule == "unique header" and "source.duplicate_columns" in str(err.value)

    first = _read_all(data, fmt="parquet", duplicate_columns="keep_first")
    assert list(first.columns) == ["x", "y"]
    # Integers stay pandas' nullable integers, as for a file without repeats.
    assert str(first["x"].dtype) == "Int64" and first["x"].tolist()[:2] == [1, 2]

    with pytest.raises(InputError) as err:
        _read_all(data, fmt="parquet", duplicate_columns="keep_identical")
    assert err.value.column == "x" and "row 3 (5 against 4)" in str(err.value)

    agreeing = _parquet([pa.array([1, None]), pa.array([1, None])], ["x", "x"])
    schema, batches = read_raw_batches(io.BytesIO(agreeing), fmt="parquet", file="in.parquet",
                                       batch_rows=1, duplicate_columns="keep_identical")
    assert schema.names == ["x"] and schema.field("x").type == pa.int64()
    assert [b["x"].tolist() for b in batches] == [[1], [pd.NA]]


def test_compas_sample_repeats_two_columns_with_identical_values():
    header = next(csv.reader(io.StringIO(COMPAS_SAMPLE.read_text())))
    assert sorted({n for n in header if header.count(n) > 1}) == ["decile_score",
                                                                  "priors_count"]
    data = COMPAS_SAMPLE.read_bytes()
    with pytest.raises(InputError, match="'decile_score', 'priors_count'"):
        parse_raw(data, fmt="csv", file="compas.csv")
    frame = _read_all(data, batch_rows=300, duplicate_columns="keep_identical")
    assert len(frame) == 2000 and len(frame.columns) == len(header) - 2
    assert frame.columns.tolist().count("priors_count") == 1
    assert frame["priors_count"].tolist() == pd.read_csv(COMPAS_SAMPLE, dtype=str)[
        "priors_count"].tolist()


def test_compas_sample_with_one_copy_changed_fails_naming_the_row():
    rows = list(csv.reader(io.StringIO(COMPAS_SAMPLE.read_text())))
    second = [i for i, n in enumerate(rows[0]) if n == "priors_count"][1]
    rows[1235][second] = "41"  # data row 1234
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    with pytest.raises(InputError) as err:
        _read_all(buf.getvalue().encode(), batch_rows=500, duplicate_columns="keep_identical")
    assert err.value.column == "priors_count" and "row 1234 ('41'" in str(err.value)
