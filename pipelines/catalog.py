"""The models of one Tideline instance: every dataset spec in the datasets folder.

Each spec is loaded once per call of :func:`load_catalog`; a spec that fails to load is
kept as an error (file and message) and never stops the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.spec import DatasetSpec, SpecError

# Each model's assets, by stage name (its asset keys are ``<model>/<stage>``).
CHAIN = ("raw_data", "validated_features", "trained_weights", "quantized_weights", "model_card",
         "deployment")
MONITORING = ("production_batches", "drift_report", "production_performance")
# Model names whose jobs or sensors would clash with the store-wide ones, and why.
RESERVED = {"store": "store_alert_sensor", "invalid_specs": "invalid_specs/<file> assets"}
# Stages whose results are memoized artifacts in the store (what gc keeps and verify reads).
MEMOIZED = ("raw_data", "validated_features", "trained_weights", "quantized_weights",
            "model_card", "drift_report", "production_performance", "batch_predictions")


@dataclass(frozen=True)
class CatalogEntry:
    """One loaded spec: a model of this instance."""

    name: str
    path: Path
    spec: DatasetSpec


@dataclass(frozen=True)
class CatalogError:
    """A spec file that could not be loaded, with its one-line reason."""

    path: Path
    message: str


@dataclass(frozen=True)
class Catalog:
    entries: tuple[CatalogEntry, ...]
    errors: tuple[CatalogError, ...]

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def get(self, name: str) -> CatalogEntry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        broken = [e.message for e in self.errors if e.path.stem == name]
        if broken:
            raise SpecError(broken[0])
        raise SpecError(f"no model named {name!r}; the models here are "
                        f"{', '.join(self.names) or '(none)'}: pass one of them as MODEL=name")

    def pick(self, name: str | None = None) -> CatalogEntry:
        """The model a command acts on: ``name``, else the only one, else ``demo.yaml``'s."""
        if name:
            return self.get(name)
        if len(self.entries) == 1:
            return self.entries[0]
        demo = [e for e in self.entries if e.path.stem == "demo" or e.name == "demo"]
        if demo:
            return demo[0]
        if not self.entries:
            problems = f" ({self.errors[0].message})" if self.errors else ""
            raise SpecError(f"no dataset spec loaded{problems}; put a spec in the datasets "
                            "folder (TIDELINE_DATASETS) or name one with TIDELINE_SPEC")
        raise SpecError(f"there are {len(self.entries)} models ({', '.join(self.names)}); "
                        "say which with MODEL=name")


def load_catalog(files: list[Path] | None = None) -> Catalog:
    """Load every spec file (default: :func:`pipelines.paths.spec_files`).

    Two files with the same ``name`` are an error for the second one: a model's asset
    keys, memo table and deployment history are named after it.
    """
    from pipelines.paths import spec_files
    from pipelines.spec import load_spec

    entries: list[CatalogEntry] = []
    errors: list[CatalogError] = []
    for path in spec_files() if files is None else files:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            errors.append(CatalogError(Path(path), str(exc)))
            continue
        if spec.name in RESERVED:
            errors.append(CatalogError(Path(path), (
                f"dataset spec {path}: name {spec.name!r} is reserved (the store-wide "
                f"{RESERVED[spec.name]} would clash with this model's); give the spec "
                "another name")))
            continue
        taken = next((e for e in entries if e.name == spec.name), None)
        if taken is not None:
            errors.append(CatalogError(Path(path), (
                f"dataset spec {path}: name {spec.name!r} is already used by {taken.path}; "
                "give each spec its own name (asset keys and histories are named after it)")))
            continue
        entries.append(CatalogEntry(spec.name, Path(path), spec))
    return Catalog(tuple(entries), tuple(errors))


def selected_spec(name: str | None = None) -> DatasetSpec:
    """The spec of the model a command acts on.

    ``name``, else ``TIDELINE_MODEL`` (what ``make … MODEL=name`` sets), else the only
    model, else the demo.
    """
    import os

    return load_catalog().pick(name or os.environ.get("TIDELINE_MODEL") or None).spec
