"""Deploy targets: what a deployment entry names, and the edge bundle.

Serving reads models from the artifact store by content hash and checks their sha256
(recorded here) before it swaps them in. A model's variants are those the quantized_weights
stage published (fp32 always; int8 and fp16 when they earned their place). The edge target
gets one self-contained bundle per version: int8 when published, else the smallest published
variant's ONNX model
(``model_<variant>.onnx``; it takes raw records: preprocessing is inside the graph) and a
small manifest naming the variant, with its sha256 and size; nothing else. ``check_edge`` says
what in a published folder differs from the bundle, so a cut-off publication is found
and written again (``pipelines.repair``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from pipelines.deploy import VARIANTS, DeployedModel, ModelInputs, VariantFile
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
                quantized_weights: str, model_card: str) -> DeployedModel:
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
                         variants=variants, edge_variant=choose_edge_variant(variants))


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
    """The bundle's files (the edge variant's model, its manifest), byte for byte the same."""
    variant = edge_variant(model)
    data = store.get_bytes(model.variants[variant].content_hash)
    name = variant_file(variant)
    manifest = {"model": model_name, "version": model.version, "file": name,
                "variant": variant, "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "inputs": model.inputs.to_json(), "output": "probability of the positive class",
                "trained_weights": model.trained_weights}
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    return {name: data, EDGE_MANIFEST: body}


def edge_bundle(store: ArtifactStore, model_name: str, model: DeployedModel,
                max_bytes: int) -> dict[str, bytes]:
    """The bundle's files, or an error naming the limit when it is too large."""
    files = edge_files(store, model_name, model)
    total = sum(len(data) for data in files.values())
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
    """Compare a published folder with the bundle by sha256.

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
    return problems, sorted(p for n, p in present.items() if is_edge_temp(n))


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
    """Write a bundle to ``<target>/<model>/v<version>/`` (folder or fsspec URI)."""
    fs, folder = _edge_fs(target, model_name, version)
    fs.makedirs(folder, exist_ok=True)
    # The manifest last: a device that sees it can trust the model file is complete.
    for name in [*(n for n in files if n != EDGE_MANIFEST), EDGE_MANIFEST]:
        tmp = f"{folder}/.{name}.tmp-{uuid.uuid4().hex}"
        fs.pipe_file(tmp, files[name])
        fs.mv(tmp, f"{folder}/{name}")
    return edge_folder(target, model_name, version)
