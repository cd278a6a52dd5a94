"""The Tideline code location: every dataset spec is a model with its own chain.

Each spec in the datasets folder (``TIDELINE_DATASETS``, default ``datasets/``; or the
one ``TIDELINE_SPEC`` names) gets, from one factory (:func:`model_definitions`), its own
prefixed assets (``adult/raw_data`` … ``adult/deployment``, ``adult/drift_report`` …) in
its own group, five jobs, a nightly schedule and drift, production and alert sensors. A
spec that fails to load shows up as an ``invalid_specs/<file>`` asset whose description is
the error; the other models load. Definitions are built lazily (``@dg.definitions``);
heavy libraries are imported inside the functions that use them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import dagster as dg

from pipelines.catalog import Catalog, CatalogError
from pipelines.spec import DatasetSpec

LOG = logging.getLogger("tideline.definitions")


@dataclass
class ModelDefinitions:
    """What one model adds to the code location."""

    assets: list = field(default_factory=list)
    jobs: list = field(default_factory=list)
    schedules: list = field(default_factory=list)
    sensors: list = field(default_factory=list)


def model_definitions(spec: DatasetSpec, production, interval_s: int) -> ModelDefinitions:
    """The assets, checks, jobs, schedules and sensors of one model."""
    from assets.deployment import build_deployment
    from assets.features import build_ingest_assets
    from assets.model_card import build_model_card
    from assets.monitoring import build_monitoring_assets
    from assets.quantization import build_quantized_weights
    from assets.raw import build_raw_source
    from assets.training import build_trained_weights
    from jobs import build_batch_job, build_model_jobs
    from schedules import build_model_schedules
    from sensors.drift import build_drift_sensor
    from sensors.production import build_alert_sensor, build_production_sensor

    jobs = build_model_jobs(spec)
    out = ModelDefinitions(
        assets=[build_raw_source(spec), build_ingest_assets(spec), build_trained_weights(spec),
                build_quantized_weights(spec), build_model_card(spec), build_deployment(spec),
                *build_monitoring_assets(spec)],
        jobs=jobs.all())
    batch_job = None
    if spec.deployment.batch is not None:
        from assets.batch import build_batch_predictions

        out.assets.append(build_batch_predictions(spec))
        batch_job = build_batch_job(spec)
        out.jobs.append(batch_job)
    out.schedules = build_model_schedules(spec, jobs.training, batch_job)
    out.sensors = [
        build_production_sensor(spec.name, jobs.monitoring, production, interval_s),
        build_drift_sensor(spec.name, jobs.retrain,
                           consecutive=spec.monitoring.consecutive_batches,
                           cooldown_s=spec.monitoring.cooldown_minutes * 60,
                           interval_s=interval_s),
        build_alert_sensor(spec, out.jobs),
    ]
    return out


def invalid_spec_asset(error: CatalogError) -> dg.AssetSpec:
    """A broken spec in the UI: an asset whose description is the error, nothing to run."""
    return dg.AssetSpec(
        key=dg.AssetKey(["invalid_specs", error.path.stem]), group_name="invalid_specs",
        description=f"This dataset spec failed to load; its model is not defined until it is "
                    f"fixed. {error.message}",
        metadata={"file": dg.MetadataValue.path(str(error.path)), "error": error.message})


def lakefs_resource():
    """The lakeFS connection from ``LAKEFS_*``; unset ones fall back to the SDK's lookup.

    Passed as env-var references, so the UI never shows the secret.
    """
    from resources.store import LakeFSResource

    fields = {"endpoint": "LAKEFS_ENDPOINT", "access_key_id": "LAKEFS_ACCESS_KEY_ID",
              "secret_access_key": "LAKEFS_SECRET_ACCESS_KEY"}
    return LakeFSResource(**{f: dg.EnvVar(v) for f, v in fields.items() if os.environ.get(v)})


def build_definitions(catalog: Catalog | None = None) -> dg.Definitions:
    """Definitions for every model of the catalog (default: the datasets folder)."""
    from jobs import build_store_jobs
    from pipelines.catalog import load_catalog
    from pipelines.lakefs import is_lakefs
    from pipelines.paths import (
        mlflow_uri,
        optuna_url,
        production_dir,
        sensor_interval_s,
        state_dir,
        store_root,
    )
    from resources.refs import RefIOManager
    from resources.store import ArtifactStoreResource, MlflowResource, ProductionResource
    from schedules import build_store_schedules
    from sensors.lakefs import build_lakefs_commit_sensor
    from sensors.production import build_store_alert_sensor
    from sensors.runs import build_run_reaper_sensor

    catalog = catalog if catalog is not None else load_catalog()
    state, interval = state_dir(), sensor_interval_s()
    store = store_root(state)
    production = ProductionResource(root=str(production_dir(state)),
                                    scratch_dir=str(state / "scratch"))
    errors = list(catalog.errors)
    models = ModelDefinitions(assets=[invalid_spec_asset(e) for e in errors])
    for entry in catalog.entries:
        try:
            part = model_definitions(entry.spec, production, interval)
        except dg.DagsterInvalidDefinitionError as exc:  # e.g. a cron Dagster refuses
            error = CatalogError(entry.path, f"dataset spec {entry.path}: {exc}; fix it in "
                                             f"{entry.path.name}")
            errors.append(error)
            models.assets.append(invalid_spec_asset(error))
            continue
        for name in ("assets", "jobs", "schedules", "sensors"):
            getattr(models, name).extend(getattr(part, name))
    for error in errors:
        LOG.error("%s", error.message)
    store_jobs = build_store_jobs()
    extra = [build_lakefs_commit_sensor(store, interval)] if is_lakefs(store) else []
    return dg.Definitions(
        assets=models.assets,
        jobs=[*models.jobs, *store_jobs],
        schedules=[*models.schedules, *build_store_schedules(*store_jobs)],
        sensors=[*models.sensors, build_run_reaper_sensor(),
                 build_store_alert_sensor(store_jobs, os.environ.get("TIDELINE_ALERT_WEBHOOK",
                                                                     "")),
                 *extra],
        resources={
            "production": production,
            "store": ArtifactStoreResource(root=store, scratch_dir=str(state / "scratch")),
            "lakefs": lakefs_resource(),
            "mlflow": MlflowResource(tracking_uri=mlflow_uri(state),
                                     artifact_location=str(state / "mlflow" / "artifacts"),
                                     optuna_storage=optuna_url(state)),
            "io_manager": RefIOManager(root=str(state / "refs")),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
