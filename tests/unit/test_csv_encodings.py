"""CSV text in the encodings a spec may name is read as written (the header from a prefix,
the rows straight from the bytes), and an invalid byte is named with its line."""

import pytest

from pipelines.ingest import InputError, parse_raw


@pytest.mark.parametrize("encoding, text", [
    ("utf-8", "\ufeffcity,n\nZürich,1\n\"Bern, BE\", 2\n"),
    ("latin-1", "city,n\nZürich,1\n\"Bern, BE\", 2\n"),
    ("utf-16", "city,n\nZürich,1\n\"Bern, BE\", 2\n"),
    ("cp1252", "city,n\r\n€-land,1\r\n\"Bern, BE\", 2\r\n"),
])
def test_each_encoding_reads_header_and_rows_as_written(encoding, text):
    frame = parse_raw(text.encode(encoding), fmt="csv", file="towns.csv", encoding=encoding,
                      na_values=[""], expected_columns=2)
    assert list(frame.columns) == ["city", "n"]
    first = "€-land" if encoding == "cp1252" else "Zürich"
    assert frame.values.tolist() == [[first, "1"], ["Bern, BE", " 2"]]


def test_an_invalid_byte_far_into_the_file_is_named_with_its_line(monkeypatch):
    from pipelines import ingest

    monkeypatch.setattr(ingest, "_DECODE_CHUNK", 4099)  # checked in many chunks
    rows = "".join(f"town{i},{i}\n" for i in range(200_000))
    data = ("city,n\n" + rows).encode() + b"caf\xe9,1\n"
    with pytest.raises(InputError) as err:
        parse_raw(data, fmt="csv", file="towns.csv", encoding="utf-8", na_values=[""],
                  expected_columns=2)
    assert f"byte {len(data) - 4} (line 200002) is not valid utf-8" in str(err.value)
    # A multi-byte character cut by a chunk boundary is still valid.
    text = "city,n\n" + "".join(f"Zürich{i},{i}\n" for i in range(2000))
    frame = parse_raw(text.encode(), fmt="csv", file="towns.csv", encoding="utf-8",
                      na_values=[""], expected_columns=2)
    assert len(frame) == 2000 and frame["city"].iloc[-1] == "Zürich1999"
