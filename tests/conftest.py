"""Shared fixtures: an isolated state folder, specs for real data, and chain runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
ADULT_CSV = SHARED_DATA / "adult.csv"


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("TIDELINE_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh TIDELINE_HOME for one test."""
    state = tmp_path / "state"
    (state / "dagster").mkdir(parents=True)
    monkeypatch.setenv("TIDELINE_HOME", str(state))
    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster"))
    return state


def write_spec(path: Path, base: str, source: Path, **overrides) -> Path:
    """Copy a bundled spec with a different source and nested overrides."""
    spec = yaml.safe_load((REPO / "datasets" / f"{base}.yaml").read_text())
    spec["source"]["path"] = str(source)
    for dotted, value in overrides.items():
        node = spec
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def adult_sample(tmp_path_factory) -> Path:
    """The first 3,000 rows of UCI Adult, as the file a user would point at."""
    if not ADULT_CSV.exists():
        pytest.fail(f"{ADULT_CSV} is missing: the tests need ../shared/data beside the repo")
    lines = ADULT_CSV.read_text().splitlines(keepends=True)
    path = tmp_path_factory.mktemp("adult") / "adult_sample.csv"
    path.write_text("".join(lines[:3001]))
    return path


def fast_adult_spec(tmp_path: Path, source: Path, **overrides) -> Path:
    opts = {"training__epochs": 3, "training__reference_rows": 200,
            "quantization__calibration_rows": 128} | overrides
    return write_spec(tmp_path / "adult_fast.yaml", "adult", source, **opts)


class Chain:
    """Runs `training_job` from freshly built definitions on one real Dagster instance."""

    def __init__(self, home: Path, spec: Path, monkeypatch):
        import dagster as dg

        self.home, self.spec, self.monkeypatch = home, spec, monkeypatch
        (home / "dagster").mkdir(parents=True, exist_ok=True)
        self.instance = dg.DagsterInstance.local_temp(
            tempdir=str(home / "dagster"), overrides={"telemetry": {"enabled": False}})

    def defs(self):
        from definitions import build_definitions

        self.monkeypatch.setenv("TIDELINE_SPEC", str(self.spec))
        self.monkeypatch.setenv("TIDELINE_HOME", str(self.home))
        return build_definitions()

    def store(self):
        from pipelines.store import ArtifactStore

        return ArtifactStore(self.home / "store")

    def run(self):
        job = self.defs().resolve_job_def("training_job")
        return job.execute_in_process(instance=self.instance, raise_on_error=False)

    def latest(self, asset: str):
        import dagster as dg

        return self.instance.get_latest_materialization_event(dg.AssetKey(asset))


def materializations(result) -> dict[str, dict]:
    out = {}
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        out[event.asset_key.to_user_string()] = {k: v.value for k, v in meta.items()}
    return out


def failure_text(result) -> str:
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            texts.append(data.user_failure_data.description if data.user_failure_data
                         else data.error.message)
    return "\n".join(t or "" for t in texts)


@pytest.fixture
def chain_factory(home, monkeypatch):
    def make(spec: Path, state: Path | None = None) -> Chain:
        return Chain(state or home, spec, monkeypatch)

    return make


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TIDELINE_SKIP_SLOW"):
        skip = pytest.mark.skip(reason="TIDELINE_SKIP_SLOW is set")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


def demo_data(state: Path) -> Path:
    from pipelines.demo_data import write_breast_cancer

    return write_breast_cancer(state / "data" / "breast_cancer.parquet")


CHAIN = ["raw_data", "validated_features", "trained_weights", "quantized_weights", "model_card"]


@pytest.fixture(scope="session")
def s3_endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(params=["local", "s3"])
def store_root(request, tmp_path, monkeypatch):
    """An artifact-store root for each backend: a folder, and S3 on moto's server (a real
    S3-compatible HTTP endpoint on loopback); sets the environment its processes need."""
    if request.param == "local":
        return str(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    import boto3

    bucket = f"tideline-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/store"
