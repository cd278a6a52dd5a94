"""What the Dagster instance remembers about the store: the recent materializations.

Garbage collection keeps the artifacts of the last few materializations of each memoized
asset. That list lives in the Dagster instance's event log, so reading it needs Dagster and
stays out of ``pipelines`` (``pipelines.gc`` takes the roots as plain content hashes).
"""

from __future__ import annotations

import dagster as dg

from pipelines.catalog import MEMOIZED


def recent_roots(instance: dg.DagsterInstance, keep: int) -> set[str]:
    """Content hashes of the last ``keep`` materializations of each memoized asset.

    Every model's memoized assets (``<model>/<stage>``) count, including models whose spec
    has since been removed: their artifacts stay until their materializations age out.
    """
    roots = set()
    for asset in instance.get_asset_keys():
        if asset.path[-1] not in MEMOIZED:
            continue
        for record in instance.fetch_materializations(asset, limit=keep).records:
            meta = record.asset_materialization.metadata
            if "content_hash" in meta:
                roots.add(str(meta["content_hash"].value))
    return roots
