"""Hyperparameter search with Optuna: seeded TPE, pruning, resumable RDB storage.

The study is named by the recipe key and lives in RDB storage (SQLite by default,
Postgres when configured), so a killed run resumes it. Workers claim trials with
``ask``/``tell``: a trial runs only while fewer than ``n_trials`` trials numbered before
it are finished or alive, so any number of workers, in any number of processes,
finish exactly the planned number (``optimize(n_trials=N)`` would run N *more* on a
resumed study). A worker keeps a heartbeat on its trial; a trial whose process died is
failed once its heartbeat goes stale and its parameters are tried again.
Determinism covers the final fit from the best parameters, not the search.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import telemetry
from pipelines.training import train

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from pipelines.spec import SearchSpaceSpec, TrainingSpec, TuningSpec
    from pipelines.training import EncodedRows

HEARTBEAT_S = 5
GRACE_S = 15
DONE = ("COMPLETE", "PRUNED")
# Searched training.params are named params.<name> in the study.
PARAM_PREFIX = "params."


@dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    value: float | None
    state: str
    epochs_run: int
    history: list[dict[str, Any]]


TrialLogger = Callable[[TrialRecord], None]


def trial_config(params: dict[str, Any], base: TrainingSpec) -> TrainingSpec:
    """The training settings a set of searched parameters stands for."""
    width, depth = int(params["width"]), int(params["depth"])
    hidden = [max(2, width // 2**i) for i in range(depth)]
    own = {k[len(PARAM_PREFIX):]: v for k, v in params.items() if k.startswith(PARAM_PREFIX)}
    return base.model_copy(update={
        "learning_rate": float(params["learning_rate"]), "hidden": hidden,
        "dropout": float(params["dropout"]), "weight_decay": float(params["weight_decay"]),
        "epochs": int(params["epochs"]), "params": dict(base.params) | own})


def _suggest(trial: optuna.Trial, space: SearchSpaceSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("learning_rate", "dropout", "weight_decay"):
        r = getattr(space, name)
        out[name] = trial.suggest_float(name, r.low, r.high, log=r.log)
    for name in ("width", "depth", "epochs"):
        r = getattr(space, name)
        out[name] = trial.suggest_int(name, int(r.low), int(r.high), log=r.log)
    for name, r in sorted(space.params.items()):
        key = PARAM_PREFIX + name
        out[key] = (trial.suggest_int(key, int(r.low), int(r.high), log=r.log) if r.integer
                    else trial.suggest_float(key, r.low, r.high, log=r.log))
    return out


def storage(url: str, heartbeat_s: int = HEARTBEAT_S,
            grace_s: int = GRACE_S) -> optuna.storages.RDBStorage:
    import optuna

    sqlite = url.startswith("sqlite:")
    with warnings.catch_warnings():
        # Heartbeats and their retry callback are "experimental" in Optuna since 2.8; they
        # are what lets a killed worker's trial be run again, and are tested here.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat_s, grace_period=grace_s,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1),
            engine_kwargs=({"connect_args": {"timeout": 60}} if sqlite
                           else {"pool_pre_ping": True}))
    if sqlite:
        _fast_sqlite(rdb.engine)
    return rdb


def _fast_sqlite(engine: Any) -> None:
    # Every trial writes an intermediate value per epoch; with SQLite's default journal
    # each write waits for a full fsync. WAL with synchronous=NORMAL keeps the database
    # consistent after a crash (a process kill loses nothing committed) at a fraction
    # of the cost, and lets worker processes read while one writes.
    from sqlalchemy import event

    def pragmas(conn: Any, _record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", pragmas)
    engine.dispose()


def open_study(url: str, name: str, cfg: TuningSpec, heartbeat_s: int = HEARTBEAT_S,
               grace_s: int = GRACE_S, worker: int = 0
               ) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """Create or resume the study ``name`` in RDB storage at ``url``.

    The sampler is seeded from ``cfg.seed`` for a new study. A resumed study, or an extra
    ``worker``, gets a seed that also folds in the trials already there (and the worker),
    so it does not replay the parameters its predecessor already tried.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    else:
        from pipelines.pg import ensure_schema

        ensure_schema(url)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
              if cfg.pruner == "median" else optuna.pruners.NopPruner())
    rdb = storage(url, heartbeat_s, grace_s)
    study = optuna.create_study(storage=rdb, study_name=name, direction="minimize",
                                pruner=pruner, load_if_exists=True)
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(
        seed=cfg.seed + 7919 * existing + 104729 * worker, n_startup_trials=5)
    return study, rdb


def _count(study: optuna.Study, states: tuple[str, ...], below: int | None = None) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state.name in states and (below is None or t.number < below))


def _adopt_orphans(study: optuna.Study, rdb: optuna.storages.RDBStorage, study_id: int,
                   adopted: set[int]) -> None:
    """Give a heartbeat, once, to running trials older than the grace period.

    A worker killed between asking for a trial and its first heartbeat leaves a RUNNING
    trial that stale-trial detection never sees (it only looks at heartbeats). One beat
    makes it visible: if its process is gone it goes stale a grace period later and is
    retried; if it is alive, its own heartbeats keep it fresh.
    """
    import datetime as dt

    grace = dt.timedelta(seconds=rdb.get_heartbeat_interval() or HEARTBEAT_S) * 3
    now = dt.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(optuna_state("RUNNING"),)):
        if t.number in adopted or t.datetime_start is None or now - t.datetime_start < grace:
            continue
        adopted.add(t.number)
        rdb.record_heartbeat(rdb.get_trial_id_from_study_id_trial_number(study_id, t.number))


def optuna_state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]


class _Heartbeat:
    def __init__(self, store: optuna.storages.RDBStorage, trial_id: int):
        self._interval = store.get_heartbeat_interval() or HEARTBEAT_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(store, trial_id), daemon=True)

    def _beat(self, store: optuna.storages.RDBStorage, trial_id: int) -> None:
        while True:
            store.record_heartbeat(trial_id)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_study(study: optuna.Study, rdb: optuna.storages.RDBStorage,
              train_rows: pd.DataFrame | EncodedRows, val_rows: pd.DataFrame | EncodedRows,
              params: dict[str, Any], base: TrainingSpec, cfg: TuningSpec, *, threads: int,
              device: str = "cpu", log_trial: TrialLogger | None = None,
              poll_s: float = 1.0) -> None:
    """Run trials until the study holds ``cfg.n_trials`` finished (complete or pruned) ones.

    The splits are frames or `pipelines.training.EncodedRows` (in memory or on disk), as
    `pipelines.training.train` takes them: frames are encoded again by every trial,
    encoded rows are shared by all trials.
    """
    import optuna
    from optuna.trial import TrialState

    # Heartbeats outside Study.optimize and fail_stale_trials are flagged experimental.
    warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    deadline = time.monotonic() + cfg.timeout_s if cfg.timeout_s else None
    pruning = cfg.pruner != "none"
    study_id = rdb.get_study_id_from_name(study.study_name)
    adopted: set[int] = set()
    while _count(study, DONE) < cfg.n_trials:
        if deadline and time.monotonic() > deadline:
            break
        _adopt_orphans(study, rdb, study_id, adopted)
        optuna.storages.fail_stale_trials(study)
        trial = study.ask()
        trial_id = rdb.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        rdb.record_heartbeat(trial_id)  # at once: a kill from here on leaves a stale trial
        if _count(study, (*DONE, "RUNNING"), below=trial.number) >= cfg.n_trials:
            # Others are running the last planned trials: give the claim back, wait.
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            time.sleep(poll_s)
            continue
        hp = _suggest(trial, cfg.search_space)
        history: list[dict[str, Any]] = []

        def report(row: dict[str, Any], trial: optuna.Trial = trial,
                   history: list[dict[str, Any]] = history) -> None:
            history.append(row)
            if pruning:  # an intermediate value costs a storage write per epoch
                trial.report(row["val_loss"], row["epoch"])
                if trial.should_prune():
                    raise optuna.TrialPruned()

        # Its epochs are the trial span's children (with tracing on; nothing otherwise).
        with _Heartbeat(rdb, trial_id), telemetry.span("optuna trial", {
                "tideline.trial": trial.number, "tideline.study": study.study_name,
                **{f"tideline.trial.{k}": v for k, v in hp.items()}}) as span:
            try:
                result = train(train_rows, val_rows, params, trial_config(hp, base),
                               threads=threads, device=device, on_epoch=report)
            except optuna.TrialPruned:
                trial.set_user_attr("epochs_run", len(history))
                study.tell(trial, state=TrialState.PRUNED)
                record = TrialRecord(trial.number, hp, None, "PRUNED", len(history), history)
            else:
                value = result.history[result.best_epoch]["val_loss"]
                trial.set_user_attr("epochs_run", len(result.history))
                study.tell(trial, value)
                record = TrialRecord(trial.number, hp, value, "COMPLETE", len(result.history),
                                     result.history)
            span.set({"tideline.trial.state": record.state, "tideline.trial.value": record.value,
                      "tideline.epochs_run": record.epochs_run})
        if log_trial:
            log_trial(record)


def summary(study: optuna.Study) -> dict[str, Any]:
    """Best parameters and counts, for the model card and metadata."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        raise RuntimeError(f"study {study.study_name} has no complete trial; raise "
                           "tuning.n_trials or tuning.timeout_s")
    best = min(complete, key=lambda t: t.value)
    return {"best_params": best.params, "best_value": best.value, "best_trial": best.number,
            "complete": len(complete),
            "pruned": sum(1 for t in trials if t.state.name == "PRUNED"),
            "epochs_run": sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials
                              if t.state.name in DONE)}
