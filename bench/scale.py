"""The whole chain at production sizes: scaled copies of UCI Adult, one size at a time.

For each size in ``--rows`` (default 30k, 300k, 3M, 30M rows):

1. a copy of UCI Adult of that many rows is generated once and kept under ``--work``
   (rows resampled with replacement; the spec's numeric columns get a small seeded noise
   inside their min/max, integers staying integers; categorical values, missing values and
   the columns the spec does not list are copied as they are);
2. ``adult_training_job`` runs in a fresh state folder (``TIDELINE_HOME``) with a copy of
   ``datasets/adult.yaml`` pointing at that file (``TIDELINE_SPEC``, so only that model
   loads), in a child Python process, then once more in another child: the no-op re-run,
   every stage a cache hit.

Each run's peak RSS is the kernel's figure for the child, read with ``os.wait4`` when it is
reaped: the high-water mark of the child or of any descendant it waited for, whichever is
larger. Jobs run on Dagster's in-process executor, so the chain's memory is the child's
own; this needs no extra library, and it still answers when the child is stopped at the
time limit. Stage seconds are the ``seconds`` materialization metadata of each memoized
stage; ``deployment`` records none, so its figure is its step's duration from the run's
step statistics. The child prints one line per started step and finished stage, so a run
stopped at ``--time-limit`` is reported with the stages it finished and the one it was in.

Prints the seconds per stage and size, the growth per stage between consecutive sizes, and
the targets with "meets" or "MISSES" beside each:

``raw_source`` is the observation step before the chain (the source file's content hash,
from the file-stat cache when unchanged); it counts in the total, not in validation.

- ``model_card ÷ trained_weights`` ≤ 0.5 (named at 3M; shown at every size);
- validation (the ingest step: raw_data + validated_features) ÷ trained_weights ≤ 0.5;
- growth of each stage 300k → 3M ≤ 12 (between other consecutive sizes: ≤ 1.2 × the
  growth in rows);
- no-op re-run at each size ÷ at the smallest size ≤ 1.5;
- peak RSS ≤ 2 GB at 3M and ≤ 6 GB at 30M (GB = 10^9 bytes).

Usage: ``PYTHONPATH=. python -m bench.scale --rows 30000,100000``. Not part of ``make
bench``: the default sizes take hours and about 4 GB of disk for the largest copy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.common import REPO, python_env

DEFAULT_ROWS = "30000,300000,3000000,30000000"
_ADULT = os.environ.get("TIDELINE_ADULT_CSV")
DEFAULT_DATA = Path(_ADULT).parent if _ADULT else REPO.parent / "shared" / "data"
CHUNK_ROWS = 1_000_000
# Each child prints its events on stdout as this prefix and one JSON object.
TAG = "@scale "
MODEL = "adult"
INGEST = ("raw_data", "validated_features")

CARD_TARGET = 0.5
INGEST_TARGET = 0.5
GROWTH_TARGET_PER_ROW_GROWTH = 1.2  # 12 for 10× the rows
NOOP_TARGET = 1.5
RSS_TARGETS = {3_000_000: 2e9, 30_000_000: 6e9}


def stages() -> tuple[str, ...]:
    """What the table shows: the source's observation (hashing the file), then the chain."""
    from pipelines.catalog import CHAIN

    return ("raw_source", *CHAIN)


# ---------------------------------------------------------------------------- generator


def data_file(work: Path, rows: int, seed: int) -> Path:
    return work / "data" / f"adult-{rows}-seed{seed}.csv"


def load_base(source: Path, spec: dict):
    """The source rows as strings, with the spec's numeric columns parsed.

    Returns the frame and the numeric columns as ``{name: (min, max, integral)}``.
    """
    import numpy as np
    import pandas as pd

    na = [str(v) for v in spec["source"].get("na_values", [""])]
    base = pd.read_csv(source, dtype=str, keep_default_na=False)
    numeric = {}
    for name, rule in spec["columns"].items():
        if rule.get("type") != "numeric" or name not in base.columns:
            continue
        raw = base[name].where(~base[name].isin(na))
        values = pd.to_numeric(raw, errors="raise").to_numpy(dtype=float)
        present = values[~np.isnan(values)]
        integral = bool(np.all(present == np.round(present)))
        lo = float(rule.get("min", present.min()))
        hi = float(rule.get("max", present.max()))
        base[name] = values
        numeric[name] = (lo, hi, integral)
    return base, numeric


def jitter(values, lo: float, hi: float, integral: bool, rng):
    """Values moved by a small seeded noise, clipped to [lo, hi]; missing stays missing.

    Integers move by a whole number in ±2% of the range (at least ±1); a zero stays zero
    (in Adult's capital-gain and capital-loss a zero means none, and most rows hold one).
    """
    import numpy as np
    import pandas as pd

    present = ~np.isnan(values)
    moved = present & (values != 0)
    out = values.copy()
    if integral:
        k = max(1, round(0.02 * (hi - lo)))
        noise = rng.integers(-k, k + 1, size=len(values)).astype(float)
    else:
        noise = rng.normal(0.0, 0.01 * (hi - lo), size=len(values))
    out[moved] = np.clip(values[moved] + noise[moved], lo, hi)
    if integral:
        return pd.arrays.IntegerArray(np.where(present, out, 0).astype("int64"), ~present)
    return out


def generate(source: Path, spec: dict, rows: int, seed: int, dest: Path) -> Path:
    """Write ``rows`` rows resampled from ``source`` to ``dest`` in chunks (kept if there)."""
    import csv

    import numpy as np

    if dest.exists():
        print(f"data: {rows:,} rows: reusing {dest} ({dest.stat().st_size / 1e6:,.1f} MB)",
              flush=True)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    base, numeric = load_base(source, spec)
    with open(source, newline="") as f:
        header = next(csv.reader(f))
    # UCI Adult's file has a leading unnamed index column: a header one field shorter
    # than its rows. The copy keeps that shape, numbering its own rows.
    indexed = len(header) == len(base.columns)
    na = str(spec["source"].get("na_values", [""])[0])
    rng = np.random.default_rng(seed)
    partial = dest.with_suffix(".partial")
    start = time.perf_counter()
    chunks = -(-rows // CHUNK_ROWS)
    with open(partial, "w", newline="") as out:
        csv.writer(out, lineterminator="\n").writerow(header)
        for i, first in enumerate(range(0, rows, CHUNK_ROWS)):
            size = min(CHUNK_ROWS, rows - first)
            chunk = base.iloc[rng.integers(0, len(base), size=size)].reset_index(drop=True)
            for name, (lo, hi, integral) in numeric.items():
                chunk[name] = jitter(chunk[name].to_numpy(dtype=float), lo, hi, integral, rng)
            chunk.index = range(first, first + size)
            chunk.to_csv(out, header=False, index=indexed, na_rep=na, lineterminator="\n")
            print(f"data: {rows:,} rows: chunk {i + 1}/{chunks} written "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
    partial.replace(dest)
    print(f"data: {rows:,} rows: {dest} ({dest.stat().st_size / 1e6:,.1f} MB)", flush=True)
    return dest


# ------------------------------------------------------------------------------- child


def step_stage(step_key: str) -> str:
    """The stage a step of the job computes: ``adult__raw_source`` -> ``raw_source``."""
    return step_key.rsplit("__", 1)[-1]


def emit(event: dict) -> None:
    print(TAG + json.dumps(event), flush=True)


def child(spec: Path, home: Path) -> int:
    """Run the model's training job once in this process and report what it did."""
    import resource
    import uuid

    os.environ["TIDELINE_SPEC"] = str(spec)
    os.environ["TIDELINE_HOME"] = str(home)
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    import dagster as dg

    from definitions import build_definitions

    job = build_definitions().resolve_job_def(f"{MODEL}_training_job")
    instance = dg.DagsterInstance.local_temp(
        tempdir=str(home / "dagster"), overrides={"telemetry": {"enabled": False}})
    run_id = str(uuid.uuid4())
    watcher = Watcher(instance, run_id)
    emit({"event": "loaded"})
    start = time.perf_counter()
    with watcher:
        result = job.execute_in_process(instance=instance, raise_on_error=False, run_id=run_id)
    wall = time.perf_counter() - start
    seconds, cache, epochs = {}, {}, None
    for event in result.get_asset_materialization_events():
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        stage = event.asset_key.path[-1]
        if stage == "trained_weights" and "epochs_run" in meta:
            epochs = int(meta["epochs_run"])
        if "seconds" in meta:
            seconds[stage], cache[stage] = float(meta["seconds"]), str(meta.get("cache", ""))
    for stat in instance.get_run_step_stats(run_id):
        stage = step_stage(stat.step_key)
        if stage in ("raw_source", "deployment") and stat.end_time and stat.start_time:
            seconds[stage], cache[stage] = stat.end_time - stat.start_time, "-"
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    emit({"event": "done", "success": result.success, "wall_s": wall, "seconds": seconds,
          "cache": cache, "failure": watcher.failure, "self_maxrss_kb": rss,
          "epochs_run": epochs})
    return 0 if result.success else 1


class Watcher:
    """Polls the run's event log and emits a line per started step and finished stage."""

    def __init__(self, instance, run_id: str, interval_s: float = 0.2):
        self.instance, self.run_id, self.interval_s = instance, run_id, interval_s
        self.cursor: str | None = None
        self.started: dict[str, float] = {}
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):  # the run may not exist yet
                self.poll()

    def poll(self) -> None:
        while True:
            conn = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, limit=500)
            for record in conn.records:
                self.seen(record.event_log_entry)
            self.cursor = conn.cursor
            if not conn.has_more:
                return

    def seen(self, entry) -> None:
        event, step = entry.dagster_event, entry.step_key or ""
        if event is None:
            return
        if event.is_step_start:
            self.started[step] = entry.timestamp
            emit({"event": "start", "step": step})
        elif event.is_step_success:
            emit({"event": "end", "step": step,
                  "seconds": entry.timestamp - self.started.get(step, entry.timestamp)})
        elif event.is_step_materialization:
            mat = event.step_materialization_data.materialization
            meta = {k: v.value for k, v in mat.metadata.items()}
            seconds = meta.get("seconds", entry.timestamp - self.started.get(step, entry.timestamp))
            emit({"event": "stage", "stage": mat.asset_key.path[-1], "seconds": float(seconds),
                  "cache": str(meta.get("cache", meta.get("outcome", "")))})
        elif event.is_step_failure:
            from cli.console import step_failure_line

            self.failure = self.failure or f"{step}: {step_failure_line(event)}"
            emit({"event": "failed", "step": step, "message": step_failure_line(event)})


# ------------------------------------------------------------------------------ runner


@dataclass
class Run:
    """One child's run of the training job."""

    rows: int
    kind: str  # "first" or "no-op"
    status: str = "ok"  # ok, failed, time limit, crashed
    seconds: dict[str, float] = field(default_factory=dict)
    cache: dict[str, str] = field(default_factory=dict)
    wall_s: float | None = None  # the job's execute_in_process
    process_s: float = 0.0  # the child from start to exit (imports included)
    peak_rss: float = 0.0  # bytes
    running: str = ""  # the step it was in when stopped
    message: str = ""
    epochs_cap: int | None = None  # training.epochs as capped by --epochs-from
    epochs_run: int | None = None


def run_child(rows: int, kind: str, spec: Path, home: Path, time_limit: float,
              threads: int) -> Run:
    run = Run(rows, kind)
    label = f"{rows:,} {kind}"
    log = home.parent / f"{kind}.log"
    events: queue.Queue = queue.Queue()
    env = python_env(TIDELINE_THREADS=str(threads), TIDELINE_SPEC=str(spec),
                     TIDELINE_HOME=str(home))
    start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "bench.scale", "--child", str(spec),
                                 str(home)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=err, text=True, start_new_session=True)
    reader = threading.Thread(target=read_events, args=(proc.stdout, events), daemon=True)
    reader.start()
    print(f"[{label}] started (pid {proc.pid}; its log: {log})", flush=True)
    running: set[str] = set()
    usage, stopped, where = None, False, ""
    deadline = start + time_limit
    while usage is None:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            usage = ru
            proc.returncode = os.waitstatus_to_exitcode(status)
        elif not stopped and time.perf_counter() > deadline:
            drain(events, run, running, label)
            stopped, where = True, ", ".join(sorted(running)) or "(between steps)"
            print(f"[{label}] time limit {time_limit:.0f} s reached in {where}; stopping it",
                  flush=True)
            stop_group(proc.pid)
        else:
            drain(events, run, running, label)
        if usage is None:
            time.sleep(0.2)
    run.process_s = time.perf_counter() - start
    reader.join(timeout=10)
    drain(events, run, running, label)
    run.peak_rss = usage.ru_maxrss * 1024
    if stopped:
        run.status, run.running = "time limit", where
        run.message = f"stopped {time_limit:.0f} s after the child started"
        return report_run(run, label)
    run.running = ", ".join(sorted(running))
    if run.status == "ok" and run.wall_s is None:
        run.status = "crashed"
        run.message = f"exit status {proc.returncode}; see {log}"
    return report_run(run, label)


def report_run(run: Run, label: str) -> Run:
    print(f"[{label}] {run.status}: job {fmt(run.wall_s)} s, process {run.process_s:.1f} s, "
          f"peak RSS {run.peak_rss / 1e6:,.0f} MB", flush=True)
    return run


def read_events(stream, events: queue.Queue) -> None:
    for line in stream:
        if line.startswith(TAG):
            events.put(json.loads(line[len(TAG):]))


def stop_group(pid: int) -> None:
    """SIGTERM the child's process group, SIGKILL it if still there after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    for _ in range(50):
        time.sleep(0.2)
        with contextlib.suppress(ChildProcessError):
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def drain(events: queue.Queue, run: Run, running: set[str], label: str) -> None:
    while True:
        try:
            ev = events.get_nowait()
        except queue.Empty:
            return
        kind = ev["event"]
        if kind == "start":
            running.add(ev["step"])
            print(f"[{label}] {ev['step']} started", flush=True)
        elif kind == "end":
            running.discard(ev["step"])
            if step_stage(ev["step"]) == "raw_source":
                run.seconds["raw_source"] = ev["seconds"]
                print(f"[{label}] raw_source observed: {ev['seconds']:.2f} s", flush=True)
        elif kind == "stage":
            run.seconds[ev["stage"]] = ev["seconds"]
            run.cache[ev["stage"]] = ev["cache"]
            print(f"[{label}] {ev['stage']} finished: {ev['cache']} {ev['seconds']:.2f} s",
                  flush=True)
        elif kind == "failed":
            run.status, run.message = "failed", f"{ev['step']}: {ev['message']}"
            running.discard(ev["step"])
            print(f"[{label}] {ev['step']} FAILED: {ev['message']}", flush=True)
        elif kind == "done":
            run.wall_s = ev["wall_s"]
            run.epochs_run = ev.get("epochs_run")
            run.seconds.update(ev["seconds"])
            run.cache.update(ev["cache"])
            if not ev["success"]:
                run.status = "failed"
                run.message = run.message or ev.get("failure") or "the run failed"
            running.clear()


def write_spec(csv_path: Path, dest: Path, epochs: int | None = None) -> Path:
    import yaml

    spec = yaml.safe_load((REPO / "datasets" / f"{MODEL}.yaml").read_text())
    spec["source"]["path"] = str(csv_path.resolve())
    if epochs is not None:
        spec["training"]["epochs"] = epochs
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def run_size(rows: int, csv_path: Path, work: Path, seed: int, time_limit: float,
             threads: int, epochs: int | None = None) -> tuple[Run, Run | None]:
    folder = work / "runs" / f"adult-{rows}-seed{seed}"
    if folder.exists():  # a fresh state each time: the first run computes every stage
        shutil.rmtree(folder)
    spec = write_spec(csv_path, folder / f"{MODEL}.yaml", epochs)
    home = folder / "state"
    home.mkdir(parents=True)
    first = run_child(rows, "first", spec, home, time_limit, threads)
    first.epochs_cap = epochs
    if first.status != "ok":
        return first, None
    noop = run_child(rows, "no-op", spec, home, time_limit, threads)
    if noop.status == "ok" and "miss" in noop.cache.values():
        noop.message = "not every stage was a cache hit: " + ", ".join(
            f"{s} {c}" for s, c in noop.cache.items() if c in ("hit", "miss"))
    return first, noop


# ------------------------------------------------------------------------------ report


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "not measured"
    return "meets" if value <= target else "MISSES"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def stage_seconds(run: Run, stage: str) -> float | None:
    return sum(run.seconds.values()) if stage == "total" else run.seconds.get(stage)


def per_epoch(run: Run) -> float | None:
    """Training seconds per epoch run: the fair growth figure when sizes stop early at
    different epochs (or are capped)."""
    seconds = run.seconds.get("trained_weights")
    return seconds / run.epochs_run if seconds is not None and run.epochs_run else None


def report(results: list[tuple[Run, Run | None]]) -> None:
    chain = stages()
    sizes = [first.rows for first, _ in results]
    width = 12
    head = "".join(f"{r:>{width},}" for r in sizes)

    def line(label: str, values: list[str]) -> None:
        print(f"{label:<28}" + "".join(f"{v:>{width}}" for v in values))

    print("\nseconds per stage, first run (every stage computed), by rows")
    print(f"{'':<28}{head}")
    for stage in chain:
        line(stage, [fmt(first.seconds.get(stage)) for first, _ in results])
    line("total (stages)", [fmt(sum(first.seconds.values())) for first, _ in results])
    line("training epochs run (cap)", [
        f"{first.epochs_run if first.epochs_run is not None else '-'}"
        f"{f' ({first.epochs_cap})' if first.epochs_cap else ''}" for first, _ in results])
    line("trained_weights per epoch", [fmt(per_epoch(first)) for first, _ in results])
    line("job wall", [fmt(first.wall_s) for first, _ in results])
    line("process wall (with imports)", [fmt(first.process_s) for first, _ in results])
    line("peak RSS (MB)", [fmt(first.peak_rss / 1e6, 0) for first, _ in results])
    line("no-op re-run: job wall", [fmt(noop.wall_s if noop else None, 3)
                                    for _, noop in results])
    line("no-op re-run: peak RSS (MB)", [fmt(noop.peak_rss / 1e6 if noop else None, 0)
                                         for _, noop in results])
    line("status", [first.status if first.status != "ok" or noop is None
                    else noop.status for first, noop in results])
    for first, noop in results:
        for run in (first, noop):
            if run is not None and (run.status != "ok" or run.message):
                where = f"; it was in {run.running}" if run.running else ""
                finished = ", ".join(s for s in chain if s in run.seconds) or "none"
                print(f"  {run.rows:,} {run.kind}: {run.status}{where}; finished: {finished}"
                      + (f"; {run.message}" if run.message else ""))

    if len(results) > 1:
        print("\ngrowth per stage between consecutive sizes (seconds ÷ seconds)")
        pairs = list(zip(results, results[1:], strict=False))
        print(f"{'':<28}" + "".join(f"{f'{a.rows:,}→{b.rows:,}':>{width * 2}}"
                                    for (a, _), (b, _) in pairs))
        for stage in [*chain, "total"]:
            cells = [fmt(ratio(stage_seconds(b, stage), stage_seconds(a, stage)))
                     for (a, _), (b, _) in pairs]
            print(f"{stage:<28}" + "".join(f"{c:>{width * 2}}" for c in cells))
        cells = [fmt(ratio(per_epoch(b), per_epoch(a))) for (a, _), (b, _) in pairs]
        print(f"{'trained_weights per epoch':<28}" + "".join(f"{c:>{width * 2}}"
                                                            for c in cells))

    print("\ntargets")
    for first, _ in results:
        t = first.seconds.get("trained_weights")
        card = ratio(first.seconds.get("model_card"), t)
        ingest = (sum(first.seconds[s] for s in INGEST)
                  if all(s in first.seconds for s in INGEST) else None)
        print(f"  {first.rows:>12,} rows: model_card ÷ trained_weights = {fmt(card)} "
              f"(target ≤ {CARD_TARGET}, named at 3M; {verdict(card, CARD_TARGET)})")
        print(f"  {first.rows:>12,} rows: validation ÷ trained_weights = "
              f"{fmt(ratio(ingest, t))} (target ≤ {INGEST_TARGET}; "
              f"{verdict(ratio(ingest, t), INGEST_TARGET)})")
    for (a, _), (b, _) in zip(results, results[1:], strict=False):
        target = GROWTH_TARGET_PER_ROW_GROWTH * b.rows / a.rows
        for stage in chain:
            g = ratio(b.seconds.get(stage), a.seconds.get(stage))
            print(f"  growth {a.rows:,}→{b.rows:,} {stage}: {fmt(g)} (target ≤ {target:.1f}"
                  f" = {GROWTH_TARGET_PER_ROW_GROWTH} × rows growth; {verdict(g, target)})")
    base = results[0][1]
    for first, noop in results:
        r = ratio(noop.wall_s if noop else None, base.wall_s if base else None)
        print(f"  no-op re-run {first.rows:,} ÷ {results[0][0].rows:,}: {fmt(r)} "
              f"(target ≤ {NOOP_TARGET}; {verdict(r, NOOP_TARGET)})")
    for first, noop in results:
        peak = max(first.peak_rss, noop.peak_rss if noop else 0.0)
        limit = RSS_TARGETS.get(first.rows)
        said = (f"target ≤ {limit / 1e9:.0f} GB; {verdict(peak, limit)}" if limit
                else "no target at this size")
        print(f"  peak RSS {first.rows:,} rows: {peak / 1e9:.2f} GB ({said})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("--rows", default=DEFAULT_ROWS,
                        help=f"comma-separated sizes in rows (default {DEFAULT_ROWS})")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder holding UCI Adult's adult.csv (default: the folder of "
                        "TIDELINE_ADULT_CSV, else ../shared/data)")
    parser.add_argument("--work", type=Path, default=REPO / ".tideline" / "bench" / "scale",
                        help="where generated data (kept) and run states (fresh) go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=4 * 3600,
                        help="seconds each run of the job may take before it is stopped and "
                        "reported where it was (default 14400)")
    parser.add_argument("--threads", type=int, default=1, help="TIDELINE_THREADS (default 1)")
    parser.add_argument("--epochs-from", metavar="ROWS:EPOCHS[,ROWS:EPOCHS]", default="",
                        help="cap training.epochs at EPOCHS for sizes of ROWS and more (e.g. "
                        "3000000:2,30000000:1): the spec's 40 epochs take hours at millions "
                        "of rows on a small machine; the report shows the cap per size")
    parser.add_argument("--child", nargs=2, metavar=("SPEC", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(Path(args.child[0]), Path(args.child[1]))

    import yaml

    source = args.data / "adult.csv"
    if not source.is_file():
        print(f"error: {source}: UCI Adult's adult.csv is not there; pass --data FOLDER "
              "holding it (or set TIDELINE_ADULT_CSV)", file=sys.stderr)
        return 2
    try:
        sizes = sorted({int(r.replace("_", "")) for r in args.rows.split(",") if r.strip()})
    except ValueError:
        print(f"error: --rows {args.rows!r}: give sizes as whole numbers separated by "
              "commas, such as 30000,300000", file=sys.stderr)
        return 2
    spec = yaml.safe_load((REPO / "datasets" / f"{MODEL}.yaml").read_text())
    caps = sorted(tuple(map(int, c.split(":"))) for c in args.epochs_from.split(",")
                  if c.strip())
    work = args.work.resolve()
    results: list[tuple[Run, Run | None]] = []
    for rows in sizes:
        print(f"\n== {rows:,} rows", flush=True)
        csv_path = generate(source, spec, rows, args.seed, data_file(work, rows, args.seed))
        epochs = next((e for r, e in reversed(caps) if rows >= r), None)
        if epochs is not None:
            print(f"training.epochs capped at {epochs} (--epochs-from)", flush=True)
        results.append(run_size(rows, csv_path, work, args.seed, args.time_limit,
                                args.threads, epochs))
    report(results)
    out = work / "results" / f"scale-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([[asdict(f), asdict(n) if n else None] for f, n in results],
                              indent=1))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
