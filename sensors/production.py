"""<model>_production_sensor and the alert sensors.

A production sensor launches its model's monitoring job (observe the production store,
then the drift report and production performance) once per new state of that model's
production store; listing the folder and stat-cached hashes keep an unchanged evaluation
to milliseconds. Alert sensors raise an alert for every failed run.
"""

import dagster as dg

from pipelines.spec import DatasetSpec


def build_production_sensor(model: str, monitoring_job, production, interval_s: int = 30):
    @dg.sensor(name=f"{model}_production_sensor", job=monitoring_job,
               minimum_interval_seconds=interval_s,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Runs {monitoring_job.name} when {model}'s production-batch store "
                           "changes.")
    def production_sensor(context: dg.SensorEvaluationContext):
        from pipelines.production import observe

        now = observe(production.path(model), production.stat_cache())
        if not now.files:
            return dg.SkipReason(f"no production data under {now.root} yet")
        if now.version == context.cursor:
            return dg.SkipReason(f"production store unchanged ({len(now.files)} files)")
        return dg.SensorResult(run_requests=[dg.RunRequest(
            run_key=f"production-{now.version}", tags={"tideline/model": model})],
            cursor=now.version)

    return production_sensor


def build_alert_sensor(spec: DatasetSpec, jobs: list):
    """``<model>_alert_sensor``: the model's webhook hears of each failed run of its jobs."""
    return _failure_sensor(f"{spec.name}_alert_sensor", jobs, spec.monitoring.alert_webhook,
                           spec.name)


def build_store_alert_sensor(jobs: list, webhook: str):
    """``store_alert_sensor``: failed gc or verify runs (``TIDELINE_ALERT_WEBHOOK``)."""
    return _failure_sensor("store_alert_sensor", jobs, webhook, "store")


def _failure_sensor(name: str, jobs: list, webhook: str, subject: str):
    @dg.run_failure_sensor(name=name, monitored_jobs=jobs,
                           default_status=dg.DefaultSensorStatus.RUNNING,
                           description=f"Raises an alert (webhook and log) for each failed run "
                                       f"of {', '.join(j.name for j in jobs)}.")
    def alert_sensor(context: dg.RunFailureSensorContext):
        from pipelines.alerts import send_alert

        run = context.dagster_run
        send_alert(webhook, "run_failed", subject,
                   f"run {run.run_id} of {run.job_name} failed: {context.failure_event.message}",
                   {"run_id": run.run_id, "job": run.job_name})

    return alert_sensor
