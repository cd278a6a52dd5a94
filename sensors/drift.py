"""drift_sensor: decides retraining from the latest drift_report and production_performance.

It only reads those assets' materialization metadata (a sensor evaluation times out after
60 s; the reports themselves can take minutes), keeps its state in its cursor as JSON
(consecutive drifted batches, the last batch seen, the last performance result acted on,
the time of the last request) and takes an injectable clock, so tests can move time.
"""

import json
import time
from collections.abc import Callable

import dagster as dg

from pipelines.records import DriftSummary, PerformanceSummary


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict | None:
    """The metadata values of an asset's latest materialization, or None."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def evaluate(cursor: dict, drift: DriftSummary | None, perf: PerformanceSummary | None,
             now: float, *, consecutive: int,
             cooldown_s: float) -> tuple[str | None, str, dict]:
    """``(run_key or None, reason, new cursor)``: the sensor's whole decision, pure."""
    state = {"consecutive": 0, "last_batch": None, "last_perf": None, "last_request": None}
    state |= cursor
    new_batch = drift is not None and bool(drift.batch) and drift.batch != state["last_batch"]
    if new_batch:
        state["last_batch"] = drift.batch
        state["consecutive"] = state["consecutive"] + 1 if drift.drifted else 0
    trigger, why = None, None
    if state["consecutive"] >= consecutive and new_batch:
        trigger = f"drift-{drift.batch}"
        why = (f"drift score {drift.drift_score:.3f} ≥ {drift.drift_threshold:g} for "
               f"{state['consecutive']} consecutive batches (drifted: "
               f"{', '.join(drift.drifted_columns)})")
    elif perf and perf.below_floor and perf.content_hash != state["last_perf"]:
        state["last_perf"] = perf.content_hash
        trigger = f"performance-{perf.content_hash}"
        why = "production performance below the floor: " + "; ".join(perf.floor_failures)
    if trigger:
        last = state["last_request"]
        if last is not None and now - last < cooldown_s:
            return None, (f"would retrain ({why}) but the cooldown holds for another "
                          f"{(cooldown_s - (now - last)) / 60:.1f} min"), state
        state["last_request"] = now
        state["consecutive"] = 0
        return trigger, why, state
    if drift is None:
        return None, "no drift report yet", state
    if not new_batch:
        return None, f"no new production batch since {str(state['last_batch'])[:19]}…", state
    if drift.drifted:
        return None, (f"drifted batch {state['consecutive']} of {consecutive} consecutive "
                      f"(score {drift.drift_score:.3f})"), state
    return None, (f"batch {drift.batch[:19]}… is clean: drift score "
                  f"{drift.drift_score:.3f} < {drift.drift_threshold:g}"), state


def build_drift_sensor(model: str, retrain_job, *, consecutive: int, cooldown_s: float,
                       clock: Callable[[], float] = time.time,
                       interval_s: int = 30) -> dg.SensorDefinition:
    """``<model>_drift_sensor``, with its own cursor and cooldown.

    It reads only this model's reports, so a drifted batch of one model never retrains
    another.
    """
    drift_asset = dg.AssetKey([model, "drift_report"])
    performance_asset = dg.AssetKey([model, "production_performance"])

    @dg.sensor(name=f"{model}_drift_sensor", job=retrain_job,
               minimum_interval_seconds=interval_s,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Requests {retrain_job.name} when {model}'s drift stays over the "
                           f"threshold for {consecutive} consecutive batches or its production "
                           "performance falls below the floor; one run per batch, with a "
                           "cooldown.")
    def drift_sensor(context: dg.SensorEvaluationContext):
        cursor = json.loads(context.cursor) if context.cursor else {}
        drift = latest_metadata(context.instance, drift_asset)
        perf = latest_metadata(context.instance, performance_asset)
        try:
            drift_summary = None if drift is None else DriftSummary.from_metadata(drift)
            perf_summary = None if perf is None else PerformanceSummary.from_metadata(perf)
        except ValueError as exc:  # a materialization not written by the stage
            return dg.SensorResult(skip_reason=str(exc), cursor=context.cursor)
        run_key, reason, state = evaluate(cursor, drift_summary, perf_summary, clock(),
                                          consecutive=consecutive, cooldown_s=cooldown_s)
        new_cursor = json.dumps(state, sort_keys=True)
        if run_key is None:
            return dg.SensorResult(skip_reason=reason, cursor=new_cursor)
        context.log.info(f"requesting {retrain_job.name}: {reason}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=run_key, tags={"tideline/trigger": reason[:200],
                                                          "tideline/model": model})],
            cursor=new_cursor)

    return drift_sensor
