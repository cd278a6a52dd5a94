"""Jobs: five per model (named after it) and two for the whole store.

Local jobs run in process: the multiprocess executor costs seconds a step.
"""

from dataclasses import dataclass
from typing import Any

import dagster as dg

from pipelines.catalog import CHAIN, MONITORING
from pipelines.spec import DatasetSpec
from resources.store import ArtifactStoreResource, MlflowResource


@dataclass(frozen=True)
class ModelJobs:
    """One model's jobs."""

    # Asset jobs are resolved when the Definitions are built (Dagster's unresolved type is
    # private), so these are typed by what they are built from.
    training: Any
    deploy: Any
    rollback: dg.JobDefinition
    retrain: Any
    monitoring: Any

    def all(self) -> list:
        return [self.training, self.deploy, self.rollback, self.retrain, self.monitoring]


@dg.op(description="Delete artifacts not reachable from the last 3 materializations of each "
                   "asset, the deployment history or a pin (objects younger than an hour stay).")
def collect_garbage(context: dg.OpExecutionContext, store: ArtifactStoreResource) -> None:
    from pipelines.gc import collect
    from resources.history import recent_roots

    collect(store.get(), recent_roots(context.instance, keep=3), grace_s=3600, dry_run=False,
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


def model_tags(spec: DatasetSpec, **extra: str) -> dict[str, str]:
    """Run tags naming the model, so every run of it can be found and filtered."""
    return {"tideline/model": spec.name, **extra}


def build_model_jobs(spec: DatasetSpec) -> ModelJobs:
    name, tags = spec.name, model_tags(spec)
    # Observable sources are observed only when a job selects them explicitly.
    chain = dg.AssetSelection.assets(*([name, stage] for stage in ("raw_source", *CHAIN)))
    training_job = dg.define_asset_job(
        f"{name}_training_job", selection=chain, executor_def=executor(), tags=tags,
        description=f"{name}'s whole chain: observe the source, snapshot, validate, train, "
                    "quantize, write the model card and deploy what passes the gate. "
                    "Unchanged stages are cache hits.")
    deploy_job = dg.define_asset_job(
        f"{name}_deploy_job", selection=dg.AssetSelection.assets([name, "deployment"]),
        executor_def=dg.in_process_executor, tags=tags,
        description=f"Deploy {name}'s latest model card's model if its gate verdict passed.")

    @dg.op(name=f"{name}_rollback_deployment",
           description=f"Undo {name}'s newest deployment change: withdraw a live canary, "
                       "else go back to the previous stable model. The serving service "
                       "switches within a poll.")
    def rollback_deployment(context: dg.OpExecutionContext, store: ArtifactStoreResource,
                            mlflow: MlflowResource) -> None:
        from pipelines import deploy

        st = store.get()
        try:
            state = deploy.rollback(st, name, actor=f"dagster run {context.run_id}")
        except deploy.DeployError as exc:
            raise dg.Failure(description=str(exc)) from exc
        targets = deploy.sync_aliases(st, mlflow.tracking_uri, name)
        context.log.info(f"rolled back {name}: stable is now version "
                         f"{deploy.version_label(state.stable)}; MLflow aliases {targets}")

    @dg.job(name=f"{name}_rollback_job", executor_def=dg.in_process_executor, tags=tags,
            description=f"Roll {name}'s deployment back one step (`make rollback MODEL={name}`).")
    def rollback_job():
        rollback_deployment()

    retrain_job = dg.define_asset_job(
        f"{name}_retrain_job", selection=chain, executor_def=executor(),
        tags=model_tags(spec, **{"tideline/kind": "retrain"}),
        description=f"Retraining of {name} requested by its drift sensor: snapshot the raw "
                    "data (with newly labelled production rows when the spec says so) and "
                    "run the chain; the deploy gate still decides.")
    monitoring_job = dg.define_asset_job(
        f"{name}_monitoring_job", executor_def=dg.in_process_executor, tags=tags,
        selection=dg.AssetSelection.assets(*([name, stage] for stage in MONITORING)),
        description=f"Observe {name}'s production store, then its drift report and production "
                    "performance (cache hits when nothing changed).")
    return ModelJobs(training_job, deploy_job, rollback_job, retrain_job, monitoring_job)


def build_batch_job(spec: DatasetSpec) -> Any:
    return dg.define_asset_job(
        f"{spec.name}_batch_job", executor_def=dg.in_process_executor, tags=model_tags(spec),
        selection=dg.AssetSelection.assets([spec.name, "batch_predictions"]),
        description=f"Score {spec.name}'s batch table with its stable model (a cache hit when "
                    "neither the table nor the stable model changed).")


def build_store_jobs() -> list[dg.JobDefinition]:
    """gc_job and verify_job: the artifact store is shared by every model."""

    @dg.job(executor_def=dg.in_process_executor,
            description="Garbage-collect the artifact store (same as `make gc`).")
    def gc_job():
        collect_garbage()

    @dg.job(executor_def=dg.in_process_executor,
            description="Check the artifact store end to end (same as `make verify`).")
    def verify_job():
        verify_store()

    return [gc_job, verify_job]
