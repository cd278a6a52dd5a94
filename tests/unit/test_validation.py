import numpy as np
import pandas as pd

from pipelines.spec import DatasetSpec
from pipelines.validation import check_names, validate

SPEC = DatasetSpec.model_validate({
    "name": "t", "source": {"path": "t.csv"},
    "target": {"column": "y", "positive": "1", "classes": ["0", "1"]},
    "columns": {"x": {"type": "numeric", "min": 0, "max": 10},
                "c": {"type": "categorical", "categories": ["a", "b"],
                      "max_null_fraction": 0.5}},
    "validation": {"max_failed_fraction": 0.3},
})


def raw(**cols):
    base = {"x": ["1", "2", "3", "4"], "c": ["a", "b", "a", None], "y": ["0", "1", "0", "1"]}
    return pd.DataFrame(base | cols)


def test_clean_rows_pass_and_are_typed():
    res = validate(raw(), SPEC)
    assert not res.failed and len(res.clean) == 4 and res.quarantine.empty
    assert res.clean["x"].dtype == np.float64
    reported = {c["name"]: c["passed"] for c in res.check_dicts()}
    assert set(reported) == {n for n, _ in check_names(SPEC)}
    assert all(reported.values())


def test_bad_rows_are_quarantined_with_reasons():
    res = validate(raw(x=["1", "abc", "inf", "40"]), SPEC)
    assert res.failed, "3 of 4 rows is over the 30% limit"
    reasons = dict(zip(res.quarantine["__row"], res.quarantine["__reasons"]))
    assert reasons == {1: "x: values are numbers", 2: "x: no infinite values",
                       3: "x: values within [0.0, 10.0]"}
    text = res.report("t.csv")
    assert "t.csv" in text and "column 'x'" in text and "values within" in text


def test_under_the_limit_keeps_good_rows():
    res = validate(raw(c=["a", "b", "zzz", "a"]), SPEC)
    assert not res.failed and len(res.clean) == 3
    assert res.quarantine["__reasons"].tolist() == ["c: values in the allowed set"]


def test_missing_column_fails_by_name():
    res = validate(raw().drop(columns=["c"]), SPEC)
    assert res.failed
    missing = [c for c in res.checks if not c.passed]
    assert [c.name for c in missing] == ["c__exists"]
    grouped = {c["name"]: c for c in res.check_dicts()}
    assert not grouped["columns_present"]["passed"]
    assert not grouped["columns_present"]["row_level"]
    assert grouped["columns_present"]["column"] == "c"
    assert grouped["numeric_types"]["passed"] and grouped["failed_row_share"]["passed"]
