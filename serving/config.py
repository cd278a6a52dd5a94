"""The service's settings, read from the environment when the app is created.

Every model of the instance (``pipelines.catalog.load_catalog()``: each spec of the
datasets folder, or ``TIDELINE_SPEC`` alone) gets a :class:`ModelConfig` from its spec's
columns, labels, ``serving`` and ``deployment.canary`` sections; where things live is
service-wide. Nothing is read at import.

Environment:
    TIDELINE_HOME: state folder (store, production log, API keys), default ``.tideline``.
    TIDELINE_DATASETS: the folder of dataset specs, default ``datasets/``; every spec there
        is a model this service serves once it is deployed.
    TIDELINE_SPEC: one dataset spec (name or path) served alone instead of the folder.
    TIDELINE_DEFAULT_MODEL: the model ``POST /predict`` answers for (default: the only
        model, else ``demo``).
    TIDELINE_STORE: artifact store root (folder or fsspec URL), default ``$TIDELINE_HOME/store``.
    TIDELINE_API_KEYS: hashed API keys file, default ``$TIDELINE_HOME/serving/api_keys.json``.
    TIDELINE_REDIS_URL: Redis for rate limits and canary counts shared by workers; unset
        means in-process memory (right for one worker only).
    TIDELINE_PRODUCTION_DIR: root of the production-batch stores, default
        ``$TIDELINE_HOME/production``; each model logs its predictions under ``<root>/<model>``.
    TIDELINE_POLL_S: how often each deployment head is polled, default 0.2 s.
    TIDELINE_BATCHING: ``0`` turns micro-batching off (one inference call per request).
    TIDELINE_PRICE_CPU_CORE_HOUR, TIDELINE_PRICE_GPU_HOUR, TIDELINE_PRICE_CURRENCY: prices
        of inference for models whose spec has no ``cost`` section (`pipelines.cost`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.cost import Prices, prices
from pipelines.spec import CanarySpec, ServingSpec

if TYPE_CHECKING:
    from pipelines.catalog import Catalog, CatalogError
    from pipelines.spec import DatasetSpec


@dataclass(frozen=True)
class ModelConfig:
    """One model's serving settings, from its dataset spec."""

    name: str
    spec_path: Path
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    # Allowed values of each categorical column the spec lists them for.
    categories: tuple[tuple[str, tuple[str, ...]], ...]
    positive_label: str
    negative_label: str
    production_dir: Path
    serving: ServingSpec
    canary: CanarySpec
    # What inference costs: the spec's `cost` section, else the environment's prices.
    prices: Prices = field(default_factory=Prices)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    def categories_of(self, column: str) -> tuple[str, ...] | None:
        return dict(self.categories).get(column)

    @classmethod
    def from_spec(cls, spec: DatasetSpec, path: Path, production_dir: Path) -> ModelConfig:
        positive, negative = spec.target.label_names()
        return cls(
            name=spec.name, spec_path=path, numeric=tuple(spec.numeric_columns),
            categorical=tuple(spec.categorical_columns),
            categories=tuple((c, tuple(s.categories)) for c, s in spec.columns.items()
                             if s.categories is not None),
            positive_label=positive, negative_label=negative,
            production_dir=production_dir, serving=spec.serving,
            canary=spec.deployment.canary, prices=prices(spec.cost))


@dataclass(frozen=True)
class ServiceConfig:
    models: tuple[ModelConfig, ...]
    # The model POST /predict answers for; None when none can be picked (see default_problem).
    default_model: str | None
    default_problem: str | None
    spec_errors: tuple[CatalogError, ...]  # spec files not served, and why
    store_root: str
    api_keys: Path
    redis_url: str | None
    poll_s: float = 0.2
    batching: bool = True

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    @classmethod
    def from_env(cls, catalog: Catalog | None = None) -> ServiceConfig:
        from pipelines.catalog import load_catalog
        from pipelines.paths import model_production_dir, state_dir, store_root
        from pipelines.spec import SpecError

        state = state_dir()
        catalog = catalog if catalog is not None else load_catalog()
        models = tuple(ModelConfig.from_spec(e.spec, e.path, model_production_dir(state, e.name))
                       for e in catalog.entries)
        default, problem = None, None
        try:
            default = catalog.pick(os.environ.get("TIDELINE_DEFAULT_MODEL") or None).name
        except SpecError as exc:
            problem = str(exc).replace("MODEL=name", "TIDELINE_DEFAULT_MODEL=name")
        return cls(
            models=models, default_model=default, default_problem=problem,
            spec_errors=catalog.errors,
            store_root=store_root(state),
            api_keys=Path(os.environ.get("TIDELINE_API_KEYS",
                                         state / "serving" / "api_keys.json")),
            redis_url=os.environ.get("TIDELINE_REDIS_URL") or None,
            poll_s=float(os.environ.get("TIDELINE_POLL_S", "0.2")),
            batching=os.environ.get("TIDELINE_BATCHING", "1") != "0",
        )
