"""batch_predictions: the spec's batch table scored with the stable model, as Parquet."""

import dagster as dg

from assets.memo import materialize_stage
from assets.naming import key
from pipelines.artifacts import PathLink
from pipelines.spec import DatasetSpec
from resources.store import ArtifactStoreResource, LakeFSResource


def build_batch_predictions(spec: DatasetSpec) -> dg.AssetsDefinition:
    """The model's batch-scoring asset, ``<model>/batch_predictions``.

    Its recipe key takes the table's content hash (stat-cached for a local file; checksum
    and size for a ``lakefs://`` object) and the stable model's ``quantized_weights`` and
    version, so the same table and model is a cache hit and a new stable model re-scores.
    """

    @dg.asset(
        key=key(spec, "batch_predictions"), group_name=spec.name,
        deps=[key(spec, "deployment")], kinds={"onnx", "parquet"},
        description=f"{spec.name}'s batch table (deployment.batch.source) scored with the "
                    "stable model's fp32 ONNX file: Parquet with row_id, probability, label "
                    "and model_version, in the artifact store.")
    def batch_predictions(context: dg.AssetExecutionContext, store: ArtifactStoreResource,
                          lakefs: LakeFSResource):
        from pipelines.batch import BatchInputs

        st = store.get()
        try:
            found = BatchInputs.find(spec, st, store.stat_cache(), lakefs.client)
        except ValueError as exc:
            raise dg.Failure(description=str(exc)) from None
        if found.lakefs is not None:
            context.log.info(f"batch table {found.source} is {found.lakefs[1].pinned_uri}")

        def on_saved(content_hash, result):
            manifest = st.get_manifest(content_hash)
            result.metadata["predictions"] = PathLink(
                st.object_url(manifest.files["predictions.parquet"]))

        yield from materialize_stage(
            context, asset="batch_predictions", model=spec.name, store=st,
            modules=("pipelines.stages.batch",),
            config=spec.stage_config("batch_predictions") | {"model_version": found.model.version},
            inputs={"table": found.source_hash,
                    "quantized_weights": found.model.quantized_weights},
            compute=lambda recipe: found.score(spec, st), on_saved=on_saved)

    return batch_predictions
