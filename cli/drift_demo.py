"""The self-retraining loop, live: ``make drift-demo``.

Starts the Dagster daemon, the webserver (http://127.0.0.1:3000) and the serving service
on the local state, then sends traffic built from the deployed model's real held-out
rows: one clean batch, then two batches from a recalibrated scanner that reads every
size measurement (radius, perimeter, area) 30% larger, with their labels arriving as
feedback. It prints each drift report, the sensor's retrain request, the retrain run and
the deploy gate's verdict. ``--exit`` stops everything at the end instead of leaving the
UI up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCALED = ("radius", "perimeter", "area")
# The model the demo drives: MODEL=name (TIDELINE_MODEL), else the only model, else the
# demo's; set once in main().
MODEL = "breast_cancer"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def start(name: str, args: list[str], env: dict, logs: Path) -> subprocess.Popen:
    logs.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=(logs / f"{name}.log").open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}; see the logs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.drift_demo")
    parser.add_argument("--exit", action="store_true", help="stop everything at the end")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    import dagster as dg
    import httpx

    from pipelines.catalog import selected_spec

    global MODEL
    MODEL = selected_spec().name

    from cli.demo import run_chain
    from pipelines import deploy
    from pipelines.paths import state_dir, store_root
    from pipelines.store import ArtifactStore

    state = state_dir()
    store = ArtifactStore(store_root(state))
    instance = dg.DagsterInstance.get()
    if deploy.current(store, MODEL).stable is None:
        say("no deployed model yet: running the chain first (make demo)")
        if not run_chain(MODEL, instance=instance).success:
            raise SystemExit("the chain failed; run `make demo` to see why")
    stable = deploy.current(store, MODEL).stable
    say(f"serving starts with version {stable.version}")
    rows = _held_out(store, stable)

    env = {**os.environ, "TIDELINE_SENSOR_INTERVAL_S": "5", "PYTHONPATH": str(REPO)}
    bin_dir = Path(sys.executable).parent
    logs = state / "logs"
    procs = [
        start("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"], env,
              logs),
        start("webserver", [str(bin_dir / "dagster-webserver"), "-w", "workspace.yaml", "-p",
                            "3000"], env, logs),
        start("serving", [sys.executable, "-m", "cli.serve", "--port", str(args.port),
                          "--log-level", "warning"], env, logs),
    ]
    url = f"http://127.0.0.1:{args.port}"
    try:
        wait_for(lambda: _ready(httpx, f"{url}/v2/models/{MODEL}"), 90,
                 f"the serving service to load {MODEL}")
        key = subprocess.run([sys.executable, "-m", "cli.deployctl", "api-key", "drift-demo"],
                             cwd=REPO, env=env, capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        say(f"service {url}, Dagster UI http://127.0.0.1:3000 (logs in {logs})")
        seen = _latest_batch(instance)
        for n, (label, scale) in enumerate([("clean", 1.0), ("recalibrated", 1.3),
                                            ("recalibrated", 1.3)], start=1):
            ids, batch = _send(httpx, url, key, rows, scale, seed=n)
            _labels(state, ids, batch, n)
            say(f"batch {n} ({label}): {len(ids)} requests sent, labels dropped in; "
                "waiting for the prediction log to flush and the drift report…")
            report = wait_for(lambda s=seen: _new_report(instance, s), 240,
                              f"drift report {n}")
            seen = report.batch
            say(f"  drift score {report.drift_score:.2f} (threshold "
                f"{report.drift_threshold:g}); drifted columns: "
                f"{', '.join(report.drifted_columns) or 'none'}")
        retrain = f"{MODEL}_retrain_job"
        run = wait_for(lambda: _runs(instance, retrain), 120, "the retrain request")[0]
        say(f"{MODEL}_drift_sensor requested {retrain} "
            f"({run.tags.get('tideline/trigger', '')})")
        final = wait_for(lambda: _finished(instance, run.run_id), 900, "the retrain run")
        say(f"retrain run {run.run_id[:8]} finished: {final.status.value}")
        _verdict(instance, store)
        if not args.exit:
            say("the daemon, UI and service keep running; Ctrl-C stops them")
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    return 0


def _held_out(store, stable):
    """Raw test-split rows of the deployed model (with their labels)."""
    import json

    from pipelines.artifacts import read_frame
    from pipelines.features import SPLIT_COLUMN

    card = store.get_manifest(stable.model_card)
    lineage = json.loads(store.get_bytes(card.files["card.json"]))["lineage"]
    frame = read_frame(store, store.get_manifest(lineage["validated_features"]), "features")
    return frame[frame[SPLIT_COLUMN] == "test"].reset_index(drop=True)


def _ready(httpx, url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=2).status_code == 200  # .../<model>/ready
    except httpx.TransportError:
        return False


def _send(httpx, url, key, rows, scale: float, seed: int, n: int = 250):
    """Send held-out rows (without replacement while there are enough), sizes × scale."""
    import json

    from pipelines.catalog import selected_spec

    spec = selected_spec(MODEL)
    batch = rows.sample(n=min(n, len(rows)), random_state=seed).reset_index(drop=True)
    # The demo's size measurements; for another model, its first three numeric columns.
    scaled = [c for c in spec.numeric_columns if any(word in c for word in SCALED)]
    for col in scaled or spec.numeric_columns[:3]:
        batch[col] = batch[col] * scale
    records = json.loads(batch[list(spec.columns)].to_json(orient="records"))
    ids = []
    with httpx.Client(timeout=30) as client:
        for record in records:
            r = client.post(f"{url}/v2/models/{MODEL}/predict", json={"records": [record]},
                            headers={"X-API-Key": key})
            r.raise_for_status()
            ids.append(r.json()["request_id"])
    batch["__target"] = spec.target.positive
    negative = [c for c in spec.target.classes or [] if c != spec.target.positive]
    batch.loc[batch["__label"] == 0, "__target"] = negative[0] if negative else "0"
    return ids, batch


def _labels(state: Path, ids, batch, n: int) -> None:
    import pandas as pd

    from pipelines.paths import model_production_dir

    folder = model_production_dir(state, MODEL) / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"request_id": ids, "label": batch["__target"]}).to_csv(
        folder / f"drift-demo-{int(time.time())}-{n}.csv", index=False)


def _latest_batch(instance) -> str | None:
    report = _drift_report(instance)
    return report.batch if report else None


def _drift_report(instance):
    """The latest drift report's verdict (``pipelines.records.DriftSummary``), or None."""
    import dagster as dg

    from pipelines.records import DriftSummary
    from sensors.drift import latest_metadata

    meta = latest_metadata(instance, dg.AssetKey([MODEL, "drift_report"]))
    return None if meta is None else DriftSummary.from_metadata(meta)


def _new_report(instance, seen):
    report = _drift_report(instance)
    return report if report and report.batch != seen else None


def _runs(instance, job: str):
    import dagster as dg

    return instance.get_runs(dg.RunsFilter(job_name=job))


def _finished(instance, run_id: str):
    run = instance.get_run_by_id(run_id)
    return run if run and run.is_finished else None


def _verdict(instance, store) -> None:
    import dagster as dg

    from pipelines import deploy

    def latest(asset: str) -> dict:
        event = instance.get_latest_materialization_event(dg.AssetKey([MODEL, asset]))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    from pipelines.records import DeploymentOutcome

    card = latest("model_card")
    deployed = DeploymentOutcome.from_metadata(latest("deployment"))
    state = deploy.current(store, MODEL)
    say(f"deploy gate on the retrained model: {card['gate']} (ROC AUC {card['roc_auc']:.4f} "
        f"on its held-out rows, champion v{card['champion_version']}); deployment: "
        f"{deployed.outcome} v{deployed.version}; now serving stable "
        f"v{deploy.version_label(state.stable)}"
        + (f" with canary v{state.canary.version}" if state.canary else ""))


if __name__ == "__main__":
    sys.exit(main())
