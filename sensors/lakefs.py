"""lakefs_commit_sensor: one lakeFS commit per successful run, when the store is on lakeFS."""

import dagster as dg


def build_lakefs_commit_sensor(store_root: str, interval_s: int = 30):
    @dg.run_status_sensor(
        name="lakefs_commit_sensor", run_status=dg.DagsterRunStatus.SUCCESS,
        minimum_interval_seconds=interval_s, default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Commits the artifact store's lakeFS branch ({store_root}) after each "
                    "successful run, with the run id and job in the commit metadata.")
    def lakefs_commit_sensor(context: dg.RunStatusSensorContext):
        from pipelines.lakefs import commit_store

        run = context.dagster_run
        commit = commit_store(store_root, f"{run.job_name} run {run.run_id}",
                              {"dagster_run_id": run.run_id, "dagster_job": run.job_name})
        if commit is None:
            return dg.SkipReason(f"run {run.run_id} changed nothing in {store_root}")
        context.log.info(f"committed {store_root} as {commit} after run {run.run_id}")
        return None

    return lakefs_commit_sensor
