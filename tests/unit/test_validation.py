import numpy as np
import pandas as pd
import pytest

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


def _spec(**changes) -> DatasetSpec:
    return DatasetSpec.model_validate(SPEC.model_dump() | changes)


def test_target_outside_classes_fails_the_run_without_quarantining():
    res = validate(raw(y=["0", "1", "2", "1"]), SPEC)
    assert res.failed and res.quarantine.empty, "a new label is a contract change, not a row"
    bad = [c for c in res.checks if not c.passed]
    assert [(c.name, c.row_level) for c in bad] == [("y__target_class", False)]
    assert res.headline("t.csv") == (
        "t.csv, column 'y': rule 'values in target.classes' failed: 1 row holds values outside "
        "target.classes ['0', '1']: '2' (1 row); add them to target.classes in the spec if "
        "they are real classes, or fix the data (nothing was trained on them)")


def test_target_without_classes_takes_exactly_two_values():
    spec = _spec(target={"column": "y", "positive": "1"})
    assert not validate(raw(), spec).failed
    res = validate(raw(y=["0", "1", "2", "1"]), spec)
    assert res.failed and "3 distinct values where the binary model needs 2" in res.headline("f")


def test_rows_without_a_target_are_quarantined():
    res = validate(raw(y=["0", None, "0", "1"]), SPEC)
    assert dict(zip(res.quarantine["__row"], res.quarantine["__reasons"])) == {
        1: "y: target value present"}
    assert len(res.clean) == 3 and not res.clean["y"].isna().any()


def test_over_long_category_is_a_row_failure_with_a_short_example():
    spec = _spec(columns=SPEC.model_dump()["columns"] | {
        "d": {"type": "categorical", "max_length": 5}})
    res = validate(raw(d=["ok", "fine", "x" * 100_000, "ok"]), spec)
    assert res.quarantine["__reasons"].tolist() == [
        "d: values at most 5 characters (columns.d.max_length)"]
    assert not res.failed and len(res.clean) == 3
    (check,) = [c for c in res.checks if c.name == "d__max_length"]
    assert check.examples == [f"row 2: '{'x' * 39}… (100000 characters)"]


def test_vocabulary_cap_counts_kept_rows_only():
    spec = _spec(columns=SPEC.model_dump()["columns"] | {"d": {"type": "categorical"}},
                 validation={"max_failed_fraction": 0.3, "max_categories": 2})
    # The third value sits on a row quarantined for its x: it does not count.
    res = validate(raw(d=["p", "q", "r", "p"], x=["1", "2", "abc", "4"]), spec)
    assert not res.failed
    res = validate(raw(d=["p", "q", "r", "p"]), spec)
    assert res.failed and res.quarantine.empty
    assert res.headline("t.csv").startswith(
        "t.csv, column 'd': rule 'at most 2 categories' failed: 3 distinct values among the "
        "rows kept, over the cap of 2")
    grouped = {c["name"]: c for c in res.check_dicts()}
    assert not grouped["category_limits"]["passed"]
    assert not grouped["category_limits"]["row_level"]


def test_category_checks_only_with_categorical_columns():
    names = {n for n, _ in check_names(SPEC)}
    assert {"category_limits", "target_classes"} <= names
    numeric_only = _spec(columns={"x": {"type": "numeric"}})
    assert "category_limits" not in {n for n, _ in check_names(numeric_only)}


def test_fitted_vocabulary_is_capped_where_it_enters_the_model():
    from pipelines.features import fit_preprocessing
    from pipelines.ingest import InputError

    spec = _spec(columns={"c": {"type": "categorical", "max_categories": 2}})
    train = pd.DataFrame({"c": ["a", "b", "c"]})
    with pytest.raises(InputError) as err:
        fit_preprocessing(train, spec)
    assert str(err.value).startswith("t.csv, column 'c': rule 'at most 2 categories' failed: "
                                     "3 distinct values in the training rows")
    assert fit_preprocessing(train.head(2), spec)["categorical"] == {"c": ["a", "b"]}
