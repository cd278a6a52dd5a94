"""The terminal's view of a running chain: one line per stage, kept up to date.

:class:`ProgressDisplay` shows the stages :class:`cli.run_progress.RunProgress` follows:
on a terminal as a live table with a bar per stage (rich); elsewhere as plain lines, one
when a stage ends and a few while a long one runs (at each quarter of its trials, epochs
or rows), so a CI log stays short.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, TextIO

from cli.run_progress import RunEvent, RunProgress, StageView

# Plain lines: a running stage says how far it is at most once per quarter of a phase, and
# no sooner than this many seconds after its previous line (a quick stage waits for its end).
PLAIN_GAP_S = 5.0
# A pass whose total is unknown says how far it is at most this often.
PLAIN_OPEN_GAP_S = 30.0
BAR_WIDTH = 24


class PlainLines:
    """Plain lines: a line when a stage ends; a few while a long one runs."""

    def __init__(self, out: TextIO):
        self.out = out
        self._last: dict[str, tuple[float, str, int]] = {}  # name: (line at, phase, quarter)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def show(self, view: StageView) -> None:
        if view.state == "running":
            if not view.phase:
                return
            at, phase, quarter = self._last.get(view.name, (view.started, view.phase, 0))
            if phase != view.phase:
                quarter = 0
            waited = view.updated - at
            if view.total:
                now = int(4 * view.done / view.total)
                if not (quarter < now < 4 and waited >= PLAIN_GAP_S):
                    return
                quarter = now
            elif waited < PLAIN_OPEN_GAP_S:
                return
            self._last[view.name] = (view.updated, view.phase, quarter)
        print(view.line(), file=self.out, flush=True)


class LiveTable:
    """A table on the terminal, redrawn in place: a bar per running stage (rich)."""

    def __init__(self, out: TextIO, progress: RunProgress, lock: threading.RLock):
        from rich.console import Console
        from rich.live import Live

        self.progress, self.lock = progress, lock
        # Decided once: a step's captured output must not turn the table into a stream.
        self.console = Console(file=out, force_terminal=True, highlight=False)
        self.live = Live(console=self.console, get_renderable=self._render, refresh_per_second=4,
                         redirect_stdout=False, redirect_stderr=False, transient=False)

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()

    def show(self, view: StageView) -> None:
        pass  # the next refresh draws it

    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        now = time.time()
        views: list[tuple[str, str, tuple[float | None, float] | None, str, str]] = []
        with self.lock:
            for view in self.progress.views.values():
                cache = view.cache if view.cache not in ("", "-") else ""
                if view.state == "running":
                    # No total yet (a stage with no count): the bar pulses.
                    views.append((view.name, cache, (view.total or None, view.done),
                                  view.progress_text(), view.eta_text(now)))
                elif view.state == "done":
                    views.append((view.name, cache, (1.0, 1.0), view.summary,
                                  f"{view.seconds or 0.0:.2f} s"))
                else:
                    views.append((view.name, cache, None, view.summary, ""))
        # On a narrow terminal the bar, then the text (ending in an ellipsis), give way.
        fixed = sum(max((len(v[i]) for v in views), default=0) for i in (0, 1, 4)) + 2 * 4
        bar = max(8, min(BAR_WIDTH, self.console.width - fixed - 30))
        table = Table.grid(padding=(0, 2))
        for _ in range(3):
            table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis",
                         max_width=max(self.console.width - fixed - bar, 8))
        table.add_column(no_wrap=True, justify="right")
        for name, cache, done, text, right in views:
            shown = (Text("FAILED", style="bold red") if done is None else
                     ProgressBar(total=done[0], completed=done[1], width=bar))
            table.add_row(name, cache, shown, text, right)
        return table


def is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM", "") != "dumb"


class ProgressDisplay:
    """Shows a run's stages on ``out`` as its events arrive (events may come from a thread).

    Args:
        out: The stream for people (the terminal, or a pipe).
        live: A live table with bars (default: when ``out`` is a terminal), else plain lines.
    """

    def __init__(self, out: TextIO, live: bool | None = None):
        self.progress = RunProgress()
        self._lock = threading.RLock()
        live = is_terminal(out) if live is None else live
        self._renderer = (LiveTable(out, self.progress, self._lock) if live
                          else PlainLines(out))

    def __enter__(self) -> ProgressDisplay:
        self._renderer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._renderer.stop()

    def feed(self, events: list[RunEvent]) -> None:
        with self._lock:
            for event in events:
                for view in self.progress.feed(event):
                    self._renderer.show(view)
