"""Memoized, content-addressed materialization shared by every stage asset.

The recipe key is computed and looked up before any input is loaded; a hit re-emits
the stored result (same data version, ``cache: hit``) without importing a heavy library.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from pipelines import lineage, telemetry
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
_tagged: list[str | None] = [None]  # the run this process last gave its trace tag


def stage_span(context: dg.AssetExecutionContext, model: str, stage: str,
               values: dict[str, Any] | None = None) -> tuple[telemetry.Span, str | None]:
    """The span of one stage in its run's trace, and that trace's id; off: no span, ``None``.

    The trace id is the run id, so every step of the run, in whichever process, joins the
    same trace; the run gets it as a tag too.
    """
    if not telemetry.enabled():
        return telemetry.NO_SPAN, None
    trace_id = telemetry.run_trace_id(context.run_id)
    # (The next step of the same run in this process skips the write.)
    if _tagged[0] != context.run_id and context.run.tags.get(telemetry.RUN_TAG) != trace_id:
        context.instance.add_run_tags(context.run_id, {telemetry.RUN_TAG: trace_id})
    _tagged[0] = context.run_id
    span = telemetry.start_span(
        stage, {"tideline.model": model, "tideline.stage": stage,
                "dagster.run_id": context.run_id} | (values or {}),
        trace_id=trace_id,
        span_id=telemetry.stage_span_id(trace_id, model, stage, context.retry_number),
        scope="tideline.pipeline")
    return span, trace_id


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
        if "metadata" in check:
            # A check that says what the UI shows for it (the deploy gate's rule table).
            yield dg.AssetCheckResult(
                asset_key=asset_key, check_name=check["name"], passed=bool(check["passed"]),
                severity=severity,
                metadata={k: _metadata_value(v)
                          for k, v in metadata_from_json(check["metadata"]).items()})
            continue
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
    span, trace_id = stage_span(context, model, asset, {"tideline.recipe_key": key})
    try:
        record = store.lookup(table, key)
        cache = "hit" if record else "miss"
        events: list[Any] = []  # a miss's OpenLineage events, stored before its memo entry
        if record is None:
            context.log.info(f"{asset}: cache miss for recipe {key[:19]}…; computing")
            try:
                with span.activate():  # epochs, trials and MLflow runs nest under the stage
                    result = compute(key)
            except StageFailure as exc:
                span.end(exc)
                yield from _check_results(exc.checks, dg.AssetKey([model, asset]))
                raise dg.Failure(description=str(exc)) from exc
            if trace_id:
                # Kept with the memo entry: a later hit still names the run that computed it.
                result.metadata["origin_trace"] = trace_id
            manifest = save_result(store, result)
            if on_saved is not None:
                on_saved(manifest.content_hash, result)
            record = {"content_hash": manifest.content_hash,
                      "metadata": metadata_to_json(result.metadata), "checks": result.checks}
            # Lineage first: a kill before the memo entry leaves a miss, never a hit without it.
            events = lineage.record_stage_run(
                store, run_id=context.run_id, model=model, stage=asset, recipe_key=key,
                inputs=inputs, output=manifest.content_hash,
                seconds=time.perf_counter() - start, modules=modules, compute=compute)
            store.record(table, key, record)
            del result
            release_memory()
        else:
            context.log.info(f"{asset}: cache hit for recipe {key[:19]}…")
    except BaseException as exc:
        span.end(exc)
        telemetry.flush()
        raise
    content_hash = record["content_hash"]
    metadata = {k: _metadata_value(v) for k, v in metadata_from_json(record["metadata"]).items()}
    seconds = round(time.perf_counter() - start, 4)
    lineage.emit(model, asset, events)  # OpenLineage; nothing on a hit
    metadata |= {"model": model, "recipe_key": key, "content_hash": content_hash, "cache": cache,
                 "seconds": seconds}
    if trace_id:
        rows, device = metadata.get("rows"), metadata.get("device")
        span.set({"tideline.cache": cache, "tideline.content_hash": content_hash,
                  "tideline.rows": rows if isinstance(rows, int) else None,
                  "tideline.device": device if isinstance(device, str) else None,
                  "tideline.seconds": seconds})
        span.end()
        telemetry.flush()
        metadata["trace_id"] = trace_id
    yield dg.Output(ArtifactRef(asset, content_hash), output_name=output_name,
                    data_version=dg.DataVersion(content_hash), metadata=metadata)
    yield from _check_results(record["checks"], dg.AssetKey([model, asset]))
