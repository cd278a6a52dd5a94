"""Garbage-collect the artifact store (``make gc``; ``make gc DRY_RUN=1`` lists only).

Usage: ``python -m cli.gc [--keep N] [--grace-minutes M] [--dry-run]`` and
``python -m cli.gc --pin HASH`` to keep an artifact for good. Keeps the last N
materializations of each asset (default 3), every model in the deployment history and
anything pinned; see ``pipelines/gc.py`` (what is kept and swept) and
``resources/history.py`` (the recent materializations, from the Dagster instance).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.gc")
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--grace-minutes", type=float, default=60.0)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--pin", metavar="HASH")
    args = parser.parse_args(argv)

    import dagster as dg

    from pipelines.gc import collect
    from pipelines.paths import state_dir, store_root
    from pipelines.store import ArtifactStore
    from resources.history import recent_roots

    store = ArtifactStore(store_root(state_dir()))
    if args.pin:
        from pipelines.gc import pin

        pin(store, args.pin)
        print(f"pinned {args.pin}")
        return 0
    collect(store, recent_roots(dg.DagsterInstance.get(), args.keep),
            grace_s=args.grace_minutes * 60, dry_run=args.dry_run, log=print)
    return 0


if __name__ == "__main__":
    from cli.console import run_command

    sys.exit(run_command(main, "gc"))
