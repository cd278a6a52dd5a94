"""The CycloneDX ML-BOM of a model version (``cyclonedx-python-lib``, CycloneDX 1.6 JSON).

It names the model (a ``machine-learning-model`` component with its ONNX variant files and
their hashes), the data it was trained on (``data`` components: the content hashes of the
snapshot and the validated features, the lakeFS commits when there are any), the libraries
and versions that built it, and the model card (its hash and where it is). The library has
no model for the ``modelCard`` object yet, so that part is added to the JSON it writes;
:func:`validate_bom` checks the whole document against the CycloneDX schema with the
library's own validator.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.deploy import DeployedModel
    from pipelines.store import ArtifactStore

SCHEMA = "1.6"
PROPERTY = "tideline"  # prefix of the BOM's own properties (tideline:content_hash …)


@dataclass(frozen=True)
class BomFile:
    """One model file: its name in the bundle, sha256, content hash and size."""

    name: str
    variant: str
    sha256: str
    content_hash: str
    bytes: int


@dataclass(frozen=True)
class BomData:
    """One data artifact the model was built from (``raw_data``, ``validated_features``)."""

    stage: str
    content_hash: str | None  # None: not known (built before lineage was recorded)
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BomCard:
    """The model card: its artifact's hash, its HTML's sha256 and a link to it."""

    content_hash: str
    html_sha256: str
    url: str
    description: str = ""
    intended_use: str = ""
    limitations: str = ""
    architecture: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # fp32 on the held-out rows


@dataclass(frozen=True)
class BomInputs:
    """Everything the BOM says about one model version."""

    model: str
    version: int | None
    serial: str  # a seed for the BOM's serial number (the pack's key)
    files: list[BomFile]
    data: list[BomData]
    libraries: dict[str, str]
    python: str
    card: BomCard
    properties: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)  # numeric/categorical columns


def _hashes(sha256: str | None, content_hash: str | None) -> list[Any]:
    from cyclonedx.model import HashAlgorithm, HashType

    out = []
    if sha256:
        out.append(HashType(alg=HashAlgorithm.SHA_256, content=sha256))
    if content_hash and content_hash.startswith("b3:"):  # byte hashes; frames are logical
        out.append(HashType(alg=HashAlgorithm.BLAKE3, content=content_hash[3:]))
    return out


def _properties(values: dict[str, str]) -> list[Any]:
    from cyclonedx.model import Property

    return [Property(name=f"{PROPERTY}:{k}", value=str(v)) for k, v in sorted(values.items())]


def build_bom(spec: BomInputs) -> bytes:
    """The ML-BOM as CycloneDX 1.6 JSON (UTF-8)."""
    from cyclonedx.model import ExternalReference, ExternalReferenceType, XsUri
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    files = [Component(type=ComponentType.FILE, name=f.name, bom_ref=f"file-{f.variant}",
                       hashes=_hashes(f.sha256, f.content_hash),
                       properties=_properties({"variant": f.variant, "bytes": str(f.bytes),
                                               "content_hash": f.content_hash}))
             for f in spec.files]
    card_ref = ExternalReference(
        type=ExternalReferenceType.MODEL_CARD, url=XsUri(spec.card.url),
        comment=f"model card {spec.card.content_hash}",
        hashes=_hashes(spec.card.html_sha256, None))
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=spec.model,
        version=str(spec.version), bom_ref="model", description=spec.card.description or None,
        components=files, external_references=[card_ref],
        properties=_properties(spec.properties | {"model_card": spec.card.content_hash}))
    data = [Component(type=ComponentType.DATA, name=f"{spec.model}/{d.stage}",
                      version=d.content_hash or "unknown", bom_ref=f"data-{d.stage}",
                      hashes=_hashes(None, d.content_hash),
                      properties=_properties(d.properties | (
                          {"content_hash": d.content_hash} if d.content_hash else
                          {"content_hash": "unknown: built before lineage was recorded"})))
            for d in spec.data]
    libraries = [Component(type=ComponentType.LIBRARY, name=name, version=version,
                           bom_ref=f"pypi-{name}",
                           purl=PackageURL(type="pypi", name=name, version=version))
                 for name, version in sorted(spec.libraries.items())]
    python = Component(type=ComponentType.PLATFORM, name="python", version=spec.python,
                       bom_ref="python")
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"tideline:{spec.serial}"),
              metadata=BomMetaData(component=model,
                                   timestamp=datetime.now(UTC).replace(microsecond=0)),
              components=[*data, *libraries, python])
    bom.register_dependency(model, [*data, *libraries, python])
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    document["metadata"]["component"]["modelCard"] = _model_card(spec)
    return json.dumps(document, indent=2, sort_keys=True).encode()


def _model_card(spec: BomInputs) -> dict[str, Any]:
    """The CycloneDX ``modelCard`` of the model component (what the library cannot build)."""
    card = spec.card
    inputs = ", ".join([*spec.inputs.get("numeric", []), *spec.inputs.get("categorical", [])])
    out: dict[str, Any] = {
        "bom-ref": "model-card",
        "modelParameters": {
            "approach": {"type": "supervised"},
            "task": "binary classification",
            "architectureFamily": card.architecture or "tabular neural network",
            "datasets": [{"ref": f"data-{d.stage}"} for d in spec.data],
            "inputs": [{"format": f"tabular record: {inputs}" if inputs else "tabular record"}],
            "outputs": [{"format": "probability of the positive class"}],
        },
        "quantitativeAnalysis": {"performanceMetrics": [
            {"type": name, "value": f"{value:.6g}", "slice": "held-out test rows, fp32"}
            for name, value in sorted(card.metrics.items())]},
        "properties": [{"name": f"{PROPERTY}:model_card", "value": card.content_hash}],
    }
    considerations = {k: [v] for k, v in (("useCases", card.intended_use),
                                          ("technicalLimitations", card.limitations)) if v}
    if considerations:
        out["considerations"] = considerations
    return out


def validate_bom(data: bytes) -> list[str]:
    """Every way the document breaks the CycloneDX 1.6 JSON schema (empty when valid)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode(), all_errors=True)
    return [str(getattr(e, "data", e)).splitlines()[0] for e in (errors or [])]


def summary(data: bytes) -> dict[str, Any]:
    """What ``make audit`` prints of a BOM: the model, files, data and library count."""
    doc = json.loads(data)
    model = doc["metadata"]["component"]
    return {"model": f"{model['name']} {model.get('version')}",
            "files": [c["name"] for c in model.get("components", [])],
            "data": {c["name"]: c.get("version") for c in doc.get("components", [])
                     if c.get("type") == "data"},
            "libraries": sum(1 for c in doc.get("components", []) if c.get("type") == "library"),
            "serial": doc.get("serialNumber")}


def lakefs_source(metadata: dict[str, Any]) -> dict[str, str]:
    """The lakeFS version a raw snapshot was read at, as BOM properties; empty for other sources.

    The snapshot's metadata names the commit (``lakefs_commit``), the object's checksum and
    the commit-pinned URI it was read from (``source``: ``lakefs://<repo>/<commit>/<path>``),
    which gives the repository and path; the ref the spec named (a branch, tag or commit)
    is given when the snapshot recorded it
    (``lakefs_ref``). A value the snapshot does not have is left out, never written empty.
    """
    from pipelines.lakefs import LakeFSError, LakeFSPath

    commit = metadata.get("lakefs_commit")
    if not commit:
        return {}
    out = {"lakefs_commit": str(commit)}
    try:
        pinned = LakeFSPath.parse(str(metadata.get("source") or ""))
    except LakeFSError:
        pinned = None
    if pinned is not None:
        out |= {"lakefs_repository": pinned.repo, "lakefs_uri": pinned.uri}
        if pinned.path:
            out["lakefs_path"] = pinned.path
    for name in ("lakefs_ref", "lakefs_checksum"):
        if metadata.get(name):
            out[name] = str(metadata[name])
    return out


def _store_version(root: str) -> dict[str, str]:
    """The lakeFS repository, branch and head commit the store is on (empty for other stores)."""
    from pipelines.lakefs import LakeFSPath, is_lakefs, make_client

    if not is_lakefs(root):
        return {}
    import lakefs

    loc = LakeFSPath.parse(root)
    return {"lakefs_store_repository": loc.repo, "lakefs_store_branch": loc.ref,
            "lakefs_store_commit": lakefs.Branch(loc.repo, loc.ref,
                                                 client=make_client()).head.id}


def _link(store: ArtifactStore, content_hash: str) -> str:
    url = store.object_url(content_hash)
    return Path(url).resolve().as_uri() if store.local else url


def bom_inputs(store: ArtifactStore, model_name: str, model: DeployedModel,
               lineages: dict[str, dict[str, Any] | None], registry: dict[str, str], *,
               serial: str) -> BomInputs:
    """What the BOM of a deployed model says, gathered from the store and its lineage.

    The libraries are those the stages' stored environments name (the training stage's
    version first); a model built before lineage was kept gets the installed versions of
    the training stage's libraries, and says so in a property.
    """
    from pipelines.recipe import code_fingerprint, environment
    from pipelines.targets import variant_file

    card_manifest = store.get_manifest(model.model_card)
    card = json.loads(store.get_bytes(card_manifest.files["card.json"]))
    html = store.get_bytes(card_manifest.files["card.html"])
    files = [BomFile(name=variant_file(v), variant=v, sha256=f.sha256,
                     content_hash=f.content_hash, bytes=f.bytes)
             for v, f in sorted(model.variants.items())]
    raw = lineages.get("raw_data")
    features = lineages.get("validated_features")
    raw_props: dict[str, str] = {}
    if raw:
        record = store.lookup(f"{model_name}/raw_data", raw["recipe_key"])
        raw_props = lakefs_source((record or {}).get("metadata") or {})
    data = [BomData("raw_data", raw["output"] if raw else (
                features or {}).get("inputs", {}).get("raw_data"), raw_props),
            BomData("validated_features", card["lineage"].get("validated_features"))]
    environments = [lineages[s]["environment"] for s in ("trained_weights",
                                                         "quantized_weights",
                                                         "validated_features", "raw_data",
                                                         "model_card") if lineages.get(s)]
    properties = {"trained_weights": model.trained_weights,
                  "quantized_weights": model.quantized_weights}
    if not environments:
        environments = [environment(code_fingerprint("pipelines.stages.training"))]
        properties["libraries_from"] = "installed at deployment (no stored lineage)"
    libraries: dict[str, str] = {}
    for env in reversed(environments):  # the training stage's versions win
        libraries |= env.get("libraries", {})
    properties |= _store_version(store.root)
    properties |= {k: v for k, v in registry.items() if k in ("git_commit", "run_id")}
    fp32 = (card.get("variants", {}).get("fp32") or {}).get("metrics", {})
    return BomInputs(
        model=model_name, version=model.version, serial=serial, files=files, data=data,
        libraries=libraries, python=str(environments[0].get("python", "")),
        card=BomCard(content_hash=model.model_card,
                     html_sha256=hashlib.sha256(html).hexdigest(),
                     url=_link(store, card_manifest.files["card.html"]),
                     description=card.get("description") or "",
                     intended_use=card.get("intended_use") or "",
                     limitations=card.get("limitations") or "",
                     architecture=str((card.get("training") or {}).get("architecture", "")),
                     metrics={k: float(v) for k, v in fp32.items()
                              if isinstance(v, (int, float)) and k != "rows"}),
        properties=properties, inputs=model.inputs.to_json())
