"""Deployment by hand: status, promote, abort, rollback, API keys.

Usage::

    python -m cli.deployctl status          # what is serving, and the history
    python -m cli.deployctl status --repair # first repair what a killed deploy left out of
                                            # line (make deploy-status REPAIR=1)
    python -m cli.deployctl repair          # the same repair, without the history listing
    python -m cli.deployctl promote         # make the canary stable   (make promote)
    python -m cli.deployctl abort           # withdraw the canary      (make abort)
    python -m cli.deployctl rollback        # undo the newest change   (make rollback)
    python -m cli.deployctl api-key NAME    # create an API key for the serving service

Thin on purpose: no Dagster run and no MLflow import before the history entry is
written (the service switches on that entry). The MLflow aliases (and, with the store
on lakeFS, a commit of the change) then follow in a background process (``--aliases
wait`` waits for it, ``--aliases skip`` leaves it).

``repair`` rebuilds what is derived from the history when a killed process left it behind:
``head.json`` (what the service serves), the stable and canary edge bundles (checked by
sha256) and the MLflow aliases (MLflow is imported only when they need setting).
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _context(model: str | None):
    from pipelines.catalog import selected_spec
    from pipelines.paths import state_dir, store_root
    from pipelines.store import ArtifactStore

    state = state_dir()
    spec = selected_spec(model)
    return ArtifactStore(store_root(state)), spec, state


def _api_key(name: str | None) -> None:
    import os

    from pipelines.paths import state_dir
    from serving.security import ApiKeys

    path = Path(os.environ.get("TIDELINE_API_KEYS",
                               state_dir() / "serving" / "api_keys.json"))
    key = ApiKeys(path).create(name or "default")
    print(f"API key {name or 'default'!r} (shown once; only its sha256 is kept in {path}; it "
          f"works for every model of the service):\n{key}")


def _sync(mode: str, model: str) -> None:
    if mode == "skip":
        return
    cmd = [sys.executable, "-m", "cli.deployctl", "sync-aliases", "--model", model]
    if mode == "wait":
        subprocess.run(cmd, cwd=REPO, check=False)
    else:
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        print("MLflow aliases are being updated in the background")


def _commit_lakefs(store, name: str) -> None:
    """With the store on lakeFS, commit the deployment change (off the rollback's path)."""
    from pipelines import deploy
    from pipelines.lakefs import commit_store, is_lakefs

    if not is_lakefs(store.root):
        return
    state = deploy.current(store, name)
    commit = commit_store(store.root, f"deployment of {name}: stable {_label(state.stable)}, "
                          f"canary {_label(state.canary)} (history entry {state.seq})",
                          {"deployment_seq": str(state.seq)})
    print(f"lakeFS: {store.root} committed as {commit or '(nothing new to commit)'}")


def _label(model) -> str:
    """``v<version>`` of a deployed model (``pipelines.deploy.DeployedModel``), or none."""
    return "none" if model is None else f"v{model.version}"


def status(store, name: str) -> None:
    from pipelines import deploy

    state = deploy.current(store, name)
    print(f"{name}: stable {_label(state.stable)}, canary {_label(state.canary)}, "
          f"previous {_label(state.previous)}")
    if state.seq and not deploy.head_in_line(store, name, state):
        print(f"  head.json (what the service serves) is out of line with the history "
              f"(entry {state.seq}): make deploy-status REPAIR=1 rebuilds it")
    for e in deploy.entries(store, name)[-15:]:
        when = dt.datetime.fromtimestamp(e.time, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"  #{e.seq:<4} {when}  {e.action:<8} {_label(e.model):<6} "
              f"{e.state:<11} {e.reason[:70]}  ({e.actor})")


def repair(store, spec, state_folder) -> bool:
    """Bring head, edge bundles and MLflow aliases in line with the history; say what changed.

    Returns whether everything could be repaired.
    """
    from pipelines.paths import mlflow_uri
    from pipelines.repair import repair as run_repair

    report = run_repair(store, spec.name, edge_target=spec.deployment.edge.target,
                        tracking_uri=mlflow_uri(state_folder))
    for line in report.lines():
        print(line)
    if not report.changed and not report.problems:
        print(f"{spec.name}: head, edge bundles and MLflow aliases match the history "
              f"(entry {report.seq}); nothing to repair")
    return not report.problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.deployctl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["status", "repair", "promote", "abort", "rollback",
                                           "api-key", "sync-aliases"])
    parser.add_argument("name", nargs="?", help="key name (api-key)")
    parser.add_argument("--reason", default=None)
    parser.add_argument("--aliases", choices=["background", "wait", "skip"],
                        default="background")
    parser.add_argument("--repair", action="store_true",
                        help="status: first repair head, edge bundles and aliases")
    parser.add_argument("--model", default=None,
                        help="the model (dataset spec name); default TIDELINE_MODEL, else the "
                             "only model, else the demo")
    args = parser.parse_args(argv)
    if args.action == "api-key":  # keys are the service's, not a model's
        _api_key(args.name)
        return 0
    from pipelines.spec import SpecError

    try:
        store, spec, state_folder = _context(args.model)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = spec.name
    from pipelines import deploy

    try:
        if args.action in ("status", "repair"):
            repaired = repair(store, spec, state_folder) if (
                args.action == "repair" or args.repair) else True
            if args.action == "status":
                status(store, name)
            if not repaired:
                return 1
        elif args.action == "sync-aliases":
            from pipelines.paths import mlflow_uri

            _commit_lakefs(store, name)
            print(deploy.sync_aliases(store, mlflow_uri(state_folder), name))
        else:
            action = {"promote": deploy.promote, "abort": deploy.abort,
                      "rollback": deploy.rollback}[args.action]
            state = action(store, name, reason=args.reason or f"{args.action} by hand")
            print(f"{args.action}: {name} stable {_label(state.stable)}, canary "
                  f"{_label(state.canary)} (history entry {state.seq})")
            _sync(args.aliases, name)
    except deploy.DeployError as exc:
        print(f"{args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
