"""batch_predictions: the spec's batch table scored with the stable model, as Parquet."""

import dagster as dg

from assets.memo import materialize_stage
from pipelines.artifacts import PathLink
from pipelines.spec import DatasetSpec
from resources.store import ArtifactStoreResource, LakeFSResource


def build_batch_predictions(spec: DatasetSpec,
                            prefix: list[str] | None = None) -> dg.AssetsDefinition:
    """The model's batch-scoring asset, keyed ``[*prefix, "batch_predictions"]``.

    ``prefix`` defaults to ``[spec.name]``, as every stage of the model is keyed.

    Its recipe key takes the table's content hash (stat-cached for a local file; checksum
    and size for a ``lakefs://`` object) and the stable model's ``quantized_weights`` and
    version, so the same table and model is a cache hit and a new stable model re-scores.
    """
    prefix = [spec.name] if prefix is None else list(prefix)

    @dg.asset(
        key=dg.AssetKey([*prefix, "batch_predictions"]), group_name=spec.name,
        deps=[dg.AssetKey([*prefix, "deployment"])], kinds={"onnx", "parquet"},
        description=f"{spec.name}'s batch table (deployment.batch.source) scored with the "
                    "stable model's fp32 ONNX file: Parquet with row_id, probability, label "
                    "and model_version, in the artifact store.")
    def batch_predictions(context: dg.AssetExecutionContext, store: ArtifactStoreResource,
                          lakefs: LakeFSResource):
        from pathlib import Path

        from pipelines import deploy
        from pipelines.batch import ScoringModel, check_file, table_format
        from pipelines.ingest import InputError
        from pipelines.lakefs import is_lakefs

        batch = spec.deployment.batch
        if batch is None:
            raise dg.Failure(description=(
                f"model {spec.name}: deployment.batch is not set in its spec; add "
                "deployment.batch.source (a CSV or Parquet table, or a lakefs:// URI) to "
                "score a table"))
        st = store.get()
        stable = deploy.current(st, spec.name).stable
        if stable is None:
            raise dg.Failure(description=(
                f"model {spec.name}: no stable model to score {batch.source} with; run "
                f"{spec.name}_training_job until a model passes the gate and is deployed"))
        model = ScoringModel.from_deployed(stable)
        fmt = table_format(batch.source)
        version = None
        if is_lakefs(batch.source):
            client = lakefs.client()
            version = lakefs.source_version(batch.source, client)
            source_hash = version.content_key
            context.log.info(f"batch table {batch.source} is {version.pinned_uri}")
        else:
            try:
                path = check_file(Path(batch.source), batch.source)
                source_hash, _ = store.stat_cache().file_hash(path)
            except InputError as exc:
                raise dg.Failure(description=str(exc)) from None

        def compute(recipe: str):
            from pipelines.stages.batch import score_table, table_source

            if version is None:
                return score_table(spec, st, model, table_source(spec, path, batch.source, fmt),
                                   batch.id_column)
            import tempfile

            from pipelines.artifacts import StageFailure
            from pipelines.lakefs import LakeFSError, copy_source

            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / f"table.{fmt}"
                try:
                    with open(local, "wb") as out:
                        copy_source(client, version, out)
                except LakeFSError as exc:
                    raise StageFailure(f"{batch.source}: {exc}") from None
                return score_table(spec, st, model,
                                   table_source(spec, local, version.pinned_uri, fmt),
                                   batch.id_column)

        def on_saved(content_hash, result):
            manifest = st.get_manifest(content_hash)
            result.metadata["predictions"] = PathLink(
                st.object_url(manifest.files["predictions.parquet"]))

        yield from materialize_stage(
            context, asset="batch_predictions", model=spec.name, store=st,
            modules=("pipelines.stages.batch",),
            config=spec.stage_config("batch_predictions") | {"model_version": model.version},
            inputs={"table": source_hash, "quantized_weights": model.quantized_weights},
            compute=compute, on_saved=on_saved)

    return batch_predictions
