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

from pipelines.catalog import CHAIN as STAGES

REPO = Path(__file__).resolve().parent.parent
# A 6,000-row sample of UCI Adult kept in the repository (tests/data/README.md): the tests
# run from a clone with nothing beside it.
ADULT_CSV = REPO / "tests" / "data" / "adult_sample.csv"


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


def override(spec: dict, overrides: dict) -> dict:
    """Set nested spec fields in place: ``training__epochs=3`` sets ``training.epochs``."""
    for dotted, value in overrides.items():
        node = spec
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return spec


def write_spec(path: Path, base: str, source: Path, **overrides) -> Path:
    """Copy a bundled spec with a different source and nested overrides."""
    spec = yaml.safe_load((REPO / "datasets" / f"{base}.yaml").read_text())
    spec["source"]["path"] = str(source)
    path.write_text(yaml.safe_dump(override(spec, overrides), sort_keys=False))
    return path


@pytest.fixture(scope="session")
def adult_sample(tmp_path_factory) -> Path:
    """The first 3,000 rows of UCI Adult, as the file a user would point at."""
    lines = ADULT_CSV.read_text().splitlines(keepends=True)
    path = tmp_path_factory.mktemp("adult") / "adult_sample.csv"
    path.write_text("".join(lines[:3001]))
    return path


def fast_adult_spec(tmp_path: Path, source: Path, **overrides) -> Path:
    opts = {"training__epochs": 3, "training__reference_rows": 200,
            "quantization__calibration_rows": 128} | overrides
    return write_spec(tmp_path / "adult_fast.yaml", "adult", source, **opts)


class Chain:
    """Runs one model's `<model>_training_job` from freshly built definitions (its spec
    alone, as ``TIDELINE_SPEC``) on one real Dagster instance."""

    def __init__(self, home: Path, spec: Path, monkeypatch):
        import dagster as dg

        self.home, self.spec, self.monkeypatch = home, spec, monkeypatch
        self.model = yaml.safe_load(Path(spec).read_text())["name"]
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

    def job(self, kind: str) -> str:
        """The model's job of a kind: ``training`` -> ``<model>_training_job``."""
        return f"{self.model}_{kind}_job"

    def key(self, stage: str):
        import dagster as dg

        return dg.AssetKey([self.model, stage])

    def run(self, kind: str = "training"):
        job = self.defs().resolve_job_def(self.job(kind))
        return job.execute_in_process(instance=self.instance, raise_on_error=False)

    def latest(self, asset: str):
        return self.instance.get_latest_materialization_event(self.key(asset))


def materializations(result) -> dict[str, dict]:
    """Metadata of a one-model run's materializations, by stage name (``model_card``)."""
    out = {}
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        out[event.asset_key.path[-1]] = {k: v.value for k, v in meta.items()}
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


# The memoized stages of the training chain (pipelines.catalog.CHAIN less deployment).
CHAIN = [stage for stage in STAGES if stage != "deployment"]


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


class LakeFSServer:
    """Where the lakeFS tests talk to: a real server or the stand-in (``standin`` set)."""

    def __init__(self, endpoint, access_key_id, secret_access_key, namespace, standin=None):
        self.endpoint, self.access_key_id = endpoint, access_key_id
        self.secret_access_key, self.namespace, self.standin = secret_access_key, namespace, standin

    def env(self) -> dict[str, str]:
        return {"LAKEFS_ENDPOINT": self.endpoint, "LAKEFS_ACCESS_KEY_ID": self.access_key_id,
                "LAKEFS_SECRET_ACCESS_KEY": self.secret_access_key}

    def client(self):
        from pipelines.lakefs import make_client

        return make_client(self.endpoint, self.access_key_id, self.secret_access_key)

    def new_repo(self) -> str:
        """A fresh repository with a ``main`` branch; returns its name."""
        import lakefs

        name = f"tideline-{uuid.uuid4().hex[:10]}"
        lakefs.Repository(name, client=self.client()).create(
            storage_namespace=f"{self.namespace.rstrip('/')}/{name}", default_branch="main")
        return name


@pytest.fixture(scope="session")
def lakefs_server():
    """A real lakeFS server when ``LAKEFS_ENDPOINT`` is set (with ``LAKEFS_ACCESS_KEY_ID``,
    ``LAKEFS_SECRET_ACCESS_KEY`` and optionally ``LAKEFS_STORAGE_NAMESPACE``, default
    ``local://tideline-tests``), else the in-process stand-in of ``tests/lakefs_standin.py``."""
    if os.environ.get("LAKEFS_ENDPOINT"):
        yield LakeFSServer(os.environ["LAKEFS_ENDPOINT"], os.environ["LAKEFS_ACCESS_KEY_ID"],
                           os.environ["LAKEFS_SECRET_ACCESS_KEY"],
                           os.environ.get("LAKEFS_STORAGE_NAMESPACE", "local://tideline-tests"))
        return
    from tests.lakefs_standin import LakeFSStandIn

    standin = LakeFSStandIn()
    url = standin.serve()
    yield LakeFSServer(url, standin.access_key_id, standin.secret_access_key,
                       "local://standin", standin=standin)
    standin.close()


@pytest.fixture
def lakefs(lakefs_server, monkeypatch) -> LakeFSServer:
    """The lakeFS server, with its connection in this process's (and children's) environment."""
    for key, value in lakefs_server.env().items():
        monkeypatch.setenv(key, value)
    return lakefs_server


@pytest.fixture(params=["local", "s3", "lakefs"])
def store_root(request, tmp_path, monkeypatch):
    """An artifact-store root for each backend: a folder, S3 on moto's server (a real
    S3-compatible HTTP endpoint on loopback), and a lakeFS branch (real server or the
    stand-in); sets the environment its processes need."""
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "lakefs":
        server = request.getfixturevalue("lakefs")
        return f"lakefs://{server.new_repo()}/main/store"
    endpoint = request.getfixturevalue("s3_endpoint")
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    import boto3

    bucket = f"tideline-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/store"


def save_validated_features(store, spec, frame):
    """Store ``frame`` as a validated_features artifact, its preprocessing fitted on the
    train rows; returns its manifest and the preprocessing parameters."""
    from pipelines.artifacts import StageResult, save_result
    from pipelines.features import SPLIT_COLUMN, fit_preprocessing
    from pipelines.hashing import canonical_json

    params = fit_preprocessing(frame[frame[SPLIT_COLUMN] == "train"], spec)
    counts = frame[SPLIT_COLUMN].value_counts()
    manifest = save_result(store, StageResult(
        kind="validated_features", frames={"features": frame},
        files={"preprocess.json": canonical_json(params)},
        info={"rows": {s: int(counts[s]) for s in ("train", "val", "test")}}))
    return manifest, params
