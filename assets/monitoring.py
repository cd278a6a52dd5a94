"""production_batches (observed), drift_report and production_performance."""

import dagster as dg

from assets.memo import materialize_stage
from resources.store import ArtifactStoreResource, DatasetSpecResource, ProductionResource


@dg.observable_source_asset(
    name="production_batches", group_name="monitoring",
    description="The production-batch store: the serving service's prediction log and "
                "batches dropped in by users; its data version is the content hash of what "
                "is there (file hashes cached by stat).")
def production_batches(context, production: ProductionResource) -> dg.ObserveResult:
    from pipelines.production import DATA_GLOBS, LABEL_GLOBS, fingerprint, scan

    root = production.path()
    cache = production.stat_cache()
    files = scan(root, cache)
    labels = scan(root, cache, LABEL_GLOBS)
    return dg.ObserveResult(
        data_version=dg.DataVersion(fingerprint(files + labels, root)),
        metadata={"files": len(files), "label_files": len(labels),
                  "newest": files[-1].path.name if files else "none",
                  "folder": dg.MetadataValue.path(str(root)), "globs": list(DATA_GLOBS)})


@dg.asset(group_name="monitoring", deps=["production_batches", "deployment"],
          description="The newest production batch against the training reference saved with "
                      "the stable model: Evidently report (HTML), per-column table with the "
                      "spec's pinned methods and thresholds, and one drift score.")
def drift_report(context: dg.AssetExecutionContext, spec: DatasetSpecResource,
                 store: ArtifactStoreResource, production: ProductionResource):
    from pipelines import deploy
    from pipelines.production import fingerprint, newest_batch, scan

    dataset, st, root = spec.get(), store.get(), production.path()
    stable = deploy.current(st, dataset.name).stable
    if stable is None:
        raise dg.Failure(description="no deployed model: drift is measured against the stable "
                                     "model's training reference; deploy one first")
    files = scan(root, production.stat_cache())
    picked = newest_batch(files, dataset.monitoring.min_batch_rows)
    if picked is None:
        raise dg.Failure(description=(
            f"the production store {root} holds {len(files)} files with fewer than "
            f"monitoring.min_batch_rows = {dataset.monitoring.min_batch_rows} rows in all; "
            "nothing to compare yet"))
    chosen, frame = picked
    batch_hash = fingerprint(chosen, root)
    names = [str(f.path.relative_to(root)) for f in chosen]

    def compute(key):
        from pipelines.stages.monitoring import build_drift_report

        result = build_drift_report(dataset, st, batch=frame, batch_files=names,
                                    reference_weights=stable["trained_weights"])
        result.metadata |= {"batch": batch_hash, "model_version": stable["version"]}
        return result

    def on_saved(content_hash, result):
        from pipelines.alerts import send_alert

        if "report.html" in result.files:
            manifest = st.get_manifest(content_hash)
            result.metadata["report_html"] = {
                "__path__": st.object_url(manifest.files["report.html"])}
        if result.metadata["drifted"]:
            send_alert(dataset.monitoring.alert_webhook, "drift", dataset.name,
                       f"drift score {result.metadata['drift_score']:.2f} ≥ "
                       f"{dataset.monitoring.drift_threshold:g} on batch {batch_hash[:19]}…; "
                       f"drifted: {', '.join(result.metadata['drifted_columns'])}",
                       {"batch": batch_hash, "files": names[-5:],
                        "drift_score": result.metadata["drift_score"]})

    yield from materialize_stage(
        context, asset="drift_report", store=st, modules=("pipelines.stages.monitoring",),
        config=dataset.stage_config("drift_report"),
        inputs={"batch": batch_hash, "reference": stable["trained_weights"]},
        compute=compute, on_saved=on_saved)


@dg.asset(group_name="monitoring", deps=["production_batches"],
          description="Accuracy, AUC and calibration of served predictions on production rows "
                      "whose labels have arrived (label files joined by request id).")
def production_performance(context: dg.AssetExecutionContext, spec: DatasetSpecResource,
                           store: ArtifactStoreResource, production: ProductionResource):
    from pipelines.production import LABEL_GLOBS, fingerprint, scan

    dataset, st, root = spec.get(), store.get(), production.path()
    cache = production.stat_cache()
    files = scan(root, cache, (*LABEL_GLOBS, "predictions/*/*.parquet"))

    def compute(key):
        from pipelines.production import labelled_predictions
        from pipelines.stages.monitoring import build_performance

        return build_performance(dataset, labelled_predictions(root, cache))

    def on_saved(content_hash, result):
        from pipelines.alerts import send_alert

        if result.metadata.get("below_floor"):
            send_alert(dataset.monitoring.alert_webhook, "performance", dataset.name,
                       "production performance below the floor: "
                       + "; ".join(result.metadata["floor_failures"]),
                       {"labelled_rows": result.metadata["labelled_rows"]})

    yield from materialize_stage(
        context, asset="production_performance", store=st,
        modules=(),  # the compute function names what it runs; no whole module counts
        config=dataset.stage_config("production_performance"),
        inputs={"files": fingerprint(files, root)}, compute=compute, on_saved=on_saved)
