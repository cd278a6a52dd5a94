"""production_batches (observed), drift_report and production_performance of one model."""

import dagster as dg

from assets.memo import materialize_stage
from assets.naming import key
from pipelines.spec import DatasetSpec
from resources.store import ArtifactStoreResource, ProductionResource


def build_monitoring_assets(spec: DatasetSpec) -> list:
    @dg.observable_source_asset(
        key=key(spec, "production_batches"), group_name=spec.name,
        description=f"{spec.name}'s production-batch store: the serving service's prediction "
                    "log and batches dropped in by users; its data version is the content hash "
                    "of what is there (file hashes cached by stat).")
    def production_batches(context, production: ProductionResource) -> dg.ObserveResult:
        from pipelines.production import DATA_GLOBS, observe

        now = observe(production.path(spec.name), production.stat_cache())
        return dg.ObserveResult(
            data_version=dg.DataVersion(now.version),
            metadata={"model": spec.name, "files": len(now.files),
                      "label_files": len(now.labels),
                      "newest": now.files[-1].path.name if now.files else "none",
                      "folder": dg.MetadataValue.path(str(now.root)),
                      "globs": list(DATA_GLOBS)})

    @dg.asset(key=key(spec, "drift_report"), group_name=spec.name, kinds={"evidently"},
              deps=[key(spec, "production_batches"), key(spec, "deployment")],
              description="The newest production batch against the training reference saved "
                          "with the stable model: Evidently report (HTML), per-column table "
                          "with the spec's pinned methods and thresholds, one drift score.")
    def drift_report(context: dg.AssetExecutionContext, store: ArtifactStoreResource,
                     production: ProductionResource):
        from pipelines.stages.monitoring import DriftInputs

        try:
            found = DriftInputs.find(spec, store.get(), production.path(spec.name),
                                     production.stat_cache())
        except ValueError as exc:
            raise dg.Failure(description=str(exc)) from None
        yield from materialize_stage(
            context, asset="drift_report", model=spec.name, store=store.get(),
            modules=("pipelines.stages.monitoring",), config=spec.stage_config("drift_report"),
            inputs={"batch": found.batch_hash, "reference": found.stable.trained_weights},
            compute=lambda recipe: found.report(), on_saved=found.on_saved)

    @dg.asset(key=key(spec, "production_performance"), group_name=spec.name,
              deps=[key(spec, "production_batches")],
              description="Accuracy, AUC and calibration of served predictions on production "
                          "rows whose labels have arrived (label files joined by request id).")
    def production_performance(context: dg.AssetExecutionContext, store: ArtifactStoreResource,
                               production: ProductionResource):
        from pipelines.production import LABEL_GLOBS, fingerprint, scan

        root, cache = production.path(spec.name), production.stat_cache()
        files = scan(root, cache, (*LABEL_GLOBS, "predictions/*/*.parquet"))

        def compute(recipe):
            from pipelines.production import labelled_predictions
            from pipelines.stages.monitoring import build_performance

            return build_performance(spec, labelled_predictions(root, cache))

        yield from materialize_stage(
            context, asset="production_performance", model=spec.name, store=store.get(),
            modules=(),  # the compute function names what it runs; no whole module counts
            config=spec.stage_config("production_performance"),
            inputs={"files": fingerprint(files, root)}, compute=compute,
            on_saved=lambda content_hash, result: _alert_performance(spec, result))

    return [production_batches, drift_report, production_performance]


def _alert_performance(spec: DatasetSpec, result) -> None:
    if not result.metadata.get("below_floor"):
        return
    from pipelines.alerts import send_alert

    send_alert(spec.monitoring.alert_webhook, "performance", spec.name,
               "production performance below the floor: "
               + "; ".join(result.metadata["floor_failures"]),
               {"labelled_rows": result.metadata["labelled_rows"]})
