"""Garbage-collect the artifact store (``make gc``; ``make gc DRY_RUN=1`` lists only).

Usage: ``python -m cli.gc [--keep N] [--grace-minutes M] [--dry-run]`` and
``python -m cli.gc --pin HASH`` to keep an artifact for good. Keeps the last N
materializations of each asset (default 3), every model in the deployment history and
anything pinned; see ``pipelines/gc.py``.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.catalog import MEMOIZED


def recent_roots(instance, keep: int) -> set[str]:
    """Content hashes of the last ``keep`` materializations of each memoized asset."""
    roots = set()
    # Every model's memoized assets (``<model>/<stage>``), including models whose spec has
    # since been removed: their artifacts stay until their materializations age out.
    for asset in instance.get_asset_keys():
        if asset.path[-1] not in MEMOIZED:
            continue
        records = instance.fetch_materializations(asset, limit=keep).records
        for record in records:
            meta = record.asset_materialization.metadata
            if "content_hash" in meta:
                roots.add(str(meta["content_hash"].value))
    return roots


def collect(store, instance, *, keep: int, grace_s: float, dry_run: bool, log=print):
    from pipelines.gc import plan, sweep

    result = plan(store, recent_roots(instance, keep), grace_s=grace_s)
    verb = "would delete" if dry_run else "deleting"
    log(f"gc: keeping {len(result.keep)} objects; {verb} {len(result.delete)} objects "
        f"({result.delete_bytes / 1e6:.1f} MB), {len(result.stale_keys)} memo entries and "
        f"{len(result.temp)} temp files of cut-off writes; "
        f"{result.young} unreferenced objects are younger than the grace period")
    if dry_run:
        for path in [*result.delete, *result.temp]:
            log(f"  {path}")
    else:
        sweep(store, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.gc")
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--grace-minutes", type=float, default=60.0)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--pin", metavar="HASH")
    args = parser.parse_args(argv)

    import dagster as dg

    from pipelines.paths import state_dir, store_root
    from pipelines.store import ArtifactStore

    store = ArtifactStore(store_root(state_dir()))
    if args.pin:
        from pipelines.gc import pin

        pin(store, args.pin)
        print(f"pinned {args.pin}")
        return 0
    collect(store, dg.DagsterInstance.get(), keep=args.keep,
            grace_s=args.grace_minutes * 60, dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    from cli.console import run_command

    sys.exit(run_command(main, "gc"))
