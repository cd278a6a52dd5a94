"""Check a deployed version's audit pack from the store alone (``make audit``).

Every hash the pack names is recomputed from the bytes in the store (the pack and its files,
the model files, the model card), every model file's signature and the signed provenance
(git commit, ML-BOM and lineage sha256) are verified against the trusted keys, the ML-BOM is
validated against the CycloneDX schema and compared with the deployment record, and the
stored lineage is compared with the version's artifacts. Each failure names the file and
what to do. With no trusted key here the audit fails (``TIDELINE_TRUST_PACK_KEY=1`` checks
integrity against the pack's own key, and still fails, saying so). Data that ``make gc``
removed is reported as not retained (its hash is in the ML-BOM), not as a failure.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pipelines import deploy
from pipelines.audit import (
    BOM,
    LINEAGE,
    PROVENANCE,
    PROVENANCE_SIGNATURE,
    PUBLIC_KEY,
    model_file,
    signature_name,
)
from pipelines.hashing import hash_bytes
from pipelines.signing import (
    PUBLIC_KEY_ENV,
    TRUST_PACK_KEY_ENV,
    SignatureError,
    key_fingerprint,
    signed_files,
    trust_pack_key,
    trusted_public_keys,
    verify_file,
)
from pipelines.store import ArtifactNotFound, ArtifactStore


@dataclass(frozen=True)
class Failure:
    """One check that failed: the file (and where it is) and what is wrong."""

    file: str
    where: str
    what: str

    def line(self) -> str:
        return f"{self.file} ({self.where}): {self.what}"


@dataclass
class AuditReport:
    """What ``make audit`` prints: the pack's contents and every check's outcome."""

    model: str
    version: int
    pack: str | None = None
    key: str = ""  # which key the signatures were checked with
    signatures: list[tuple[str, str, str]] = field(default_factory=list)  # file, sha256, key
    bom: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, int] = field(default_factory=dict)  # stage -> events kept
    card: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    checked: int = 0
    failures: list[Failure] = field(default_factory=list)
    not_retained: list[str] = field(default_factory=list)  # data gc removed (hash in the BOM)

    @property
    def ok(self) -> bool:
        return self.pack is not None and not self.failures

    def fail(self, file: str, where: str, what: str) -> None:
        self.failures.append(Failure(file, where, what))


def find_model(store: ArtifactStore, model_name: str, version: int) -> deploy.DeployedModel:
    """The history's record of a version (the newest entry that names it).

    Raises:
        LookupError: the version was never deployed (packs are written on deployment).
    """
    for entry in reversed(deploy.entries(store, model_name)):
        for model in (entry.model, entry.to):
            if model is not None and model.version == version and entry.action != "reject":
                return model
    raise LookupError(f"version {version} of {model_name} is not in its deployment history "
                      "(records/deployments); audit packs are written when a version is "
                      "deployed")


def _object(store: ArtifactStore, report: AuditReport, name: str, content_hash: str) -> bytes:
    """An object's bytes, counted as checked when they hash to their name (else a failure)."""
    report.checked += 1
    where = store.object_url(content_hash)
    try:
        data = store.get_bytes(content_hash)
    except ArtifactNotFound:
        report.fail(name, where, f"missing from the store ({content_hash}); restore the store "
                                 "from a backup, or make reproduce and redeploy the version")
        return b""
    if content_hash.startswith("b3:") and hash_bytes(data) != content_hash:
        report.fail(name, where, f"content does not hash to {content_hash} (changed or "
                                 "truncated); make verify, then make reproduce and redeploy")
    return data


def audit_version(store: ArtifactStore, model_name: str, version: int, *,
                  state: Any) -> AuditReport:
    """Check version ``version`` of ``model_name`` and its audit pack; see the module doc."""
    report = AuditReport(model_name, version)
    model = find_model(store, model_name, version)
    if model.audit_pack is None:
        report.fail("audit pack", f"records/deployments/{model_name}",
                    f"version {version} was deployed before audit packs were written; it has "
                    "none (deploy it again, e.g. after make reproduce, to sign it)")
        return report
    report.pack = model.audit_pack
    raw = _object(store, report, "audit pack manifest", model.audit_pack)
    if not raw:
        return report
    files = json.loads(raw)["files"]
    contents = {name: _object(store, report, f"audit_pack/{name}", h) for name, h in
                sorted(files.items())}
    _signatures(store, report, model, files, contents, trusted_public_keys(state))
    _provenance(report, model, contents)
    _bom(store, report, model, contents.get(BOM, b""), files.get(BOM, ""))
    _lineage(report, model, contents.get(LINEAGE, b""))
    _card(store, report, model)
    return report


def _signatures(store: ArtifactStore, report: AuditReport, model: deploy.DeployedModel,
                files: dict[str, str], contents: dict[str, bytes], trusted: list[bytes]) -> None:
    keys = trusted
    if trusted:
        report.key = "trusted keys: " + ", ".join(key_fingerprint(k)[:16] + "…" for k in trusted)
    elif trust_pack_key() and contents.get(PUBLIC_KEY):
        keys = [contents[PUBLIC_KEY]]
        report.key = (f"the pack's own key {key_fingerprint(keys[0])[:16]}… ({TRUST_PACK_KEY_ENV}"
                      "=1: integrity only)")
        report.fail("signatures", f"audit_pack/{PUBLIC_KEY}", "checked against the key inside "
                    "the pack only, which proves integrity, not who signed; set "
                    f"{PUBLIC_KEY_ENV} to the signer's public key (PEM) and run make audit again")
    else:
        report.fail("signatures", f"audit_pack {report.pack}", "no trusted public key here to "
                    f"verify them with; set {PUBLIC_KEY_ENV} to the signer's public key (PEM), "
                    f"or {TRUST_PACK_KEY_ENV}=1 for an integrity-only check")
        return
    for variant, spec in sorted(model.variants.items()):
        name = model_file(variant)
        data = _object(store, report, name, spec.content_hash)
        where = store.object_url(spec.content_hash)
        if not data:
            continue
        report.checked += 1
        if spec.sha256_mismatch(data) is not None:
            report.fail(name, where, f"sha256 is not the {spec.sha256[:16]}… the deployment "
                                     "history records; make rollback, or make reproduce and "
                                     "redeploy")
        signature = contents.get(signature_name(variant))
        if signature is None:
            report.fail(name, f"audit_pack/{signature_name(variant)}", "no signature in the "
                        "pack; redeploy the version to sign it")
            continue
        _verify_signature(report, keys, name, where, signature, data,
                          "; do not serve it (make rollback), or make reproduce and redeploy")
    record, signature = contents.get(PROVENANCE), contents.get(PROVENANCE_SIGNATURE)
    if not record or not signature:
        report.fail(PROVENANCE, f"audit_pack {report.pack}", "the pack has no signed "
                    "provenance (written before format 2); redeploy the version to sign it")
        return
    _verify_signature(report, keys, PROVENANCE, f"audit_pack/{PROVENANCE}", signature, record,
                      "; the pack was altered: redeploy the version to sign it again")


def _verify_signature(report: AuditReport, keys: list[bytes], name: str, where: str,
                      signature: bytes, data: bytes, remedy: str) -> None:
    """Check one signature: listed in the report when it verifies, else a failure + remedy."""
    report.checked += 1
    try:
        used = verify_file(keys, signature, name, data)
    except SignatureError as exc:
        report.fail(name, where, str(exc).split(": ", 1)[-1] + remedy)
        return
    report.signatures.append((name, signed_files(signature).get(name, ""), used))


def _provenance(report: AuditReport, model: deploy.DeployedModel,
                contents: dict[str, bytes]) -> None:
    """Compare the signed provenance with the pack's files and the deployment record."""
    if not any(n == PROVENANCE for n, _, _ in report.signatures):
        return  # unsigned or failing: already reported
    where = f"audit_pack/{PROVENANCE}"
    record = json.loads(contents[PROVENANCE])
    report.provenance = {"git_commit": record.get("git_commit")}
    for field_name, file in (("bom_sha256", BOM), ("lineage_sha256", LINEAGE)):
        digest = hashlib.sha256(contents.get(file, b"")).hexdigest()
        report.checked += 1
        if record.get(field_name) != digest:
            report.fail(file, f"audit_pack/{file}", f"sha256 {digest[:16]}… is not the "
                        f"{str(record.get(field_name))[:16]}… the signed provenance names; the "
                        "pack was altered: redeploy the version to sign it again")
    report.checked += 1
    named = {n: f.get("sha256") for n, f in (record.get("files") or {}).items()}
    deployed = {model_file(v): f.sha256 for v, f in model.variants.items()}
    if (named != deployed or record.get("model_card") != model.model_card
            or record.get("version") != model.version):
        report.fail(PROVENANCE, where, "names other model files, card or version than the "
                    "deployment history records; redeploy the version to sign it again")
    bom = json.loads(contents.get(BOM) or b"{}")
    commits = {p.get("value") for p in ((bom.get("metadata") or {}).get("component") or {})
               .get("properties", []) if p.get("name") == "tideline:git_commit"}
    if commits:
        report.checked += 1
        if commits != {record.get("git_commit")}:
            report.fail(BOM, f"audit_pack/{BOM}", f"names git commit {sorted(map(str, commits))}"
                        f", not the signed {record.get('git_commit')}; redeploy the version")


def _bom(store: ArtifactStore, report: AuditReport, model: deploy.DeployedModel, data: bytes,
         content_hash: str) -> None:
    from pipelines.mlbom import summary, validate_bom

    where = f"audit_pack/{BOM} ({content_hash})"
    if not data:
        return
    report.checked += 1
    errors = validate_bom(data)
    if errors:
        report.fail(BOM, where, f"not valid CycloneDX 1.6: {errors[0]}")
        return
    report.bom = summary(data)
    component = json.loads(data)["metadata"]["component"]
    named = {c["name"]: {h["alg"]: h["content"] for h in c.get("hashes", [])}
             for c in component.get("components", [])}
    for variant, spec in sorted(model.variants.items()):
        report.checked += 1
        hashes = named.get(model_file(variant), {})
        if hashes.get("SHA-256") != spec.sha256 or hashes.get("BLAKE3") != (
                spec.content_hash.split(":", 1)[1]):
            report.fail(BOM, where, f"{model_file(variant)}'s hashes are not the deployed "
                                    "file's")
    report.checked += 1
    card = {p["value"] for p in component.get("properties", [])
            if p["name"] == "tideline:model_card"}
    if card != {model.model_card}:
        report.fail(BOM, where, f"names model card {card or 'none'}, not {model.model_card}")
    for ref in component.get("externalReferences", []):
        if ref.get("type") == "model-card":
            report.bom["card_sha256"] = {h["alg"]: h["content"]
                                         for h in ref.get("hashes", [])}.get("SHA-256")
    for data_component in json.loads(data).get("components", []):
        version = data_component.get("version", "")
        if data_component.get("type") == "data" and version.startswith("b3:"):
            if not store.has(version):  # make gc removed it: its hash is the record
                report.not_retained.append(f"{data_component['name']} {version}")
                continue
            _object(store, report, data_component["name"], version)


def _lineage(report: AuditReport, model: deploy.DeployedModel, data: bytes) -> None:
    if not data:
        return
    stages = json.loads(data).get("stages", {})
    expected = {"model_card": model.model_card, "quantized_weights": model.quantized_weights,
                "trained_weights": model.trained_weights}
    for stage, kept in stages.items():
        report.lineage[stage] = len(kept["events"]) if kept else 0
        if kept and stage in expected:
            report.checked += 1
            if kept["output"] != expected[stage]:
                report.fail(LINEAGE, f"audit_pack/{LINEAGE}", f"{stage} lineage is of "
                            f"{kept['output']}, not the deployed {expected[stage]}")


def _card(store: ArtifactStore, report: AuditReport, model: deploy.DeployedModel) -> None:
    raw = _object(store, report, "model card", model.model_card)
    if not raw:
        return
    files = json.loads(raw)["files"]
    card = json.loads(_object(store, report, "card.json", files["card.json"]) or b"{}")
    html = _object(store, report, "card.html", files["card.html"])
    fp32 = ((card.get("variants") or {}).get("fp32") or {}).get("metrics", {})
    html_sha256 = hashlib.sha256(html).hexdigest()
    if report.bom.get("card_sha256"):
        report.checked += 1
        if report.bom["card_sha256"] != html_sha256:
            report.fail("card.html", store.object_url(files["card.html"]),
                        "sha256 is not the one the ML-BOM names")
    report.card = {"hash": model.model_card, "html": store.object_url(files["card.html"]),
                   "html_sha256": html_sha256,
                   "description": card.get("description", ""),
                   "metrics": {k: fp32[k] for k in ("roc_auc", "accuracy", "f1") if k in fp32},
                   "gate": "passed" if (card.get("gate") or {}).get("passed") else "blocked"}
