"""The one Definitions object of the Tideline code location.

The dataset spec (``TIDELINE_SPEC``) and the state folder (``TIDELINE_HOME``) are read
here, when definitions load; asset keys are the same whichever spec is selected.
Heavy libraries are imported inside the functions that use them.
"""

from __future__ import annotations

import dagster as dg

from assets.deployment import deployment
from assets.features import build_ingest_assets
from assets.model_card import model_card
from assets.quantization import quantized_weights
from assets.raw import raw_source
from assets.training import trained_weights
from jobs import build_jobs
from pipelines.spec import load_spec
from resources.refs import RefIOManager
from resources.settings import mlflow_uri, optuna_url, spec_path, state_dir
from resources.store import ArtifactStoreResource, DatasetSpecResource, MlflowResource
from schedules import build_schedules


def build_definitions() -> dg.Definitions:
    state = state_dir()
    path = spec_path()
    spec = load_spec(path)
    jobs = build_jobs()
    return dg.Definitions(
        assets=[raw_source, build_ingest_assets(spec), trained_weights,
                quantized_weights, model_card, deployment],
        jobs=jobs,
        schedules=build_schedules(jobs[0]),
        resources={
            "spec": DatasetSpecResource(path=str(path)),
            "store": ArtifactStoreResource(root=str(state / "store"),
                                           scratch_dir=str(state / "scratch")),
            "mlflow": MlflowResource(tracking_uri=mlflow_uri(state),
                                     artifact_location=str(state / "mlflow" / "artifacts"),
                                     optuna_storage=optuna_url(state)),
            "io_manager": RefIOManager(root=str(state / "refs")),
        },
    )


defs = build_definitions()
