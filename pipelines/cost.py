"""What a run's hardware is and what its compute cost, from the prices the user gives.

Prices come from the spec's ``cost`` section, else from the environment
(``TIDELINE_PRICE_CPU_CORE_HOUR``, ``TIDELINE_PRICE_GPU_HOUR`` as ``name=price,...``). A
cost is measured seconds times the price: CPU seconds the process used (user + system)
per core-hour, GPU wall seconds per GPU-hour of the device's name.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.spec import CostSpec


@dataclass(frozen=True)
class Hardware:
    """Where something ran: the CPU model and its cores, and the GPU when one was used."""

    cpu_model: str
    cpu_cores: int
    gpu: str | None = None

    def label(self) -> str:
        """A short, bounded label (a metric label value): the GPU's name, else the CPU's."""
        return self.gpu or f"cpu: {self.cpu_model}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hardware:
        return cls(str(data["cpu_model"]), int(data["cpu_cores"]), data.get("gpu") or None)


@dataclass(frozen=True)
class Prices:
    """Prices per CPU core-hour and per GPU-hour (by device name), in ``currency``."""

    cpu_core_hour: float = 0.0
    gpu_hour: dict[str, float] = field(default_factory=dict)
    currency: str = "USD"

    def gpu_price(self, device: str | None) -> float:
        """The GPU-hour price of a device: an exact name, else a listed name inside it."""
        if not device:
            return 0.0
        if device in self.gpu_hour:
            return self.gpu_hour[device]
        for name, price in sorted(self.gpu_hour.items(), key=lambda kv: -len(kv[0])):
            if name.lower() in device.lower():
                return price
        return 0.0


@dataclass(frozen=True)
class Cost:
    """A measured cost: the seconds, the hardware and the price they came to."""

    cpu_seconds: float
    gpu_seconds: float
    hardware: Hardware
    amount: float
    currency: str

    def to_json(self) -> dict[str, Any]:
        return {"cpu_seconds": round(self.cpu_seconds, 3),
                "gpu_seconds": round(self.gpu_seconds, 3),
                "hardware": self.hardware.to_json(), "amount": round(self.amount, 6),
                "currency": self.currency}

    @classmethod
    def from_json(cls, data: Any) -> Cost | None:
        """A cost as :meth:`to_json` wrote it; ``None`` for anything else (an older record)."""
        try:
            return cls(float(data["cpu_seconds"]), float(data["gpu_seconds"]),
                       Hardware.from_json(data["hardware"]), float(data["amount"]),
                       str(data["currency"]))
        except (KeyError, TypeError, ValueError):
            return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware(device: str | None = None) -> Hardware:
    """This machine's hardware; ``device`` is the GPU's name when one was used."""
    return Hardware(cpu_model=cpu_model(), cpu_cores=os.cpu_count() or 1, gpu=device or None)


def prices(spec: CostSpec | None = None) -> Prices:
    """The spec's prices, else the environment's, else zero (costs then read 0)."""
    if spec is not None and (spec.cpu_core_hour or spec.gpu_hour):
        return Prices(spec.cpu_core_hour, dict(spec.gpu_hour), spec.currency)
    gpus: dict[str, float] = {}
    for part in os.environ.get("TIDELINE_PRICE_GPU_HOUR", "").split(","):
        if not part.strip():
            continue
        name, _, price = part.rpartition("=")
        gpus[name.strip() or part.strip()] = _price("TIDELINE_PRICE_GPU_HOUR", part.strip(),
                                                    price if name.strip() else "")
    return Prices(_price("TIDELINE_PRICE_CPU_CORE_HOUR",
                         os.environ.get("TIDELINE_PRICE_CPU_CORE_HOUR", ""),
                         os.environ.get("TIDELINE_PRICE_CPU_CORE_HOUR") or "0"), gpus,
                  os.environ.get("TIDELINE_PRICE_CURRENCY") or "USD")


class PriceError(ValueError):
    """A price in the environment that is not a non-negative number (names the variable)."""


def _price(variable: str, entry: str, text: str) -> float:
    """``text`` as a price; a one-line error naming ``variable`` and ``entry`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        example = ("name=price,... (e.g. H100=2.5,A10G=1.0)"
                   if variable.endswith("GPU_HOUR") else "a number (e.g. 0.05)")
        raise PriceError(f"{variable}: {entry!r} is not a price; rule: {example}, not "
                         "negative; fix the variable or unset it")
    return value


def cost(cpu_seconds: float, gpu_seconds: float, where: Hardware, price: Prices) -> Cost:
    """The cost of ``cpu_seconds`` of CPU time and ``gpu_seconds`` on ``where``'s GPU."""
    amount = (cpu_seconds / 3600 * price.cpu_core_hour
              + gpu_seconds / 3600 * price.gpu_price(where.gpu))
    return Cost(cpu_seconds, gpu_seconds, where, amount, price.currency)


def process_cpu_seconds() -> float:
    """CPU seconds (user + system) this process and its finished children have used."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system
