"""Which device training uses, decided without importing torch (it enters recipe keys)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def training_device() -> str:
    """``TIDELINE_DEVICE``: ``auto`` (CUDA when a driver is loaded), ``cpu`` or ``cuda``."""
    requested = os.environ.get("TIDELINE_DEVICE", "auto")
    if requested != "auto":
        return requested
    return "cuda" if Path("/proc/driver/nvidia/version").exists() else "cpu"


def gpu_name(device: str) -> str | None:
    """The name torch reports for a CUDA ``device`` (``cuda``, ``cuda:1``); None for the CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    return str(torch.cuda.get_device_name(torch.device(device)))


def driver_gpu_name() -> str | None:
    """The first GPU's name as the NVIDIA driver reports it, without torch; None without one.

    For processes that run ONNX Runtime on CUDA and import no torch (the service).
    """
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.splitlines() if line.strip()]
    return names[0] if names else None
