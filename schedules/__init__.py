"""The nightly schedule: an unchanged night is a chain of cache hits."""

from __future__ import annotations

import dagster as dg


def build_schedules(training_job, gc_job=None, verify_job=None) -> list[dg.ScheduleDefinition]:
    nightly_schedule = dg.ScheduleDefinition(
        name="nightly_schedule", job=training_job, cron_schedule="0 2 * * *",
        execution_timezone="UTC", description="Runs the chain at 02:00 UTC.",
    )
    schedules = [nightly_schedule]
    if gc_job is not None:
        schedules.append(dg.ScheduleDefinition(
            name="gc_schedule", job=gc_job, cron_schedule="0 3 * * 0", execution_timezone="UTC",
            description="Garbage-collects the artifact store on Sundays at 03:00 UTC."))
    if verify_job is not None:
        schedules.append(dg.ScheduleDefinition(
            name="verify_schedule", job=verify_job, cron_schedule="0 4 * * 0",
            execution_timezone="UTC",
            description="Verifies the artifact store on Sundays at 04:00 UTC (after gc); a "
                        "failure is alerted like any failed run."))
    return schedules
