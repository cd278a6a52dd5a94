"""Run every model's chain once on the local instance and print what each stage did.

Usage: ``python -m cli.demo`` (``make demo``; ``make demo SPEC=adult`` runs one model). By
default every spec in the datasets folder whose data is present runs (the bundled demo
always; Adult when ``TIDELINE_ADULT_CSV`` points at its CSV). While a chain runs, each
stage has one line kept up to date (:mod:`cli.progress_display`: cache hit or miss, rows,
trials and epochs with the time left; a live table with bars on a terminal); then come
where the model card and the deployment are, the log file and, last, a table of model,
stage, cache hit or miss, content hash and seconds. Dagster's event stream and the run's
Python logging go to that log file under ``$TIDELINE_HOME/logs/`` (``VERBOSE=1`` shows
them here too). A spec that fails to load is reported in one line and the other models
still run; a refused run ends with one line saying what to fix, exit status 2.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.records import DeploymentOutcome


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    model: str
    stage: str
    cache: str
    content_hash: str
    seconds: float


def run_chain(model: str, defs=None, instance=None, progress=None, live: bool | None = None):
    """Execute ``<model>_training_job`` in process; returns the Dagster result.

    Args:
        model: The model (dataset spec name).
        defs: The Definitions (default: built from the datasets folder).
        instance: The Dagster instance (default: the one ``DAGSTER_HOME`` names).
        progress: The stream for the stages' progress while the run executes (None:
            quiet). Meanwhile anything else written to stdout goes to stderr (the log file).
        live: A live table with bars (default: when ``progress`` is a terminal and
            ``VERBOSE`` is off), else plain lines.
    """
    import uuid

    import dagster as dg

    from cli.console import ProgressWatcher, verbose
    from cli.progress_display import ProgressDisplay
    from definitions import build_definitions
    from resources.runs import host_tags, release_dead_runs

    defs = defs or build_definitions()
    instance = instance or dg.DagsterInstance.get()
    # A run killed earlier (its process gone) would hold the training pool's slot for good.
    release_dead_runs(instance, log=lambda line: print(line, file=progress or sys.stderr,
                                                       flush=True))
    job = defs.resolve_job_def(f"{model}_training_job")
    run_id = str(uuid.uuid4())
    with contextlib.ExitStack() as stack:
        if progress is not None:
            # VERBOSE interleaves the log with the progress: a redrawn table would garble it.
            display = stack.enter_context(
                ProgressDisplay(progress, live=False if verbose() else live))
            stack.enter_context(ProgressWatcher(instance, run_id, display.feed))
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        return job.execute_in_process(instance=instance, raise_on_error=False, run_id=run_id,
                                      tags=host_tags())


def summary(result) -> tuple[list[Row], DeploymentOutcome | None]:
    """The memoized stages' rows and what the deployment did (None if it did not run)."""
    from pipelines.records import DeploymentOutcome

    rows, deployed = [], None
    for event in result.get_asset_materialization_events():
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        model, stage = event.asset_key.path[0], event.asset_key.path[-1]
        if stage == "deployment":  # a change of state, not a memoized artifact
            deployed = DeploymentOutcome.from_metadata(meta)
            continue
        rows.append(Row(model, stage, str(meta["cache"]), str(meta["content_hash"]),
                        float(meta["seconds"])))
    return rows, deployed


def export_card(store, content_hash: str, dest: Path) -> Path:
    """Copy the card's Markdown, HTML and every plot it names out of the store to a folder.

    Files of an earlier card that this one does not have (a sensitive column's plot that
    is gone) are removed, so the folder holds exactly this card.
    """
    manifest = store.get_manifest(content_hash)
    dest.mkdir(parents=True, exist_ok=True)
    names = {"card.md", "card.html"} | {n for n in manifest.files if n.endswith(".png")}
    for stale in dest.glob("*.png"):
        if stale.name not in names:
            stale.unlink()
    for name in sorted(names):
        (dest / name).write_bytes(store.get_bytes(manifest.files[name]))
    return dest / "card.html"


def commit_run(defs, result, job: str) -> str | None:
    """With the store on lakeFS, commit what the run wrote.

    The daemon's lakefs_commit_sensor does this for the runs it sees; an in-process run
    has no daemon.
    """
    from pipelines.lakefs import commit_store, is_lakefs

    root = defs.resources["store"].root
    if not is_lakefs(root):
        return None
    commit = commit_store(root, f"{job} run {result.run_id}",
                          {"dagster_run_id": result.run_id, "dagster_job": job})
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


def data_present(spec) -> str | None:
    """None when the spec's source is there, else why not (one line)."""
    from pipelines.ingest import InputError, local_source_path
    from pipelines.lakefs import is_lakefs

    if is_lakefs(spec.source.path):
        return None
    try:
        local_source_path(spec.source.path)
    except InputError as exc:
        # Only a missing file means "not here"; a source that is there but wrong (a folder,
        # an unreadable file) runs, so the run fails with the line saying what to fix.
        return str(exc) if exc.rule == "source exists" else None
    return None


def where_to_point(spec_path: Path) -> str:
    """``set VAR, or source.path in datasets/x.yaml``: what tells a spec where its data is."""
    import re

    import yaml

    where = spec_path
    with contextlib.suppress(ValueError):
        where = spec_path.resolve().relative_to(Path.cwd().resolve())
    try:
        raw = str(yaml.safe_load(spec_path.read_text())["source"]["path"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        raw = ""
    # A path that is one variable (``${TIDELINE_ADULT_CSV:-data/adult.csv}``): name it.
    whole = re.fullmatch(r"\$\{(\w+)(?::-[^}]*)?\}", raw.strip())
    return (f"set {whole[1]}, or " if whole else "set ") + f"source.path in {where}"


def chosen_models(catalog, name: str | None) -> list[str]:
    """``name`` alone, else every model whose data is present (each skip is said)."""
    if name:
        return [catalog.get(name).name]
    models = []
    for entry in catalog.entries:
        if data_present(entry.spec):
            print(f"skipping {entry.name}: no data at {entry.spec.source.path} "
                  f"({where_to_point(Path(entry.path))})", flush=True)
            continue
        models.append(entry.name)
    return models


def print_table(rows: list[Row]) -> None:
    print(f"\n{'model':<16} {'stage':<20} {'cache':<6} {'content hash / outcome':<31} "
          f"{'seconds':>8}")
    for r in rows:
        print(f"{r.model:<16} {r.stage:<20} {r.cache:<6} {r.content_hash[:30]:<31} "
              f"{r.seconds:>8.3f}")


def deployment_line(deployed: DeploymentOutcome) -> str:
    """Where the model serves from, or why it does not (no ``vnone`` for a missing version)."""
    from cli.run_progress import version_label

    if deployed.outcome == "rejected":
        return f"deployment: not deployed ({deployed.reason or 'the gate blocked it'})"
    stable, canary = version_label(deployed.stable_version), version_label(
        deployed.canary_version)
    line = "deployment: " + (f"stable {stable}" if stable else "no stable model")
    line += f", canary {canary}" if canary else ", no canary"
    if deployed.edge_bundle:
        line += f"; edge bundle {deployed.edge_bundle}"
    if stable or canary:
        line += "\n            serve it: make serve (API key: make api-key)"
    return line


def run_model(defs, model: str) -> list[Row]:
    """Run one model's chain; print where its card and bundle are; return its table rows."""
    from cli.console import CommandFailed
    from cli.run_progress import deployment_text
    from pipelines.paths import state_dir

    print(f"running {model}_training_job", flush=True)
    start = time.perf_counter()
    result = run_chain(model, defs, progress=sys.stdout)
    total = time.perf_counter() - start
    if not result.success:
        failed = [e for e in result.all_events if e.is_step_failure]
        # A refusal with its own message (bad input, a spec mistake) is the user's to fix:
        # status 2; an unexpected error inside a step: status 1.
        user = failed and all(e.step_failure_data.user_failure_data for e in failed)
        raise CommandFailed(f"{model}: {failure_message(result)}", code=2 if user else 1)
    rows, deployed = summary(result)
    commit_run(defs, result, f"{model}_training_job")
    card = next(r for r in rows if r.stage == "model_card")
    store = defs.resources["store"].get()
    path = export_card(store, card.content_hash, state_dir() / "model_cards" / model)
    print(f"model card: {path}\n            {path.with_suffix('.md')}")
    if deployed:
        print(deployment_line(deployed))
    outcome = deployment_text(deployed) if deployed else "not run"
    return [*rows, Row(model, "deployment", "-", outcome, 0.0),
            Row(model, "total (run)", "", "", total)]


def main(argv: list[str] | None = None) -> int:
    import argparse

    from cli.console import CommandFailed, current_log
    from definitions import build_definitions
    from pipelines.catalog import load_catalog

    parser = argparse.ArgumentParser(
        prog="python -m cli.demo", description="Run every model's chain whose data is here "
        "(or one: --model NAME, or MODEL=/SPEC= with make) and print what each stage did.")
    parser.add_argument("--model", default=os.environ.get("TIDELINE_MODEL") or None)
    args = parser.parse_args(argv)
    catalog = load_catalog()
    for error in catalog.errors:  # on stdout: stderr goes to the log file
        print(f"error: {error.message}", flush=True)
    models = chosen_models(catalog, args.model)
    if not models and catalog.errors and not catalog.entries:
        raise CommandFailed(f"no model to run: {len(catalog.errors)} dataset spec(s) failed to "
                            f"load: {catalog.errors[0].message}")
    if not models:
        raise CommandFailed("no model to run: no spec in the datasets folder has its data "
                            "here (see the lines above)")
    defs = build_definitions(catalog)
    failed: list[CommandFailed] = []
    rows: list[Row] = []
    for model in models:
        try:
            rows += run_model(defs, model)
        except CommandFailed as exc:  # the other models still run
            if len(models) > 1:
                print(f"error: {exc}", flush=True)
            failed.append(exc)
    log = current_log()
    if log is not None and not failed:  # a failure names it with its error line
        print(f"Dagster's log of the run: {log}")
    if rows:
        print_table(rows)
    if failed:
        first = failed[0]
        more = f" ({len(failed) - 1} more models failed, above)" if len(failed) > 1 else ""
        raise CommandFailed(f"{first}{more}", code=min(f.code for f in failed))
    if catalog.errors:
        raise CommandFailed(f"{len(catalog.errors)} dataset spec(s) failed to load and were "
                            f"left out: {catalog.errors[0].message}")
    return 0


if __name__ == "__main__":
    from cli.console import run_command

    sys.exit(run_command(main, "demo"))
