"""validate() against a row-by-row reading of the spec on UCI Adult with bad values written in.

The product types the frame column by column, hands Great Expectations the suite and finds
each rule's failing rows vectorized. Here every cell is read on its own with plain Python
(strip, ``float()``, compare), and the verdicts, failing-row counts, reasons, quarantine
and clean rows must come out the same.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.ingest import parse_raw
from pipelines.spec import load_spec
from pipelines.validation import validate

REPO = Path(__file__).resolve().parents[2]
SPEC = load_spec(REPO / "datasets" / "adult.yaml")
TARGET = SPEC.target.column

# (column, rows, value): what goes wrong, and where (row positions in the 6,000-row sample).
INJECTED = [
    ("occupation", range(0, 6000, 9), None),  # with the sample's own gaps: over its 10% limit
    ("age", [3, 40, 41], "150"),  # over max
    ("age", [5], "-3"),  # under min
    ("age", [7], "  "),  # blank: not a number
    ("education-num", [11], "17"),
    ("education-num", [12], "0.5"),
    ("hours-per-week", [40, 60], "about forty"),  # not a number (row 40 is also too old)
    ("hours-per-week", [61], " NaN "),  # written-out missing value: no row failure
    ("hours-per-week", [62], "inf"),
    ("capital-gain", [63], "-inf"),
    ("capital-gain", [64], "1e6"),
    ("workclass", [41, 70], "Unknown-gov"),  # not in the list (row 41 is also too old)
    ("workclass", [71], " Private "),  # valid once stripped
    ("race", [72], "Martian"),
    ("sex", [73], "  "),  # empty once stripped: not in the list
    ("native-country", [74], "x" * 250),  # over max_length 200
    ("income-per-year", [75, 3], None),  # no target (row 3 is also too old)
]


def sample_with_bad_values(typed_parquet: bool = False) -> pd.DataFrame:
    raw = parse_raw((REPO / "tests" / "data" / "adult_sample.csv").read_bytes(), fmt="csv",
                    file="adult_sample.csv", na_values=["", "?"])
    # The file's unnamed first column becomes the index (text labels "0", "1", ...): rows
    # are quarantined and reported by position all the same.
    assert raw.index.dtype == object
    for col, rows, value in INJECTED:
        raw.iloc[list(rows), raw.columns.get_loc(col)] = value
    if typed_parquet:
        # As a Parquet file may hold them: numbers already numbers, a text column of ints.
        raw["capital-loss"] = pd.to_numeric(raw["capital-loss"]).astype("float64")
        raw.iloc[[80, 81], raw.columns.get_loc("capital-loss")] = [np.inf, 20000.0]
        raw["sex"] = pd.array([1 if v == "Male" else v for v in raw["sex"]], dtype=object)
    return raw


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def read_number(value):
    """One cell of a numeric column: (kind, number) with kind number/missing/word/inf."""
    if missing(value):
        return "missing", math.nan
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        if text.lower() in ("nan", "+nan", "-nan"):
            return "missing", math.nan
        try:
            number = float(text)
        except ValueError:
            return "word", math.nan
    return ("inf", math.nan) if math.isinf(number) else ("number", number)


def read_text(value):
    return None if missing(value) else str(value).strip()


def by_hand(raw: pd.DataFrame):
    """Typed rows, and every rule's failing rows and reason text, in the order rules run."""
    n = len(raw)
    typed = {}
    rules = []  # (check name, reason text, failing row positions)
    null_counts = {}
    for col in [TARGET, *SPEC.columns]:
        cs = SPEC.columns.get(col)
        if cs is not None and cs.type == "numeric":
            cells = [read_number(v) for v in raw[col]]
            typed[col] = [x for _, x in cells]
            rules.append((f"{col}__numeric", f"{col}: values are numbers",
                          [i for i, (k, _) in enumerate(cells) if k == "word"]))
            rules.append((f"{col}__finite", f"{col}: no infinite values",
                          [i for i, (k, _) in enumerate(cells) if k == "inf"]))
            null_counts[col] = sum(k == "missing" for k, _ in cells)
        else:
            typed[col] = [read_text(v) for v in raw[col]]
            null_counts[col] = sum(v is None for v in typed[col])
        if cs is not None and cs.type == "categorical":
            longest = SPEC.category_limits(col)[0]
            rules.append((f"{col}__max_length",
                          f"{col}: values at most {longest} characters "
                          f"(columns.{col}.max_length)",
                          [i for i, v in enumerate(typed[col]) if v is not None
                           and len(v) > longest]))
    rules.append((f"{TARGET}__target_missing", f"{TARGET}: target value present",
                  [i for i, v in enumerate(typed[TARGET]) if v is None]))
    for col, cs in SPEC.columns.items():
        if cs.type == "numeric" and (cs.min is not None or cs.max is not None):
            low = -math.inf if cs.min is None else cs.min
            high = math.inf if cs.max is None else cs.max
            rules.append((f"{col}__range", f"{col}: values within [{cs.min}, {cs.max}]",
                          [i for i, x in enumerate(typed[col])
                           if not math.isnan(x) and not low <= x <= high]))
        if cs.type == "categorical" and cs.categories is not None:
            rules.append((f"{col}__allowed_categories", f"{col}: values in the allowed set",
                          [i for i, v in enumerate(typed[col])
                           if v is not None and v not in cs.categories]))
    verdicts = {name.replace("-", "_"): (not rows, len(rows)) for name, _, rows in rules}
    for col, cs in SPEC.columns.items():
        count = null_counts[col]
        verdicts[f"{col}__null_limit".replace("-", "_")] = (
            (n - count) / n >= 1 - cs.max_null_fraction, count)
    reasons = {}
    for _, text, rows in rules:
        for i in rows:
            reasons.setdefault(i, []).append(text)
    return typed, verdicts, {i: "; ".join(r) for i, r in sorted(reasons.items())}


@pytest.mark.parametrize("typed_parquet", [False, True], ids=["csv", "typed-columns"])
def test_verdicts_and_counts_match_a_row_by_row_reading(typed_parquet):
    raw = sample_with_bad_values(typed_parquet)
    _, expected, _ = by_hand(raw)
    res = validate(raw, SPEC)
    got = {c.name: (c.passed, c.failed_rows) for c in res.checks if c.name in expected}
    assert got == expected
    # The bad values reach every kind of rule, both ways.
    assert not expected["occupation__null_limit"][0] and expected["workclass__null_limit"][0]
    assert expected["age__range"] == (False, 4)
    assert expected["workclass__allowed_categories"] == (False, 2)
    assert not expected["hours_per_week__numeric"][0]
    # The written-out NaN counts as missing; the words and the infinity do not.
    assert expected["hours_per_week__null_limit"] == (False, 1)
    assert res.failed and "column 'occupation': rule 'at most 10.0% missing'" in res.headline("f")


@pytest.mark.parametrize("typed_parquet", [False, True], ids=["csv", "typed-columns"])
def test_quarantine_and_clean_rows_match_a_row_by_row_reading(typed_parquet):
    raw = sample_with_bad_values(typed_parquet)
    typed, _, reasons = by_hand(raw)
    res = validate(raw, SPEC)
    assert res.quarantine["__row"].tolist() == list(reasons)
    assert res.quarantine["__reasons"].tolist() == list(reasons.values())
    pd.testing.assert_frame_equal(res.quarantine.drop(columns=["__row", "__reasons"]),
                                  raw.iloc[list(reasons)].reset_index(drop=True))
    kept = [i for i in range(len(raw)) if i not in reasons]
    assert res.clean["__row"].tolist() == kept
    assert list(res.clean.columns) == ["__row", TARGET, *SPEC.columns]
    for col, values in typed.items():
        column = res.clean[col]
        expected = [values[i] for i in kept]
        if col in SPEC.numeric_columns:
            assert column.dtype == np.float64
            np.testing.assert_array_equal(column.to_numpy(), np.array(expected, dtype=float))
        else:
            assert column.dtype == object and column.tolist() == expected


def test_reasons_read_as_before():
    res = validate(sample_with_bad_values(), SPEC)
    reasons = dict(zip(res.quarantine["__row"], res.quarantine["__reasons"]))
    assert reasons[3] == "income-per-year: target value present; age: values within [16.0, 100.0]"
    assert reasons[7] == "age: values are numbers"
    assert reasons[40] == ("hours-per-week: values are numbers; "
                           "age: values within [16.0, 100.0]")
    assert reasons[41] == "age: values within [16.0, 100.0]; workclass: values in the allowed set"
    assert reasons[62] == "hours-per-week: no infinite values"
    assert reasons[73] == "sex: values in the allowed set"
    assert reasons[74] == ("native-country: values at most 200 characters "
                           "(columns.native-country.max_length)")
    assert 61 not in reasons and 71 not in reasons
    kept = res.clean.set_index("__row")
    assert kept.loc[71, "workclass"] == "Private" and math.isnan(kept.loc[61, "hours-per-week"])
