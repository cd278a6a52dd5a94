"""Memoized, content-addressed materialization shared by every stage asset.

The recipe key is computed and looked up before any input is loaded; a hit re-emits
the stored result (same data version, ``cache: hit``) without importing a heavy library.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from pipelines.artifacts import (
    Markdown,
    PathLink,
    StageFailure,
    StageResult,
    metadata_from_json,
    metadata_to_json,
    save_result,
)
from pipelines.recipe import code_fingerprint, recipe_key
from pipelines.resources import release_memory
from pipelines.store import ArtifactStore
from resources.refs import ArtifactRef

Compute = Callable[[str], StageResult]


def _metadata_value(value: Any) -> Any:
    """A stage's metadata value (after :func:`metadata_from_json`) as Dagster shows it."""
    if isinstance(value, Markdown):
        return dg.MetadataValue.md(value.text)
    if isinstance(value, PathLink):
        return dg.MetadataValue.path(value.url)
    if isinstance(value, (dict, list)):
        return dg.MetadataValue.json(value)
    return value


def _check_results(checks: list[dict[str, Any]],
                   asset_key: dg.AssetKey) -> Iterator[dg.AssetCheckResult]:
    for check in checks:
        severity = (dg.AssetCheckSeverity.WARN if check.get("row_level", True)
                    else dg.AssetCheckSeverity.ERROR)
        yield dg.AssetCheckResult(
            asset_key=asset_key, check_name=check["name"], passed=bool(check["passed"]),
            severity=severity,
            metadata={"column": check.get("column", ""), "rule": check.get("rule", ""),
                      "failed_rows": int(check.get("failed_rows", 0)),
                      "failed_fraction": float(check.get("failed_fraction", 0.0)),
                      "examples": dg.MetadataValue.json(check.get("examples", [])),
                      "rules": dg.MetadataValue.json([
                          {"column": r.get("column", ""), "rule": r["rule"],
                           "passed": r["passed"], "failed_rows": r["failed_rows"]}
                          for r in check.get("rules", [])])},
        )


def materialize_stage(
    context: dg.AssetExecutionContext,
    *,
    asset: str,
    model: str,
    store: ArtifactStore,
    modules: tuple[str, ...],
    config: dict[str, Any],
    inputs: dict[str, str],
    compute: Compute,
    output_name: str = "result",
    on_saved: Callable[[str, StageResult], None] | None = None,
) -> Iterator[Any]:
    """Yield check results and the output of a stage, computing it only on a miss.

    Args:
        context: The asset's execution context.
        asset: The stage's name (first part of the recipe key).
        model: The model (dataset spec name): each model keeps its own memo table.
        store: The artifact store.
        modules: The stage's ``pipelines`` modules; they and the compute function, with
            the ``pipelines`` code they reach, are the stage's code fingerprint.
        config: The spec/config that shapes the output.
        inputs: Content hashes of the inputs, by input name.
        compute: Called with the recipe key on a miss; returns the stage result.
        output_name: The output to yield (the asset name inside a multi-asset).
        on_saved: Called on a miss with the content hash once the artifact is stored and
            before its memo entry is written (it may add metadata).
    """
    start = time.perf_counter()
    key = recipe_key(asset, code_fingerprint(*modules, functions=(compute,)), config, inputs)
    table = f"{model}/{asset}"
    record = store.lookup(table, key)
    cache = "hit" if record else "miss"
    if record is None:
        context.log.info(f"{asset}: cache miss for recipe {key[:19]}…; computing")
        try:
            result = compute(key)
        except StageFailure as exc:
            yield from _check_results(exc.checks, dg.AssetKey([model, asset]))
            raise dg.Failure(description=str(exc)) from exc
        manifest = save_result(store, result)
        if on_saved is not None:
            on_saved(manifest.content_hash, result)
        record = {"content_hash": manifest.content_hash,
                  "metadata": metadata_to_json(result.metadata), "checks": result.checks}
        store.record(table, key, record)
        del result
        release_memory()
    else:
        context.log.info(f"{asset}: cache hit for recipe {key[:19]}…")
    content_hash = record["content_hash"]
    metadata = {k: _metadata_value(v) for k, v in metadata_from_json(record["metadata"]).items()}
    metadata |= {"model": model, "recipe_key": key, "content_hash": content_hash, "cache": cache,
                 "seconds": round(time.perf_counter() - start, 4)}
    yield dg.Output(ArtifactRef(asset, content_hash), output_name=output_name,
                    data_version=dg.DataVersion(content_hash), metadata=metadata)
    yield from _check_results(record["checks"], dg.AssetKey([model, asset]))
