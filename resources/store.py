"""The artifact store and dataset spec as Dagster resources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from pipelines.ingest import StatCache
from pipelines.store import ArtifactStore


class ArtifactStoreResource(dg.ConfigurableResource):
    """Content-addressed store (local folder or fsspec URL) plus local scratch space.

    ``scratch_dir`` holds what is worth keeping on this machine only: training
    checkpoints and the file-stat cache of source hashes.
    """

    root: str
    scratch_dir: str
    _store: Any = PrivateAttr(default=None)

    def get(self) -> ArtifactStore:
        if self._store is None:
            self._store = ArtifactStore(self.root)
        return self._store

    def stat_cache(self) -> StatCache:
        return StatCache(f"{self.scratch_dir}/stat.db")

    def checkpoint_dir(self, asset: str, recipe_key: str) -> str:
        return f"{self.scratch_dir}/checkpoints/{asset}/{recipe_key.split(':')[-1]}"


class MlflowResource(dg.ConfigurableResource):
    """Experiment tracking: MLflow and the Optuna study storage.

    Both default to SQLite under the state folder; Postgres URLs scale them out (a shared
    Optuna study for several workers).
    """

    tracking_uri: str
    artifact_location: str
    optuna_storage: str

    def experiment(self, name: str) -> str:
        """Set the tracking URI and return the experiment id (created on first use)."""
        from pipelines.pg import ensure_schema
        from pipelines.tracking import import_mlflow

        ensure_schema(self.tracking_uri)

        mlflow = import_mlflow()

        mlflow.set_tracking_uri(self.tracking_uri)
        exp = mlflow.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return mlflow.create_experiment(name, artifact_location=self.artifact_location)


class ProductionResource(dg.ConfigurableResource):
    """The production-batch stores, one folder per model under ``root``.

    Each holds the model's serving log, dropped-in batches and label files.
    """

    root: str
    scratch_dir: str

    def path(self, model: str) -> Path:
        return Path(self.root) / model

    def stat_cache(self) -> StatCache:
        return StatCache(f"{self.scratch_dir}/stat.db")


class LakeFSResource(dg.ConfigurableResource):
    """A lakeFS server, for ``lakefs://`` sources (the official ``lakefs`` SDK).

    Unset fields fall back to the SDK's own lookup (``LAKECTL_*``, ``~/.lakectl.yaml``).
    """

    endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    def client(self) -> Any:
        from pipelines.lakefs import make_client

        return make_client(self.endpoint, self.access_key_id, self.secret_access_key)

    def source_version(self, uri: str, client: Any = None) -> Any:
        """Commit id and checksum of a ``lakefs://`` source; a clear `dg.Failure` if absent."""
        from pipelines.lakefs import LakeFSError, source_version

        try:
            return source_version(client or self.client(), uri)
        except LakeFSError as exc:
            raise dg.Failure(description=str(exc)) from exc
