"""Recipe keys change exactly when a stage's bytes could: code it reaches, settings, libraries."""

import shutil
from pathlib import Path

import pytest

from pipelines.recipe import (
    KEYED_MODULES,
    PACKAGE_DIR,
    TRANSPORT_MODULES,
    code_fingerprint,
    environment,
    recipe_key,
)

STAGES = ("pipelines.stages.raw", "pipelines.stages.features", "pipelines.stages.training",
          "pipelines.stages.quantization", "pipelines.stages.model_card",
          "pipelines.stages.monitoring")


def test_recipe_key_depends_on_every_part():
    env = environment()
    base = recipe_key("a", "code", {"k": 1}, {"in": "b3:1"}, env)
    variants = [
        recipe_key("b", "code", {"k": 1}, {"in": "b3:1"}, env),
        recipe_key("a", "code2", {"k": 1}, {"in": "b3:1"}, env),
        recipe_key("a", "code", {"k": 2}, {"in": "b3:1"}, env),
        recipe_key("a", "code", {"k": 1}, {"in": "b3:2"}, env),
        recipe_key("a", "code", {"k": 1}, {"in": "b3:1"}, env | {"threads": 99}),
    ]
    assert base not in variants and len(set(variants)) == 5


def test_environment_has_the_stage_libraries_threads_and_python(monkeypatch):
    monkeypatch.setenv("TIDELINE_THREADS", "3")
    env = environment(code_fingerprint("pipelines.stages.training"))
    assert env["threads"] == 3 and env["python"].startswith("3.")
    assert env["libraries"]["torch"].startswith("2.13")
    assert {"numpy", "optuna", "onnx", "onnxscript"} <= set(env["libraries"])


def test_every_pipelines_module_is_declared_keyed_or_transport():
    modules = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert not KEYED_MODULES & TRANSPORT_MODULES
    undeclared = modules - KEYED_MODULES - TRANSPORT_MODULES
    assert not undeclared, f"declare these in pipelines/recipe.py: {sorted(undeclared)}"
    assert not (KEYED_MODULES | TRANSPORT_MODULES) - modules, "declared modules that are gone"


def test_each_stage_keys_on_the_libraries_it_uses_only():
    libs = {s.rsplit(".", 1)[1]: set(code_fingerprint(s).libraries) for s in STAGES}
    assert "great_expectations" in libs["features"]
    assert not {"great_expectations"} & (libs["training"] | libs["model_card"])
    assert {"torch", "optuna"} <= libs["training"] and "torch" not in libs["model_card"]
    assert {"fairlearn", "matplotlib", "sklearn"} <= libs["model_card"]
    assert "evidently" in libs["monitoring"] and "evidently" not in libs["training"]
    for stage_libs in libs.values():  # orchestration and transport never re-key a stage
        assert not {"dagster", "mlflow", "fsspec", "lakefs", "s3fs", "pydantic"} & stage_libs


def test_a_library_upgrade_rekeys_only_the_stages_that_import_it():
    keys = {}
    for bumped in (None, "great-expectations", "torch"):
        row = {}
        for stage in STAGES:
            fingerprint = code_fingerprint(stage)
            env = environment(fingerprint)
            if bumped in env["libraries"]:
                env = env | {"libraries": env["libraries"] | {bumped: "99.0"}}
            row[stage] = recipe_key(stage, fingerprint, {}, {}, env)
        keys[bumped] = row
    changed = {b: {s for s in STAGES if keys[b][s] != keys[None][s]}
               for b in ("great-expectations", "torch")}
    assert changed["great-expectations"] == {"pipelines.stages.features"}
    assert changed["torch"] == {"pipelines.stages.training", "pipelines.stages.quantization"}


@pytest.fixture
def package(tmp_path) -> Path:
    """A copy of pipelines/ to edit."""
    root = tmp_path / "pipelines"
    shutil.copytree(PACKAGE_DIR, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _keys(root: Path) -> dict[str, str]:
    return {s: code_fingerprint(s, root=root).code for s in STAGES}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_comments_docstrings_and_formatting_rekey_nothing(package):
    before = _keys(package)
    training = package / "stages" / "training.py"
    _edit(training, '"""Run (or resume) the study;', '"""Run or resume the study;')
    _edit(training, "    from pipelines.tuning import trial_config\n",
          "    # The study's best trial decides the settings.\n"
          "    from pipelines.tuning import trial_config  # noqa\n\n")
    _edit(package / "lakefs.py", '"""', '"""Edited: ')
    # A field's attribute docstring is its description in the schema and the reference.
    _edit(package / "spec.py", '"""Cell values read as missing."""',
          '"""Cell values that are read as missing values."""')
    lakefs = package / "lakefs.py"
    lakefs.write_text(lakefs.read_text() + "\n# a trailing comment\n")
    assert _keys(package) == before


def test_transport_code_rekeys_nothing(package):
    before = _keys(package)
    store = package / "store.py"
    _edit(store, "def get_bytes(self, content_hash: str) -> bytes:",
          "def get_bytes(self, content_hash: str) -> bytes:\n        _ = 1")
    _edit(package / "lakefs.py", "def is_lakefs(", "def _unused() -> int:\n    return 2\n\n\n"
                                                   "def is_lakefs(")
    assert _keys(package) == before


def test_a_one_token_change_rekeys_that_stage_and_what_reaches_it(package):
    before = _keys(package)
    _edit(package / "quantize.py", "def ", "def _helper_never_called() -> int:\n"
                                           "    return 1\n\n\ndef ")
    assert _keys(package) == before, "code no stage reaches is not part of any key"
    _edit(package / "stages" / "quantization.py", 'info={"tolerances":',
          'info={"format": 2, "tolerances":')
    after = _keys(package)
    changed = {s for s in STAGES if after[s] != before[s]}
    assert changed == {"pipelines.stages.quantization"}, changed


def test_a_shared_function_rekeys_every_stage_that_reaches_it(package):
    before = _keys(package)
    fingerprints = {s: code_fingerprint(s, root=package) for s in STAGES}
    callers = {s for s, f in fingerprints.items()
               if "pipelines.features:onnx_feeds" in f.definitions}
    assert callers and callers != set(STAGES), callers
    _edit(package / "features.py", "def onnx_feeds(", "def onnx_feeds(  # same\n")
    assert _keys(package) == before, "formatting inside a signature changes nothing"
    _edit(package / "features.py", "def onnx_feeds(", "def onnx_feeds(_unused: int = 0, *, ")
    after = _keys(package)
    assert {s for s in STAGES if after[s] != before[s]} == callers


def _compute_a(key):
    from pipelines.stages.quantization import build_variants
    return build_variants, 1


def _compute_b(key):
    from pipelines.stages.quantization import build_variants
    return build_variants, 2


def _compute_a_again(key):
    """The same logic as _compute_a, under another name and with comments."""
    from pipelines.stages.quantization import build_variants  # the stage

    return build_variants, 1  # unchanged


def test_the_compute_function_of_an_asset_is_part_of_the_key():
    stage = "pipelines.stages.quantization"
    a = code_fingerprint(stage, functions=(_compute_a,))
    assert a.code != code_fingerprint(stage, functions=(_compute_b,)).code
    assert a.code == code_fingerprint(stage, functions=(_compute_a_again,)).code
    assert a.code != code_fingerprint(stage).code


def _stage_helper(frame):
    return frame


def test_helpers_beside_the_compute_function_are_followed():
    fingerprint = code_fingerprint("pipelines.stages.quantization",
                                   functions=(lambda key: _stage_helper(key),))
    assert "tests.unit.test_recipe:_stage_helper" in fingerprint.definitions


def test_re_exports_conditional_definitions_and_item_assignments_are_followed(package):
    (package / "reexport.py").write_text(
        "from pipelines.features import onnx_feeds\n\n"
        "TABLE = {}\nTABLE['k'] = 1\n\n"
        "if True:\n    def helper():\n        return TABLE\n")
    (package / "stages" / "probe.py").write_text(
        "from pipelines.reexport import helper, onnx_feeds\n\n\n"
        "def build():\n    return onnx_feeds, helper()\n")
    first = code_fingerprint("pipelines.stages.probe", root=package)
    assert {"pipelines.features:onnx_feeds", "pipelines.reexport:helper",
            "pipelines.reexport:TABLE"} <= set(first.definitions)
    _edit(package / "reexport.py", "TABLE['k'] = 1", "TABLE['k'] = 2")
    assert code_fingerprint("pipelines.stages.probe", root=package).code != first.code


def test_relative_imports_are_refused(package):
    (package / "stages" / "probe.py").write_text("from .raw import snapshot_source\n")
    with pytest.raises(ValueError, match="relative and star imports"):
        code_fingerprint("pipelines.stages.probe", root=package)


def test_a_lambda_keys_on_itself_not_on_the_lines_around_it():
    a = [lambda key: _stage_helper(key),
         ]
    b = [lambda key: _stage_helper(key)]
    stage = "pipelines.stages.quantization"
    assert (code_fingerprint(stage, functions=(a[0],)).code
            == code_fingerprint(stage, functions=(b[0],)).code)
