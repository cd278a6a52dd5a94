"""run_reaper_sensor: releases runs whose process is gone, so daemon-driven runs never wedge.

A killed run worker leaves its run ``STARTED`` and its ``training`` pool slot claimed; the
nightly schedule's and drift_sensor's next runs would then wait for the slot forever.
Each tick calls :func:`resources.runs.release_dead_runs` (milliseconds: a few queries and
a ``/proc`` read per run in progress) and says in its skip reason what it released.
"""

import dagster as dg


def build_run_reaper_sensor(interval_s: int = 60):
    @dg.sensor(name="run_reaper_sensor", minimum_interval_seconds=interval_s,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Marks runs whose process is gone as failed and frees their pool "
                           "slots (runs on this host; Kubernetes runs are left to Dagster's "
                           "run monitoring).")
    def run_reaper_sensor(context: dg.SensorEvaluationContext):
        from resources.runs import release_dead_runs

        released = release_dead_runs(context.instance, log=context.log.info)
        if not released:
            return dg.SkipReason("no dead runs: every run in progress has its process")
        return dg.SkipReason(f"released {len(released)} dead run(s): "
                             + "; ".join(r.describe() for r in released))

    return run_reaper_sensor
