"""Run the whole chain once on the local instance and print what each asset did.

Usage: ``python -m cli.demo`` (``make demo``). Prints each asset as it finishes and the
stages' progress, then a table of asset, cache hit or miss, content hash and seconds, and
where the model card is. Dagster's own log goes to ``$TIDELINE_HOME/logs/`` (``VERBOSE=1``
shows it here too); a refused run ends with one line saying what to fix, exit status 2.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def run_chain(instance=None, progress=None):
    """Execute ``training_job`` in process; returns the Dagster result.

    Args:
        instance: The Dagster instance (default: the one ``DAGSTER_HOME`` names).
        progress: A stream for progress lines while the run executes (None: quiet).
    """
    import contextlib
    import uuid

    import dagster as dg

    from cli.console import ProgressWatcher
    from definitions import defs
    from resources.runs import host_tags, release_dead_runs

    instance = instance or dg.DagsterInstance.get()
    # A run killed earlier (its process gone) would hold the training pool's slot for good.
    release_dead_runs(instance, log=lambda line: print(line, file=progress or sys.stderr,
                                                       flush=True))
    job = defs.resolve_job_def("training_job")
    run_id = str(uuid.uuid4())
    watch = (ProgressWatcher(instance, run_id, progress) if progress is not None
             else contextlib.nullcontext())
    with watch:
        return job.execute_in_process(instance=instance, raise_on_error=False, run_id=run_id,
                                      tags=host_tags())


def summary(result) -> list[dict]:
    rows = []
    for event in result.get_asset_materialization_events():
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        if "outcome" in meta:  # deployment: a change of state, not a memoized artifact
            rows.append({"asset": event.asset_key.to_user_string(), "cache": "-",
                         "content_hash": f"{meta['outcome']} v{meta['version']} "
                                         f"({meta.get('role', 'not deployed')})",
                         "seconds": 0.0, "meta": meta})
            continue
        rows.append({"asset": event.asset_key.to_user_string(), "cache": meta["cache"],
                     "content_hash": str(meta["content_hash"]),
                     "seconds": float(meta["seconds"])})
    return rows


def export_card(content_hash: str, dest: Path) -> Path:
    """Copy the card's Markdown, HTML and plots out of the store to a readable folder."""
    from definitions import defs

    store = defs.resources["store"].get()
    manifest = store.get_manifest(content_hash)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("card.md", "card.html", "roc.png", "calibration.png"):
        (dest / name).write_bytes(store.get_bytes(manifest.files[name]))
    return dest / "card.html"


def commit_run(result) -> str | None:
    """With the store on lakeFS, commit what the run wrote.

    The daemon's lakefs_commit_sensor does this for the runs it sees; an in-process run
    has no daemon.
    """
    from definitions import defs
    from pipelines.lakefs import commit_store, is_lakefs

    root = defs.resources["store"].root
    if not is_lakefs(root):
        return None
    commit = commit_store(root, f"training_job run {result.run_id}",
                          {"dagster_run_id": result.run_id, "dagster_job": "training_job"})
    print(f"lakeFS: {root} committed as {commit or '(nothing new to commit)'}")
    return commit


def failure_message(result) -> str:
    """The refused run in one line: the first failed step's own message."""
    from cli.console import step_failure_line

    failed = [event for event in result.all_events if event.is_step_failure]
    if not failed:
        return f"run {result.run_id} failed; see the log"
    more = f" (and {len(failed) - 1} more failed steps)" if len(failed) > 1 else ""
    return f"{failed[0].step_key}: {step_failure_line(failed[0])}{more}"


def main() -> int:
    from cli.console import CommandFailed
    from resources.settings import state_dir

    print("running training_job (progress below; Dagster's log: $TIDELINE_HOME/logs/)",
          flush=True)
    start = time.perf_counter()
    result = run_chain(progress=sys.stdout)
    total = time.perf_counter() - start
    if not result.success:
        failed = [e for e in result.all_events if e.is_step_failure]
        # A refusal with its own message (bad input, a spec mistake) is the user's to fix:
        # status 2; an unexpected error inside a step: status 1.
        user = failed and all(e.step_failure_data.user_failure_data for e in failed)
        raise CommandFailed(failure_message(result), code=2 if user else 1)
    rows = summary(result)
    print(f"\n{'asset':<20} {'cache':<6} {'content hash / outcome':<31} {'seconds':>8}")
    for r in rows:
        print(f"{r['asset']:<20} {r['cache']:<6} {r['content_hash'][:30]:<31} "
              f"{r['seconds']:>8.3f}")
    print(f"{'total (run)':<59} {total:>8.3f}")
    commit_run(result)
    card = next(r for r in rows if r["asset"] == "model_card")
    path = export_card(card["content_hash"], state_dir() / "model_cards" / "latest")
    print(f"\nmodel card: {path}\n            {path.with_suffix('.md')}")
    deployed = next((r for r in rows if r["asset"] == "deployment"), None)
    if deployed:
        meta = deployed["meta"]
        print(f"deployment: stable v{meta['stable_version']}, canary "
              f"v{meta['canary_version']}" + (f"; edge bundle {meta['edge_bundle']}"
                                              if "edge_bundle" in meta else "")
              + "\n            serve it: make serve (API key: make api-key)")
    return 0


if __name__ == "__main__":
    from cli.console import run_command

    sys.exit(run_command(main, "demo"))
