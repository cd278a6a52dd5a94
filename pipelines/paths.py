"""Where local state lives, and which dataset specs are loaded.

Shared by the Dagster layer, the command-line tools and the serving service (which runs
without Dagster); read when called, never at import. ``TIDELINE_HOME`` (default
``.tideline`` in the repository) holds the Dagster instance, the artifact store, MLflow and
Optuna state. Every spec in ``TIDELINE_DATASETS`` (default ``datasets/`` in the
repository) is a model; ``TIDELINE_SPEC`` (a name in that folder or a YAML path) loads that
one spec alone.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = REPO_ROOT / "datasets"


def state_dir() -> Path:
    return Path(os.environ.get("TIDELINE_HOME", REPO_ROOT / ".tideline")).resolve()


def datasets_dir() -> Path:
    """The folder of dataset specs: ``TIDELINE_DATASETS``, default ``datasets/``."""
    return Path(os.environ.get("TIDELINE_DATASETS") or DATASETS_DIR).resolve()


def spec_files() -> list[Path]:
    """The spec files to load: ``TIDELINE_SPEC`` alone when set, else the folder's YAML files."""
    from pipelines.spec import resolve_spec_path

    single = os.environ.get("TIDELINE_SPEC")
    if single:
        return [resolve_spec_path(single, datasets_dir())]
    folder = datasets_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


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
    """The root of the production-batch stores, one folder per model."""
    return Path(os.environ.get("TIDELINE_PRODUCTION_DIR", state / "production"))


def model_production_dir(state: Path, model: str) -> Path:
    """One model's production-batch store: its serving log, dropped-in batches, labels."""
    return production_dir(state) / model


def sensor_interval_s() -> int:
    """Seconds between sensor evaluations (``TIDELINE_SENSOR_INTERVAL_S``, default 30)."""
    return int(os.environ.get("TIDELINE_SENSOR_INTERVAL_S", "30"))


def store_root(state: Path) -> str:
    """Where the artifact store lives.

    ``TIDELINE_STORE`` (a folder or an fsspec URL such as ``s3://bucket/prefix``), by
    default ``$TIDELINE_HOME/store``.
    """
    return os.environ.get("TIDELINE_STORE") or str(state / "store")
