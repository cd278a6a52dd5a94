"""The memory budget: how much data a stage may hold at once, and batch sizes from it.

Stages read, validate, score and train in batches whose size comes from the budget, and
every stage gives the same result whatever the batch size, so the budget changes how
much memory a run takes, never what it produces (it enters no recipe key).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.spec import DatasetSpec

# The budget's environment override (bytes or a size such as "4GB").
BUDGET_ENV = "TIDELINE_MEMORY_BUDGET"
# Batches larger than this many rows buy no speed, only memory.
MAX_BATCH_ROWS = 200_000
# Fewer rows than this per batch would spend more on per-batch overhead than on data.
MIN_BATCH_ROWS = 64


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its container's limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max",
                       "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            return int(text)
    return total


def parse_size(text: str | int) -> int:
    """Bytes of a size given as an integer or a string such as ``"512MiB"`` or ``"4GB"``."""
    from pydantic import ByteSize, TypeAdapter

    return int(TypeAdapter(ByteSize).validate_python(text))


def memory_budget(spec: DatasetSpec | None = None) -> int:
    """The bytes of data a stage may hold.

    ``resources.memory_budget``, else the ``TIDELINE_MEMORY_BUDGET`` environment
    variable, else half of the machine's memory.
    """
    if spec is not None and spec.resources.memory_budget is not None:
        return int(spec.resources.memory_budget)
    if os.environ.get(BUDGET_ENV):
        try:
            return parse_size(os.environ[BUDGET_ENV])
        except ValueError:
            raise ValueError(f"{BUDGET_ENV}={os.environ[BUDGET_ENV]!r} is not a size; give "
                             "bytes or a size such as 4GB or 512MiB") from None
    return machine_memory() // 2


def batch_rows(budget: int, bytes_per_row: float, *, share: float = 0.1) -> int:
    """Rows per batch so that ``share`` of the budget holds one batch.

    Args:
        budget: The memory budget in bytes.
        bytes_per_row: What one row costs in memory at the stage's widest point.
        share: The part of the budget one batch may take (the rest goes to what the
            stage keeps across batches and to the libraries it calls).
    """
    rows = int(budget * share / max(bytes_per_row, 1.0))
    return max(MIN_BATCH_ROWS, min(MAX_BATCH_ROWS, rows))


def release_memory() -> None:
    """Give memory a finished stage freed back to the system.

    Arrow's memory pool and glibc's heap keep freed memory for reuse; in a run of
    several stages in one process that would add each stage's high-water mark to the
    next one's. Libraries not yet imported are left alone (a cache hit loads none).
    """
    import ctypes
    import gc

    gc.collect()
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        pass
