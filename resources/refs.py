"""Inputs travel between assets as content-hash references, never as data.

The IO manager stores a tiny JSON per (run, asset). A downstream step reads the
reference its own run produced, or, when the upstream asset was not part of the run,
the content hash of the upstream's latest materialization. Data is loaded only by a
stage that misses its cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg


@dataclass(frozen=True)
class ArtifactRef:
    asset: str
    content_hash: str


class RefIOManager(dg.ConfigurableIOManager):
    """Keeps asset outputs as references under ``<root>/<run id>/<asset>.json``."""

    root: str

    def _path(self, run_id: str, asset: str) -> Path:
        return Path(self.root) / run_id / f"{asset}.json"

    def handle_output(self, context: dg.OutputContext, obj: ArtifactRef) -> None:
        path = self._path(context.run_id, context.asset_key.to_user_string())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"asset": obj.asset, "content_hash": obj.content_hash}))

    def load_input(self, context: dg.InputContext) -> ArtifactRef:
        key = context.asset_key
        asset = key.to_user_string()
        path = self._path(context.step_context.run_id, asset)
        if path.exists():
            return ArtifactRef(**json.loads(path.read_text()))
        event = context.instance.get_latest_materialization_event(key)
        if event is None or event.asset_materialization is None:
            raise dg.Failure(f"{asset} has never been materialized; materialize it first")
        meta = event.asset_materialization.metadata
        return ArtifactRef(asset, str(meta["content_hash"].value))
