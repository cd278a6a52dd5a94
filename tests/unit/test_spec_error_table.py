"""Spec mistakes, one row each: every one ends in ONE line naming the file, the field path,
what was given and the shape expected (an example for a block, a mapping or a list).

tests/unit/test_error_messages.py holds the value rules (bounds, ranges, classes);
here are the mistakes of shape: types, keys, nesting, missing parts, the file itself.
"""

from __future__ import annotations

import typing
from collections.abc import Callable

import pytest
import yaml

from pipelines.spec import (
    _EXAMPLES,
    DatasetSpec,
    SpecError,
    _example,
    _strip,
    load_spec,
    spec_fields,
)
from tests.conftest import REPO, override


def _adult() -> dict:
    raw = yaml.safe_load((REPO / "datasets" / "adult.yaml").read_text())
    raw["source"]["path"] = "data/adult.csv"
    return raw


def _set(**overrides) -> Callable[[dict], None]:
    return lambda raw: override(raw, overrides)


def _drop(key: str) -> Callable[[dict], None]:
    return lambda raw: raw.pop(key)


# case -> (a change to datasets/adult.yaml, or the whole file's text; the field path the
# message names; what was given; the shape expected)
TABLE: dict[str, tuple[Callable[[dict], None] | str, str, str, str]] = {
    "wrong type": (_set(training__epochs="many"), "training.epochs:", "(got 'many')",
                   "must be a valid integer"),
    "misspelt key": (_set(traning={"epochs": 3}), "traning:", "is not a field there",
                     "did you mean training?"),
    "misspelt nested key": (_set(gate__min_metric={"roc_auc": 0.7}), "gate.min_metric:",
                            "is not a field there", "did you mean min_metrics?"),
    "misplaced key": (_set(learning_rate=0.01), "learning_rate:", "is not a field there",
                      "learning_rate is a field of training, tuning.search_space: move it "
                      "there"),
    "misplaced nested key": (_set(gate__use="upper_bound"), "gate.use:",
                             "is not a field there",
                             "use is a field of gate.fairness.<metric>: move it there"),
    "wrong nested shape": (
        _set(gate__fairness={"demographic_parity_difference": 0.1}),
        "gate.fairness.demographic_parity_difference:", "not float 0.1",
        "must be a mapping of settings, not float 0.1; write it as e.g. `gate: {fairness: "
        "{demographic_parity_difference: {absolute: 0.1, use: point}}}`"),
    "missing target": (_drop("target"), "target:", "is required",
                       "add it, e.g. `target: {column: income, positive: '>50K'}`"),
    "missing column type": (_set(columns__age={"min": 0}), "columns.age.type:", "is required",
                            "e.g. `columns: {age: {type: numeric, min: 0, max: 120}}`"),
    "target listed as a feature": (
        _set(**{"columns__income-per-year": {"type": "categorical"}}),
        "columns.income-per-year:", "the target column must not be listed in columns",
        "remove it there (target.column names it)"),
    "sensitive column not among the columns": (
        _set(sensitive=["sex", "gender"]), "sensitive:", "['gender'] are not listed in columns",
        "list them under columns or remove them from sensitive"),
    "negative learning rate": (_set(training__learning_rate=-0.5), "training.learning_rate:",
                               "(got -0.5)", "must be greater than 0"),
    "text instead of a block": (
        _set(training="fast"), "training:", "not str 'fast'",
        "must be a mapping of settings, not str 'fast'; write it as e.g. `training: "
        "{epochs: 30, learning_rate: 0.001}`"),
    "null instead of a block": (_set(target=None), "target:", "not null",
                                "write it as e.g. `target: {column: income, positive: '>50K'}`"),
    "list instead of a mapping": (
        _set(columns=["age", "sex"]), "columns:", "not list ['age', 'sex']",
        "must be a mapping, not list ['age', 'sex']; write it as e.g. `columns: {age: "
        "{type: numeric, min: 0, max: 120}, sex: {type: categorical}}`"),
    "text instead of a list": (_set(sensitive="sex"), "sensitive:", "not str 'sex'",
                               "must be a list, not str 'sex'; write it as e.g. "
                               "`sensitive: [sex, race]`"),
    "unknown metric": (_set(gate__min_metrics={"auroc": 0.7}), "gate.min_metrics:",
                       "(got 'auroc')",
                       "each key must be 'roc_auc', 'accuracy', 'f1', 'log_loss', 'brier' or "
                       "'ece'"),
    "bad enum value": (_set(source__duplicate_columns="maybe"), "source.duplicate_columns:",
                       "(got 'maybe')", "must be 'error', 'keep_first' or 'keep_identical'"),
    "bad enum value in a limit": (
        _set(gate__fairness={"equalized_odds_difference": {"absolute": 0.1, "use": "upper"}}),
        "gate.fairness.equalized_odds_difference.use:", "(got 'upper')",
        "must be 'point' or 'upper_bound'"),
    "no type fits": (_set(target__positive=[">50K"]), "target.positive:", "not list ['>50K']",
                     "must be a valid string, a valid integer or a valid number"),
    "env reference in a number": (
        _set(training__epochs="${EPOCHS:-3}"), "training.epochs:", "(got '${EPOCHS:-3}')",
        "${VAR} is expanded only in source.path, deployment.edge.target, "
        "deployment.batch.source and monitoring.alert_webhook: write the value itself here"),
    "byte size": (_set(resources__memory_budget="lots"), "resources.memory_budget:",
                  "(got 'lots')", "write it as e.g. `resources: {memory_budget: 4GB}`"),
    "YAML syntax error": ("name: x\ntraining:\n  epochs: 3\n   batch_size: 64\n",
                          "at line 4, column 14 (below top-level key training)",
                          "mapping values are not allowed in this context",
                          "fix the indentation or quoting there"),
    "empty file": ("# nothing yet\n", "is empty (no fields)", "is empty",
                   "write a mapping of fields (name, source, target, columns, ...)"),
    "a list for the whole spec": ("- name: x\n", "must be a mapping of fields",
                                  "not list [{'name': 'x'}]", "(name, source, target, columns"),
}


@pytest.mark.parametrize("case", list(TABLE))
def test_a_spec_mistake_is_one_line_naming_file_field_given_and_shape(tmp_path, case):
    change, field, given, shape = TABLE[case]
    path = tmp_path / "mine.yaml"
    if isinstance(change, str):
        path.write_text(change)
    else:
        raw = _adult()
        change(raw)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"dataset spec {path}"), message
    assert err.value.__cause__ is None and (err.value.__context__ is None
                                            or err.value.__suppress_context__), \
        "no chained traceback repeats the message"
    for fragment in (field, given, shape):
        assert fragment in message, (fragment, message)
    if not isinstance(change, str):
        assert message.count("; fix ") <= 1 and f"{path}: {field}" in message, \
            "the only problem named, right after the file"


def _shaped(field) -> bool:
    """A block, a mapping or a list: what a message shows an example of."""
    kind = _strip(field.annotation)
    return field.block is not None or typing.get_origin(kind) in (dict, list)


# A key standing for each `<...>` part, where the example is tried.
SAMPLE_KEYS = {"<column>": "sex", "<metric>": "demographic_parity_difference",
               "<param>": "frequency_scale", "<priority>": "high"}
# The smallest spec each example is set into (replacing what is there).
BASE = {"name": "x", "source": {"path": "a.csv"}, "target": {"column": "income",
                                                            "positive": ">50K"},
        "columns": {"age": {"type": "numeric"}, "sex": {"type": "categorical"},
                    "race": {"type": "categorical"}}}


def test_every_block_mapping_and_list_has_an_example():
    shaped = {f.dotted for f in spec_fields() if _shaped(f)}
    assert not shaped - set(_EXAMPLES), f"add to spec._EXAMPLES: {sorted(shaped - set(_EXAMPLES))}"
    known = {f.dotted for f in spec_fields()}
    assert not set(_EXAMPLES) - known, f"stale examples: {sorted(set(_EXAMPLES) - known)}"


@pytest.mark.parametrize("pattern", sorted(_EXAMPLES))
def test_each_example_is_a_valid_setting(pattern):
    import copy

    loc = tuple(SAMPLE_KEYS.get(part, part) for part in pattern.split("."))
    example = _example(loc)
    assert example is not None and example.startswith(f"{loc[0]}: ")
    value = yaml.safe_load(example)
    for key in loc:
        value = value[key]
    raw = copy.deepcopy(BASE)
    node = raw
    for key in loc[:-1]:
        node = node.setdefault(key, {})
    node[loc[-1]] = value
    DatasetSpec.model_validate(raw)


def test_an_example_names_the_key_the_spec_used():
    # A column or parameter named in the spec appears in the example, quoted where YAML
    # needs it.
    assert _example(("columns", "mean radius")) == (
        "columns: {mean radius: {type: numeric, min: 0, max: 120}}")
    assert _example(("monitoring", "columns", "a: b")).startswith(
        'monitoring: {columns: {"a: b": {')
    assert yaml.safe_load(_example(("monitoring", "columns", "a: b")))["monitoring"][
        "columns"]["a: b"] == {"method": "ks", "threshold": 0.01}


def test_no_example_for_a_place_outside_the_spec():
    assert _example(("training", "learnig_rate")) is None
