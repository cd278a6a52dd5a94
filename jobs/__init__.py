"""Jobs. Local jobs run in process: the multiprocess executor costs seconds a step."""

import dagster as dg

from resources.store import ArtifactStoreResource, DatasetSpecResource, MlflowResource

CHAIN = ("raw_data", "validated_features", "trained_weights", "quantized_weights", "model_card",
         "deployment")


@dg.op(description="Undo the newest deployment change: withdraw a live canary, else go back "
                   "to the previous stable model. The serving service switches within a poll.")
def rollback_deployment(context: dg.OpExecutionContext, store: ArtifactStoreResource,
                        spec: DatasetSpecResource, mlflow: MlflowResource) -> None:
    from pipelines import deploy

    st, name = store.get(), spec.get().name
    try:
        state = deploy.rollback(st, name, actor=f"dagster run {context.run_id}")
    except deploy.DeployError as exc:
        raise dg.Failure(description=str(exc)) from exc
    targets = deploy.sync_aliases(st, mlflow.tracking_uri, name)
    context.log.info(f"rolled back: stable is now version "
                     f"{deploy.version_label(state.stable)}; MLflow aliases {targets}")


@dg.op(description="Delete artifacts not reachable from the last 3 materializations of each "
                   "asset, the deployment history or a pin (objects younger than an hour stay).")
def collect_garbage(context: dg.OpExecutionContext, store: ArtifactStoreResource) -> None:
    from cli.gc import collect

    collect(store.get(), context.instance, keep=3, grace_s=3600, dry_run=False,
            log=context.log.info)


@dg.op(description="Check the whole artifact store (same as `make verify`): objects against "
                   "their names, memo and history entries, deployed files, heads; fails "
                   "naming every problem, so the alert sensor reports it.")
def verify_store(context: dg.OpExecutionContext, store: ArtifactStoreResource) -> None:
    from pipelines.verify import verify_store as check

    report = check(store.get())
    summary = (f"{report.objects} objects, {report.memo_entries} memo entries, "
               f"{report.history_entries} history entries")
    if report.ok:
        context.log.info(f"store verified: {summary}: ok")
        return
    lines = [p.line() for p in report.problems]
    plural = "s" if len(lines) != 1 else ""
    raise dg.Failure(description=f"the artifact store has {len(lines)} problem{plural} "
                                 f"({summary}); first: {lines[0]}",
                     metadata={"problems": dg.MetadataValue.json(lines)})


def executor():
    """In process by default; ``TIDELINE_EXECUTOR=k8s`` runs each step in its own pod."""
    import os

    if os.environ.get("TIDELINE_EXECUTOR") == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor


def build_jobs() -> list:
    # Observable sources are observed only when a job selects them explicitly.
    chain = dg.AssetSelection.assets("raw_source", *CHAIN)
    training_job = dg.define_asset_job(
        "training_job", selection=chain, executor_def=executor(),
        description="The whole chain: observe the source, snapshot, validate, train, "
                    "quantize, write the model card and deploy what passes the gate. "
                    "Unchanged stages are cache hits.",
    )
    deploy_job = dg.define_asset_job(
        "deploy_job", selection=dg.AssetSelection.assets("deployment"),
        executor_def=dg.in_process_executor,
        description="Deploy the latest model card's model if its stored gate verdict passed.",
    )

    @dg.job(executor_def=dg.in_process_executor,
            description="Roll the deployment back one step (same as `make rollback`).")
    def rollback_job():
        rollback_deployment()

    retrain_job = dg.define_asset_job(
        "retrain_job", selection=chain, executor_def=executor(),
        tags={"tideline/kind": "retrain"},
        description="Retraining requested by drift_sensor: snapshot the raw data (with newly "
                    "labelled production rows when the spec says so) and run the chain; the "
                    "deploy gate still decides.",
    )
    monitoring_job = dg.define_asset_job(
        "monitoring_job", executor_def=dg.in_process_executor,
        selection=dg.AssetSelection.assets("production_batches", "drift_report",
                                           "production_performance"),
        description="Observe the production store, then the drift report and production "
                    "performance (cache hits when nothing changed).",
    )

    @dg.job(executor_def=dg.in_process_executor,
            description="Garbage-collect the artifact store (same as `make gc`).")
    def gc_job():
        collect_garbage()

    @dg.job(executor_def=dg.in_process_executor,
            description="Check the artifact store end to end (same as `make verify`).")
    def verify_job():
        verify_store()

    return [training_job, deploy_job, rollback_job, retrain_job, monitoring_job, gc_job,
            verify_job]
