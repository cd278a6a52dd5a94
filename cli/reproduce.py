"""Rebuild every stage of a registered model version in an empty store and compare.

Usage: ``make reproduce [MODEL=<spec>] VERSION=n`` (``python -m cli.reproduce --version
n``). The version's tags in the MLflow registry give its trained weights, training data,
training settings, searched parameters, device and threads; the Dagster instance gives the
run that built it, and so its raw snapshot, variants and model card; the deployment
history gives the champion its card compared against. Each stage is rebuilt from its
recorded inputs in a fresh store and reported as a match or with its first difference.
Exit status 0 means every stage matched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def _content_hash(record: Any) -> str | None:
    meta = record.asset_materialization.metadata
    return str(meta["content_hash"].value) if "content_hash" in meta else None


def recorded_lineage(instance: Any, store: Any, model_name: str, tags: dict[str, str]):
    """What the version was made of, from the run that trained it and the history."""
    import dagster as dg

    from pipelines import deploy
    from pipelines.reproduce import Recorded

    trained = tags["trained_weights"]
    runs = [r for r in instance.fetch_materializations(
                dg.AssetKey([model_name, "trained_weights"]), limit=1000).records
            if _content_hash(r) == trained]
    # The run that computed it (a miss), else any run that re-emitted it.
    runs.sort(key=lambda r: r.asset_materialization.metadata.get(
        "cache", dg.MetadataValue.text("")).value != "miss")
    found: dict[str, str] = {}
    if runs:
        events = instance.get_records_for_run(
            runs[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        for event in events:
            mat = event.event_log_entry.asset_materialization
            meta = mat.metadata if mat else {}
            if mat and "content_hash" in meta and mat.asset_key.path[0] == model_name:
                found[mat.asset_key.path[-1]] = str(meta["content_hash"].value)
    champion = None
    if "model_card" in found:
        card = json.loads(store.get_bytes(store.get_manifest(found["model_card"]).files[
            "card.json"]))
        weights = (card.get("champion") or {}).get("trained_weights")
        for entry in deploy.entries(store, model_name) if weights else []:
            if entry.model is not None and entry.model.trained_weights == weights:
                champion = entry.model
                break
    return Recorded(validated_features=tags["data_hash"], trained_weights=trained,
                    raw_data=found.get("raw_data"),
                    quantized_weights=found.get("quantized_weights"),
                    model_card=found.get("model_card"), champion=champion)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild a registered model version.")
    parser.add_argument("--version", type=int, required=True)
    args = parser.parse_args(argv)

    import dagster as dg

    from cli.console import CommandFailed
    from pipelines.catalog import selected_spec
    from pipelines.paths import mlflow_uri, state_dir, store_root
    from pipelines.reproduce import rebuild
    from pipelines.spec import DatasetSpec
    from pipelines.store import ArtifactStore
    from pipelines.tracking import version_tags

    state = state_dir()
    spec = selected_spec()
    try:
        tags = version_tags(mlflow_uri(state), spec.name, args.version)
    except Exception as exc:
        raise CommandFailed(f"model {spec.name} has no registered version {args.version} in "
                            f"{mlflow_uri(state)}: pick one that make deploy-status or the "
                            "MLflow UI lists") from exc
    recorded = json.loads(tags["stage_config"])
    if "training" in recorded and "model" not in recorded["training"]:
        # Registered before training.model existed: those versions are the plain MLP.
        recorded["training"] = recorded["training"] | {"model": "mlp"}
    spec = DatasetSpec.model_validate(spec.model_dump(mode="json") | {
        k: v for k, v in recorded.items() if k in ("training", "tuning")})
    best_params = json.loads(tags.get("best_params") or "null")
    os.environ["TIDELINE_THREADS"] = tags.get("threads", "1")
    print(f"version {args.version} of {spec.name}: recipe {tags['recipe_key'][:19]}…, "
          f"data {tags['data_hash'][:19]}…, commit {tags.get('git_commit')}", flush=True)

    from pipelines.recipe import thread_count

    source = ArtifactStore(store_root(state))
    lineage = recorded_lineage(dg.DagsterInstance.get(), source, spec.name, tags)
    with tempfile.TemporaryDirectory() as tmp:
        matches = rebuild(spec, source, lineage, Path(tmp), threads=thread_count(),
                          device=tags.get("device", "cpu"), best_params=best_params,
                          log=lambda line: print(f"  {line}", flush=True))
    rebuilt = [m for m in matches if m.recorded is not None]
    same = [m for m in rebuilt if m.matched]
    print(f"reproduced {len(same)} of {len(rebuilt)} stages"
          + ("" if len(rebuilt) == len(matches) else
             f" ({len(matches) - len(rebuilt)} not recorded)"), flush=True)
    return 0 if rebuilt and len(same) == len(rebuilt) else 1


if __name__ == "__main__":
    from cli.console import run_command

    sys.exit(run_command(main, "reproduce"))
