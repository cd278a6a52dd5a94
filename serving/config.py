"""The service's settings, read from the environment when the app is created.

They are the dataset spec's ``serving`` and ``deployment`` sections plus where things
live; nothing is read at import.

Environment:
    TIDELINE_HOME: state folder (store, production log, API keys), default ``.tideline``.
    TIDELINE_SPEC: dataset spec name or path, default ``demo``.
    TIDELINE_STORE: artifact store root (folder or fsspec URL), default ``$TIDELINE_HOME/store``.
    TIDELINE_API_KEYS: hashed API keys file, default ``$TIDELINE_HOME/serving/api_keys.json``.
    TIDELINE_REDIS_URL: Redis for rate limits and canary counts shared by workers; unset
        means in-process memory (right for one worker only).
    TIDELINE_PRODUCTION_DIR: where predictions are logged, default
        ``$TIDELINE_HOME/production``.
    TIDELINE_POLL_S: how often the deployment head is polled, default 0.2 s.
    TIDELINE_BATCHING: ``0`` turns micro-batching off (one inference call per request).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.spec import CanarySpec, ServingSpec


@dataclass(frozen=True)
class ServiceConfig:
    model_name: str
    numeric: list[str]
    categorical: list[str]
    positive_label: str
    negative_label: str
    store_root: str
    api_keys: Path
    production_dir: Path
    redis_url: str | None
    serving: ServingSpec
    canary: CanarySpec
    poll_s: float = 0.2
    batching: bool = True

    @classmethod
    def from_env(cls) -> ServiceConfig:
        from pipelines.spec import load_spec
        from resources.settings import production_dir, spec_path, state_dir, store_root

        state = state_dir()
        spec = load_spec(spec_path())
        negative = [str(c) for c in spec.target.classes or [] if c != spec.target.positive]
        return cls(
            model_name=spec.name, numeric=spec.numeric_columns,
            categorical=spec.categorical_columns, positive_label=str(spec.target.positive),
            negative_label=negative[0] if len(negative) == 1 else f"not {spec.target.positive}",
            store_root=store_root(state),
            api_keys=Path(os.environ.get("TIDELINE_API_KEYS",
                                         state / "serving" / "api_keys.json")),
            production_dir=production_dir(state),
            redis_url=os.environ.get("TIDELINE_REDIS_URL") or None,
            serving=spec.serving, canary=spec.deployment.canary,
            poll_s=float(os.environ.get("TIDELINE_POLL_S", "0.2")),
            batching=os.environ.get("TIDELINE_BATCHING", "1") != "0",
        )
