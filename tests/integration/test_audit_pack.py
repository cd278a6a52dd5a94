"""Audit packs of models deployed by the real chain: make audit, serving and the edge check.

A tampered model file (one byte) must fail signature verification in the serving service
(the old model keeps serving), in the edge bundle's manifest check, and in `make audit`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import httpx
import pytest

from pipelines import audit, deploy
from pipelines.store import ArtifactStore
from tests.conftest import REPO
from tests.lineage_schema import check_run_event
from tests.serving_support import Service, copy_home, held_out_records, train_two_versions

pytestmark = pytest.mark.slow
MODEL = "adult"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, adult_sample):
    return train_two_versions(tmp_path_factory.mktemp("audit"), adult_sample)


def audit_command(home, spec, version: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TIDELINE_DATASETS", "TIDELINE_MODEL", "TIDELINE_SIGNING_KEY",
                        "TIDELINE_SIGNING_PUBLIC_KEY")}
    env |= {"PYTHONPATH": str(REPO), "TIDELINE_HOME": str(home), "TIDELINE_SPEC": str(spec)}
    return subprocess.run([sys.executable, "-m", "cli.audit", "--version", str(version)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def flip_one_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_each_deployed_version_has_a_pack_that_make_audit_checks_from_the_store(
        trained, tmp_path):
    from cyclonedx.schema import OutputFormat, SchemaVersion
    from cyclonedx.validation import make_schemabased_validator

    home, spec = copy_home(trained, tmp_path / "home")
    store = ArtifactStore(home / "store")
    stable = deploy.current(store, MODEL).stable
    assert [e.model.audit_pack is not None for e in deploy.entries(store, MODEL)] == [True] * 2
    assert deploy.read_head(store, MODEL).stable.audit_pack == stable.audit_pack
    files = store.get_manifest(stable.audit_pack).files

    bom = store.get_bytes(files["bom.cdx.json"])
    validator = make_schemabased_validator(OutputFormat.JSON, SchemaVersion.V1_6)
    assert validator.validate_str(bom.decode()) is None
    doc = json.loads(bom)
    data = {c["name"]: c["version"] for c in doc["components"] if c["type"] == "data"}
    card = json.loads(store.get_bytes(store.get_manifest(stable.model_card).files["card.json"]))
    assert data[f"{MODEL}/validated_features"] == card["lineage"]["validated_features"]
    assert store.get_manifest(data[f"{MODEL}/raw_data"]).kind == "raw_data"
    libraries = {c["name"]: c["version"] for c in doc["components"] if c["type"] == "library"}
    assert {"torch", "onnxruntime", "numpy"} <= set(libraries)

    stages = json.loads(store.get_bytes(files["lineage.json"]))["stages"]
    assert set(stages) == set(audit.STAGES) and all(stages.values())
    assert stages["trained_weights"]["output"] == stable.trained_weights
    for kept in stages.values():
        assert [e["eventType"] for e in kept["events"]] == ["START", "COMPLETE"]
        for event in kept["events"]:
            assert check_run_event(event) == ([], [])
    emitted = [json.loads(line) for line in
               (home / "lineage" / "events.jsonl").read_text().splitlines()]
    assert [check_run_event(event) for event in emitted] == [([], [])] * len(emitted)
    versions = {o["facets"]["version"]["datasetVersion"] for e in emitted
                for o in e.get("outputs", [])}
    assert stable.trained_weights in versions, "the file transport got the events too"

    from pipelines.paths import mlflow_uri
    from pipelines.tracking import import_mlflow

    client = import_mlflow().MlflowClient(tracking_uri=mlflow_uri(home))
    version = client.get_model_version(MODEL, str(stable.version))
    assert version.tags[audit.MLFLOW_TAG] == stable.audit_pack
    logged = {a.path for a in client.list_artifacts(version.run_id, "audit_pack")}
    assert "audit_pack/bom.cdx.json" in logged and "audit_pack/signatures" in logged

    ok = audit_command(home, spec, 2)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "model_int8.onnx: sha256" in ok.stdout and "ML-BOM (CycloneDX 1.6, valid)" in ok.stdout
    assert "lineage: 10 OpenLineage events" in ok.stdout and ", 0 failed" in ok.stdout

    flip_one_byte(store.local_path(stable.variants["int8"].content_hash))
    bad = audit_command(home, spec, 2)
    assert bad.returncode != 0
    assert "signature verification failed" in bad.stdout
    assert "model_int8.onnx" in bad.stderr.strip().splitlines()[-1]
    assert audit_command(home, spec, 1).returncode == 0, "version 1 is untouched"


def test_a_model_whose_signature_fails_is_refused_and_the_old_one_keeps_serving(
        trained, tmp_path):
    home, spec = copy_home(trained, tmp_path / "home")
    records, _, _ = held_out_records(home)
    store = ArtifactStore(home / "store")
    with Service(home, spec) as svc:
        key = svc.api_key()
        deploy.rollback(store, MODEL)  # stable v1
        svc.wait_for(lambda s: s["stable"] == 1)
        v2 = deploy.entries(store, MODEL)[1].model
        # A changed int8 file whose record was rewritten to match it (sha256 and content
        # hash): only the signature, which needs the private key, still tells.
        data = bytearray(store.get_bytes(v2.variants["int8"].content_hash))
        data[len(data) // 2] ^= 0x01
        forged = deploy.VariantFile(store.put_bytes(bytes(data)),
                                    hashlib.sha256(data).hexdigest(), len(data))
        deploy.deploy(store, MODEL, dataclasses.replace(
            v2, variants=v2.variants | {"int8": forged}), canary_share=0.0)
        state = svc.wait_for(lambda s: s["last_reload"]["status"] == "refused")
        error = state["last_reload"]["error"]
        assert "model_int8.onnx: signature verification failed" in error and "refused" in error
        assert state["stable"] == 1 and state["ready"]
        answer = httpx.post(f"{svc.url}/predict", json={"records": records[:3]},
                            headers={"X-API-Key": key}, timeout=30)
        assert answer.status_code == 200 and answer.json()["model_version"] == 1

        # A model deployed before audit packs (no pack in its record) is still served.
        deploy.rollback(store, MODEL)  # withdraw the refused one: back to v1 alone
        deploy.deploy(store, MODEL, dataclasses.replace(v2, audit_pack=None), canary_share=0.0)
        svc.wait_for(lambda s: s["stable"] == 2)
    assert "deployed before audit packs; served without a signature check" in \
        svc.log.read_text()


def test_require_signed_refuses_a_model_without_a_pack(trained, tmp_path, monkeypatch):
    from serving.models import ModelLoadError, load_model

    home, _ = copy_home(trained, tmp_path / "home")
    monkeypatch.setenv("TIDELINE_HOME", str(home))
    store = ArtifactStore(home / "store")
    stable = deploy.current(store, MODEL).stable
    assert load_model(store, stable, {"int8"}).version == 2
    monkeypatch.setenv(audit.REQUIRE_SIGNED_ENV, "1")
    assert load_model(store, stable, {"int8"}).version == 2, "a signed model loads"
    with pytest.raises(ModelLoadError, match="without an audit pack.*TIDELINE_REQUIRE_SIGNED"):
        load_model(store, dataclasses.replace(stable, audit_pack=None), {"int8"})


def test_the_edge_bundle_carries_its_signature_and_its_check_verifies_it(
        trained, tmp_path, monkeypatch):
    from pipelines.repair import repair
    from pipelines.targets import check_edge, edge_files

    home, _ = copy_home(trained, tmp_path / "home")
    monkeypatch.setenv("TIDELINE_HOME", str(home))
    store = ArtifactStore(home / "store")
    stable = deploy.current(store, MODEL).stable
    folder = home / "edge" / MODEL / "v2"
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json", "model.sig", "model_int8.onnx"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["signature"] == "model.sig" and len(manifest["signing_key"]) == 64
    public = home / "signing" / "model_signing_key.pub"

    def device_check() -> subprocess.CompletedProcess:
        """The model-signing package's own command line, as a device runs it."""
        return subprocess.run([sys.executable, "-m", "model_signing", "verify", "key",
                               "--signature", str(folder / "model.sig"), "--public_key",
                               str(public), str(folder)], capture_output=True, text=True,
                              timeout=120)

    assert device_check().returncode == 0
    files = edge_files(store, MODEL, stable)
    target = str(home / "edge")
    assert check_edge(target, MODEL, 2, files) == ([], [])

    flip_one_byte(folder / "model_int8.onnx")
    problems, _ = check_edge(target, MODEL, 2, files)
    assert "model_int8.onnx does not match its sha256" in problems
    assert any(p.startswith("model_int8.onnx: signature verification failed") for p in problems)
    assert device_check().returncode != 0
    report = repair(store, MODEL, edge_target=target)
    assert "signature verification failed" in " ".join(report.lines())
    assert check_edge(target, MODEL, 2, files) == ([], []) and device_check().returncode == 0
