"""Audit packs on a small store: keys, signatures, the ML-BOM, OpenLineage, kill-safe writes."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from pipelines import audit, deploy, lineage, signing
from pipelines.hashing import canonical_json
from pipelines.mlbom import validate_bom
from pipelines.store import ArtifactStore, Manifest
from tests.conftest import REPO
from tests.lineage_schema import check_run_event, run_event_errors

MODEL = "toy"


def toy_model(store: ArtifactStore) -> deploy.DeployedModel:
    """A deployed-model record whose files are in the store (bytes that stand for ONNX)."""
    variants = {}
    for variant in ("fp32", "int8"):
        data = f"onnx bytes of the {variant} variant ".encode() * 50
        variants[variant] = deploy.VariantFile(store.put_bytes(data),
                                               hashlib.sha256(data).hexdigest(), len(data))
    card = {"description": "A toy model.", "intended_use": "Tests.", "limitations": "None.",
            "lineage": {"validated_features": store.put_bytes(b"features")},
            "training": {"architecture": "mlp"},
            "variants": {"fp32": {"metrics": {"roc_auc": 0.9, "rows": 10}}}}
    files = {"card.json": store.put_bytes(canonical_json(card)),
             "card.html": store.put_bytes(b"<html>card</html>")}
    card_hash = store.put_manifest(Manifest("model_card", files, {}))
    weights = store.put_manifest(Manifest("trained_weights", {}, {"n": 1}))
    return deploy.DeployedModel(version=1, trained_weights=weights, quantized_weights=weights,
                                model_card=card_hash, variants=variants, edge_variant="int8",
                                inputs=deploy.ModelInputs(("age",), ("sex",)))


@pytest.fixture
def no_keys_configured(monkeypatch):
    for name in (signing.SIGNING_KEY_ENV, signing.PUBLIC_KEY_ENV, audit.REQUIRE_SIGNED_ENV):
        monkeypatch.delenv(name, raising=False)


def _pem_key(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def test_a_key_is_generated_once_private_and_signatures_fail_on_one_changed_byte(
        tmp_path, no_keys_configured):
    state = tmp_path / "state"
    key = signing.signing_key(state)
    assert key.source == "generated"
    assert stat.S_IMODE(key.path.stat().st_mode) == 0o600
    assert signing.signing_key(state).public_pem == key.public_pem, "never regenerated"
    assert signing.trusted_public_keys(state) == [key.public_pem]
    data = b"model bytes " * 100
    signature = signing.sign_file(key, "toy-v1", "model_int8.onnx", data)
    assert signing.verify_file([key.public_pem], signature, "model_int8.onnx", data) == \
        key.fingerprint
    tampered = bytearray(data)
    tampered[7] ^= 1
    with pytest.raises(signing.SignatureError, match=r"^model_int8\.onnx: signature "
                                                     r"verification failed \(sha256"):
        signing.verify_file([key.public_pem], signature, "model_int8.onnx", bytes(tampered))
    other = signing.signing_key(tmp_path / "other-state")
    with pytest.raises(signing.SignatureError, match="not a trusted key"):
        signing.verify_file([other.public_pem], signature, "model_int8.onnx", data)


def test_a_user_key_signs_and_a_public_key_that_does_not_match_it_stops_the_pack(
        tmp_path, monkeypatch, no_keys_configured):
    store = ArtifactStore(tmp_path / "store")
    model = toy_model(store)
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(_pem_key(tmp_path / "mine.pem")))
    pack = audit.write_pack(store, MODEL, model, state=tmp_path / "state")
    info = store.get_manifest(pack).info
    assert info["signing_key"]["source"] == signing.SIGNING_KEY_ENV
    assert not (tmp_path / "state" / "signing" / signing.GENERATED_KEY).exists(), \
        "no key generated when one is given"
    # Its public half is left in the state folder: a service sharing it, without
    # TIDELINE_SIGNING_KEY, trusts what the deployment signed.
    registered = list((tmp_path / "state" / "signing" / signing.TRUSTED_FOLDER).glob("*.pub"))
    assert [p.read_bytes() for p in registered] == [signing.signing_key(tmp_path).public_pem]
    monkeypatch.delenv(signing.SIGNING_KEY_ENV)
    assert signing.trusted_public_keys(tmp_path / "state") == [registered[0].read_bytes()]
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(tmp_path / "mine.pem"))
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(_pem_key(tmp_path / "stranger.pem")))
    (tmp_path / "stranger.pub").write_bytes(signing.signing_key(tmp_path).public_pem)
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(tmp_path / "mine.pem"))
    monkeypatch.setenv(signing.PUBLIC_KEY_ENV, str(tmp_path / "stranger.pub"))
    with pytest.raises(signing.SignatureError, match="not among the trusted public keys"):
        audit.write_pack(store, MODEL, dataclass_replace(model, version=2),
                         state=tmp_path / "state")


def dataclass_replace(model, **changes):
    import dataclasses

    return dataclasses.replace(model, **changes)


def test_the_pack_signs_every_variant_and_its_bom_validates_against_cyclonedx(
        tmp_path, no_keys_configured):
    from cyclonedx.schema import OutputFormat, SchemaVersion
    from cyclonedx.validation import make_schemabased_validator

    store = ArtifactStore(tmp_path / "store")
    model = toy_model(store)
    pack = audit.write_pack(store, MODEL, model, state=tmp_path / "state")
    assert audit.write_pack(store, MODEL, model, state=tmp_path / "state") == pack, \
        "a second call finds the pack"
    files = store.get_manifest(pack).files
    assert sorted(files) == ["bom.cdx.json", "lineage.json", "provenance.json", "public_key.pem",
                             "signatures/model_fp32.onnx.sig", "signatures/model_int8.onnx.sig",
                             "signatures/provenance.json.sig"]
    record = json.loads(store.get_bytes(files["provenance.json"]))
    assert record["bom_sha256"] == hashlib.sha256(store.get_bytes(files["bom.cdx.json"])
                                                  ).hexdigest()
    assert record["files"]["model_int8.onnx"]["sha256"] == model.variants["int8"].sha256
    bom = store.get_bytes(files["bom.cdx.json"])
    validator = make_schemabased_validator(OutputFormat.JSON, SchemaVersion.V1_6)
    assert validator.validate_str(bom.decode()) is None
    assert validate_bom(bom) == []
    doc = json.loads(bom)
    component = doc["metadata"]["component"]
    assert (component["type"], component["name"], component["version"]) == (
        "machine-learning-model", MODEL, "1")
    hashes = {c["name"]: {h["alg"]: h["content"] for h in c["hashes"]}
              for c in component["components"]}
    assert hashes["model_int8.onnx"]["SHA-256"] == model.variants["int8"].sha256
    assert component["modelCard"]["considerations"]["useCases"] == ["Tests."]
    assert {c["name"] for c in doc["components"] if c["type"] == "library"} >= {"torch", "numpy"}
    # An invalid document is caught by the same validator (the check is not vacuous).
    component["modelCard"]["quantitativeAnalysis"]["performanceMetrics"][0]["value"] = 0.9
    assert validate_bom(json.dumps(doc).encode())


def test_openlineage_events_follow_the_runevent_schema_and_go_to_a_file_by_default(
        tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    lineage.client.cache_clear()
    store = ArtifactStore(tmp_path / "store")
    out = store.put_bytes(b"features")
    source = store.put_bytes(b"raw")
    lineage.stage_done(store, run_id="0b7d6e0e-1111-4222-8333-444455556666", model=MODEL,
                       stage="validated_features", recipe_key="b3:" + "a" * 64,
                       inputs={"raw_data": source, "champion": "none"}, output=out,
                       cache="miss", seconds=1.5)
    lineage.stage_done(store, run_id="x", model=MODEL, stage="trained_weights",
                       recipe_key="b3:" + "b" * 64, inputs={}, output=out, cache="hit",
                       seconds=0.01)
    written = [json.loads(line) for line in
               (tmp_path / "state" / "lineage" / "events.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in written] == ["START", "COMPLETE"], "a hit emits nothing"
    kept = lineage.stage_lineage(store, MODEL, "validated_features", out)[1]
    for event in [*written, *kept.events]:  # spec-valid, and nothing the spec leaves open
        assert check_run_event(event) == ([], [])
    complete = kept.events[1]
    assert [(d["name"], d["facets"]["version"]["datasetVersion"]) for d in complete["inputs"]] \
        == [(f"{MODEL}/raw_data", source)], "settings such as champion=none are no datasets"
    assert complete["outputs"][0]["facets"]["version"]["datasetVersion"] == out
    assert complete["run"]["facets"]["parent"]["run"]["runId"] == \
        "0b7d6e0e-1111-4222-8333-444455556666"
    assert kept.environment["libraries"], "the library versions are kept with the events"
    # The check is not vacuous: an event without a run id breaks it.
    broken = dict(complete, run={"facets": {}})
    assert run_event_errors(broken) == ["/run/runId: required by Run but missing"]


@pytest.mark.parametrize(("change", "error"), [
    (lambda e: e.update(eventTime="2026-01-02T03:04:05"), "/eventTime: '2026-01-02T03:04:05' is "
                                                          "not a date-time"),
    (lambda e: e.update(eventTime="2026-13-02T03:04:05Z"), "/eventTime: the client's RunEvent "
                                                           "rejects it"),
    (lambda e: e.update(producer="tideline lineage"), "/producer: 'tideline lineage' is not a uri"),
    (lambda e: e.update(eventType="DONE"), "/eventType: 'DONE' is not one of"),
    (lambda e: e.update(schemaURL="https://openlineage.io/spec/1-0-0/OpenLineage.json"),
     "/schemaURL: 'https://openlineage.io/spec/1-0-0/OpenLineage.json' is not the RunEvent"),
    (lambda e: e.pop("schemaURL"), "/schemaURL: required by RunEvent but missing"),
    (lambda e: e["run"].update(runId="0b7d6e0e111142228333444455556666"), "/run/runId: "),
    (lambda e: e["run"]["facets"]["parent"]["run"].update(runId="x"),
     "/run/facets/parent/run/runId: 'x' is not a uuid"),
    (lambda e: e["job"]["facets"].update(parent=e["run"]["facets"]["parent"]),
     "/job/facets/parent: a ParentRunFacet is no JobFacet"),
    (lambda e: e["job"]["facets"]["jobType"].pop("_producer"),
     "/job/facets/jobType/_producer: required by JobTypeJobFacet but missing"),
    (lambda e: e["outputs"][0]["facets"]["version"].update(datasetVersion=7),
     "/outputs/0/facets/version/datasetVersion: expected str, got int"),
    (lambda e: e.update(inputs=None), "/inputs: null is not allowed"),
])
def test_the_lineage_check_rejects_what_the_openlineage_spec_rejects(tmp_path, change, error):
    store = ArtifactStore(tmp_path / "store")
    out = store.put_bytes(b"features")
    event = lineage._to_dict(lineage.build_events(
        store, run_id="0b7d6e0e-1111-4222-8333-444455556666", model=MODEL, stage="features",
        inputs={"raw_data": store.put_bytes(b"raw")}, output=out, started=1.0, ended=2.0)[1])
    assert check_run_event(event) == ([], [])
    change(event)
    errors = run_event_errors(event)
    assert len(errors) == 1 and errors[0].startswith(error), errors


def test_the_lineage_check_lists_what_the_spec_allows_but_the_client_does_not_model(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    event = lineage._to_dict(lineage.build_events(
        store, run_id="r", model=MODEL, stage="features", inputs={},
        output=store.put_bytes(b"features"), started=1.0, ended=2.0)[0])
    event["runID"] = "typo"
    event["run"]["facets"]["custom"] = {"_producer": "urn:x", "_schemaURL": "urn:x:facet",
                                        "anything": 1}
    assert check_run_event(event) == ([], [
        "/runID: not in the client's RunEvent",
        "/run/facets/custom: a facet the client does not model ('urn:x:facet'), checked as "
        "a base facet"])


def test_openlineage_url_sends_the_events_over_http(tmp_path, monkeypatch):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, json.loads(self.rfile.read(
                int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The client writes its own OPENLINEAGE__* variables: a private environment keeps them.
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items()
                                        if not k.startswith("OPENLINEAGE")})
    os.environ["OPENLINEAGE_URL"] = f"http://127.0.0.1:{server.server_port}"
    os.environ["TIDELINE_HOME"] = str(tmp_path / "state")
    lineage.client.cache_clear()
    try:
        store = ArtifactStore(tmp_path / "store")
        lineage.stage_done(store, run_id="0b7d6e0e-1111-4222-8333-444455556666", model=MODEL,
                           stage="raw_data", recipe_key="b3:" + "c" * 64, inputs={},
                           output=store.put_bytes(b"raw"), cache="miss", seconds=0.2)
        lineage.client("", True).close(5)
    finally:
        lineage.client.cache_clear()
        server.shutdown()
    assert [(path, body["eventType"]) for path, body in received] == [
        ("/api/v1/lineage", "START"), ("/api/v1/lineage", "COMPLETE")]
    assert not (tmp_path / "state" / "lineage").exists(), "HTTP replaces the file transport"


def faulted_pack() -> None:
    """Subprocess entry: write the pack, exiting (status 9) at store write FAULT_AT."""
    fault_at, calls = int(os.environ["FAULT_AT"]), []
    original = ArtifactStore._atomic_write

    def faulty(self, path, data):
        calls.append(path)
        if len(calls) == fault_at:
            os._exit(9)  # as a SIGKILL: nothing after this write runs
        return original(self, path, data)

    ArtifactStore._atomic_write = faulty
    store = ArtifactStore(os.environ["STORE"])
    model = deploy.DeployedModel.from_json(json.loads(os.environ["MODEL_JSON"]))
    audit.write_pack(store, MODEL, model, state=Path(os.environ["STATE"]))
    print(f"DONE {len(calls)}", flush=True)


def _pack_is_whole(store: ArtifactStore, pack: str, model: deploy.DeployedModel) -> None:
    manifest = store.get_manifest(pack)
    assert all(store.has(h) for h in manifest.files.values())
    keys = [store.get_bytes(manifest.files["public_key.pem"])]
    for variant, spec in model.variants.items():
        signing.verify_file(keys, store.get_bytes(manifest.files[audit.signature_name(variant)]),
                            audit.model_file(variant), store.get_bytes(spec.content_hash))


def test_a_kill_at_any_write_of_the_pack_converges_on_the_next_call(
        tmp_path, no_keys_configured):
    state = tmp_path / "state"
    signing.signing_key(state)  # the key exists, as after the first deployment
    for fault_at in range(1, 20):
        store = ArtifactStore(tmp_path / f"store{fault_at}")
        model = toy_model(store)
        env = {**os.environ, "PYTHONPATH": str(REPO), "FAULT_AT": str(fault_at),
               "STORE": str(store.root), "STATE": str(state),
               "MODEL_JSON": json.dumps(model.to_json())}
        out = subprocess.run([sys.executable, "-c", "from tests.unit.test_audit_pack import "
                              "faulted_pack; faulted_pack()"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
        recipe = audit.pack_key(MODEL, model, signing.signing_key(state).fingerprint,
                                audit.stage_lineages(store, MODEL, model))
        pointer = store.lookup(f"{MODEL}/audit_pack", recipe)
        if out.returncode == 0:
            assert out.stdout.strip() == f"DONE {fault_at - 1}", out.stdout + out.stderr
            _pack_is_whole(store, pointer["content_hash"], model)
            break
        assert out.returncode == 9, out.stdout + out.stderr
        assert pointer is None, "the pointer is the last write: a kill leaves none"
        pack = audit.write_pack(store, MODEL, model, state=state)
        _pack_is_whole(store, pack, model)
        assert store.lookup(f"{MODEL}/audit_pack", recipe)["content_hash"] == pack
        assert audit.write_pack(store, MODEL, model, state=state) == pack
    else:
        pytest.fail("the pack was never written whole")
    assert fault_at > 6, "files, manifest and pointer are each a kill point"


class _Killed(BaseException):
    """A process killed at a store write (not an Exception: nothing may catch it)."""


class _KilledAt(ArtifactStore):
    """A store whose ``fault_at``-th write never happens: the process dies instead."""

    def __init__(self, root: Path, fault_at: int) -> None:
        super().__init__(root)
        self.fault_at, self.writes = fault_at, 0

    def _atomic_write(self, path: str, data: bytes) -> None:
        self.writes += 1
        if self.writes == self.fault_at:
            raise _Killed(path)
        super()._atomic_write(path, data)


def test_a_kill_at_any_write_of_a_stage_never_leaves_a_memo_hit_without_its_lineage(
        tmp_path, monkeypatch):
    import dagster as dg

    from assets.memo import materialize_stage
    from pipelines.artifacts import StageResult

    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    lineage.client.cache_clear()
    inputs = {"validated_features": "b3:" + "ab" * 32}

    def compute(key: str) -> StageResult:
        return StageResult(kind="trained_weights", files={"model.pt": b"weights " * 40},
                           info={"epochs": 2})

    def run(store: ArtifactStore) -> str:
        outputs = [o for o in materialize_stage(
            dg.build_asset_context(), asset="trained_weights", model=MODEL, store=store,
            modules=("pipelines.lineage",), config={"epochs": 2}, inputs=inputs,
            compute=compute) if isinstance(o, dg.Output)]
        return outputs[0].data_version.value

    for fault_at in range(1, 20):
        store = _KilledAt(tmp_path / f"store{fault_at}", fault_at)
        try:
            output = run(store)
        except _Killed:
            pass
        else:
            assert stage_kept(store, output), "a completed stage has its lineage"
            break
        for entry in (tmp_path / f"store{fault_at}" / "keys" / MODEL / "trained_weights").glob(
                "*.json"):  # a memo entry the kill left: its lineage is there too
            assert stage_kept(store, json.loads(entry.read_bytes())["content_hash"]), (
                f"kill at write {fault_at}: a memo entry without its lineage")
        store.fault_at = 0  # the next run is not killed
        output = run(store)
        kept = stage_kept(store, output)
        assert kept is not None, f"kill at write {fault_at}: the rerun left no lineage"
        assert kept.inputs == inputs and kept.output == output
        assert kept.events and kept.events[-1]["eventType"] == "COMPLETE"
    else:
        pytest.fail("the stage never completed")
    assert fault_at > 3, "output, lineage and memo entry are each a kill point"


def stage_kept(store: ArtifactStore, output: str) -> lineage.StageLineage | None:
    found = lineage.stage_lineage(store, MODEL, "trained_weights", output)
    return found[1] if found else None


def _deployed_with_pack(store: ArtifactStore, state: Path) -> deploy.DeployedModel:
    model = toy_model(store)
    model = dataclass_replace(model, audit_pack=audit.write_pack(store, MODEL, model,
                                                                 state=state))
    deploy.deploy(store, MODEL, model, canary_share=0.0)
    return model


def test_the_key_inside_a_pack_is_never_trusted_unless_asked_and_audit_fails_without_one(
        tmp_path, monkeypatch, no_keys_configured):
    from pipelines.audit_verify import audit_version

    store, signer, elsewhere = ArtifactStore(tmp_path / "store"), tmp_path / "a", tmp_path / "b"
    model = _deployed_with_pack(store, signer)
    data = store.get_bytes(model.variants["int8"].content_hash)
    assert audit.check_model(store, model, "int8", data, signer).pinned
    assert audit_version(store, MODEL, 1, state=signer).ok

    # No trusted key where it runs: refused, in one line saying what to set.
    with pytest.raises(signing.SignatureError, match="no trusted public key.*"
                       "TIDELINE_SIGNING_PUBLIC_KEY.*TIDELINE_TRUST_PACK_KEY=1"):
        audit.check_model(store, model, "int8", data, elsewhere)
    report = audit_version(store, MODEL, 1, state=elsewhere)
    assert not report.ok and "TIDELINE_SIGNING_PUBLIC_KEY" in report.failures[0].line()

    # Integrity only, when asked: served (not pinned), but make audit still fails.
    monkeypatch.setenv(signing.TRUST_PACK_KEY_ENV, "1")
    assert not audit.check_model(store, model, "int8", data, elsewhere).pinned
    report = audit_version(store, MODEL, 1, state=elsewhere)
    assert [f.file for f in report.failures] == ["signatures"]
    assert "integrity, not who signed" in report.failures[0].what
    monkeypatch.setenv(audit.REQUIRE_SIGNED_ENV, "1")
    with pytest.raises(signing.SignatureError, match="no trusted public key"):
        audit.check_model(store, model, "int8", data, elsewhere)
    monkeypatch.delenv(audit.REQUIRE_SIGNED_ENV)
    monkeypatch.delenv(signing.TRUST_PACK_KEY_ENV)

    # The trusted key as a file with CRLF line endings is the same key.
    public = (signer / "signing" / signing.GENERATED_PUBLIC_KEY).read_bytes()
    (tmp_path / "crlf.pub").write_bytes(public.replace(b"\n", b"\r\n"))
    monkeypatch.setenv(signing.PUBLIC_KEY_ENV, str(tmp_path / "crlf.pub"))
    assert audit.check_model(store, model, "int8", data, elsewhere).pinned
    assert audit_version(store, MODEL, 1, state=elsewhere).ok

    # make verify checks deployed files' signatures as the service does.
    from pipelines.verify import verify_store

    monkeypatch.setenv("TIDELINE_HOME", str(elsewhere))
    assert verify_store(store, grace_s=0).ok
    monkeypatch.delenv(signing.PUBLIC_KEY_ENV)
    lines = [p.line() for p in verify_store(store, grace_s=0).problems]
    assert len(lines) == 2 and all("no trusted public key" in line for line in lines)


def test_a_forged_bom_in_a_new_pack_that_reuses_the_signatures_fails_the_audit(
        tmp_path, monkeypatch, no_keys_configured):
    from pipelines import audit_verify
    from pipelines.audit_verify import audit_version

    store, state = ArtifactStore(tmp_path / "store"), tmp_path / "state"
    model = _deployed_with_pack(store, state)
    manifest = store.get_manifest(model.audit_pack)
    bom = json.loads(store.get_bytes(manifest.files[audit.BOM]))
    bom["metadata"]["component"]["description"] = "Forged."
    forged = Manifest(audit.KIND, manifest.files | {
        audit.BOM: store.put_bytes(json.dumps(bom).encode())}, manifest.info)
    assert audit_version(store, MODEL, 1, state=state).ok
    # The history entry of the version rewritten to name the forged pack.
    rewritten = dataclass_replace(model, audit_pack=store.put_manifest(forged))
    monkeypatch.setattr(audit_verify, "find_model", lambda *args: rewritten)
    report = audit_version(store, MODEL, 1, state=state)
    assert not report.ok
    assert [f.file for f in report.failures] == [audit.BOM]
    assert "the signed provenance names" in report.failures[0].what


def test_a_garbled_pack_is_a_refusal_never_a_crash(tmp_path, monkeypatch, no_keys_configured):
    from pipelines.targets import edge_files
    from serving.models import ModelLoadError, load_model

    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path / "state"))
    store = ArtifactStore(tmp_path / "store")
    model = _deployed_with_pack(store, tmp_path / "state")
    data = store.get_bytes(model.variants["int8"].content_hash)
    garbled = dataclass_replace(model, audit_pack=store.put_bytes(b"\xff\xfe not json"))
    with pytest.raises(signing.SignatureError, match="cannot be read"):
        audit.check_model(store, garbled, "int8", data, tmp_path / "state")
    with pytest.raises(ModelLoadError, match="version 1 int8: .*cannot be read.*refused"):
        load_model(store, garbled, {"int8"})
    manifest = store.get_manifest(model.audit_pack)
    unsigned = Manifest(audit.KIND, {n: h for n, h in manifest.files.items()
                                     if n != audit.signature_name("int8")}, manifest.info)
    lacking = dataclass_replace(model, audit_pack=store.put_manifest(unsigned))
    with pytest.raises(signing.SignatureError, match="model_int8.onnx.sig.*holds no such file"):
        edge_files(store, MODEL, lacking)


def test_gc_keeps_the_lineage_of_what_it_keeps(tmp_path, monkeypatch):
    from pipelines.gc import plan

    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    store = ArtifactStore(tmp_path / "store")
    model = toy_model(store)
    deploy.deploy(store, MODEL, model, canary_share=0.0)
    gone = store.put_manifest(Manifest("trained_weights", {}, {"n": 2}))
    for output in (model.trained_weights, gone):
        lineage.record_stage_run(store, run_id="r", model=MODEL, stage="trained_weights",
                                 recipe_key="b3:" + "0" * 64, inputs={}, output=output,
                                 seconds=1.0)
    kept = lineage.stage_lineage(store, MODEL, "trained_weights", model.trained_weights)[0]
    dropped = lineage.stage_lineage(store, MODEL, "trained_weights", gone)[0]
    result = plan(store, roots=[], grace_s=0.0)
    assert kept in result.keep and dropped not in result.keep
    assert not any(model.trained_weights.split(":", 1)[1] in p for p in result.stale_keys)
    assert any(gone.split(":", 1)[1] in p for p in result.stale_keys)


def test_an_edge_bundle_is_verified_against_the_trusted_keys_before_it_is_published(
        tmp_path, monkeypatch, no_keys_configured):
    from pipelines.targets import edge_files, publish_edge

    store = ArtifactStore(tmp_path / "store")
    model = _deployed_with_pack(store, tmp_path / "signer")
    files = edge_files(store, MODEL, model)
    target = str(tmp_path / "edge")
    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path / "elsewhere"))  # no trusted key here
    with pytest.raises(signing.SignatureError, match="no trusted public key"):
        publish_edge(target, MODEL, 1, files)
    assert not (tmp_path / "edge").exists(), "nothing is written"
    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path / "signer"))
    tampered = bytearray(files["model_int8.onnx"])
    tampered[7] ^= 1
    with pytest.raises(signing.SignatureError, match="signature verification failed"):
        publish_edge(target, MODEL, 1, files | {"model_int8.onnx": bytes(tampered)})
    folder = publish_edge(target, MODEL, 1, files)
    assert sorted(p.name for p in Path(folder).iterdir()) == [
        "manifest.json", "model.sig", "model_int8.onnx"]


def test_the_events_file_is_rotated_past_its_size_and_old_ones_are_pruned(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(lineage, "MAX_EVENTS_BYTES", 1)  # every emit finds the file full
    monkeypatch.setattr(lineage, "KEEP_ROTATED", 2)
    lineage.client.cache_clear()
    store = ArtifactStore(tmp_path / "store")
    folder = tmp_path / "state" / "lineage"
    for n in range(4):
        out = store.put_bytes(f"features {n}".encode())
        lineage.stage_done(store, run_id=str(uuid.uuid4()), model=MODEL,
                           stage="validated_features", recipe_key="b3:" + "a" * 64,
                           inputs={}, output=out, cache="miss", seconds=0.1)
    current = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in current] == ["START", "COMPLETE"], "the newest run's"
    rotated = sorted(folder.glob("events-*.jsonl"))
    assert len(rotated) == 2, "only the newest rotated files are kept"
    for old in rotated:  # whole files: each holds one earlier run's two events
        assert [json.loads(line)["eventType"] for line in old.read_text().splitlines()] == \
            ["START", "COMPLETE"]
