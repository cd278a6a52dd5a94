import pytest

from pipelines.spec import SpecError, expand_env, load_spec
from tests.conftest import REPO


def test_bundled_specs_load(monkeypatch):
    monkeypatch.setenv("TIDELINE_HOME", "/x")
    demo = load_spec(REPO / "datasets" / "demo.yaml")
    assert demo.source.path == "/x/data/breast_cancer.parquet"
    assert demo.source.resolved_format == "parquet" and len(demo.numeric_columns) == 30
    adult = load_spec(REPO / "datasets" / "adult.yaml")
    assert adult.sensitive == ["sex", "race"] and "fnlwgt" not in adult.columns
    # A spec's name is its model's: asset keys (breast_cancer/model_card), jobs, histories.
    assert (demo.name, adult.name) == ("breast_cancer", "adult")
    assert demo.schedule == adult.schedule == "0 2 * * *"


def test_env_expansion(monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    assert expand_env("${NOPE:-a/b}/c") == "a/b/c"
    with pytest.raises(SpecError, match="NOPE is not set"):
        expand_env("${NOPE}")


def test_spec_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsource: {path: a.csv}\ntarget: {column: y, positive: 1}\n"
                   "columns: {a: {type: numerik}}\n")
    with pytest.raises(SpecError) as err:
        load_spec(bad)
    assert "bad.yaml" in str(err.value) and "columns.a.type" in str(err.value)
    bad.write_text("name: x\nsource: {path: a.csv}\ntarget: {column: y, positive: 1}\n"
                   "columns: {a: {type: numeric}}\nsensitive: [b]\n")
    with pytest.raises(SpecError, match="sensitive columns"):
        load_spec(bad)


@pytest.mark.parametrize("block, given, field", [
    ("source: data.csv\n", "str 'data.csv'", "source"),
    ("source: {path: a.csv}\ndeployment: {edge: edge/}\n", "str 'edge/'", "deployment.edge"),
    ("source: {path: a.csv}\nmonitoring: [0.3]\n", "list [0.3]", "monitoring"),
])
def test_a_block_given_as_a_value_names_the_file_the_field_and_the_shape(tmp_path, block,
                                                                          given, field):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: x\n{block}target: {{column: y, positive: 1}}\n"
                   "columns: {a: {type: numeric}}\n")
    with pytest.raises(SpecError) as err:
        load_spec(bad)
    message = str(err.value)
    assert "\n" not in message and str(bad) in message
    assert f"{field}: must be a mapping of settings, not {given}" in message
    assert "write it as e.g. `" in message


def test_a_misspelt_field_lists_the_fields_allowed_where_it_is(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsource: {path: a.csv}\ntarget: {column: y, positive: 1}\n"
                   "columns: {a: {type: numeric}}\n"
                   "gate: {fairness: {demographic_parity_difference: {max: 0.1}}}\n")
    with pytest.raises(SpecError) as err:
        load_spec(bad)
    assert ("gate.fairness.demographic_parity_difference.max: is not a field there; the "
            "fields of gate.fairness.demographic_parity_difference are: absolute, relative"
            ) in str(err.value)


def test_stage_config_separates_concerns(monkeypatch):
    monkeypatch.setenv("TIDELINE_HOME", "/x")
    spec = load_spec(REPO / "datasets" / "demo.yaml")
    assert "training" not in spec.stage_config("validated_features")
    assert "path" not in spec.stage_config("validated_features")["source"]
    # Training takes the columns' names (its drift reference keeps them), not their rules.
    assert spec.stage_config("trained_weights")["columns"] == list(spec.columns)


def test_category_limits_default_and_override(tmp_path):
    from tests.conftest import write_spec

    spec = load_spec(write_spec(tmp_path / "s.yaml", "adult", tmp_path / "a.csv",
                                validation__max_categories=50,
                                columns__occupation__max_length=30))
    assert spec.category_limits("native-country") == (200, 50)
    assert spec.category_limits("occupation") == (30, 50)


def test_value_rules_keep_valid_edges(tmp_path):
    from tests.conftest import write_spec

    spec = load_spec(write_spec(tmp_path / "s.yaml", "adult", tmp_path / "a.csv",
                                training__dropout=0.0, training__weight_decay=0,
                                deployment__canary__share=1.0,
                                validation__max_failed_fraction=0.0, columns__age__min=100))
    assert spec.training.dropout == 0.0 and spec.columns["age"].min == spec.columns["age"].max


def test_a_schedule_that_is_not_cron_names_the_field(tmp_path):
    from tests.conftest import write_spec

    spec = write_spec(tmp_path / "s.yaml", "adult", tmp_path / "a.csv", schedule="0 2 * *")
    with pytest.raises(SpecError, match=r"s\.yaml.*schedule.*five fields"):
        load_spec(spec)
    spec = write_spec(tmp_path / "s.yaml", "adult", tmp_path / "a.csv",
                      deployment__batch={"source": "b.csv", "schedule": "nightly"})
    with pytest.raises(SpecError, match=r"deployment\.batch\.schedule.*five fields"):
        load_spec(spec)
    assert load_spec(write_spec(tmp_path / "s.yaml", "adult", tmp_path / "a.csv",
                                schedule=None)).schedule is None
