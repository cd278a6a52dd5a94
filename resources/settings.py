"""Where local state lives, and which dataset spec is selected.

Read when definitions load (never at import): ``TIDELINE_HOME`` (default ``.tideline`` in
the repository) holds the Dagster instance, the artifact store, MLflow and Optuna state;
``TIDELINE_SPEC`` names the dataset spec (a name under ``datasets/`` or a YAML path).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = REPO_ROOT / "datasets"


def state_dir() -> Path:
    return Path(os.environ.get("TIDELINE_HOME", REPO_ROOT / ".tideline")).resolve()


def spec_path() -> Path:
    from pipelines.spec import resolve_spec_path

    return resolve_spec_path(os.environ.get("TIDELINE_SPEC", "demo"), DATASETS_DIR)


def postgres_url() -> str | None:
    """``TIDELINE_POSTGRES_URL`` puts the Dagster instance, MLflow and Optuna on Postgres.

    A plain ``postgresql://`` URL is pinned to the psycopg2 driver, which dagster-postgres
    needs (SQLAlchemy 2.1 would otherwise pick psycopg 3).
    """
    url = os.environ.get("TIDELINE_POSTGRES_URL") or None
    if url and url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def mlflow_uri(state: Path) -> str:
    # Not MLFLOW_TRACKING_URI: mlflow.set_tracking_uri() writes that variable into the
    # process environment, so it would leak from one set of definitions to the next.
    from pipelines.pg import with_schema

    pg = postgres_url()
    default = with_schema(pg, "mlflow") if pg else f"sqlite:///{state / 'mlflow' / 'mlflow.db'}"
    return os.environ.get("TIDELINE_MLFLOW_URI", default)


def optuna_url(state: Path) -> str:
    from pipelines.pg import with_schema

    pg = postgres_url()
    default = with_schema(pg, "optuna") if pg else f"sqlite:///{state / 'optuna' / 'studies.db'}"
    return os.environ.get("TIDELINE_OPTUNA_URL", default)


def instance_config(base: dict, pg_url: str | None) -> dict:
    """The Dagster instance config: the repo's ``dagster.yaml``, on Postgres when asked."""
    config = dict(base)
    if pg_url:
        config["storage"] = {"postgres": {"postgres_url": pg_url}}
    return config


def production_dir(state: Path) -> Path:
    """The production-batch store (serving log, dropped-in batches, label files)."""
    return Path(os.environ.get("TIDELINE_PRODUCTION_DIR", state / "production"))


def sensor_interval_s() -> int:
    """Seconds between sensor evaluations (``TIDELINE_SENSOR_INTERVAL_S``, default 30)."""
    return int(os.environ.get("TIDELINE_SENSOR_INTERVAL_S", "30"))


def store_root(state: Path) -> str:
    """Where the artifact store lives.

    ``TIDELINE_STORE`` (a folder or an fsspec URL such as ``s3://bucket/prefix``), by
    default ``$TIDELINE_HOME/store``.
    """
    return os.environ.get("TIDELINE_STORE") or str(state / "store")
