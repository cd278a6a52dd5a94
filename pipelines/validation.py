"""Validation: a Great Expectations suite generated from the dataset spec.

Row-level rules (type, finite, range, allowed categories, target class) send failing
rows to quarantine with their reasons; column-level rules (column present, null limit)
and a failure share over the spec's limit fail the stage with a readable list.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    "target_class": ("target_classes", "the target holds only the spec's classes"),
    "null_limit": ("null_limits", "no column has more missing values than it allows"),
    "numeric": ("numeric_types", "numeric columns hold numbers"),
    "finite": ("finite_values", "numeric columns hold no infinities"),
    "range": ("value_ranges", "numeric values within the spec's min/max"),
    "allowed_categories": ("allowed_categories", "categorical values in the spec's lists"),
}


def check_names(spec: DatasetSpec) -> list[tuple[str, str]]:
    """(check name, description) of the asset checks the spec implies, in a stable order.

    One check per kind of rule (its metadata lists the columns at fault) and one for the
    share of quarantined rows. Dagster stores two events per check and run, so a check
    per column would make every run of a wide table slower.
    """
    kinds = ["exists", "null_limit"]
    if spec.target.classes:
        kinds.append("target_class")
    if spec.numeric_columns:
        kinds += ["numeric", "finite"]
    if any(c.min is not None or c.max is not None for c in spec.columns.values()):
        kinds.append("range")
    if any(c.categories is not None for c in spec.columns.values()):
        kinds.append("allowed_categories")
    names = [KINDS[k] for k in KINDS if k in kinds]
    names.append((SHARE_CHECK, f"at most {spec.validation.max_failed_fraction:.1%} of rows "
                               "quarantined (validation.max_failed_fraction)"))
    return names


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


@dataclass
class ValidationResult:
    checks: list[CheckOutcome]
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    failed_fraction: float
    limit: float

    @property
    def failed(self) -> bool:
        return self.failed_fraction > self.limit or any(
            not c.passed and not c.row_level for c in self.checks)

    def report(self, file: str) -> str:
        bad = [c for c in self.checks if not c.passed]
        head = (f"validation of {file} failed: {len(self.quarantine)} of "
                f"{len(self.quarantine) + len(self.clean)} rows ({self.failed_fraction:.1%}) broke"
                f" row rules (limit {self.limit:.1%}, validation.max_failed_fraction)")
        lines = [head] + [f"  - {c.describe()}" for c in bad]
        lines.append("Fix the source data or the rules in the dataset spec; the last good "
                     "materializations and model are unchanged.")
        return "\n".join(lines)

    def check_dicts(self) -> list[dict[str, Any]]:
        """Rule outcomes grouped into one asset check per kind of rule, plus the share."""
        by_kind: dict[str, list[CheckOutcome]] = {}
        for c in self.checks:
            kind = next(k for k in KINDS if c.name.endswith(f"__{k}"))
            by_kind.setdefault(KINDS[kind][0], []).append(c)
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
                    "failed_rows": len(self.quarantine),
                    "failed_fraction": self.failed_fraction, "examples": [], "rules": []})
        return out


def _expectations(spec: DatasetSpec, present: set[str]) -> list[tuple[str, Any]]:
    import great_expectations.expectations as gxe

    target = spec.target
    out: list[tuple[str, Any]] = []
    if target.column in present:
        classes = target.classes or None
        if classes is not None:
            out.append((f"{target.column}__target_class", gxe.ExpectColumnValuesToBeInSet(
                column=target.column, value_set=[str(c) for c in classes])))
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
    result = batch.validate(suite, result_format="COMPLETE")
    return {name: r for (name, _), r in zip(expectations, result.results)}


def validate(raw: pd.DataFrame, spec: DatasetSpec) -> ValidationResult:
    """Type the raw frame by the spec, run the suite, and split off failing rows.

    Args:
        raw: The parsed source (strings for CSV, typed columns for Parquet).
        spec: The dataset spec.

    Returns:
        Per-rule outcomes, the clean typed rows (spec columns and target, in spec
        order) and the quarantined rows with a ``__reasons`` column.
    """
    import numpy as np
    import pandas as pd

    n = len(raw)
    checks: list[CheckOutcome] = []
    wanted = [spec.target.column, *spec.columns]
    present = set(raw.columns)
    for col in wanted:
        ok = col in present
        checks.append(CheckOutcome(_safe(f"{col}__exists"), col, "column exists", ok,
                                   row_level=False,
                                   examples=[] if ok else [f"found: {sorted(present)[:20]}"]))
    frame = pd.DataFrame(index=raw.index)
    reasons = [[] for _ in range(n)]

    def flag(mask: Any, col: str, rule: str, name: str) -> None:
        idx = np.flatnonzero(np.asarray(mask))
        for i in idx:
            reasons[i].append(f"{col}: {rule}")
        examples = raw[col].iloc[idx[:EXAMPLES]].tolist() if col in present else []
        checks.append(CheckOutcome(_safe(name), col, rule, len(idx) == 0, len(idx),
                                   len(idx) / max(n, 1), [f"row {r}: {v!r}" for r, v in zip(
                                       idx[:EXAMPLES].tolist(), examples)]))

    for col in wanted:
        if col not in present:
            continue
        cs = spec.columns.get(col)
        if cs is not None and cs.type == "numeric":
            values = pd.to_numeric(raw[col], errors="coerce").astype("float64")
            flag(raw[col].notna() & values.isna(), col, "values are numbers", f"{col}__numeric")
            inf = np.isinf(values.to_numpy())
            flag(inf, col, "no infinite values", f"{col}__finite")
            frame[col] = values.where(~inf, np.nan)
        else:
            frame[col] = raw[col].astype("string").str.strip().astype(object).where(
                raw[col].notna(), None)
    if all(c in present for c in wanted):
        results = _run_suite(frame, _expectations(spec, present))
        for name, r in results.items():
            cfg = r.expectation_config
            col = cfg.kwargs["column"]
            res = r.result or {}
            if cfg.type == "expect_column_values_to_not_be_null":
                count = int(res.get("unexpected_count") or 0)
                checks.append(CheckOutcome(
                    name, col, f"at most {1 - cfg.kwargs.get('mostly', 1.0):.1%} missing",
                    bool(r.success), count, count / max(n, 1), row_level=False))
                continue
            idx = np.asarray(res.get("unexpected_index_list") or [], dtype=int)
            rule = {"expect_column_values_to_be_between":
                    f"values within [{cfg.kwargs.get('min_value')}, {cfg.kwargs.get('max_value')}]",
                    "expect_column_values_to_be_in_set": "values in the allowed set"}[cfg.type]
            mask = np.zeros(n, dtype=bool)
            mask[frame.index.get_indexer(idx)] = True
            flag(mask, col, rule, name)
    bad_rows = np.array([bool(r) for r in reasons], dtype=bool)
    quarantine = raw.loc[bad_rows].copy() if n else raw.copy()
    quarantine.insert(0, "__row", np.flatnonzero(bad_rows))
    quarantine["__reasons"] = ["; ".join(r) for r, b in zip(reasons, bad_rows) if b]
    clean = frame.loc[~bad_rows].reset_index(drop=True) if len(frame.columns) else frame
    if len(frame.columns) == len(wanted):
        clean.insert(0, "__row", np.flatnonzero(~bad_rows))
    return ValidationResult(checks, clean, quarantine.reset_index(drop=True),
                            float(bad_rows.mean()) if n else 0.0,
                            spec.validation.max_failed_fraction)
