"""Check the artifact store end to end (``make verify``).

Usage: ``python -m cli.verify [--grace-minutes M]``. Prints a summary and every problem
(path, rule, what to do); exits 1 when there is any. See ``pipelines/verify.py``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.verify")
    parser.add_argument("--grace-minutes", type=float, default=60.0,
                        help="temp files younger than this may belong to a running write")
    args = parser.parse_args(argv)

    from pipelines.paths import state_dir, store_root
    from pipelines.store import ArtifactStore
    from pipelines.verify import verify_store

    store = ArtifactStore(store_root(state_dir()))
    report = verify_store(store, grace_s=args.grace_minutes * 60)
    print(f"verify {store.root}: {report.objects} objects, {report.memo_entries} memo entries, "
          f"{report.history_entries} deployment history entries: "
          + ("ok" if report.ok else f"{len(report.problems)} problems"))
    for problem in report.problems:
        print(f"  {problem.line()}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    from cli.console import run_command

    sys.exit(run_command(main, "verify"))
