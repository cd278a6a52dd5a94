"""What the monitoring stages report, as the drift sensor and the drift demo read it.

``drift_report`` and ``production_performance`` put their verdicts in their
materialization metadata (plain values: the sensor must not load the reports themselves).
These records are the one place that metadata is parsed back: callers pass the metadata
values (``{name: value}``) of the latest materialization. No heavy import: the sensor
runs this on every tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def _required(metadata: Mapping[str, Any], asset: str, name: str) -> Any:
    if name not in metadata:
        raise ValueError(
            f"the latest {asset} materialization has no {name!r} metadata (it has "
            f"{sorted(metadata)}); it was not written by the {asset} stage: materialize "
            f"{asset} again")
    return metadata[name]


@dataclass(frozen=True)
class DriftSummary:
    """A drift report's verdict on one production batch."""

    drift_score: float
    drift_threshold: float
    drifted: bool
    drifted_columns: tuple[str, ...] = ()
    batch: str | None = None  # the production batch's fingerprint
    content_hash: str | None = None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> DriftSummary:
        """Raises: ValueError: a required field is missing (one line naming it)."""
        batch = metadata.get("batch")
        content_hash = metadata.get("content_hash")
        return cls(
            drift_score=float(_required(metadata, "drift_report", "drift_score")),
            drift_threshold=float(_required(metadata, "drift_report", "drift_threshold")),
            drifted=bool(metadata.get("drifted", False)),
            drifted_columns=tuple(str(c) for c in metadata.get("drifted_columns") or ()),
            batch=None if batch is None else str(batch),
            content_hash=None if content_hash is None else str(content_hash))


@dataclass(frozen=True)
class PerformanceSummary:
    """Production performance on labelled rows, against the spec's floor."""

    below_floor: bool
    floor_failures: tuple[str, ...] = ()  # one phrase per metric under its floor
    content_hash: str | None = None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> PerformanceSummary:
        """Raises: ValueError: a required field is missing (one line naming it)."""
        content_hash = metadata.get("content_hash")
        return cls(
            below_floor=bool(_required(metadata, "production_performance", "below_floor")),
            floor_failures=tuple(str(f) for f in metadata.get("floor_failures") or ()),
            content_hash=None if content_hash is None else str(content_hash))


@dataclass(frozen=True)
class DeploymentOutcome:
    """What one deployment step did, as its materialization metadata says it.

    Written by the ``deployment`` asset (:meth:`to_metadata`) and read back by the
    commands that report on a run (:meth:`from_metadata`): one definition of its fields.
    """

    model: str
    outcome: str  # deployed | unchanged | rejected
    version: str
    stable_version: str
    canary_version: str
    history_entry: int
    role: str | None = None  # stable | canary, unless rejected
    edge_bundle: str | None = None
    edge_variant: str | None = None  # the variant in the edge bundle (int8, fp16 or fp32)
    edge_bytes: int | None = None
    reason: str | None = None  # why the gate rejected it
    repaired: str | None = None  # what a killed earlier run had left out of line
    lakefs_tag: str | None = None
    lakefs_commit: str | None = None

    def to_metadata(self) -> dict[str, Any]:
        """Plain values, leaving out the fields that do not apply."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> DeploymentOutcome:
        """Raises: ValueError: a required field is missing (one line naming it)."""
        required = ("model", "outcome", "version", "stable_version", "canary_version",
                    "history_entry")
        values = {name: _required(metadata, "deployment", name) for name in required}
        optional = {name: metadata[name] for name in cls.__dataclass_fields__
                    if name not in values and metadata.get(name) is not None}
        return cls(**values, **optional)
