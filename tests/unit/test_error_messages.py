"""Every bad input and spec mistake a user can make ends in one line naming the file,
field or column, the rule broken and what to do (asserted on the text)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from pipelines.artifacts import StageFailure, save_result
from pipelines.ingest import InputError, local_source_path, parse_raw
from pipelines.spec import SpecError, load_spec
from pipelines.stages.features import build_features
from pipelines.stages.raw import snapshot_source
from pipelines.store import ArtifactStore
from tests.conftest import ADULT_CSV, write_spec


def one_line(message: str, *fragments: str) -> str:
    """The message, checked to be one line holding every fragment."""
    assert "\n" not in message and message.strip() == message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.fixture(scope="module")
def adult_rows() -> pd.DataFrame:
    text = "".join(ADULT_CSV.read_text().splitlines(keepends=True)[:401])
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False).reset_index(
        drop=True)


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def features_failure(tmp_path: Path, data: bytes, **overrides) -> str:
    """The first line of the validated_features stage's refusal of ``data``."""
    source = tmp_path / "adult.csv"
    source.write_bytes(data)
    spec = load_spec(write_spec(tmp_path / "adult.yaml", "adult", source, **overrides))
    store = ArtifactStore(tmp_path / "store")
    raw = save_result(store, snapshot_source(spec, store))
    with pytest.raises(StageFailure) as err:
        build_features(spec, store, raw)
    return str(err.value).splitlines()[0]


# --- the source file ---------------------------------------------------------------------

def test_missing_source(tmp_path):
    with pytest.raises(InputError) as err:
        local_source_path(str(tmp_path / "absent.csv"))
    one_line(str(err.value), "absent.csv", "rule 'source exists'", "no such file",
             "check source.path in the dataset spec")


def test_source_is_a_directory(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "adult.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError) as err:
        local_source_path(str(tmp_path / "data"))
    one_line(str(err.value), f"{tmp_path / 'data'}: rule 'source is a file'",
             "is a directory (it holds adult.csv)", "point source.path")


def test_unreadable_source(tmp_path, monkeypatch):
    source = tmp_path / "locked.csv"
    source.write_text("a,b\n1,2\n")
    real_open = open

    def denied(path, *args, **kwargs):
        if str(path) == str(source):  # root reads anything: refuse as chmod 000 would
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(InputError) as err:
        local_source_path(str(source))
    one_line(str(err.value), "locked.csv", "rule 'source readable'", "Permission denied",
             "read permission")


@pytest.mark.parametrize("sep,shown", [(";", "';'"), ("\t", "'\\t'"), ("|", "'|'")])
def test_wrong_delimiter_is_named(adult_rows, sep, shown):
    data = adult_rows.to_csv(index=False, sep=sep).encode()
    with pytest.raises(InputError) as err:
        parse_raw(data, fmt="csv", file="adult.csv", expected_columns=14)
    one_line(str(err.value), "adult.csv: rule 'csv delimiter'",
             f"one column where the spec expects 14: is the delimiter {shown}?",
             f"set source.delimiter: {shown}".capitalize())


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("adult.csv", data)
    return buf.getvalue()


def _zstd(data: bytes) -> bytes:
    # The magic number and a frame header are all the check reads.
    return b"\x28\xb5\x2f\xfd" + data


@pytest.mark.parametrize("pack,what,command", [
    (gzip.compress, "gzip-compressed", "gunzip -c"),
    (_zip, "zip-compressed", "unzip -p"),
    (bz2.compress, "bzip2-compressed", "bunzip2 -c"),
    (lzma.compress, "xz-compressed", "xz -dc"),
    (_zstd, "zstd-compressed", "zstd -dc"),
])
def test_compressed_bytes_under_a_csv_name(adult_rows, pack, what, command):
    with pytest.raises(InputError) as err:
        parse_raw(pack(_csv(adult_rows)), fmt="csv", file="data/adult.csv")
    one_line(str(err.value), "data/adult.csv: rule 'uncompressed file'",
             f"{what} bytes under a .csv name", f"`{command} adult.csv > plain.csv`",
             "point source.path at the plain file")


def test_parquet_bytes_under_a_csv_name(adult_rows):
    buf = io.BytesIO()
    adult_rows.to_parquet(buf)
    with pytest.raises(InputError) as err:
        parse_raw(buf.getvalue(), fmt="csv", file="adult.csv")
    one_line(str(err.value), "adult.csv: rule 'csv format'", "Parquet bytes",
             "set source.format: parquet")


@pytest.mark.parametrize("data,fragments", [
    (b"", ["rule 'not empty'", "the file is empty (0 bytes)", "re-export the data"]),
    (b"  \n\n", ["rule 'not empty'", "the file is empty (4 bytes, all blank)"]),
    (b"a,b,c\n", ["rule 'not empty'", "header (3 columns) but no data rows",
                  "re-export the data with its rows"]),
])
def test_empty_file_and_header_only(data, fragments):
    with pytest.raises(InputError) as err:
        parse_raw(data, fmt="csv", file="in.csv")
    one_line(str(err.value), "in.csv", *fragments)


def test_unparseable_csv_is_one_line():
    with pytest.raises(InputError) as err:
        parse_raw(b'a,b\n1,"2\n3,4\n', fmt="csv", file="in.csv")
    one_line(str(err.value), "in.csv: rule 'csv format'", "check the quoting")


# --- rows and the data contract ----------------------------------------------------------

def test_one_row_is_too_few_to_split(tmp_path, adult_rows):
    line = features_failure(tmp_path, _csv(adult_rows.head(1)))
    one_line(line, "adult.csv: rule 'enough rows to split'", "1 row of data",
             "needs at least 95 rows, 10 per split", "add rows to the source")
    assert "same label" not in line


def test_too_few_rows_to_split(tmp_path, adult_rows):
    line = features_failure(tmp_path, _csv(adult_rows.head(60)))
    one_line(line, "rule 'enough rows to split'", "60 rows of data",
             "split.test_fraction 0.2, split.validation_fraction 0.1", "needs at least 95")


def test_target_outside_classes_fails_the_run(tmp_path, adult_rows):
    frame = adult_rows.copy()
    frame.loc[:3, "income-per-year"] = "maybe"
    frame.loc[4, "income-per-year"] = ">50K."
    line = features_failure(tmp_path, _csv(frame))
    one_line(line, "adult.csv, column 'income-per-year': rule 'values in target.classes'",
             "5 rows hold values outside target.classes ['<=50K', '>50K']",
             "'maybe' (4 rows), '>50K.' (1 row)", "add them to target.classes",
             "or fix the data")


def test_target_without_classes_needs_two_values(tmp_path, adult_rows):
    frame = adult_rows.copy()
    frame.loc[:2, "income-per-year"] = "unknown"
    line = features_failure(tmp_path, _csv(frame), target__classes=None)
    one_line(line, "column 'income-per-year': rule 'exactly 2 distinct values",
             "3 distinct values where the binary model needs 2", "'unknown' (3 rows)",
             "list the classes in target.classes")


def test_one_class_only(tmp_path, adult_rows):
    frame = adult_rows.copy()
    frame["income-per-year"] = "<=50K"
    line = features_failure(tmp_path, _csv(frame))
    one_line(line, "column 'income-per-year': rule 'both classes present'",
             "'<=50K' (400 rows)", "target.positive is '>50K'", "check target.positive")


def test_vocabulary_over_the_cap_fails_the_run(tmp_path, adult_rows):
    frame = adult_rows.copy()
    frame["occupation"] = [f"job-{i}" for i in range(len(frame))]
    line = features_failure(tmp_path, _csv(frame), validation__max_categories=50)
    one_line(line, "column 'occupation': rule 'at most 50 categories'",
             "400 distinct values among the rows kept, over the cap of 50",
             "raise columns.occupation.max_categories (or validation.max_categories",
             "group rare values")


def test_column_cap_overrides_the_spec_default(tmp_path, adult_rows):
    line = features_failure(tmp_path, _csv(adult_rows), columns__occupation__max_categories=3)
    one_line(line, "column 'occupation': rule 'at most 3 categories'", "over the cap of 3")


def test_over_long_values_over_the_share_limit(tmp_path, adult_rows):
    frame = adult_rows.copy()
    frame.loc[:99, "native-country"] = "y" * 5000
    line = features_failure(tmp_path, _csv(frame))
    one_line(line, "adult.csv: rule 'at most 2.0% of rows quarantined'",
             "100 of 400 rows (25.0%)", "column 'native-country' broke 'values at most 200 "
             "characters", "(5000 characters)", "fix the data")
    assert len(line) < 600, "an over-long value is cut in the message"


def test_missing_column(tmp_path, adult_rows):
    line = features_failure(tmp_path, _csv(adult_rows.drop(columns=["age"])))
    one_line(line, "adult.csv: rule 'column exists'", "1 of the spec's columns is not in "
             "the file: 'age'", "rename the file's columns, or fix columns/target.column")


def test_words_in_a_numeric_column(tmp_path, adult_rows):
    frame = adult_rows.copy()
    frame.loc[:49, "age"] = "forty"
    line = features_failure(tmp_path, _csv(frame))
    one_line(line, "column 'age' broke 'values are numbers' (50 rows, e.g. row 0: 'forty')")
    assert "missing" not in line.split("most often")[0], "words are not missing values"


def test_too_many_missing_values(tmp_path, adult_rows):
    frame = adult_rows.copy()
    frame.loc[:49, "capital-gain"] = "NaN"
    line = features_failure(tmp_path, _csv(frame))
    one_line(line, "column 'capital-gain': rule 'at most 0.0% missing'",
             "50 of 400 rows (12.5%) are missing", "raise columns.capital-gain.max_null_fraction")


# --- spec mistakes, checked when the spec loads ------------------------------------------

SPEC_MISTAKES = {
    "negative learning rate": ({"training__learning_rate": -0.001},
                               ["training.learning_rate: must be greater than 0 (got -0.001)"]),
    "negative weight decay": ({"training__weight_decay": -1},
                              ["training.weight_decay: must be greater than or equal to 0"]),
    "dropout of 1": ({"training__dropout": 1.0}, ["training.dropout: must be less than 1"]),
    "no epochs": ({"training__epochs": 0},
                  ["training.epochs: must be greater than or equal to 1 (got 0)"]),
    "hidden layer of 0": ({"training__hidden": [64, 0]},
                          ["training.hidden[1]: must be greater than or equal to 1"]),
    "fraction over 1": ({"validation__max_failed_fraction": 1.5},
                        ["validation.max_failed_fraction: must be less than or equal to 1"]),
    "splits leave no training rows": (
        {"split__test_fraction": 0.6, "split__validation_fraction": 0.4},
        ["split: test_fraction (0.6) + validation_fraction (0.4) leave no rows to train on",
         "keep their sum below 1"]),
    "tuning range upside down": (
        {"tuning__search_space__learning_rate": {"low": 0.1, "high": 0.01}},
        ["tuning.search_space.learning_rate: low (0.1) must be below high (0.01)"]),
    "log range from 0": (
        {"tuning__search_space__weight_decay": {"low": 0.0, "high": 0.1, "log": True}},
        ["tuning.search_space.weight_decay: a log range needs low > 0", "set log: false"]),
    "tuned dropout up to 1": (
        {"tuning__search_space__dropout": {"low": 0.0, "high": 1.0}},
        ["tuning.search_space.dropout.high: must be below 1"]),
    "canary share over 1": ({"deployment__canary__share": 2},
                            ["deployment.canary.share: must be less than or equal to 1"]),
    "min above max": ({"columns__age__min": 200},
                      ["columns.age: min (200) is above max (100)", "swap them"]),
    "positive not a class": ({"target__positive": "yes"},
                             ["target.positive: 'yes' is not one of target.classes",
                              "set it to the class the model predicts"]),
    "one class listed": ({"target__classes": ["a"]},
                         ["target.classes: lists 1 distinct class(es)", "needs at least 2"]),
    "unknown gate metric": ({"gate__min_metrics": {"auc": 0.5}},
                            ["gate.min_metrics: each key must be 'roc_auc'", "(got 'auc')"]),
    "misspelt field": ({"training__learnig_rate": 0.01},
                       ["training.learnig_rate: is not a field there",
                        "the fields of training are: model, params, hidden, dropout, "
                        "learning_rate"]),
    "category cap of 0": ({"validation__max_categories": 0},
                          ["validation.max_categories: must be greater than or equal to 1"]),
    "listed category over max_length": (
        {"columns__sex__max_length": 4},
        ["columns.sex.categories: 1 listed value(s) are longer than max_length 4",
         "raise columns.sex.max_length"]),
    "p-value threshold over 1": (
        {"monitoring__numeric": {"method": "ks", "threshold": 5}},
        ["monitoring.numeric.threshold: ks reports a p-value", "e.g. 0.05"]),
    "unknown encoding": ({"source__encoding": "utf-99"},
                         ["source.encoding: 'utf-99' is not a text encoding", "use e.g. utf-8"]),
    "two-character delimiter": ({"source__delimiter": ";;"},
                                ["source.delimiter: must have at most 1 character (got ';;')"]),
    "unknown column type": ({"columns__age__type": "numerik"},
                            ["columns.age.type: must be 'numeric' or 'categorical'"]),
    "negative int8 tolerance": ({"quantization__int8_tolerance": -0.1},
                                ["quantization.int8_tolerance: must be greater than 0"]),
}


@pytest.mark.parametrize("case", list(SPEC_MISTAKES))
def test_spec_mistakes_are_one_line_at_load(tmp_path, case):
    overrides, fragments = SPEC_MISTAKES[case]
    path = write_spec(tmp_path / "mine.yaml", "adult", tmp_path / "a.csv", **overrides)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert err.value.__cause__ is None and err.value.__suppress_context__, \
        "no chained traceback repeats the message"
    one_line(str(err.value), f"dataset spec {path}: ", *fragments, "in mine.yaml")


def test_spec_file_mistakes(tmp_path, monkeypatch):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: x\n  source: [\n")
    with pytest.raises(SpecError) as err:
        load_spec(bad_yaml)
    one_line(str(err.value), "bad.yaml is not valid YAML at line 2, column 9",
             "fix the indentation or quoting there")
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path)
    one_line(str(err.value), f"dataset spec {tmp_path} is a directory", "pass a .yaml spec")
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "absent.yaml")
    one_line(str(err.value), "absent.yaml does not exist", "datasets/<name>.yaml")
    monkeypatch.delenv("TIDELINE_NO_SUCH_VAR", raising=False)
    env = write_spec(tmp_path / "env.yaml", "adult", Path("${TIDELINE_NO_SUCH_VAR}/a.csv"))
    with pytest.raises(SpecError) as err:
        load_spec(env)
    one_line(str(err.value), "env.yaml: environment variable TIDELINE_NO_SUCH_VAR is not set",
             "give a default as ${TIDELINE_NO_SUCH_VAR:-default}")
