"""deployment: publish a model that passed the gate to the serving history and edge target.

Not memoized: it is the one stage whose effect is a change of state (the append-only
history), and it reads the gate verdict stored with the card itself, so a job that
selects only this stage cannot deploy a blocked model.
"""

from __future__ import annotations

from typing import Any

from pipelines import deploy
from pipelines.lakefs import is_lakefs, tag_deployment
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore
from pipelines.targets import edge_bundle, gate_verdict, model_entry, publish_edge


def publish(spec: DatasetSpec, store: ArtifactStore, *, tracking_uri: str, trained_weights: str,
            quantized_weights: str, model_card: str, actor: str | None = None,
            log: Any = None) -> dict[str, Any]:
    """Deploy (or record the rejection of) one candidate; returns what happened.

    Raises:
        EdgeBundleTooLarge: before anything is recorded, so a failed run changes nothing.
    """
    from pipelines.tracking import find_version

    say = log or (lambda message: None)
    state = deploy.current(store, spec.name)
    for role, live in (("stable", state.stable), ("canary", state.canary)):
        if live and live["trained_weights"] == trained_weights:
            # The nightly no-op path: no MLflow import, nothing written.
            say(f"version {live['version']} is already the {role} model")
            return {"outcome": "unchanged", "role": role, "version": live["version"],
                    "edge": _edge_folder(spec, live["version"]), "edge_bytes": None,
                    "state": state.to_dict()}
    version = find_version(tracking_uri, spec.name, trained_weights)
    model = model_entry(store, version=version, trained_weights=trained_weights,
                        quantized_weights=quantized_weights, model_card=model_card)
    verdict = gate_verdict(store, model_card)
    if not verdict["passed"]:
        reasons = "; ".join(r["rule"] for r in verdict["rules"] if not r["passed"])
        state = deploy.reject(store, spec.name, model, f"deploy gate blocked: {reasons}",
                              actor=actor)
        say(f"version {version} not deployed: the deploy gate blocked it ({reasons}); "
            f"stable stays {deploy.version_label(state.stable)}")
        return {"outcome": "rejected", "reason": reasons, "version": version,
                "state": state.to_dict()}
    files = edge_bundle(store, spec.name, model, spec.deployment.edge.max_bytes)
    outcome, state = deploy.deploy(store, spec.name, model,
                                   canary_share=spec.deployment.canary.share, actor=actor)
    edge = publish_edge(spec.deployment.edge.target, spec.name, version, files)
    aliases = deploy.sync_aliases(store, tracking_uri, spec.name)
    role = ("canary" if state.canary and state.canary["trained_weights"] == trained_weights
            else "stable")
    say(f"version {version}: {outcome} as {role}; edge bundle at {edge}")
    tag = None
    if is_lakefs(store.root):
        tag = tag_deployment(store.root, spec.name, version,
                             metadata={"actor": actor or "", "trained_weights": trained_weights})
        say(f"lakeFS tag {tag['tag']} -> commit {tag['commit']}")
    return {"outcome": outcome, "role": role, "version": version, "edge": edge,
            "edge_bytes": sum(len(v) for v in files.values()), "aliases": aliases,
            "state": state.to_dict(), "lakefs_tag": tag}


def _edge_folder(spec: DatasetSpec, version: int | None) -> str:
    return f"{spec.deployment.edge.target.rstrip('/')}/{spec.name}/v{version}"
