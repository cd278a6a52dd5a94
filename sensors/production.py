"""production_sensor and alert_sensor.

production_sensor launches ``monitoring_job`` (observe the production store, then the
drift report and production performance) once per new state of the production store;
listing the folder and stat-cached hashes keep an unchanged evaluation to milliseconds.
alert_sensor raises an alert for every failed run.
"""

import dagster as dg


def build_production_sensor(monitoring_job, production, interval_s: int = 30):
    @dg.sensor(name="production_sensor", job=monitoring_job, minimum_interval_seconds=interval_s,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Runs monitoring_job when the production-batch store changes.")
    def production_sensor(context: dg.SensorEvaluationContext):
        from pipelines.production import LABEL_GLOBS, fingerprint, scan

        root = production.path()
        files = scan(root, production.stat_cache())
        labels = scan(root, production.stat_cache(), LABEL_GLOBS)
        if not files:
            return dg.SkipReason(f"no production data under {root} yet")
        version = fingerprint(files + labels, root)
        if version == context.cursor:
            return dg.SkipReason(f"production store unchanged ({len(files)} files)")
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"production-{version}")],
                               cursor=version)

    return production_sensor


def build_alert_sensor(spec_resource):
    @dg.run_failure_sensor(name="alert_sensor", default_status=dg.DefaultSensorStatus.RUNNING,
                           description="Raises an alert (webhook and log) for each failed run.")
    def alert_sensor(context: dg.RunFailureSensorContext):
        from pipelines.alerts import send_alert

        spec = spec_resource.get()
        send_alert(spec.monitoring.alert_webhook, "run_failed", spec.name,
                   f"run {context.dagster_run.run_id} of {context.dagster_run.job_name} failed: "
                   f"{context.failure_event.message}",
                   {"run_id": context.dagster_run.run_id, "job": context.dagster_run.job_name})

    return alert_sensor
