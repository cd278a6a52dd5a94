"""Rebuild a registered model version from its recorded recipe in an empty store.

Usage: ``make reproduce VERSION=n`` (``python -m cli.reproduce --version n``). Reads the
version's tags in the MLflow registry (recipe key, data hash, training config, best
parameters, device, threads), copies only the training data it names into a fresh store,
refits, and reports whether the content hash matches. Exit status 0 means it matched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


def copy_artifact(source, dest, content_hash: str) -> None:
    """Copy a manifest and its files between stores (content-addressed, so verbatim)."""
    manifest = source.get_manifest(content_hash)
    for h in manifest.files.values():
        dest.put_bytes(source.get_bytes(h), content_hash=h)
    dest.put_manifest(manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild a registered model version.")
    parser.add_argument("--version", type=int, required=True)
    args = parser.parse_args(argv)

    from pipelines.artifacts import save_result
    from pipelines.spec import DatasetSpec, load_spec
    from pipelines.store import ArtifactStore
    from pipelines.tracking import version_tags
    from resources.settings import mlflow_uri, spec_path, state_dir, store_root

    state = state_dir()
    spec = load_spec(spec_path())
    tags = version_tags(mlflow_uri(state), spec.name, args.version)
    recorded = json.loads(tags["stage_config"])
    spec = DatasetSpec.model_validate(spec.model_dump(mode="json") | recorded)
    best_params = json.loads(tags.get("best_params") or "null")
    os.environ["TIDELINE_THREADS"] = tags.get("threads", "1")
    print(f"version {args.version} of {spec.name}: recipe {tags['recipe_key'][:19]}…, "
          f"data {tags['data_hash'][:19]}…, commit {tags.get('git_commit')}", flush=True)

    from pipelines.recipe import thread_count
    from pipelines.stages.training import build_trained_weights

    source = ArtifactStore(store_root(state))
    with tempfile.TemporaryDirectory() as tmp:
        empty = ArtifactStore(Path(tmp) / "store")
        copy_artifact(source, empty, tags["data_hash"])
        result = build_trained_weights(
            spec, empty, empty.get_manifest(tags["data_hash"]), threads=thread_count(),
            device=tags.get("device", "cpu"), checkpoint_dir=Path(tmp) / "checkpoints",
            best_params=best_params)
        rebuilt = save_result(empty, result).content_hash
    expected = tags["trained_weights"]
    if rebuilt == expected:
        print(f"reproduced: content hash {rebuilt} matches", flush=True)
        return 0
    print(f"NOT reproduced: rebuilt {rebuilt}, registered {expected}", flush=True)
    return 1


if __name__ == "__main__":
    from cli.console import run_command

    sys.exit(run_command(main, "reproduce"))
