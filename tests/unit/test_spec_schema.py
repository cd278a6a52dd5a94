"""The spec's JSON Schema and reference match the models, and editors can rely on them.

``datasets/spec.schema.json`` and ``docs/spec-reference.md`` are generated (``make
schema``); every spec in ``datasets/`` binds the schema on its first line and passes it,
and the schema refuses what the loader refuses and accepts what it accepts, ``${VAR}``
references included.
"""

from __future__ import annotations

import json

import pytest
import yaml
from jsonschema.validators import validator_for

from cli import schema as schema_cli
from pipelines.spec import ENV_FIELDS, SpecError, load_spec, spec_fields
from tests.conftest import REPO, override

SPECS = sorted((REPO / "datasets").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator():
    schema = json.loads((REPO / schema_cli.SCHEMA).read_text(encoding="utf-8"))
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(validator, raw: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}"
            for e in validator.iter_errors(raw)]


def test_generated_files_are_current():
    for relative, text in schema_cli.outputs().items():
        path = REPO / relative
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        assert current == text, (f"{relative} is stale (pipelines/spec.py changed): run "
                                 "`make schema` and commit the result")


def test_make_schema_writes_the_files_and_check_reports_staleness(tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.setattr(schema_cli, "REPO", tmp_path)
    assert schema_cli.main(["--check"]) == 1, "missing files are stale"
    assert "run `make schema`" in capsys.readouterr().out
    assert not (tmp_path / "datasets").exists(), "--check writes nothing"
    assert schema_cli.main([]) == 0
    for relative, text in schema_cli.outputs().items():
        assert (tmp_path / relative).read_text(encoding="utf-8") == text
        assert text.endswith("\n") and not text.endswith("\n\n")
    assert schema_cli.main(["--check"]) == 0
    written = (tmp_path / schema_cli.SCHEMA).read_text(encoding="utf-8")
    assert written == json.dumps(json.loads(written), indent=2, sort_keys=True,
                                 ensure_ascii=False) + "\n", "keys sorted, stable layout"


def test_every_field_is_described_and_in_the_reference():
    reference = (REPO / schema_cli.REFERENCE).read_text(encoding="utf-8")
    for field in spec_fields():
        if field.info is not None:
            assert field.info.description, (f"{field.dotted}: give the field a docstring in "
                                            "pipelines/spec.py")
        assert f"| `{field.dotted}` |" in reference, field.dotted
    # The lead's recent fields, with their choices and defaults.
    assert ("| `gate.fairness.<metric>.use` | `point` / `upper_bound` | `point` |"
            in reference)
    assert ("| `source.duplicate_columns` | `error` / `keep_first` / `keep_identical` | "
            "`error` |") in reference


def test_the_schema_carries_defaults_and_descriptions_for_editors():
    schema = schema_cli.json_schema()
    gate = schema["$defs"]["GateSpec"]["properties"]
    # Defaults made by a factory are shown too, not only literal ones.
    assert gate["min_metrics"]["default"] == {"roc_auc": 0.6}
    assert gate["fairness"]["additionalProperties"] == {"$ref": "#/$defs/FairnessLimitSpec"}
    use = schema["$defs"]["FairnessLimitSpec"]["properties"]["use"]
    assert use["enum"] == ["point", "upper_bound"] and use["default"] == "point"
    assert "upper end" in use["description"]
    assert schema["additionalProperties"] is False and schema["required"] == [
        "name", "source", "target", "columns"]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_every_example_spec_binds_and_passes_the_schema(spec, validator):
    text = spec.read_text(encoding="utf-8")
    assert text.splitlines()[0] == schema_cli.MODELINE, (
        f"{spec.name}: make its first line `{schema_cli.MODELINE}`")
    assert schema_errors(validator, yaml.safe_load(text)) == []
    load_spec(spec)  # the loader agrees


def _adult() -> dict:
    raw = yaml.safe_load((REPO / "datasets" / "adult.yaml").read_text())
    raw["source"]["path"] = "data/adult.csv"
    return raw


def test_env_references_pass_the_schema_where_the_loader_expands_them(validator, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("TIDELINE_TEST_DIR", "/data")
    monkeypatch.delenv("TIDELINE_TEST_UNSET", raising=False)
    references = {"source.path": "${TIDELINE_TEST_DIR}/adult.csv",
                  "deployment.edge.target": "${TIDELINE_TEST_UNSET:-/mnt/edge}",
                  "deployment.batch.source": "${TIDELINE_TEST_DIR:-x}/batch.csv",
                  "monitoring.alert_webhook": "${TIDELINE_TEST_UNSET:-}"}
    assert set(references) == set(ENV_FIELDS), "a reference in every field that expands them"
    raw = override(_adult(), {k.replace(".", "__"): v for k, v in references.items()})
    assert schema_errors(validator, raw) == []
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = load_spec(path)
    assert spec.source.path == "/data/adult.csv"
    assert spec.deployment.edge.target == "/mnt/edge"
    assert spec.deployment.batch.source == "/data/batch.csv"
    assert spec.monitoring.alert_webhook == ""


def test_an_env_reference_in_a_number_is_refused_by_both(validator, tmp_path):
    # ``${VAR}`` is expanded in ENV_FIELDS only (after YAML parsing, on those strings): a
    # number written as one is refused by the loader, so the schema refuses it too.
    raw = override(_adult(), {"training__epochs": "${EPOCHS:-3}"})
    assert [e.split(":")[0] for e in schema_errors(validator, raw)] == ["training.epochs"]
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SpecError, match=r"training\.epochs: .*\$\{VAR\} is expanded only in "
                                        r"source\.path"):
        load_spec(path)


# Mistakes in the shape of a spec: the editor (schema) flags each at the field the loader
# names.
SHAPE_MISTAKES = {
    "wrong type": ({"training__epochs": "many"}, "training.epochs"),
    "misspelt key": ({"training__learnig_rate": 0.01}, "training"),
    "bad choice": ({"source__duplicate_columns": "maybe"}, "source.duplicate_columns"),
    "unknown metric": ({"gate__min_metrics": {"auroc": 0.7}}, "gate.min_metrics"),
    "limit not a block": ({"gate__fairness": {"demographic_parity_difference": 0.1}},
                          "gate.fairness.demographic_parity_difference"),
    "bad fairness use": ({"gate__fairness": {"equalized_odds_difference": {"use": "upper"}}},
                         "gate.fairness.equalized_odds_difference.use"),
    "negative learning rate": ({"training__learning_rate": -0.5}, "training.learning_rate"),
    "list for a mapping": ({"columns": ["age", "sex"]}, "columns"),
    "text for a block": ({"training": "fast"}, "training"),
}


@pytest.mark.parametrize("case", list(SHAPE_MISTAKES))
def test_the_schema_refuses_what_the_loader_refuses(case, validator, tmp_path):
    overrides, field = SHAPE_MISTAKES[case]
    raw = override(_adult(), overrides)
    assert field in [e.split(": ")[0] for e in schema_errors(validator, raw)]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SpecError, match=rf": {field}[.:]"):
        load_spec(path)
