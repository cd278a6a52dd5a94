"""The prediction log: every answered record, as Parquet files in the production-batch store.

Rows are buffered and flushed every ``flush_rows`` rows or ``flush_seconds`` seconds to
``<dir>/predictions/<UTC date>/<time>-<pid>-<seq>.parquet`` (written to a temporary name
and renamed, so a reader never sees half a file). Each worker writes its own files. After
a flush the oldest files beyond ``retention_files`` are deleted. Drift monitoring reads
these files; label files join them by ``request_id``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

LOG = logging.getLogger("tideline.serving")


class PredictionLog:
    def __init__(self, root: Path, *, flush_rows: int, flush_seconds: float,
                 retention_files: int):
        self.folder = root / "predictions"
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.retention_files = retention_files
        self._rows: list[dict[str, Any]] = []
        self._seq = 0
        self._task: asyncio.Task | None = None
        self._executor: Executor | None = None
        self._owned = False
        self.written = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        self._rows.extend(rows)

    def start(self, executor: Executor | None = None) -> None:
        """Start flushing in the background.

        Writes run on ``executor`` (one the service's models share) or on a thread of the
        log's own, never on the event loop: a slow disk must not hold up inference calls.
        """
        self._owned = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="predlog")
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waited = 0.0
            while len(self._rows) < self.flush_rows and waited < self.flush_seconds:
                await asyncio.sleep(0.05)
                waited += 0.05
            if self._rows:
                rows, self._rows = self._rows, []
                try:
                    await loop.run_in_executor(self._executor, self._write, rows)
                except Exception:  # logging must never take the service down
                    LOG.exception("could not write %d prediction log rows", len(rows))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._rows:
            rows, self._rows = self._rows, []
            self._write(rows)
        if self._task is not None and self._owned:
            self._executor.shutdown(wait=True)

    def _write(self, rows: list[dict[str, Any]]) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        now = dt.datetime.now(dt.UTC)
        folder = self.folder / now.strftime("%Y%m%d")
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = folder / f"{now.strftime('%H%M%S%f')}-{os.getpid()}-{self._seq:06d}.parquet"
        names = list(dict.fromkeys(k for r in rows for k in r))
        table = pa.table({n: [r.get(n) for r in rows] for n in names})
        tmp = path.with_name("." + path.name + ".tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)
        self.written += len(rows)
        self._retain()
        return path

    def _retain(self) -> None:
        files = sorted(self.folder.glob("*/*.parquet"))
        for old in files[: max(0, len(files) - self.retention_files)]:
            old.unlink(missing_ok=True)
        for day in self.folder.iterdir():
            if day.is_dir() and not any(day.iterdir()):
                day.rmdir()
