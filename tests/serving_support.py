"""Helpers for tests of the serving service: trained deployments and a real service process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import yaml

from tests.conftest import ADULT_CSV, REPO, Chain, fast_adult_spec, override, write_spec

LOOSE_GATE = {"min_metrics": {"roc_auc": 0.6}, "tolerances": {"roc_auc": 0.5, "log_loss": 5.0}}
# The second model of the two-model service: Adult on a few columns.
SMALL_COLUMNS = ("age", "education-num", "hours-per-week", "capital-gain", "relationship",
                 "race", "sex")


def datasets_folder(tmp_path: Path, monkeypatch, **small_overrides) -> Path:
    """A datasets folder of two Adult specs, ``adult`` and ``adult_small`` (age, sex,
    occupation; ``small_overrides`` on top), that the service reads; its home is
    ``tmp_path/home`` and no other spec, default model, store or production folder is set."""
    folder = tmp_path / "datasets"
    folder.mkdir()
    write_spec(folder / "adult.yaml", "adult", ADULT_CSV)
    write_spec(folder / "small.yaml", "adult", ADULT_CSV, name="adult_small",
               columns={"age": {"type": "numeric"},
                        "sex": {"type": "categorical", "categories": ["Female", "Male"]},
                        "occupation": {"type": "categorical"}},
               sensitive=["sex"], **small_overrides)
    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TIDELINE_DATASETS", str(folder))
    for name in ("TIDELINE_SPEC", "TIDELINE_DEFAULT_MODEL", "TIDELINE_STORE",
                 "TIDELINE_PRODUCTION_DIR"):
        monkeypatch.delenv(name, raising=False)
    return folder


def train_two_versions(base: Path, adult_sample: Path) -> Path:
    """Train and deploy two Adult models (v1, then v2 as stable); returns the home."""
    home = base / "home"
    source = base / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    with _env() as mp:
        for seed in (0, 1):
            spec = fast_adult_spec(base, source, gate=LOOSE_GATE, training__seed=seed,
                                   deployment__canary__share=0.0)
            result = Chain(home, spec, mp).run()
            assert result.success, "training the serving fixture failed"
    (home / "spec.yaml").write_text((base / "adult_fast.yaml").read_text())
    return home


def add_small_model(trained: Path, base: Path, adult_sample: Path) -> tuple[Path, Path]:
    """A copy of a trained home with a second model, ``adult_small``, trained and deployed.

    Returns the home and a datasets folder holding both specs (``adult.yaml``,
    ``adult_small.yaml``), for ``TIDELINE_DATASETS``.
    """
    home = base / "home"
    shutil.copytree(trained, home, ignore=shutil.ignore_patterns("locks"))
    adult = yaml.safe_load((home / "spec.yaml").read_text())
    (base / "small").mkdir()
    spec = fast_adult_spec(base / "small", adult_sample, gate=LOOSE_GATE, name="adult_small",
                           columns={c: adult["columns"][c] for c in SMALL_COLUMNS},
                           deployment__canary__share=0.0)
    with _env() as mp:
        assert Chain(home, spec, mp).run().success, "training adult_small failed"
    datasets = base / "datasets"
    datasets.mkdir()
    shutil.copy(home / "spec.yaml", datasets / "adult.yaml")
    shutil.copy(spec, datasets / "adult_small.yaml")
    return home, datasets


class _env:
    def __enter__(self):
        import pytest

        self._ctx = pytest.MonkeyPatch.context()
        return self._ctx.__enter__()

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def copy_home(trained: Path, dest: Path, **spec_overrides) -> tuple[Path, Path]:
    """A private copy of a trained home, with its spec changed as the test needs."""
    shutil.copytree(trained, dest, ignore=shutil.ignore_patterns("locks"))
    spec = override(yaml.safe_load((dest / "spec.yaml").read_text()), spec_overrides)
    path = dest / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest, path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(home: Path, spec: Path, **extra: str) -> dict[str, str]:
    """The service's environment: ``spec`` is one spec file, or a datasets folder of them."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TIDELINE_SPEC", "TIDELINE_DATASETS", "TIDELINE_DEFAULT_MODEL")}
    models = ({"TIDELINE_DATASETS": str(spec)} if Path(spec).is_dir()
              else {"TIDELINE_SPEC": str(spec)})
    return {**env, "PYTHONPATH": str(REPO), "TIDELINE_HOME": str(home), **models,
            "TIDELINE_POLL_S": "0.1", "DAGSTER_HOME": str(home / "dagster"), **extra}


class Service:
    """``python -m cli.serve`` in a subprocess on a loopback port.

    ``spec`` is one dataset spec (served alone) or a datasets folder (every model in it).
    """

    def __init__(self, home: Path, spec: Path, workers: int = 1, **env: str):
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = service_env(home, spec, **env)
        self.log = home / f"service-{self.port}.log"
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def api_key(self, name: str = "tests") -> str:
        env = self.env
        if "TIDELINE_DATASETS" in env:  # deployctl acts on one model, even for a shared key
            first = sorted(Path(env["TIDELINE_DATASETS"]).glob("*.yaml"))[0]
            env = env | {"TIDELINE_MODEL": yaml.safe_load(first.read_text())["name"]}
        out = subprocess.run([sys.executable, "-m", "cli.deployctl", "api-key", name], cwd=REPO,
                             env=env, capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]

    def __enter__(self) -> Service:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.serve", "--port", str(self.port), "--workers",
             str(self.workers), "--log-level", "warning"],
            cwd=REPO, env=self.env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"service did not become ready:\n{self.log.read_text()}")

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def ready(self) -> dict:
        return httpx.get(f"{self.url}/ready", timeout=5).json()

    def wait_for(self, predicate, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.ready()
            if predicate(state):
                return state
            time.sleep(0.05)
        raise AssertionError(f"service never reached the state; last /ready: {state}")


def held_out_records(home: Path, model_name: str = "adult"):
    """Held-out rows of the stable model as raw JSON records, and the card's predictions."""
    from pipelines import deploy
    from pipelines.artifacts import read_frame
    from pipelines.features import ROW_COLUMN, SPLIT_COLUMN
    from pipelines.store import ArtifactStore

    store = ArtifactStore(home / "store")
    stable = deploy.current(store, model_name).stable
    card = store.get_manifest(stable.model_card)
    predictions = read_frame(store, card, "predictions")
    lineage = json.loads(store.get_bytes(card.files["card.json"]))["lineage"]
    features = read_frame(store, store.get_manifest(lineage["validated_features"]), "features")
    test = features[features[SPLIT_COLUMN] == "test"].reset_index(drop=True)
    columns = [*stable.inputs.numeric, *stable.inputs.categorical]
    merged = test.merge(predictions, on=ROW_COLUMN, validate="one_to_one")
    records = json.loads(merged[columns].to_json(orient="records"))
    return records, merged, stable


class Receiver:
    """A real HTTP server on loopback that records the alerts posted to it."""

    def __init__(self, fail_first: int = 0):
        received = self.received = []
        attempts = self.attempts = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                attempts.append(body)
                if len(attempts) <= fail_first:  # a receiver that is briefly down
                    self.send_response(503)
                    self.end_headers()
                    return
                received.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self):
        return [a["event"] for a in self.received]
