import io
import os
import time

import pandas as pd
import pytest

from pipelines.ingest import InputError, StatCache, parse_raw


def csv_bytes(text: str) -> bytes:
    return text.encode()


def test_stat_cache_never_rereads_an_unchanged_file(tmp_path, monkeypatch):
    f = tmp_path / "data.csv"
    f.write_text("a,b\n1,2\n")
    cache = StatCache(tmp_path / "stat.db")
    h1, cached1 = cache.file_hash(f)
    calls = []
    import pipelines.ingest as ingest

    monkeypatch.setattr(ingest, "hash_file", lambda p: calls.append(p) or "b3:never")
    h2, cached2 = cache.file_hash(f)
    assert (h1, cached1, cached2, calls) == (h2, False, True, [])
    monkeypatch.undo()
    time.sleep(0.01)
    f.write_text("a,b\n1,3\n")
    h3, cached3 = cache.file_hash(f)
    assert h3 != h1 and not cached3


@pytest.mark.parametrize("data,rule", [
    (b"", "not empty"),
    (b"a,b\n", "not empty"),
    (b"a,b,a\n1,2,3\n", "unique header"),
    (b"a,b\n1,\xff\xfe\n", "encoding"),
])
def test_csv_problems(data, rule):
    with pytest.raises(InputError) as err:
        parse_raw(data, fmt="csv", file="in.csv")
    assert err.value.rule == rule and "in.csv" in str(err.value)


def test_encoding_error_names_the_line():
    with pytest.raises(InputError, match="line 3"):
        parse_raw(b"a,b\n1,2\n3,\xe9\n", fmt="csv", file="in.csv")


def test_truncated_parquet():
    buf = io.BytesIO()
    pd.DataFrame({"a": range(1000)}).to_parquet(buf)
    data = buf.getvalue()
    with pytest.raises(InputError) as err:
        parse_raw(data[: len(data) // 2], fmt="parquet", file="in.parquet")
    assert err.value.rule == "parquet format"


def test_csv_reads_strings_and_missing():
    frame = parse_raw(b"a,b\n1,?\n,x\n", fmt="csv", file="f", na_values=["", "?"])
    assert frame["a"].tolist()[0] == "1" and frame["b"].isna().tolist() == [True, False]
    assert pd.isna(frame["a"].iloc[1])


def test_missing_source_says_what_to_do(tmp_path):
    from pipelines.ingest import local_source_path

    with pytest.raises(InputError, match="source.path"):
        local_source_path(str(tmp_path / "absent.csv"))
    assert os.path.exists(tmp_path)


def test_csv_with_a_declared_delimiter_parses():
    frame = parse_raw(b"a;b\n1;x\n2;y\n", fmt="csv", file="f", delimiter=";",
                      expected_columns=2)
    assert list(frame.columns) == ["a", "b"] and frame["b"].tolist() == ["x", "y"]


def test_one_column_is_fine_when_the_spec_expects_one_or_none():
    assert parse_raw(b"a\n1\n", fmt="csv", file="f", expected_columns=None).shape == (1, 1)


def test_a_readable_file_passes_the_source_checks(tmp_path):
    from pipelines.ingest import local_source_path

    f = tmp_path / "data.csv"
    f.write_text("a,b\n1,2\n")
    assert local_source_path(f"file://{f}") == f
