"""Which device training uses, decided without importing torch (it enters recipe keys)."""

from __future__ import annotations

import os
from pathlib import Path


def training_device() -> str:
    """``TIDELINE_DEVICE``: ``auto`` (CUDA when a driver is loaded), ``cpu`` or ``cuda``."""
    requested = os.environ.get("TIDELINE_DEVICE", "auto")
    if requested != "auto":
        return requested
    return "cuda" if Path("/proc/driver/nvidia/version").exists() else "cpu"
