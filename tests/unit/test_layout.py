"""The repository's own packages resolve here, and its layout rules hold."""

import ast
import json
import subprocess
import sys

from tests.conftest import REPO


def test_packages_resolve_to_this_repo():
    import assets
    import jobs
    import pipelines
    import resources
    import schedules

    for module in (assets, jobs, pipelines, resources, schedules):
        assert module.__file__.startswith(str(REPO)), module.__file__


def test_pipelines_never_import_dagster():
    for path in (REPO / "pipelines").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "dagster" for n in names), path


def test_definitions_import_no_heavy_library(tmp_path):
    code = ("import json, sys; import definitions; heavy = ['torch', 'mlflow', 'evidently', "
            "'great_expectations', 'onnx', 'onnxruntime', 'sklearn', 'pyarrow', 'dagster_k8s', "
            "'pandas', 'matplotlib']; print(json.dumps([m for m in heavy if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "TIDELINE_HOME": str(tmp_path),
                              "PATH": "/usr/bin:/bin"}, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert not any(tmp_path.iterdir()), "loading definitions must not write state"
