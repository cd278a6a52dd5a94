from pipelines.recipe import code_fingerprint, environment, recipe_key


def test_fingerprint_follows_imports_inside_pipelines():
    training = code_fingerprint("pipelines.stages.training")
    assert training != code_fingerprint("pipelines.stages.quantization")
    assert code_fingerprint("pipelines.stages.training") == training


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


def test_environment_has_library_versions_and_threads(monkeypatch):
    monkeypatch.setenv("TIDELINE_THREADS", "3")
    env = environment()
    assert env["threads"] == 3
    assert set(env["libraries"]) == {"torch", "numpy", "pandas", "pyarrow", "onnx", "onnxruntime"}
    assert env["libraries"]["torch"].startswith("2.13")
