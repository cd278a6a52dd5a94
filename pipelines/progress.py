"""Progress lines for long stages: at most one every few seconds, with rate and time left."""

from __future__ import annotations

import time
from collections.abc import Callable

# Seconds between progress lines.
EVERY_S = 5.0


class RowProgress:
    """Says how far a pass over ``total`` rows is (rows done, rate, time left).

    ``say`` gets at most one line every ``every_s`` seconds (default `EVERY_S`), so a
    pass shorter than that stays quiet.
    """

    def __init__(self, say: Callable[[str], None] | None, doing: str, total: int | None = None,
                 every_s: float | None = None):
        self.say, self.doing, self.total = say, doing, total
        self.every_s = EVERY_S if every_s is None else every_s
        self.start = self.last = time.perf_counter()
        self.rows = self.batches = 0

    def add(self, rows: int) -> None:
        """Count a batch of ``rows`` rows; report when the last line is old enough."""
        self.rows += rows
        self.batches += 1
        now = time.perf_counter()
        if self.say is None or now - self.last < self.every_s:
            return
        self.last = now
        rate = self.rows / max(now - self.start, 1e-9)
        done = f"{self.rows:,}" + (f" of {self.total:,}" if self.total else "")
        line = f"{self.doing}: {done} rows ({self.batches} batches, {rate:,.0f} rows/s"
        if self.total and rate > 0:
            line += f", about {max(self.total - self.rows, 0) / rate:,.0f} s left"
        self.say(line + ")")
