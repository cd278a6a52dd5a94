"""Deploy targets: what a deployment entry names, and the edge bundle.

Serving reads models from the artifact store by content hash and checks their sha256
(recorded here) before it swaps them in. A model's variants are those the quantized_weights
stage published (fp32 always; int8 and fp16 when they earned their place). The edge target
gets one self-contained bundle per version: int8 when published, else the smallest published
variant's ONNX model
(``model_<variant>.onnx``; it takes raw records: preprocessing is inside the graph), its
OpenSSF model signature (``model.sig``, from the version's audit pack) and a small manifest
naming the variant, with its sha256, size and signing key; nothing else. ``check_edge`` says
what in a published folder differs from the bundle (and whether a changed model file still
passes its signature), so a cut-off publication is found and written again
(``pipelines.repair``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from pipelines.deploy import VARIANTS, DeployedModel, ModelInputs, VariantFile
from pipelines.signing import SIGNATURE_FILE
from pipelines.store import ArtifactStore, is_temp

EDGE_MANIFEST = "manifest.json"


def variant_file(variant: str) -> str:
    """A variant's file name, in the quantized_weights manifest and in an edge bundle."""
    return f"model_{variant}.onnx"


EDGE_MODEL = variant_file("int8")  # the edge file of entries recorded before edge_variant


class EdgeBundleTooLarge(ValueError):
    """The edge bundle exceeds the spec's ``deployment.edge.max_bytes``."""


def gate_verdict(store: ArtifactStore, model_card: str) -> dict[str, Any]:
    """The gate verdict stored with a model card (``gate.json`` of its manifest)."""
    manifest = store.get_manifest(model_card)
    if "gate.json" not in manifest.files:
        raise KeyError(f"model card {model_card} has no stored gate verdict")
    return json.loads(store.get_bytes(manifest.files["gate.json"]))


def model_entry(store: ArtifactStore, *, version: int | None, trained_weights: str,
                quantized_weights: str, model_card: str,
                training_trace: str | None = None) -> DeployedModel:
    """The model as the deployment history records it: lineage and per-variant files.

    Only the published variants are recorded (a dropped one has no file), with the edge
    bundle's variant.
    """
    manifest = store.get_manifest(quantized_weights)
    variants = {}
    for name in VARIANTS:
        content = manifest.files.get(variant_file(name))
        if content is None:  # dropped by the quantized_weights stage
            continue
        data = store.get_bytes(content)
        variants[name] = VariantFile(content_hash=content,
                                     sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    preprocess = json.loads(store.get_bytes(manifest.files["preprocess.json"]))
    return DeployedModel(version=version, trained_weights=trained_weights,
                         quantized_weights=quantized_weights, model_card=model_card,
                         preprocess=manifest.files["preprocess.json"],
                         inputs=ModelInputs(numeric=tuple(preprocess["numeric"]),
                                            categorical=tuple(preprocess["categorical"])),
                         variants=variants, edge_variant=choose_edge_variant(variants),
                         training_trace=training_trace)


def choose_edge_variant(variants: dict[str, VariantFile]) -> str:
    """The edge bundle's variant: int8 when published, else the smallest published one.

    A published int8 passed its tolerance and is smaller than fp32, and CPUs run it natively.
    """
    return "int8" if "int8" in variants else smallest_variant(variants)


def smallest_variant(variants: dict[str, VariantFile]) -> str:
    """The published variant with the fewest bytes (ties: fp32, then int8, then fp16)."""
    return min(variants, key=lambda name: (variants[name].bytes, VARIANTS.index(name)))


def edge_variant(model: DeployedModel) -> str:
    """The variant in a model's edge bundle.

    As recorded, else (entries from before variants could be dropped) int8.
    """
    if model.edge_variant is not None:
        return model.edge_variant
    return choose_edge_variant(model.variants)


def edge_files(store: ArtifactStore, model_name: str, model: DeployedModel) -> dict[str, bytes]:
    """The bundle's files (model, signature, manifest), byte for byte the same each time.

    The signature (``model.sig``, from the version's audit pack) is left out for a model
    deployed before packs were written.
    """
    from pipelines.audit import edge_signature
    from pipelines.signing import signature_hint

    variant = edge_variant(model)
    data = store.get_bytes(model.variants[variant].content_hash)
    name = variant_file(variant)
    manifest = {"model": model_name, "version": model.version, "file": name,
                "variant": variant, "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "inputs": model.inputs.to_json(), "output": "probability of the positive class",
                "trained_weights": model.trained_weights}
    signature = edge_signature(store, model, variant)
    signed = {} if signature is None else {SIGNATURE_FILE: signature}
    if signature is not None:
        manifest |= {"signature": SIGNATURE_FILE, "signing_key": signature_hint(signature)}
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    return {name: data, **signed, EDGE_MANIFEST: body}


def edge_bundle(store: ArtifactStore, model_name: str, model: DeployedModel,
                max_bytes: int) -> dict[str, bytes]:
    """The bundle's files, or an error naming the limit when it is too large.

    The limit is on what a device loads, the model and its manifest: the signature
    (``model.sig``, a few kB that only the manifest check reads) does not count.
    """
    files = edge_files(store, model_name, model)
    total = sum(len(data) for name, data in files.items() if name != SIGNATURE_FILE)
    if total > max_bytes:
        raise EdgeBundleTooLarge(
            f"edge bundle for {model_name} version {model.version} is {total:,} bytes, over "
            f"deployment.edge.max_bytes = {max_bytes:,} in the dataset spec; shrink the model "
            "(training.hidden) or raise the limit if the devices can take it")
    return files


def _edge_fs(target: str, model_name: str, version: int | None) -> tuple[Any, str]:
    import fsspec

    fs, base = fsspec.core.url_to_fs(target.rstrip("/"))
    return fs, f"{base}/{model_name}/v{version}"


def edge_folder(target: str, model_name: str, version: int | None) -> str:
    """Where a version's bundle lives: a local path, or a URL for a remote target."""
    fs, folder = _edge_fs(target, model_name, version)
    return folder if _is_local(fs) else fs.unstrip_protocol(folder)


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else ",".join(fs.protocol)
    return protocol in ("file", "local") or "file" in protocol


def is_edge_temp(name: str) -> bool:
    """A temp file a cut-off publication left (``.<file>.tmp-<id>``, or ``.<file>.tmp``)."""
    return name.startswith(".") and (is_temp(name) or name.endswith(".tmp"))


def check_edge(target: str, model_name: str, version: int | None,
               files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """Compare a published folder with the bundle by sha256, and a changed one's signature.

    Returns ``(problems, temp files)``: what is missing or differs (one phrase each; empty
    when the folder holds the bundle) and the paths of leftover temp files.
    """
    fs, folder = _edge_fs(target, model_name, version)
    try:
        present = {p.rsplit("/", 1)[-1]: p for p in fs.ls(folder, detail=False)}
    except FileNotFoundError:
        return ["folder missing"], []
    problems = []
    for name, data in files.items():
        if name not in present:
            problems.append(f"{name} missing")
        elif bytes(fs.cat_file(present[name])) != data:  # equal bytes, equal sha256
            problems.append(f"{name} does not match its sha256")
    if problems and SIGNATURE_FILE in files:
        problems += _signature_problems(fs, present, files)
    return problems, sorted(p for n, p in present.items() if is_edge_temp(n))


def verify_bundle(files: dict[str, bytes], model: str | None = None) -> None:
    """Verify a bundle's model file against its ``model.sig`` with the trusted keys.

    Done before any bundle is published (and by the check of a changed folder), as a device
    would; a bundle without a signature (a model deployed before audit packs) has nothing to
    check.

    Args:
        files: The bundle's files by name.
        model: The model file's bytes to check instead of the bundle's (a published copy).

    Raises:
        SignatureError: the signature does not verify, or there is no trusted key here.
    """
    if SIGNATURE_FILE not in files:
        return
    from pipelines.paths import state_dir
    from pipelines.signing import trusted_public_keys, verify_file

    name = next(n for n in files if n.endswith(".onnx"))
    verify_file(trusted_public_keys(state_dir()), files[SIGNATURE_FILE], name,
                files[name] if model is None else model)


def _signature_problems(fs: Any, present: dict[str, str], files: dict[str, bytes]) -> list[str]:
    """Verify a changed folder's model file against its signature, as a device would.

    Only when the folder differs from the bundle (an intact folder holds the very bytes that
    were signed, so the nightly check imports nothing). No trusted key is a problem too.
    """
    from pipelines.signing import SignatureError

    model = next(name for name in files if name.endswith(".onnx"))
    if model not in present:
        return []
    signature = (bytes(fs.cat_file(present[SIGNATURE_FILE])) if SIGNATURE_FILE in present
                 else files[SIGNATURE_FILE])
    try:
        verify_bundle({**files, SIGNATURE_FILE: signature}, bytes(fs.cat_file(present[model])))
    except SignatureError as exc:
        return [str(exc)]
    return []


def remove_edge_files(target: str, paths: list[str]) -> None:
    """Delete files of an edge target (leftover temp files)."""
    import fsspec

    fs, _ = fsspec.core.url_to_fs(target.rstrip("/"))
    for path in paths:
        try:
            fs.rm(path)
        except FileNotFoundError:
            pass


def publish_edge(target: str, model_name: str, version: int | None,
                 files: dict[str, bytes]) -> str:
    """Write a bundle to ``<target>/<model>/v<version>/`` (folder or fsspec URI).

    Raises:
        SignatureError: the bundle's model does not verify against its signature with the
            trusted keys (:func:`verify_bundle`); nothing is written.
    """
    verify_bundle(files)
    fs, folder = _edge_fs(target, model_name, version)
    fs.makedirs(folder, exist_ok=True)
    # The manifest last: a device that sees it can trust the model file is complete.
    for name in [*(n for n in files if n != EDGE_MANIFEST), EDGE_MANIFEST]:
        tmp = f"{folder}/.{name}.tmp-{uuid.uuid4().hex}"
        fs.pipe_file(tmp, files[name])
        fs.mv(tmp, f"{folder}/{name}")
    return edge_folder(target, model_name, version)
