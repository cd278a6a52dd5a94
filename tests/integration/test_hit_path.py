"""A cache-hit run loads no data and imports no heavy library."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, demo_data

pytestmark = pytest.mark.slow

HEAVY = ["torch", "mlflow", "great_expectations", "onnx", "onnxruntime", "sklearn", "pyarrow",
         "pandas", "matplotlib", "evidently",
         # Tracing is off without OTEL_EXPORTER_OTLP_ENDPOINT: not even the SDK is imported.
         "opentelemetry.sdk", "opentelemetry.exporter",
         # The audit pack's libraries: only a miss signs, builds a BOM or emits lineage.
         "model_signing", "sigstore", "openlineage", "cyclonedx"]

SCRIPT = """
import json, sys
import dagster as dg
from definitions import build_definitions
instance = dg.DagsterInstance.get()
job = build_definitions().resolve_job_def("breast_cancer_training_job")
result = job.execute_in_process(instance=instance)
caches = [e.materialization.metadata["cache"].value
          for e in result.get_asset_materialization_events()
          if "cache" in e.materialization.metadata]
deployed = [e.materialization.metadata["outcome"].value
            for e in result.get_asset_materialization_events()
            if "outcome" in e.materialization.metadata]
heavy = [m for m in %r if m in sys.modules]
print(json.dumps({"caches": caches, "deployed": deployed, "heavy": heavy}))
"""


def run(home):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
           "PYTHONPATH": str(REPO), "TIDELINE_HOME": str(home),
           "DAGSTER_HOME": str(home / "dagster"), "TIDELINE_SPEC": "demo"}
    out = subprocess.run([sys.executable, "-c", SCRIPT % HEAVY], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_hit_run_imports_nothing_heavy(home):
    demo_data(home)
    first = run(home)
    assert set(first["caches"]) == {"miss"} and "torch" in first["heavy"]
    assert first["deployed"] == ["deployed"]
    second = run(home)
    assert second["caches"] == ["hit"] * 5 and second["deployed"] == ["unchanged"]
    assert second["heavy"] == []
