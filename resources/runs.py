"""Release dead runs: runs whose worker process is gone are marked ended and their pool slots freed.

A run worker killed outright (SIGKILL, out of memory, a closed laptop) writes no end event:
the run stays ``STARTED`` in the instance forever and the concurrency slots its steps
claimed stay claimed. With the ``training`` pool limited to 1, one run killed during
``trained_weights`` would make every later training wait with no end and no message,
and marking the run canceled by hand does not free the slot either (Dagster frees slots
of ended runs only in its daemon, after ``free_slots_after_run_end_seconds``).

:func:`release_dead_runs` finds, for every run in progress (and every ended run still
holding or queued for a slot), the process that executes it: the ``pid`` of the run's
``RUN_START`` event (for a launched run still ``STARTING``, of its "Started process for
run" event). When that process no longer exists, or, for a run tagged with its worker's
identity (:data:`WORKER_TAG`: boot id, pid, start ticks), the pid now belongs to another
process (pid reuse, a reboot), the run is marked failed (a
``CANCELING`` run: canceled) with the message "process <pid> on <host> is gone" and
``instance.event_log_storage.free_concurrency_slots_for_run`` frees its claimed slots and
queued claims. Only runs known to have run on this host are judged: those tagged with
:data:`HOST_TAG` naming this host, and untagged ones on a SQLite instance with the default
run launcher (one machine by construction). Runs on Kubernetes or on other hosts are left
to Dagster's run monitoring (``run_monitoring`` in ``dagster.yaml``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

# The tag naming the host a run executes on; runs tagged with another host are not judged.
HOST_TAG = "tideline/host"
# The tag identifying the run's worker process exactly: "<boot id>:<pid>:<start ticks>".
WORKER_TAG = "tideline/worker"

_IN_PROGRESS = (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.CANCELING)
_ENDED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
          dg.DagsterRunStatus.CANCELED)


@dataclass(frozen=True)
class RunWorker:
    """The process that executes a run, as the run's event log records it."""

    pid: int
    host: str
    seen_at: float  # timestamp of the first event that process wrote for the run
    identity: str | None = None  # "<boot id>:<pid>:<start ticks>" from the run's worker tag


@dataclass(frozen=True)
class ReleasedRun:
    """A run found without its process, and what releasing it did."""

    run_id: str
    job_name: str
    status: str  # the run's status when found: STARTED, STARTING, CANCELING or an ended one
    marked: str | None  # the status it was given (FAILURE, CANCELED), None if it had ended
    reason: str  # "process <pid> on <host> is gone"
    pools: tuple[str, ...]  # the pools whose slots it held or was queued for, now freed

    def describe(self) -> str:
        """One line for logs: which run, what was done, why."""
        done = f"marked {self.marked}" if self.marked else f"already {self.status}"
        freed = f"; freed its slot in pool {', '.join(self.pools)}" if self.pools else ""
        return (f"released run {self.run_id} of {self.job_name} ({self.status}, {done}): "
                f"{self.reason}{freed}")


def this_host() -> str:
    return socket.gethostname()


def host_tags() -> dict[str, str]:
    """Run tags naming this host and this process as the run's worker.

    Pass them when launching in process; a step may add them to its own run. The worker tag
    (boot id, pid, start time in clock ticks after boot) identifies the process exactly,
    with no wall clock involved, so a reused pid is never mistaken for the worker and a
    clock step never makes a live worker look new.
    """
    tags = {HOST_TAG: this_host()}
    identity = process_identity(os.getpid())
    if identity is not None:
        tags[WORKER_TAG] = identity
    return tags


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """Process ``pid``'s start in clock ticks after boot; None when it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of proc(5)


def process_identity(pid: int) -> str | None:
    """``<boot id>:<pid>:<start ticks>`` of a live process (None without ``/proc``)."""
    if not Path("/proc/self/stat").exists():
        return None
    ticks = _start_ticks(pid)
    return None if ticks is None else f"{_boot_id()}:{pid}:{ticks}"


def process_exists(pid: int) -> bool:
    if Path("/proc/self/stat").exists():
        return _start_ticks(pid) is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_alive(worker: RunWorker) -> bool:
    """Whether the run's worker process still exists.

    With the worker's recorded identity the answer is exact (same boot, same pid, same
    start). Without it, a process with the pid counts as the worker: a reused pid can keep a
    dead run for longer, but a live worker is never taken for dead.
    """
    if worker.identity is not None:
        boot, _, ticks = worker.identity.rsplit(":", 2)
        return boot == _boot_id() and str(_start_ticks(worker.pid)) == ticks
    return process_exists(worker.pid)


def run_worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunWorker | None:
    """The process executing ``run`` per its event log; None when none has started yet.

    The newest ``RUN_START`` event's pid (``DagsterEvent.pid``, written by the process that
    runs the job: the in-process caller, or the run worker a launcher started); for a
    launched run not started yet, the "Started process for run" engine event of its worker.
    """
    found = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_START,
                                         ascending=False, limit=1).records
    if not found:
        engine = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, ascending=False,
            limit=50).records
        found = [r for r in engine
                 if (r.event_log_entry.user_message or "").startswith("Started process for run")]
    for record in found[:1]:
        entry = record.event_log_entry
        pid = entry.dagster_event.pid if entry.dagster_event else None
        if pid is not None:
            tagged = run.tags.get(WORKER_TAG)
            identity = tagged if tagged and tagged.rsplit(":", 2)[1] == str(pid) else None
            return RunWorker(pid=pid, host=run.tags.get(HOST_TAG, this_host()),
                             seen_at=entry.timestamp, identity=identity)
    return None


def judged_here(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether this host can tell if ``run``'s process is alive.

    True for a run tagged with this host; for an untagged one only on a SQLite instance with
    the default run launcher (whose runs all execute on the machine holding the files).
    """
    host = run.tags.get(HOST_TAG)
    if host is not None:
        return host == this_host()
    local_storage = "sqlite" in type(instance.run_storage).__module__
    return local_storage and isinstance(instance.run_launcher, dg.DefaultRunLauncher)


def _slot_holders(instance: dg.DagsterInstance) -> dict[str, set[str]]:
    """Pools by run id, for every run holding a slot or queued for one."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    holders: dict[str, set[str]] = {}
    keys = sorted(storage.get_concurrency_keys())
    for key, info in storage.get_concurrency_infos(keys).items():
        for slot in info.claimed_slots:
            holders.setdefault(slot.run_id, set()).add(key)
        for step in info.pending_steps:
            holders.setdefault(step.run_id, set()).add(key)
    for run_id in storage.get_concurrency_run_ids():
        holders.setdefault(run_id, set())
    return holders


def release_dead_runs(instance: dg.DagsterInstance,
                      log: Callable[[str], object] = print) -> list[ReleasedRun]:
    """Mark runs whose process is gone as failed and free their concurrency slots.

    Args:
        instance: The Dagster instance.
        log: Called with one line per released run.

    Returns:
        The runs released, oldest first (empty when every run's process is alive).
    """
    holders = _slot_holders(instance)
    records = list(instance.get_run_records(filters=dg.RunsFilter(statuses=list(_IN_PROGRESS))))
    seen = {r.dagster_run.run_id for r in records}
    ended = [run_id for run_id in holders if run_id not in seen]
    if ended:
        records += instance.get_run_records(
            filters=dg.RunsFilter(run_ids=ended, statuses=list(_ENDED)))
    released = []
    for record in sorted(records, key=lambda r: r.create_timestamp):
        run = record.dagster_run
        if not judged_here(instance, run):
            continue
        worker = run_worker(instance, run)
        if worker is None or worker_alive(worker):
            continue
        item = _release(instance, run, worker, holders.get(run.run_id))
        if item is not None:
            log(item.describe())
            released.append(item)
    return released


def _release(instance: dg.DagsterInstance, run: dg.DagsterRun, worker: RunWorker,
             pools: set[str] | None) -> ReleasedRun | None:
    reason = f"process {worker.pid} on {worker.host} is gone"
    current = instance.get_run_by_id(run.run_id)
    if current is None or current.status != run.status:
        return None  # changed meanwhile (it ended, or another check released it)
    marked = None
    if run.status == dg.DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, reason)
        marked = dg.DagsterRunStatus.CANCELED.value
    elif run.status in _IN_PROGRESS:
        instance.report_run_failed(run, reason)
        marked = dg.DagsterRunStatus.FAILURE.value
    elif pools is None:
        return None
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return ReleasedRun(run_id=run.run_id, job_name=run.job_name, status=run.status.value,
                       marked=marked, reason=reason, pools=tuple(sorted(pools or ())))
