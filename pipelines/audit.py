"""The audit pack of a deployed model version: signatures, ML-BOM, lineage, in the store.

Written by the deployment step before the history entry that makes the version live, so
serving never sees a model without one. A pack is a manifest (kind ``audit_pack``) of:

- ``signatures/model_<variant>.onnx.sig``: an OpenSSF Model Signing signature of each ONNX
  variant the deployment serves (the edge bundle's file is one of them; its bundle carries
  that signature as ``model.sig``), see ``pipelines.signing``;
- ``provenance.json`` and its signature ``signatures/provenance.json.sig``: the git commit,
  the sha256 of the ML-BOM and of the lineage file, the model card's content hash and the
  sha256 of every variant, signed with the same key, so that none of them can be swapped
  without a signature failing;
- ``public_key.pem``: the signer's public key, for the record; verifiers never trust it
  (only ``TIDELINE_TRUST_PACK_KEY=1`` makes them use it, for an integrity-only check);
- ``bom.cdx.json``: the CycloneDX ML-BOM (``pipelines.mlbom``);
- ``lineage.json``: the stored OpenLineage events of each stage that built the version
  (``pipelines.lineage``), raw data to model card.

Kill-safe and idempotent: the files and the manifest are content-addressed, and a pointer
``keys/<model>/audit_pack/<key>`` (key: the model's files, their stored lineage and the
signing key) is written last, so a rerun after a kill at any write either finds the pack or
writes it whole again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.deploy import DeployedModel
from pipelines.hashing import canonical_json, hash_bytes, hash_json
from pipelines.lineage import stage_lineage
from pipelines.signing import (
    SignatureError,
    no_trusted_key,
    register_trusted,
    sign_file,
    signing_key,
    trust_pack_key,
    trusted_public_keys,
    verify_file,
)
from pipelines.store import ArtifactStore, Manifest
from pipelines.targets import variant_file

KIND = "audit_pack"
FORMAT = 2  # 2: provenance.json, signed
PUBLIC_KEY = "public_key.pem"
BOM = "bom.cdx.json"
LINEAGE = "lineage.json"
PROVENANCE = "provenance.json"
PROVENANCE_SIGNATURE = f"signatures/{PROVENANCE}.sig"
REQUIRE_SIGNED_ENV = "TIDELINE_REQUIRE_SIGNED"
# The stages that build a model version, newest first (how lineage is walked back).
STAGES = ("model_card", "quantized_weights", "trained_weights", "validated_features",
          "raw_data")
MLFLOW_TAG = "tideline.audit_pack"


model_file = variant_file  # a variant's file name in signatures, bundles and manifests


def signature_name(variant: str) -> str:
    return f"signatures/{model_file(variant)}.sig"


def require_signed() -> bool:
    """``TIDELINE_REQUIRE_SIGNED=1``: refuse models without a pack or without a trusted key."""
    return os.environ.get(REQUIRE_SIGNED_ENV, "").lower() in ("1", "true", "yes")


def _table(model_name: str) -> str:
    return f"{model_name}/audit_pack"


def pack_key(model_name: str, model: DeployedModel, fingerprint: str,
             lineages: dict[str, Any] | None = None) -> str:
    """What a pack depends on: the model's files, their stored lineage and the signing key."""
    return hash_json({"kind": KIND, "format": FORMAT, "model": model_name,
                      "version": model.version, "trained_weights": model.trained_weights,
                      "quantized_weights": model.quantized_weights,
                      "model_card": model.model_card,
                      "variants": {v: f.to_json() for v, f in model.variants.items()},
                      "key": fingerprint, "lineage": hash_json(lineages or {})})


def provenance(model_name: str, model: DeployedModel, *, bom: bytes, lineage: bytes,
               registry: dict[str, str]) -> bytes:
    """The signed record that ties the model files to the git commit, the BOM and lineage."""
    return canonical_json({
        "model": model_name, "version": model.version,
        "git_commit": registry.get("git_commit"), "run_id": registry.get("run_id"),
        "bom_sha256": hashlib.sha256(bom).hexdigest(),
        "lineage_sha256": hashlib.sha256(lineage).hexdigest(),
        "model_card": model.model_card, "trained_weights": model.trained_weights,
        "quantized_weights": model.quantized_weights,
        "files": {model_file(v): {"sha256": f.sha256, "content_hash": f.content_hash}
                  for v, f in sorted(model.variants.items())}})


def _model_bytes(store: ArtifactStore, model: DeployedModel, variant: str) -> bytes:
    """A variant's bytes, checked against both its content hash and recorded sha256."""
    spec = model.variants[variant]
    data = store.get_bytes(spec.content_hash)
    if hash_bytes(data) != spec.content_hash or spec.sha256_mismatch(data) is not None:
        raise SignatureError(
            f"{model_file(variant)} ({store.object_url(spec.content_hash)}): its bytes do not "
            "match their content hash and recorded sha256; not signed (make verify, then make "
            "reproduce)")
    return data


def stage_lineages(store: ArtifactStore, model_name: str,
                   model: DeployedModel) -> dict[str, dict[str, Any] | None]:
    """The stored lineage of each stage that built the version (None where none was kept)."""
    card = json.loads(store.get_bytes(store.get_manifest(model.model_card).files["card.json"]))
    outputs: dict[str, str | None] = {"model_card": model.model_card,
                                      "quantized_weights": model.quantized_weights,
                                      "trained_weights": model.trained_weights,
                                      "validated_features": card["lineage"].get(
                                          "validated_features"), "raw_data": None}
    found: dict[str, dict[str, Any] | None] = {}
    for stage in STAGES:
        output = outputs[stage]
        kept = stage_lineage(store, model_name, stage, output) if output else None
        found[stage] = kept[1].to_json() if kept else None
        if kept and stage == "validated_features":
            outputs["raw_data"] = kept[1].inputs.get("raw_data")
    return found


def write_pack(store: ArtifactStore, model_name: str, model: DeployedModel, *, state: Path,
               registry: dict[str, str] | None = None) -> str:
    """Write (or find) the audit pack of a model about to be deployed; returns its hash.

    Writes nothing but content-addressed objects and the pack's pointer: a deployment that
    stops after it (an edge bundle over its size limit) leaves nothing that is live.

    Args:
        store: The artifact store.
        model_name: The model (dataset spec name).
        model: The history record the deployment is about to append.
        state: The state folder (where a generated signing key lives).
        registry: The MLflow registry version's tags (git commit, run), named in the BOM.

    Raises:
        SignatureError: no usable signing key, a key verifiers would not trust, or model
            bytes that are not what the history records; nothing is deployed then.
    """
    from pipelines.mlbom import bom_inputs, build_bom

    key = signing_key(state)
    register_trusted(state, key)
    trusted = trusted_public_keys(state)
    if key.public_pem not in trusted:
        raise SignatureError(
            f"the signing key ({key.source}: {key.path}) is not among the trusted public keys "
            "(TIDELINE_SIGNING_PUBLIC_KEY); serving would refuse every model it signs: add "
            "its public key there")
    lineages = stage_lineages(store, model_name, model)
    recipe = pack_key(model_name, model, key.fingerprint, lineages)
    found = store.lookup(_table(model_name), recipe)
    if found is not None:
        return found["content_hash"]
    subject = f"{model_name}-v{model.version}"
    files: dict[str, bytes] = {PUBLIC_KEY: key.public_pem}
    for variant in sorted(model.variants):
        data = _model_bytes(store, model, variant)
        signature = sign_file(key, subject, model_file(variant), data)
        verify_file([key.public_pem], signature, model_file(variant), data)
        files[signature_name(variant)] = signature
    files[LINEAGE] = canonical_json({"model": model_name, "version": model.version,
                                     "stages": lineages})
    files[BOM] = build_bom(bom_inputs(store, model_name, model, lineages, registry or {},
                                      serial=recipe))
    files[PROVENANCE] = provenance(model_name, model, bom=files[BOM], lineage=files[LINEAGE],
                                   registry=registry or {})
    files[PROVENANCE_SIGNATURE] = sign_file(key, subject, PROVENANCE, files[PROVENANCE])
    verify_file([key.public_pem], files[PROVENANCE_SIGNATURE], PROVENANCE, files[PROVENANCE])
    manifest = Manifest(kind=KIND, files={name: store.put_bytes(data)
                                          for name, data in sorted(files.items())},
                        info={"model": model_name, "version": model.version,
                              "trained_weights": model.trained_weights,
                              "quantized_weights": model.quantized_weights,
                              "model_card": model.model_card,
                              "variants": {v: f.to_json() for v, f in model.variants.items()},
                              "edge_variant": model.edge_variant,
                              "signing_key": {"fingerprint": key.fingerprint,
                                              "source": key.source},
                              "git_commit": (registry or {}).get("git_commit")})
    content_hash = store.put_manifest(manifest)
    store.record(_table(model_name), recipe, {"content_hash": content_hash})
    return content_hash


@dataclass(frozen=True)
class PackCheck:
    """The outcome of checking one model file against its audit pack."""

    key: str  # fingerprint of the key that verified the signatures
    pinned: bool  # False: checked against the pack's own key (TIDELINE_TRUST_PACK_KEY=1)


def _pack_files(store: ArtifactStore, model: DeployedModel) -> dict[str, str]:
    """The pack's files by name; any failure to read it is a :class:`SignatureError`."""
    try:
        return store.get_manifest(str(model.audit_pack)).files
    except Exception as exc:  # a missing, truncated or garbled pack: refused, never a crash
        raise SignatureError(f"audit pack {model.audit_pack} of version {model.version} cannot "
                             f"be read ({type(exc).__name__}: {exc}); make audit VERSION="
                             f"{model.version} says more") from None


def _pack_bytes(store: ArtifactStore, model: DeployedModel, files: dict[str, str],
                name: str) -> bytes:
    if name not in files:
        raise SignatureError(f"{name}: the audit pack {model.audit_pack} of version "
                             f"{model.version} holds no such file; redeploy it to sign it again")
    try:
        return store.get_bytes(files[name])
    except Exception as exc:
        raise SignatureError(f"{name}: cannot be read from the audit pack {model.audit_pack} "
                             f"({type(exc).__name__}: {exc}); make audit VERSION="
                             f"{model.version} says more") from None


def verification_keys(store: ArtifactStore, model: DeployedModel, files: dict[str, str],
                      state: Path, name: str) -> tuple[list[bytes], bool]:
    """The keys to check a pack's signatures with, and whether they are trusted ones.

    Raises:
        SignatureError: no trusted key here, and no ``TIDELINE_TRUST_PACK_KEY=1`` (or
            ``TIDELINE_REQUIRE_SIGNED`` is set, which allows no integrity-only check).
    """
    keys = trusted_public_keys(state)
    if keys:
        return keys, True
    if trust_pack_key() and not require_signed():
        return [_pack_bytes(store, model, files, PUBLIC_KEY)], False
    raise SignatureError(no_trusted_key(name))


def check_model(store: ArtifactStore, model: DeployedModel, variant: str, data: bytes,
                state: Path) -> PackCheck:
    """Verify one model file and the pack's provenance against the trusted keys.

    The file's signature must verify, the provenance's signature too, and the provenance
    must name this file's sha256 and this version.

    Raises:
        SignatureError: one line naming the file and what failed; the file is not to be
            loaded.
    """
    name = model_file(variant)
    if model.audit_pack is None:
        raise SignatureError(f"{name}: version {model.version} has no audit pack")
    files = _pack_files(store, model)
    keys, pinned = verification_keys(store, model, files, state, name)
    used = verify_file(keys, _pack_bytes(store, model, files, signature_name(variant)), name,
                       data)
    record = _pack_bytes(store, model, files, PROVENANCE)
    verify_file(keys, _pack_bytes(store, model, files, PROVENANCE_SIGNATURE), PROVENANCE,
                record)
    try:
        signed = json.loads(record)
        named = signed["files"][name]["sha256"]
        version = signed["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SignatureError(f"{PROVENANCE}: signed, but it does not name {name} ({exc})") \
            from None
    if named != hashlib.sha256(data).hexdigest() or version != model.version:
        raise SignatureError(f"{name}: the signed provenance names another file or version "
                             f"(sha256 {str(named)[:16]}…, version {version}); refused")
    return PackCheck(used, pinned)


def edge_signature(store: ArtifactStore, model: DeployedModel, variant: str) -> bytes | None:
    """The signature an edge bundle carries (``None`` for a model deployed without a pack).

    Raises:
        SignatureError: the pack cannot be read or holds no signature for the variant.
    """
    if model.audit_pack is None:
        return None
    return _pack_bytes(store, model, _pack_files(store, model), signature_name(variant))


def log_pack(store: ArtifactStore, tracking_uri: str, model_name: str, version: int | None,
             pack: str) -> bool:
    """Log the pack's files as artifacts of the registry version's run (once).

    The version's tag ``tideline.audit_pack`` records the pack logged, so a rerun logs
    nothing twice. Returns whether it logged anything.
    """
    if version is None:
        return False
    from pipelines.tracking import import_mlflow

    mlflow = import_mlflow()
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    found = client.get_model_version(model_name, str(version))
    if found.tags.get(MLFLOW_TAG) == pack:
        return False
    manifest = store.get_manifest(pack)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "audit_pack")
        for name, content_hash in manifest.files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(store.get_bytes(content_hash))
        (folder / "pack.json").write_bytes(manifest.to_bytes())
        if found.run_id:
            client.log_artifacts(found.run_id, str(folder), artifact_path="audit_pack")
    client.set_model_version_tag(model_name, str(version), MLFLOW_TAG, pack)
    return True


def registry_info(tracking_uri: str, model_name: str, version: int | None) -> dict[str, str]:
    """The registry version's tags and run id (what the BOM names of where it came from)."""
    if version is None:
        return {}
    from pipelines.tracking import import_mlflow

    mlflow = import_mlflow()
    found = mlflow.MlflowClient(tracking_uri=tracking_uri).get_model_version(model_name,
                                                                             str(version))
    return dict(found.tags) | ({"run_id": found.run_id} if found.run_id else {})
