"""Deploy targets: what a deployment entry names, and the edge bundle.

Serving reads models from the artifact store by content hash and checks their sha256
(recorded here) before it swaps them in. The edge target gets one self-contained int8
bundle per version: the ONNX model (it takes raw records: preprocessing is inside the
graph) and a small manifest with its sha256 and size; nothing else.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipelines.store import ArtifactStore

EDGE_MODEL = "model_int8.onnx"
EDGE_MANIFEST = "manifest.json"


class EdgeBundleTooLarge(ValueError):
    """The int8 bundle exceeds the spec's ``deployment.edge.max_bytes``."""


def gate_verdict(store: ArtifactStore, model_card: str) -> dict[str, Any]:
    """The gate verdict stored with a model card (``gate.json`` of its manifest)."""
    manifest = store.get_manifest(model_card)
    if "gate.json" not in manifest.files:
        raise KeyError(f"model card {model_card} has no stored gate verdict")
    return json.loads(store.get_bytes(manifest.files["gate.json"]))


def model_entry(store: ArtifactStore, *, version: int | None, trained_weights: str,
                quantized_weights: str, model_card: str) -> dict[str, Any]:
    """The model as the deployment history records it: lineage and per-variant files."""
    manifest = store.get_manifest(quantized_weights)
    variants = {}
    for name in ("fp32", "int8", "fp16"):
        content = manifest.files[f"model_{name}.onnx"]
        data = store.get_bytes(content)
        variants[name] = {"content_hash": content, "sha256": hashlib.sha256(data).hexdigest(),
                          "bytes": len(data)}
    preprocess = json.loads(store.get_bytes(manifest.files["preprocess.json"]))
    return {"version": version, "trained_weights": trained_weights,
            "quantized_weights": quantized_weights, "model_card": model_card,
            "preprocess": manifest.files["preprocess.json"],
            "inputs": {"numeric": list(preprocess["numeric"]),
                       "categorical": list(preprocess["categorical"])},
            "variants": variants}


def edge_bundle(store: ArtifactStore, model_name: str, model: dict[str, Any],
                max_bytes: int) -> dict[str, bytes]:
    """The bundle's files, or an error naming the limit when it is too large."""
    int8 = model["variants"]["int8"]
    data = store.get_bytes(int8["content_hash"])
    manifest = {"model": model_name, "version": model["version"], "file": EDGE_MODEL,
                "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                "inputs": model["inputs"], "output": "probability of the positive class",
                "trained_weights": model["trained_weights"]}
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    total = len(data) + len(body)
    if total > max_bytes:
        raise EdgeBundleTooLarge(
            f"edge bundle for {model_name} version {model['version']} is {total:,} bytes, over "
            f"deployment.edge.max_bytes = {max_bytes:,} in the dataset spec; shrink the model "
            "(training.hidden) or raise the limit if the devices can take it")
    return {EDGE_MODEL: data, EDGE_MANIFEST: body}


def publish_edge(target: str, model_name: str, version: int | None,
                 files: dict[str, bytes]) -> str:
    """Write a bundle to ``<target>/<model>/v<version>/`` (folder or fsspec URI)."""
    import fsspec

    fs, base = fsspec.core.url_to_fs(target.rstrip("/"))
    folder = f"{base}/{model_name}/v{version}"
    fs.makedirs(folder, exist_ok=True)
    # The manifest last: a device that sees it can trust the model file is complete.
    for name in (EDGE_MODEL, EDGE_MANIFEST):
        fs.pipe_file(f"{folder}/.{name}.tmp", files[name])
        fs.mv(f"{folder}/.{name}.tmp", f"{folder}/{name}")
    return folder if fs.protocol in ("file", "local") or "file" in fs.protocol else (
        fs.unstrip_protocol(folder))
