"""Validation: a Great Expectations suite generated from the dataset spec.

Row-level rules (type, finite, range, allowed categories, category length, target present)
send failing rows to quarantine with their reasons; column-level rules (column present,
null limit, target classes, category count) and a failure share over the spec's limit fail
the stage. The failure's first line names the file, column, rule and remedy; a list of
every broken rule follows it.

The target is a contract, not a noisy column: a value outside ``target.classes`` (or,
without ``classes``, a third distinct value) fails the run rather than quarantining rows.
A categorical column's vocabulary is bounded: a value longer than its ``max_length`` is a
row failure; more distinct values than ``max_categories`` among the kept rows fails the run.

Great Expectations runs the suite (missing-value limits, ranges, allowed categories) and
gives each rule's verdict and failing-row count; it is asked for counts only, on the typed
values with text columns dictionary-encoded, and the failing rows of each row rule are
found by one vectorized pass that must count what it counted. Typing parses and strips each
distinct value once rather than each cell.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.spec import short_repr

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipelines.spec import DatasetSpec

EXAMPLES = 5
SHARE_CHECK = "failed_row_share"


@dataclass
class CheckOutcome:
    """One rule's result, reported as a Dagster asset check."""

    name: str
    column: str
    rule: str
    passed: bool
    failed_rows: int = 0
    failed_fraction: float = 0.0
    examples: list[Any] = field(default_factory=list)
    row_level: bool = True
    # For a column-level failure: what was found and what to do (the failure's headline).
    message: str = ""

    def describe(self) -> str:
        text = f"column {self.column!r}: rule '{self.rule}'"
        if self.failed_rows:
            text += f": {self.failed_rows} rows ({self.failed_fraction:.1%})"
        if self.examples:
            text += f", e.g. {self.examples}"
        return text


# Rule outcomes are named ``<column>__<rule>``; each rule kind is one asset check.
KINDS = {
    "exists": ("columns_present", "every column the spec lists is in the file"),
    "target_class": ("target_classes", "the target holds only the spec's classes (or exactly "
                                       "two values) and no row lacks it"),
    "target_missing": ("target_classes", "the target holds only the spec's classes (or exactly "
                                         "two values) and no row lacks it"),
    "null_limit": ("null_limits", "no column has more missing values than it allows"),
    "numeric": ("numeric_types", "numeric columns hold numbers"),
    "finite": ("finite_values", "numeric columns hold no infinities"),
    "range": ("value_ranges", "numeric values within the spec's min/max"),
    "allowed_categories": ("allowed_categories", "categorical values in the spec's lists"),
    "max_length": ("category_limits", "categorical values within max_length characters and "
                                      "columns within max_categories distinct values"),
    "max_categories": ("category_limits", "categorical values within max_length characters "
                                          "and columns within max_categories distinct values"),
}
# Which column-level failure heads the report when several happen at once.
_HEADLINE_ORDER = ("exists", "target_class", "max_categories", "null_limit")


def check_names(spec: DatasetSpec) -> list[tuple[str, str]]:
    """(check name, description) of the asset checks the spec implies, in a stable order.

    One check per kind of rule (its metadata lists the columns at fault) and one for the
    share of quarantined rows. Dagster stores two events per check and run, so a check
    per column would make every run of a wide table slower.
    """
    kinds = ["exists", "null_limit", "target_class", "target_missing"]
    if spec.numeric_columns:
        kinds += ["numeric", "finite"]
    if any(c.min is not None or c.max is not None for c in spec.columns.values()):
        kinds.append("range")
    if any(c.categories is not None for c in spec.columns.values()):
        kinds.append("allowed_categories")
    if spec.categorical_columns:
        kinds += ["max_length", "max_categories"]
    names = list(dict.fromkeys(KINDS[k] for k in KINDS if k in kinds))
    names.append((SHARE_CHECK, f"at most {spec.validation.max_failed_fraction:.1%} of rows "
                               "quarantined (validation.max_failed_fraction)"))
    return names


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _kind(check: CheckOutcome) -> str:
    return next(k for k in KINDS if check.name.endswith(f"__{k}"))


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _counted(counts: Any, limit: int = EXAMPLES) -> str:
    items = [f"{short_repr(v)} ({_rows(int(n))})" for v, n in list(counts.items())[:limit]]
    more = len(counts) - limit
    return ", ".join(items) + (f" and {more} more" if more > 0 else "")


@dataclass
class ValidationResult:
    """Rule outcomes, and the kept and quarantined rows of the batch validated.

    ``rows``, ``kept`` and ``quarantined`` count rows; ``target_counts`` (rows per target
    value present) and ``kept_values`` (each categorical column's distinct values among
    the kept rows) are what `combine` needs to judge the column-level rules of a table
    validated in batches as a whole. `combine`'s result has no frames (``clean`` and
    ``quarantine`` are None): the caller has written them out batch by batch.
    """

    checks: list[CheckOutcome]
    clean: pd.DataFrame | None
    quarantine: pd.DataFrame | None
    failed_fraction: float
    limit: float
    rows: int = 0
    kept: int = 0
    quarantined: int = 0
    target_counts: dict[str, int] = field(default_factory=dict)
    kept_values: dict[str, set[str]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.failed_fraction > self.limit or any(
            not c.passed and not c.row_level for c in self.checks)

    def headline(self, file: str) -> str:
        """The failure in one line: file, column, rule broken, what was found, what to do."""
        bad = [c for c in self.checks if not c.passed and not c.row_level]
        missing = [c.column for c in bad if _kind(c) == "exists"]
        if missing:
            found = next(c.examples for c in bad if _kind(c) == "exists")
            names = ", ".join(repr(m) for m in missing[:EXAMPLES]) + (
                f" and {len(missing) - EXAMPLES} more" if len(missing) > EXAMPLES else "")
            verb = "is" if len(missing) == 1 else "are"
            return (f"{file}: rule 'column exists' failed: {len(missing)} of the spec's columns "
                    f"{verb} not in the file: {names} ({found[0] if found else 'no columns'}); "
                    "rename the file's columns, or fix columns/target.column in the spec")
        bad.sort(key=lambda c: _HEADLINE_ORDER.index(_kind(c)))
        if bad:
            first = bad[0]
            more = (f" ({len(bad) - 1} more column-level problem(s) listed below)"
                    if len(bad) > 1 else "")
            return f"{file}, column {first.column!r}: rule '{first.rule}' failed: " \
                   f"{first.message}{more}"
        rows = [c for c in self.checks if not c.passed and c.row_level]
        worst = max(rows, key=lambda c: c.failed_rows, default=None)
        most = (f"; most often column {worst.column!r} broke '{worst.rule}' "
                f"({_rows(worst.failed_rows)}"
                f"{', e.g. ' + worst.examples[0] if worst.examples else ''})"
                if worst else "")
        total = self.quarantined + self.kept
        return (f"{file}: rule 'at most {self.limit:.1%} of rows quarantined' failed: "
                f"{self.quarantined} of {total} rows ({self.failed_fraction:.1%}) broke row "
                f"rules{most}; fix the data, or the rule in the spec if the data is right "
                "(validation.max_failed_fraction sets the limit)")

    def report(self, file: str) -> str:
        """The headline, then every broken rule on its own line."""
        bad = [c for c in self.checks if not c.passed]
        lines = [self.headline(file)] + [f"  - {c.describe()}" for c in bad]
        lines.append("The last good materializations and model are unchanged.")
        return "\n".join(lines)

    def check_dicts(self) -> list[dict[str, Any]]:
        """Rule outcomes grouped into one asset check per kind of rule, plus the share."""
        by_kind: dict[str, list[CheckOutcome]] = {}
        for c in self.checks:
            by_kind.setdefault(KINDS[_kind(c)][0], []).append(c)
        out = []
        for name, outcomes in by_kind.items():
            failed = [c for c in outcomes if not c.passed]
            out.append({
                "name": name, "column": ", ".join(c.column for c in failed),
                "passed": not failed, "row_level": all(c.row_level for c in failed),
                "rule": "; ".join(c.describe() for c in failed) or "holds for every column",
                "failed_rows": sum(c.failed_rows for c in failed if c.row_level),
                "failed_fraction": max((c.failed_fraction for c in failed), default=0.0),
                "examples": [e for c in failed for e in c.examples][:EXAMPLES],
                "rules": [asdict(c) for c in outcomes],
            })
        out.append({"name": SHARE_CHECK, "column": "", "row_level": False,
                    "passed": self.failed_fraction <= self.limit,
                    "rule": f"quarantined share {self.failed_fraction:.2%} <= {self.limit:.2%}",
                    "failed_rows": self.quarantined,
                    "failed_fraction": self.failed_fraction, "examples": [], "rules": []})
        return out


def _expectations(spec: DatasetSpec, present: set[str]) -> list[tuple[str, Any]]:
    import great_expectations.expectations as gxe

    out: list[tuple[str, Any]] = []
    for col, cs in spec.columns.items():
        if col not in present:
            continue
        out.append((f"{col}__null_limit", gxe.ExpectColumnValuesToNotBeNull(
            column=col, mostly=1.0 - cs.max_null_fraction)))
        if cs.type == "numeric" and (cs.min is not None or cs.max is not None):
            out.append((f"{col}__range", gxe.ExpectColumnValuesToBeBetween(
                column=col, min_value=cs.min, max_value=cs.max)))
        if cs.type == "categorical" and cs.categories is not None:
            out.append((f"{col}__allowed_categories", gxe.ExpectColumnValuesToBeInSet(
                column=col, value_set=list(cs.categories))))
    return [(_safe(n), e) for n, e in out]


def _run_suite(frame: pd.DataFrame, expectations: list[tuple[str, Any]]) -> dict[str, Any]:
    """Great Expectations' result per rule name, counts only (``BASIC``).

    Which rows fail is not asked of it: listing them (``COMPLETE``) filters the whole batch
    several times per expectation; `_failing_rows` finds them in one vectorized pass and
    `run_suite` holds its count to Great Expectations'.
    """
    import logging

    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    asset = context.data_sources.add_pandas("tideline").add_dataframe_asset("rows")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name="dataset_spec")
    for _, exp in expectations:
        suite.add_expectation(exp)
    result = batch.validate(suite, result_format="BASIC")
    return {name: r for (name, _), r in zip(expectations, result.results)}


@dataclass
class TypedFrame:
    """The raw frame typed by the spec, with what the typing learnt on the way.

    ``frame`` holds numbers as float64 (NaN where missing, unusable or infinite) and text
    as stripped ``str`` (None where missing). Every text column is also dictionary-encoded:
    ``codes[col]`` gives each row's position in ``values[col]`` (its distinct stripped
    strings in order of first appearance), -1 where the value is missing, so the rules
    hash each string once, not once per rule.
    """

    frame: pd.DataFrame
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)
    not_number: dict[str, np.ndarray] = field(default_factory=dict)
    infinite: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class RuleResult:
    """One expectation of the suite: Great Expectations' verdict and failing-row count.

    ``rows`` marks the failing rows of a row rule (range, allowed categories); None for
    the missing-value limit, a rule on the column as a whole.
    """

    name: str
    column: str
    expectation: str
    kwargs: dict[str, Any]
    success: bool
    unexpected: int
    rows: np.ndarray | None = None


_NAN_TEXT = ("nan", "+nan", "-nan")
# Integers up to this size convert to float64 exactly, whichever way they are parsed.
_EXACT_INT = 2 ** 53


def _text_column(column: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(typed values, codes, distinct values) of a text column.

    Stripping is done once per distinct value; values that differ only in surrounding
    blanks then share a code. A column that is not all ``str`` (typed Parquet columns)
    takes the row-by-row conversion to text.
    """
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(column.to_numpy())
    if pd.api.types.infer_dtype(uniques, skipna=False) in ("string", "empty"):
        stripped = np.array([v.strip() for v in uniques], dtype=object)
        merged, distinct = pd.factorize(stripped)
        codes = np.append(merged, -1).astype(np.int32)[codes]
    else:
        typed = column.astype("string").str.strip().astype(object).where(
            column.notna(), None).to_numpy()
        codes, distinct = pd.factorize(typed)
        codes = codes.astype(np.int32)
    distinct = np.asarray(distinct, dtype=object)
    return np.append(distinct, None)[codes], codes, distinct


def _numeric_column(column: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, not a number, infinite) of a numeric column, values without infinities.

    Text is parsed once per distinct value. A written-out NaN is a missing value, not a
    word where a number belongs.
    """
    import numpy as np
    import pandas as pd

    if column.dtype == object:
        codes, uniques = pd.factorize(column.to_numpy())
        if pd.api.types.infer_dtype(uniques, skipna=False) in ("string", "empty"):
            parsed = pd.to_numeric(uniques, errors="coerce")
            # With missing values among the rows, parsing every row may take the float
            # route where the distinct values alone take the integer one: equal only
            # while the integers are exact in float64.
            exact = parsed.dtype.kind == "f" or (parsed.dtype.kind in "iu" and (
                len(parsed) == 0 or not (codes < 0).any()
                or (parsed.min() >= -_EXACT_INT and parsed.max() <= _EXACT_INT)))
            if exact:
                values = parsed.astype("float64")
                missing = np.isnan(values)
                nan_text = np.zeros(len(values), dtype=bool)
                nan_text[missing] = [v.strip().lower() in _NAN_TEXT for v in uniques[missing]]
                infinite = np.isinf(values)
                values[infinite] = np.nan
                return (np.append(values, np.nan)[codes],
                        np.append(missing & ~nan_text, False)[codes],
                        np.append(infinite, False)[codes])
    values = pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()
    nan_text = np.zeros(len(column), dtype=bool)
    if not pd.api.types.is_numeric_dtype(column):
        nan_text = column.astype("string").str.strip().str.lower().isin(
            list(_NAN_TEXT)).fillna(False).to_numpy(dtype=bool)
    not_number = column.notna().to_numpy(dtype=bool) & np.isnan(values) & ~nan_text
    infinite = np.isinf(values)
    return np.where(infinite, np.nan, values), not_number, infinite


def type_frame(raw: pd.DataFrame, spec: DatasetSpec) -> TypedFrame:
    """The spec's columns (target first) of ``raw`` that it has, typed by the spec."""
    import pandas as pd

    typed = TypedFrame(pd.DataFrame(index=raw.index))
    columns: dict[str, Any] = {}
    for col in [spec.target.column, *spec.columns]:
        if col not in raw.columns:
            continue
        cs = spec.columns.get(col)
        if cs is not None and cs.type == "numeric":
            columns[col], typed.not_number[col], typed.infinite[col] = _numeric_column(raw[col])
        else:
            columns[col], typed.codes[col], typed.values[col] = _text_column(raw[col])
    if columns:
        typed.frame = pd.DataFrame(columns, index=raw.index)
    return typed


def _failing_rows(typed: TypedFrame, column: str, expectation: str,
                  kwargs: dict[str, Any]) -> np.ndarray:
    """The rows a row rule fails, as a mask: the expectation's test, vectorized."""
    import numpy as np
    import pandas as pd

    if expectation == "expect_column_values_to_be_between":
        values = typed.frame[column].to_numpy(dtype="float64")
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        failing = np.zeros(len(values), dtype=bool)
        if low is not None:
            failing |= values < low
        if high is not None:
            failing |= values > high
        return failing
    allowed = pd.Index(typed.values[column], dtype=object).isin(kwargs["value_set"])
    return ~np.append(allowed, True)[typed.codes[column]]


def run_suite(typed: TypedFrame, spec: DatasetSpec) -> list[RuleResult]:
    """Run the spec's suite through Great Expectations; find each row rule's failing rows.

    Great Expectations sees the typed values, text columns as pandas categoricals built
    from the codes (the same values, each string stored once), so that its per-expectation
    filtering of the batch and its fingerprint of the batch stay cheap. Each row rule's
    mask must count what Great Expectations counted.
    """
    import pandas as pd

    frame = typed.frame
    present = set(frame.columns)
    data = {col: (pd.Categorical.from_codes(typed.codes[col], categories=pd.Index(
                      typed.values[col], dtype=object))
                  if col in typed.codes else frame[col].to_numpy())
            for col in spec.columns if col in present}
    batch = pd.DataFrame(data, index=frame.index)
    out = []
    for name, r in _run_suite(batch, _expectations(spec, present)).items():
        cfg = r.expectation_config
        col = cfg.kwargs["column"]
        result = RuleResult(name, col, cfg.type, dict(cfg.kwargs), bool(r.success),
                            int((r.result or {}).get("unexpected_count") or 0))
        if cfg.type != "expect_column_values_to_not_be_null":
            result.rows = _failing_rows(typed, col, cfg.type, cfg.kwargs)
            found = int(result.rows.sum())
            if found != result.unexpected:
                raise RuntimeError(
                    f"column {col!r}: rule {name!r}: Great Expectations counted "
                    f"{result.unexpected} failing rows where pipelines/validation.py found "
                    f"{found}, so the quarantine would not match the report; this is a fault "
                    "in validation, not in the data: report it with the column's dtype and "
                    "a few of its values")
        out.append(result)
    return out


def validate(raw: pd.DataFrame, spec: DatasetSpec, first_row: int = 0) -> ValidationResult:
    """Type the raw frame by the spec, run the suite, and split off failing rows.

    Args:
        raw: The parsed source (strings for CSV, typed columns for Parquet).
        spec: The dataset spec.
        first_row: The position of ``raw``'s first row in the whole table (a batch of a
            table read in batches): row numbers in examples and ``__row`` count from it.

    Returns:
        Per-rule outcomes, the clean typed rows (spec columns and target, in spec
        order) and the quarantined rows with a ``__reasons`` column.
    """
    import numpy as np

    n = len(raw)
    checks: list[CheckOutcome] = []
    target_counts: dict[str, int] = {}
    kept_values: dict[str, set[str]] = {}
    target = spec.target.column
    wanted = [target, *spec.columns]
    present = set(raw.columns)
    for col in wanted:
        ok = col in present
        checks.append(CheckOutcome(_safe(f"{col}__exists"), col, "column exists", ok,
                                   row_level=False,
                                   examples=[] if ok else [
                                       f"the file has: {sorted(present)[:20]}"]))
    typed = type_frame(raw, spec)
    frame = typed.frame
    # Each row rule's reason and failing rows, in the order the rules ran.
    failures: list[tuple[str, np.ndarray]] = []

    def flag(mask: np.ndarray, col: str, rule: str, name: str) -> None:
        idx = np.flatnonzero(mask)
        failures.append((f"{col}: {rule}", mask))
        examples = raw[col].iloc[idx[:EXAMPLES]].tolist() if col in present else []
        shown = [f"row {first_row + r}: {short_repr(v)}"
                 for r, v in zip(idx[:EXAMPLES].tolist(), examples)]
        checks.append(CheckOutcome(_safe(name), col, rule, len(idx) == 0, len(idx),
                                   len(idx) / max(n, 1), shown))

    for col in wanted:
        if col not in present:
            continue
        cs = spec.columns.get(col)
        if col in typed.not_number:
            flag(typed.not_number[col], col, "values are numbers", f"{col}__numeric")
            flag(typed.infinite[col], col, "no infinite values", f"{col}__finite")
        if cs is not None and cs.type == "categorical":
            longest = spec.category_limits(col)[0]
            lengths = np.array([len(v) for v in typed.values[col]] + [0], dtype="int64")
            flag((lengths > longest)[typed.codes[col]], col,
                 f"values at most {longest} characters (columns.{col}.max_length)",
                 f"{col}__max_length")
    if target in present:
        flag(typed.codes[target] < 0, target, "target value present",
             f"{target}__target_missing")
        counts = frame[target].value_counts()
        target_counts = {str(v): int(c) for v, c in counts.items()}
        checks.append(_target_contract(target_counts, n, spec))
    if all(c in present for c in wanted):
        for r in run_suite(typed, spec):
            col, name = r.column, r.name
            if r.rows is None:
                count = r.unexpected
                # Count only what is missing, not what was there but unusable.
                if col in typed.not_number:
                    unusable = typed.not_number[col] | typed.infinite[col]
                    count = int((frame[col].isna().to_numpy() & ~unusable).sum())
                checks.append(_null_limit(name, col, count, n, r.kwargs.get("mostly", 1.0)))
                continue
            rule = {"expect_column_values_to_be_between":
                    f"values within [{r.kwargs.get('min_value')}, {r.kwargs.get('max_value')}]",
                    "expect_column_values_to_be_in_set": "values in the allowed set"}[
                        r.expectation]
            flag(r.rows, col, rule, name)
    bad_rows = np.zeros(n, dtype=bool)
    for _, mask in failures:
        bad_rows |= mask
    for col in spec.categorical_columns:
        if col in present:
            kept = typed.codes[col][~bad_rows]
            seen = np.bincount(kept[kept >= 0], minlength=len(typed.values[col])) > 0
            kept_values[col] = set(typed.values[col][seen].tolist())
            checks.append(_vocabulary_size(len(kept_values[col]), spec, col))
    quarantine = raw.loc[bad_rows].copy() if n else raw.copy()
    quarantine.insert(0, "__row", first_row + np.flatnonzero(bad_rows))
    quarantine["__reasons"] = _reasons(failures, bad_rows)
    clean = frame.loc[~bad_rows].reset_index(drop=True) if len(frame.columns) else frame
    if len(frame.columns) == len(wanted):
        clean.insert(0, "__row", first_row + np.flatnonzero(~bad_rows))
    quarantined = int(bad_rows.sum())
    return ValidationResult(checks, clean, quarantine.reset_index(drop=True),
                            quarantined / n if n else 0.0,
                            spec.validation.max_failed_fraction, rows=n,
                            kept=n - quarantined, quarantined=quarantined,
                            target_counts=target_counts, kept_values=kept_values)


def combine(parts: list[ValidationResult], spec: DatasetSpec) -> ValidationResult:
    """One result for a table validated in batches, as if validated whole.

    Row rules add up (examples: the table's first ones); the column-level rules (missing
    values, target classes, vocabulary size) are judged again on the table's totals.
    The result carries no frames.
    """
    if not parts:
        raise ValueError("no batch to combine")
    n = sum(p.rows for p in parts)
    quarantined = sum(p.quarantined for p in parts)
    target_counts: dict[str, int] = {}
    kept_values: dict[str, set[str]] = {}
    for p in parts:
        for value, count in p.target_counts.items():
            target_counts[value] = target_counts.get(value, 0) + count
        for col, values in p.kept_values.items():
            kept_values.setdefault(col, set()).update(values)
    checks = []
    for outcomes in zip(*(p.checks for p in parts)):
        first = outcomes[0]
        kind = _kind(first)
        if kind == "exists":
            checks.append(first)
        elif kind == "target_class":
            checks.append(_target_contract(target_counts, n, spec))
        elif kind == "max_categories":
            checks.append(_vocabulary_size(len(kept_values[first.column]), spec, first.column))
        elif kind == "null_limit":
            mostly = 1.0 - spec.columns[first.column].max_null_fraction
            checks.append(_null_limit(first.name, first.column,
                                      sum(c.failed_rows for c in outcomes), n, mostly))
        else:
            failed = sum(c.failed_rows for c in outcomes)
            examples = [e for c in outcomes for e in c.examples][:EXAMPLES]
            checks.append(CheckOutcome(first.name, first.column, first.rule, failed == 0,
                                       failed, failed / max(n, 1), examples))
    return ValidationResult(checks, None, None, quarantined / n if n else 0.0,
                            spec.validation.max_failed_fraction, rows=n, kept=n - quarantined,
                            quarantined=quarantined, target_counts=target_counts,
                            kept_values=kept_values)


def _null_limit(name: str, col: str, count: int, n: int, mostly: float) -> CheckOutcome:
    """The missing-value limit of a column: ``count`` of ``n`` rows missing."""
    share = count / max(n, 1)
    return CheckOutcome(
        name, col, f"at most {1 - mostly:.1%} missing", (n - count) / max(n, 1) >= mostly,
        count, share, row_level=False,
        message=f"{count} of {n} rows ({share:.1%}) are missing; fill them in the data, or "
                f"raise columns.{col}.max_null_fraction in the spec if gaps are expected")


def _reasons(failures: list[tuple[str, np.ndarray]], bad_rows: np.ndarray) -> Any:
    """Each failing row's broken rules, in the order the rules ran, joined by ``; ``.

    Rows that broke the same rules share one string, so the work grows with the number
    of distinct combinations, not of rows.
    """
    import numpy as np

    idx = np.flatnonzero(bad_rows)
    if not len(idx):
        return []
    hits = np.stack([mask[idx] for _, mask in failures], axis=1)
    combos, which = np.unique(hits, axis=0, return_inverse=True)
    texts = ["; ".join(text for (text, _), on in zip(failures, combo) if on)
             for combo in combos]
    return np.array(texts, dtype=object)[which.reshape(-1)]


def _target_contract(target_counts: dict[str, int], n: int, spec: DatasetSpec
                     ) -> CheckOutcome:
    """The target's values against ``target.classes`` (or, without it, two values).

    ``target_counts`` gives the rows per value present, of ``n`` rows. A column-level
    rule: a new label is a change of contract, not a noisy row.
    """
    import pandas as pd

    target = spec.target
    # Most rows first, ties by value: the same order however the rows were counted.
    ordered = sorted(target_counts.items(), key=lambda item: (-item[1], item[0]))
    counts = pd.Series([c for _, c in ordered], index=pd.Index(
        [v for v, _ in ordered], dtype=object), dtype="int64")
    name = _safe(f"{target.column}__target_class")
    if target.classes:
        classes = [str(c) for c in target.classes]
        outside = counts[~counts.index.isin(classes)]
        rows = int(outside.sum())
        return CheckOutcome(
            name, target.column, "values in target.classes", rows == 0, rows,
            rows / max(n, 1), [f"{short_repr(v)}: {int(c)} rows"
                                         for v, c in list(outside.items())[:EXAMPLES]],
            row_level=False,
            message=f"{_rows(rows)} {'holds' if rows == 1 else 'hold'} values outside "
                    f"target.classes {classes}: "
                    f"{_counted(outside)}; add them to target.classes in the spec if they are "
                    "real classes, or fix the data (nothing was trained on them)")
    ok = len(counts) <= 2
    return CheckOutcome(
        name, target.column, "exactly 2 distinct values (no target.classes given)", ok,
        0 if ok else int(counts.iloc[2:].sum()), 0.0,
        [f"{short_repr(v)}: {int(c)} rows" for v, c in list(counts.items())[:EXAMPLES]],
        row_level=False,
        message=f"{len(counts)} distinct values where the binary model needs 2: "
                f"{_counted(counts)}; list the classes in target.classes (the positive class "
                "is then predicted against the others), or fix the data")


def _vocabulary_size(distinct: int, spec: DatasetSpec, col: str) -> CheckOutcome:
    """Distinct values of a categorical column among the kept rows, against its cap."""
    cap = spec.category_limits(col)[1]
    return CheckOutcome(
        _safe(f"{col}__max_categories"), col, f"at most {cap} categories", distinct <= cap,
        row_level=False, examples=[f"{distinct} distinct values"],
        message=f"{distinct} distinct values among the rows kept, over the cap of {cap} that "
                f"keeps the model's vocabulary bounded; raise columns.{col}.max_categories (or "
                "validation.max_categories for every column) if that many is right, or group "
                "rare values in the data")
