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


def mlflow_uri(state: Path) -> str:
    # Not MLFLOW_TRACKING_URI: mlflow.set_tracking_uri() writes that variable into the
    # process environment, so it would leak from one set of definitions to the next.
    return os.environ.get("TIDELINE_MLFLOW_URI", f"sqlite:///{state / 'mlflow' / 'mlflow.db'}")


def optuna_url(state: Path) -> str:
    return os.environ.get("TIDELINE_OPTUNA_URL", f"sqlite:///{state / 'optuna' / 'studies.db'}")
