"""The nightly schedule: an unchanged night is a chain of cache hits."""

from __future__ import annotations

import dagster as dg


def build_schedules(training_job: dg.UnresolvedAssetJobDefinition) -> list[dg.ScheduleDefinition]:
    nightly_schedule = dg.ScheduleDefinition(
        name="nightly_schedule", job=training_job, cron_schedule="0 2 * * *",
        execution_timezone="UTC", description="Runs the chain at 02:00 UTC.",
    )
    return [nightly_schedule]
