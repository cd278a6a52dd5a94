"""The terminal side of the command-line targets: progress, one-line errors, a log file.

Dagster's event stream, the Python logging of a run and library warnings go to a log
file under ``$TIDELINE_HOME/logs/``; the terminal gets a line per stage kept up to date
from the run's events (:mod:`cli.progress_display`) and, when something a user can fix
goes wrong, one line naming the file, field or column, the rule and what to do, with exit
status 2. ``VERBOSE=1`` shows everything the log file gets on the terminal too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from cli.run_progress import RunEvent

# Exit status of a run refused for a reason the user can fix (bad input, spec mistake).
USER_ERROR = 2


def verbose() -> bool:
    return os.environ.get("VERBOSE", "").strip() not in ("", "0", "false", "no")


class _Tee(io.TextIOBase):
    def __init__(self, *streams: TextIO):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


# The log file of the command run_command is running (None outside one).
_current_log: Path | None = None


def current_log() -> Path | None:
    """The log file this command's stderr, Dagster's log and warnings go to."""
    return _current_log


def log_path(state: Path, command: str) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    folder = state / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{command}-{stamp}-{os.getpid()}.log"


@contextlib.contextmanager
def logged_stderr(path: Path) -> Iterator[TextIO]:
    """Send stderr (Dagster's console logger, warnings, tracebacks) to ``path``.

    With ``VERBOSE=1`` the terminal sees it too. Yields the terminal's stderr, for the
    lines meant for people.
    """
    terminal = sys.stderr
    with open(path, "a", encoding="utf-8", buffering=1) as log:
        target: TextIO = _Tee(log, terminal) if verbose() else log  # type: ignore[assignment]
        with contextlib.redirect_stderr(target):
            yield terminal


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is the one line a user needs (no traceback)."""
    from pipelines.cost import PriceError
    from pipelines.deploy import DeployError
    from pipelines.ingest import InputError
    from pipelines.signing import SignatureError
    from pipelines.spec import SpecError

    return (SpecError, InputError, DeployError, SignatureError, PriceError)


def first_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[0] if lines else "failed without a message"


def _innermost(error: Any) -> Any:
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error


def step_failure_line(event: Any) -> str:
    """The one line a failed step gives: a ``dg.Failure``'s description, else its cause."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return first_line(data.user_failure_data.description)
    cause = _innermost(data.error)
    return first_line(cause.message if cause is not None else None)


# Messages Dagster logs per step that only repeat the failure above them.
_ENGINE_NOISE = ("Dependencies for step ",)


def run_events(record: Any) -> list[RunEvent]:
    """What one record of a run's event log means for the progress display."""
    from cli.run_progress import (
        Materialized,
        Planned,
        StageLog,
        StepEnded,
        StepStarted,
        stage_summary,
    )

    entry = record.event_log_entry
    event = entry.dagster_event
    step, at = entry.step_key or "", entry.timestamp
    if not step:
        return []
    if event is None:  # a stage's own log message (cache hit or miss, trials, epochs, rows)
        text = entry.user_message
        if entry.level < logging.INFO or text.startswith(_ENGINE_NOISE):
            return []
        return [StageLog(step, text, at)]
    if event.is_asset_materialization_planned and event.asset_key is not None:
        path = event.asset_key.path
        return [Planned(step, path[0], path[-1])]
    if event.is_step_start:
        return [StepStarted(step, at)]
    if event.is_step_success:
        return [StepEnded(step, at)]
    if event.is_step_failure:
        return [StepEnded(step, at, failure=step_failure_line(event))]
    if event.is_step_materialization:
        mat = event.step_materialization_data.materialization
        meta = {k: v.value for k, v in mat.metadata.items()}
        seconds = meta.get("seconds")
        return [Materialized(step, mat.asset_key.path[0], mat.asset_key.path[-1],
                             str(meta.get("cache", "-")),
                             float(seconds) if isinstance(seconds, (int, float)) else None,
                             stage_summary(meta), at)]
    return []


class ProgressWatcher:
    """Feeds a run's events to ``show`` while it executes (polls the instance's event log)."""

    def __init__(self, instance: Any, run_id: str, show: Callable[[list[RunEvent]], None],
                 interval_s: float = 0.3):
        self.instance, self.run_id, self.show = instance, run_id, show
        self.interval_s = interval_s
        self._cursor: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="progress")

    def __enter__(self) -> ProgressWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if not self._thread.is_alive():  # else it is still polling: one poller per cursor
            try:
                self.poll()  # whatever arrived after the last tick
            except Exception:  # progress is best effort: the run's own outcome comes next
                traceback.print_exc(file=sys.stderr)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # the run may not exist yet; progress is best effort
                traceback.print_exc(file=sys.stderr)

    def poll(self) -> None:
        while True:
            conn = self.instance.get_records_for_run(self.run_id, cursor=self._cursor,
                                                     limit=500)
            self.show([e for record in conn.records for e in run_events(record)])
            self._cursor = conn.cursor
            if not conn.has_more:
                return


class CommandFailed(Exception):
    """A command that ends with a message for people, and an exit status."""

    def __init__(self, message: str, code: int = USER_ERROR):
        super().__init__(message)
        self.code = code


def run_command(main: Callable[[], int], command: str) -> int:
    """Run a CLI entry point with stderr in a log file and errors said in one line.

    A user error (bad input, spec mistake, refused deployment) prints where the log is,
    then its one line, last, and exits 2; anything else does the same with exit status 1
    (the log has the traceback).
    """
    global _current_log
    from pipelines.paths import state_dir

    path = _current_log = log_path(state_dir(), command)
    with logged_stderr(path) as terminal:
        try:
            return main()
        except CommandFailed as exc:
            message, code = str(exc), exc.code
        except user_errors() as exc:
            traceback.print_exc(file=sys.stderr)
            message, code = first_line(str(exc)), USER_ERROR
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            message, code = f"{type(exc).__name__}: {first_line(str(exc))}", 1
        print(f"details: {path}", file=terminal)
        print(f"error: {message}", file=terminal)
        return code
