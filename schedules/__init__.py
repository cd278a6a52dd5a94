"""Schedules: each model's nightly run and the store's weekly gc and verify.

An unchanged night is a chain of cache hits.
"""

from __future__ import annotations

import dagster as dg

from pipelines.spec import DatasetSpec


def build_model_schedules(spec: DatasetSpec, training_job, batch_job=None
                          ) -> list[dg.ScheduleDefinition]:
    """A model's schedules: nightly, and batch scoring when configured.

    ``<model>_nightly_schedule`` runs at the spec's ``schedule`` (none when it is null);
    ``<model>_batch_schedule`` when ``deployment.batch.schedule`` is set.
    """
    schedules = []
    if spec.schedule:
        schedules.append(dg.ScheduleDefinition(
            name=f"{spec.name}_nightly_schedule", job=training_job,
            cron_schedule=spec.schedule, execution_timezone="UTC",
            description=f"Runs {spec.name}'s chain at '{spec.schedule}' (UTC; the spec's "
                        "`schedule`, null turns it off)."))
    batch = spec.deployment.batch
    if batch_job is not None and batch is not None and batch.schedule:
        schedules.append(dg.ScheduleDefinition(
            name=f"{spec.name}_batch_schedule", job=batch_job, cron_schedule=batch.schedule,
            execution_timezone="UTC",
            description=f"Scores {batch.source} with {spec.name}'s stable model."))
    return schedules


def build_store_schedules(gc_job, verify_job) -> list[dg.ScheduleDefinition]:
    return [
        dg.ScheduleDefinition(
            name="gc_schedule", job=gc_job, cron_schedule="0 3 * * 0", execution_timezone="UTC",
            description="Garbage-collects the artifact store on Sundays at 03:00 UTC."),
        dg.ScheduleDefinition(
            name="verify_schedule", job=verify_job, cron_schedule="0 4 * * 0",
            execution_timezone="UTC",
            description="Verifies the artifact store on Sundays at 04:00 UTC (after gc); a "
                        "failure is alerted like any failed run."),
    ]
