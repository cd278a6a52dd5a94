"""The ML-BOM names the lakeFS commit the raw data was read at, and nothing of lakeFS otherwise.

The snapshot (``pipelines.stages.raw``), its stored lineage (``pipelines.lineage``) and the
audit pack that builds the BOM (``pipelines.audit.write_pack``) are the real code; lakeFS is
the ``lakefs`` fixture: a real server when ``LAKEFS_ENDPOINT`` is set, else the stand-in of
``tests/lakefs_standin.py`` spoken to over HTTP through the official SDK. What is not run is
what lies between the snapshot and the pack (validation, training, export, card): the
model's record and card are small stand-ins whose card names features built from this
snapshot, and the memo entry is written here the way ``assets/memo.py`` writes it (that
module is Dagster code; the chain test of a lakeFS source is tests/integration/
test_lakefs_chain.py).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import lakefs as lakefs_sdk
import pytest

from pipelines import audit, deploy, lineage, signing
from pipelines.artifacts import metadata_to_json, save_result
from pipelines.hashing import canonical_json
from pipelines.mlbom import lakefs_source, validate_bom
from pipelines.recipe import code_fingerprint, recipe_key
from pipelines.spec import load_spec
from pipelines.stages.raw import snapshot_source
from pipelines.store import ArtifactStore, Manifest
from tests.conftest import ADULT_CSV, write_spec

MODEL = "adult"
CSV = b"".join(ADULT_CSV.read_bytes().splitlines(keepends=True)[:201])
LAKEFS_NAMES = ("lakefs_repository", "lakefs_commit", "lakefs_path", "lakefs_uri",
                "lakefs_checksum", "lakefs_ref")
STORE_NAMES = ("lakefs_store_repository", "lakefs_store_branch", "lakefs_store_commit")


@pytest.fixture(autouse=True)
def _no_keys_configured(monkeypatch):
    for name in (signing.SIGNING_KEY_ENV, signing.PUBLIC_KEY_ENV, audit.REQUIRE_SIGNED_ENV):
        monkeypatch.delenv(name, raising=False)


def snapshot(store: ArtifactStore, spec_path: Path, lakefs_source_version=None):
    """Snapshot the spec's source, keep its memo entry and the lineage of it and its features.

    Returns the snapshot's metadata and the content hash of the features built from it.
    """
    spec = load_spec(spec_path)
    result = snapshot_source(spec, store, lakefs_source=lakefs_source_version)
    manifest = save_result(store, result)
    inputs = {"source": (lakefs_source_version[1].content_key if lakefs_source_version
                         else manifest.files["source"])}
    key = recipe_key("raw_data", code_fingerprint("pipelines.stages.raw"),
                     {"path": spec.source.path}, inputs)
    run = str(uuid.uuid4())
    kept = lineage.record_stage_run(store, run_id=run, model=MODEL, stage="raw_data",
                                    recipe_key=key, inputs=inputs,
                                    output=manifest.content_hash, seconds=0.1,
                                    modules=("pipelines.stages.raw",))
    assert kept, "the raw_data lineage was stored"
    store.record(f"{MODEL}/raw_data", key, {"content_hash": manifest.content_hash,
                                            "metadata": metadata_to_json(result.metadata),
                                            "checks": result.checks})
    features = store.put_bytes(b"validated features of " + manifest.content_hash.encode())
    assert lineage.record_stage_run(store, run_id=run, model=MODEL, stage="validated_features",
                                    recipe_key=f"features-of-{key}",
                                    inputs={"raw_data": manifest.content_hash},
                                    output=features, seconds=0.1)
    return result.metadata, manifest.content_hash, features


def model_record(store: ArtifactStore, features: str) -> deploy.DeployedModel:
    """A deployed-model record whose card names ``features`` (bytes that stand for ONNX)."""
    variants = {}
    for variant in ("fp32", "int8"):
        data = f"onnx bytes of the {variant} variant ".encode() * 40
        variants[variant] = deploy.VariantFile(store.put_bytes(data),
                                               hashlib.sha256(data).hexdigest(), len(data))
    card = {"description": "Adult income.", "lineage": {"validated_features": features},
            "training": {"architecture": "mlp"},
            "variants": {"fp32": {"metrics": {"roc_auc": 0.88}}}}
    card_hash = store.put_manifest(Manifest("model_card", {
        "card.json": store.put_bytes(canonical_json(card)),
        "card.html": store.put_bytes(b"<html>card</html>")}, {}))
    weights = store.put_manifest(Manifest("trained_weights", {}, {"features": features}))
    return deploy.DeployedModel(version=1, trained_weights=weights, quantized_weights=weights,
                                model_card=card_hash, variants=variants, edge_variant="int8",
                                inputs=deploy.ModelInputs(("age",), ("sex",)))


def pack_bom(store: ArtifactStore, model: deploy.DeployedModel, state: Path) -> bytes:
    pack = audit.write_pack(store, MODEL, model, state=state,
                            registry={"git_commit": "0" * 40, "run_id": "r1"})
    return store.get_bytes(store.get_manifest(pack).files[audit.BOM])


def properties(component: dict) -> dict[str, str]:
    return {p["name"].removeprefix("tideline:"): p["value"]
            for p in component.get("properties", [])}


def data_components(bom: bytes) -> dict[str, dict]:
    return {c["bom-ref"]: c for c in json.loads(bom)["components"] if c["type"] == "data"}


def assert_valid(bom: bytes) -> None:
    from cyclonedx.schema import OutputFormat, SchemaVersion
    from cyclonedx.validation import make_schemabased_validator

    assert validate_bom(bom) == []
    validator = make_schemabased_validator(OutputFormat.JSON, SchemaVersion.V1_6)
    assert validator.validate_str(bom.decode()) is None


@pytest.mark.parametrize("store_on", ["folder", "lakefs"])
def test_the_bom_names_the_lakefs_commit_the_raw_data_was_read_at(tmp_path, lakefs, store_on):
    from pipelines.lakefs import source_version

    client = lakefs.client()
    repo = lakefs.new_repo()
    main = lakefs_sdk.Branch(repo, "main", client=client)
    main.object("data/adult.csv").upload(CSV, mode="wb", pre_sign=False)
    commit = main.commit("adult sample").id
    uri = f"lakefs://{repo}/main/data/adult.csv"
    if store_on == "lakefs":
        lakefs_sdk.Branch(repo, "artifacts", client=client).create("main")
        store = ArtifactStore(f"lakefs://{repo}/artifacts/store")
    else:
        store = ArtifactStore(tmp_path / "store")
    version = source_version(client, uri)
    metadata, raw, features = snapshot(store, write_spec(tmp_path / "adult.yaml", "adult", uri),
                                       (client, version))
    assert metadata["lakefs_commit"] == commit
    # The branch moves on after the snapshot: the BOM names the commit the bytes came from.
    main.object("data/adult.csv").upload(CSV + CSV.splitlines(keepends=True)[1], mode="wb",
                                         pre_sign=False)
    assert main.commit("one more row").id != commit

    bom = pack_bom(store, model_record(store, features), tmp_path / "state")
    assert_valid(bom)
    data = data_components(bom)
    assert data["data-raw_data"]["version"] == raw
    assert properties(data["data-raw_data"]) == {
        "content_hash": raw, "lakefs_repository": repo, "lakefs_commit": commit,
        "lakefs_path": "data/adult.csv", "lakefs_uri": f"lakefs://{repo}/{commit}/data/adult.csv",
        "lakefs_checksum": version.checksum, "lakefs_ref": "main"}
    assert not set(properties(data["data-validated_features"])) & set(LAKEFS_NAMES)
    model = properties(json.loads(bom)["metadata"]["component"])
    if store_on == "lakefs":
        head = lakefs_sdk.Branch(repo, "artifacts", client=client).head.id
        assert {k: model.get(k) for k in STORE_NAMES} == {
            "lakefs_store_repository": repo, "lakefs_store_branch": "artifacts",
            "lakefs_store_commit": head}
    else:
        assert not set(model) & set(STORE_NAMES)


def test_without_lakefs_the_bom_has_no_lakefs_fields_at_all(tmp_path):
    source = tmp_path / "adult.csv"
    source.write_bytes(CSV)
    store = ArtifactStore(tmp_path / "store")
    metadata, raw, features = snapshot(store, write_spec(tmp_path / "adult.yaml", "adult",
                                                         source))
    assert "lakefs_commit" not in metadata
    bom = pack_bom(store, model_record(store, features), tmp_path / "state")
    assert_valid(bom)
    assert properties(data_components(bom)["data-raw_data"]) == {"content_hash": raw}

    def every_property(node):
        if isinstance(node, dict):
            yield from node.get("properties", []) if isinstance(node.get("properties"),
                                                                list) else []
            for value in node.values():
                yield from every_property(value)
        elif isinstance(node, list):
            for value in node:
                yield from every_property(value)

    found = list(every_property(json.loads(bom)))
    assert found and all(p["value"] for p in found), "no property is written empty"
    assert not [p["name"] for p in found if "lakefs" in p["name"]], \
        "no lakeFS property, not even an empty one"


def test_lakefs_source_leaves_out_what_the_snapshot_did_not_record():
    commit = "c" * 64
    pinned = f"lakefs://data-repo/{commit}/tables/adult.csv"
    assert lakefs_source({"source": pinned, "lakefs_commit": commit, "lakefs_checksum": ""}) == {
        "lakefs_repository": "data-repo", "lakefs_commit": commit,
        "lakefs_path": "tables/adult.csv", "lakefs_uri": pinned}
    # The ref the spec named (here a branch) is given when the snapshot recorded it.
    assert lakefs_source({"source": pinned, "lakefs_commit": commit,
                          "lakefs_ref": "main"})["lakefs_ref"] == "main"
    # A snapshot whose source is not a lakeFS URI keeps its commit, and nothing is made up.
    assert lakefs_source({"source": "/data/adult.csv", "lakefs_commit": commit}) == {
        "lakefs_commit": commit}
    assert lakefs_source({"source": "/data/adult.csv", "lakefs_commit": None}) == {}
    assert lakefs_source({}) == {}
