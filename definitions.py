"""The one Definitions object of the Tideline code location.

The dataset spec (``TIDELINE_SPEC``) and the state folder (``TIDELINE_HOME``) are read
here, when definitions load; asset keys are the same whichever spec is selected.
Heavy libraries are imported inside the functions that use them.
"""

from __future__ import annotations

import os

import dagster as dg

from assets.deployment import deployment
from assets.features import build_ingest_assets
from assets.model_card import model_card
from assets.monitoring import drift_report, production_batches, production_performance
from assets.quantization import quantized_weights
from assets.raw import raw_source
from assets.training import trained_weights
from jobs import build_jobs
from pipelines.lakefs import is_lakefs
from pipelines.spec import load_spec
from resources.refs import RefIOManager
from resources.settings import (
    mlflow_uri,
    optuna_url,
    production_dir,
    sensor_interval_s,
    spec_path,
    state_dir,
    store_root,
)
from resources.store import (
    ArtifactStoreResource,
    DatasetSpecResource,
    LakeFSResource,
    MlflowResource,
    ProductionResource,
)
from schedules import build_schedules
from sensors.drift import build_drift_sensor
from sensors.lakefs import build_lakefs_commit_sensor
from sensors.production import build_alert_sensor, build_production_sensor
from sensors.runs import build_run_reaper_sensor


def lakefs_resource() -> LakeFSResource:
    """The lakeFS connection from ``LAKEFS_*``; unset ones fall back to the SDK's lookup.

    Passed as env-var references, so the UI never shows the secret.
    """
    fields = {"endpoint": "LAKEFS_ENDPOINT", "access_key_id": "LAKEFS_ACCESS_KEY_ID",
              "secret_access_key": "LAKEFS_SECRET_ACCESS_KEY"}
    return LakeFSResource(**{f: dg.EnvVar(v) for f, v in fields.items() if os.environ.get(v)})


def build_definitions() -> dg.Definitions:
    state = state_dir()
    path = spec_path()
    spec = load_spec(path)
    jobs = build_jobs()
    by_name = {j.name: j for j in jobs}
    spec_resource = DatasetSpecResource(path=str(path))
    production = ProductionResource(root=str(production_dir(state)),
                                    scratch_dir=str(state / "scratch"))
    interval = sensor_interval_s()
    store = store_root(state)
    extra_sensors = [build_lakefs_commit_sensor(store, interval)] if is_lakefs(store) else []
    return dg.Definitions(
        assets=[raw_source, build_ingest_assets(spec), trained_weights,
                quantized_weights, model_card, deployment, production_batches, drift_report,
                production_performance],
        jobs=jobs,
        schedules=build_schedules(by_name["training_job"], by_name["gc_job"],
                                  by_name["verify_job"]),
        sensors=[
            build_production_sensor(by_name["monitoring_job"], production, interval),
            build_drift_sensor(by_name["retrain_job"],
                               consecutive=spec.monitoring.consecutive_batches,
                               cooldown_s=spec.monitoring.cooldown_minutes * 60,
                               interval_s=interval),
            build_alert_sensor(spec_resource),
            build_run_reaper_sensor(),
            *extra_sensors,
        ],
        resources={
            "production": production,
            "spec": spec_resource,
            "store": ArtifactStoreResource(root=store, scratch_dir=str(state / "scratch")),
            "lakefs": lakefs_resource(),
            "mlflow": MlflowResource(tracking_uri=mlflow_uri(state),
                                     artifact_location=str(state / "mlflow" / "artifacts"),
                                     optuna_storage=optuna_url(state)),
            "io_manager": RefIOManager(root=str(state / "refs")),
        },
    )


defs = build_definitions()
