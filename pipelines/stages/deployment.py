"""deployment: publish a model that passed the gate to the serving history and edge target.

Not memoized: it is the one stage whose effect is a change of state (the append-only
history), and it reads the gate verdict stored with the card itself, so a job that
selects only this stage cannot deploy a blocked model.

Whatever it decides, it ends by bringing the head, the edge bundles and the MLflow aliases
in line with the history (``pipelines.repair``): a run killed half-way through a deployment
is finished by the next run, even when that run finds the model already deployed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from pipelines import deploy
from pipelines.lakefs import is_lakefs, tag_deployment
from pipelines.repair import repair
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore
from pipelines.targets import (
    edge_bundle,
    edge_folder,
    edge_variant,
    gate_verdict,
    model_entry,
    publish_edge,
    verify_bundle,
)

Outcome = Literal["deployed", "unchanged", "rejected"]
Role = Literal["stable", "canary"]


@dataclass(frozen=True)
class LakefsTag:
    """The lakeFS tag of a deployed version (with the store on lakeFS)."""

    tag: str
    commit: str
    created: bool  # false: the tag was there already


@dataclass(frozen=True)
class PublishResult:
    """What one deployment step did.

    ``role``, ``edge`` and ``lakefs_tag`` are set unless the gate rejected the model
    (``reason`` says why); ``edge_bytes`` only when a bundle was published by this step.
    """

    outcome: Outcome
    version: int | None
    state: deploy.DeploymentState  # the deployment after the step
    repaired: tuple[str, ...] = ()  # what a killed earlier run had left out of line
    role: Role | None = None
    edge: str | None = None
    edge_bytes: int | None = None
    edge_variant: str | None = None  # the variant in the edge bundle (smallest published)
    aliases: dict[str, int | None] | None = None  # MLflow aliases, when this step set them
    reason: str | None = None
    lakefs_tag: LakefsTag | None = None
    audit_pack: str | None = None  # content hash of the version's audit pack (pipelines.audit)


def publish(spec: DatasetSpec, store: ArtifactStore, *, tracking_uri: str, trained_weights: str,
            quantized_weights: str, model_card: str, actor: str | None = None,
            log: Callable[[str], None] | None = None,
            training_trace: str | None = None) -> PublishResult:
    """Deploy (or record the rejection of) one candidate; returns what happened.

    First brings the head, edge bundles and aliases in line with the history (what a killed
    run left undone), then decides. ``result.repaired`` lists what was repaired.
    ``training_trace`` (the trace id of the run that trained the weights) goes into the
    history entry, for request spans to link to.

    Raises:
        EdgeBundleTooLarge: before anything is recorded, so a failed run changes nothing
            (its audit pack is stored, content-addressed, but neither logged nor live).
        SignatureError: no usable signing key for the audit pack (likewise).
    """
    say = log or (lambda message: None)
    target = spec.deployment.edge.target
    report = repair(store, spec.name, edge_target=target, tracking_uri=tracking_uri,
                    log=say)
    repaired = tuple(report.lines())
    state = deploy.current(store, spec.name)
    live: tuple[tuple[Role, deploy.DeployedModel | None], ...] = (
        ("stable", state.stable), ("canary", state.canary))
    for role, model in live:
        if model and model.trained_weights == trained_weights:
            # The nightly no-op path: no MLflow import, nothing written (unless repaired).
            say(f"version {model.version} is already the {role} model")
            # A run killed before tagging leaves the version untagged: tag it now (an
            # existing tag is left as it is).
            tag = _tag(store, spec.name, model.version, actor, trained_weights, say)
            return PublishResult("unchanged", model.version, state, repaired, role=role,
                                 edge=edge_folder(target, spec.name, model.version),
                                 edge_variant=edge_variant(model), lakefs_tag=tag)
    from pipelines.tracking import find_version

    version = find_version(tracking_uri, spec.name, trained_weights)
    candidate = model_entry(store, version=version, trained_weights=trained_weights,
                            quantized_weights=quantized_weights, model_card=model_card,
                            training_trace=training_trace)
    verdict = gate_verdict(store, model_card)
    if not verdict["passed"]:
        reasons = "; ".join(r["rule"] for r in verdict["rules"] if not r["passed"])
        state = deploy.reject(store, spec.name, candidate, f"deploy gate blocked: {reasons}",
                              actor=actor)
        say(f"version {version} not deployed: the deploy gate blocked it ({reasons}); "
            f"stable stays {deploy.version_label(state.stable)}")
        return PublishResult("rejected", version, state, repaired, reason=reasons)
    # The audit pack (signatures, ML-BOM, lineage) is stored before the history entry: no
    # server ever reads a model without one. It is content-addressed objects and a pointer
    # only (a rerun finds it); MLflow hears of it once the edge bundle fits.
    from pipelines.audit import log_pack, registry_info, write_pack
    from pipelines.paths import state_dir

    registry = registry_info(tracking_uri, spec.name, candidate.version)
    candidate = replace(candidate, audit_pack=write_pack(store, spec.name, candidate,
                                                         state=state_dir(), registry=registry))
    files = edge_bundle(store, spec.name, candidate, spec.deployment.edge.max_bytes)
    verify_bundle(files)  # as a device would, with the keys trusted here
    log_pack(store, tracking_uri, spec.name, candidate.version, str(candidate.audit_pack))
    say(f"version {version}: audit pack {str(candidate.audit_pack)[:19]}… (model signatures, "
        "ML-BOM, lineage; make audit checks it)")
    # From here on every write is one that `repair` redoes if this process dies: the history
    # entry (with the head), the edge bundle, the aliases.
    outcome, state = deploy.deploy(store, spec.name, candidate,
                                   canary_share=spec.deployment.canary.share, actor=actor)
    with deploy.locked(store, spec.name):  # no repair removes our temp files meanwhile
        edge = publish_edge(target, spec.name, version, files)
    aliases = deploy.alias_targets(state)
    if not deploy.aliases_in_sync(store, spec.name, tracking_uri, state):
        aliases = deploy.sync_aliases(store, tracking_uri, spec.name)
    role: Role = ("canary" if state.canary and state.canary.trained_weights == trained_weights
                  else "stable")
    dropped = sorted(set(deploy.VARIANTS) - set(candidate.variants))
    say(f"version {version}: {outcome} as {role}; edge bundle ({edge_variant(candidate)}) at "
        f"{edge}" + (f"; variants not published: {', '.join(dropped)}" if dropped else ""))
    tag = _tag(store, spec.name, version, actor, trained_weights, say)
    return PublishResult(outcome, version, state, repaired, role=role, edge=edge,
                         edge_bytes=sum(len(v) for v in files.values()),
                         edge_variant=edge_variant(candidate), aliases=aliases,
                         lakefs_tag=tag, audit_pack=candidate.audit_pack)


def _tag(store: ArtifactStore, model_name: str, version: int | None, actor: str | None,
         trained_weights: str, say: Callable[[str], None]) -> LakefsTag | None:
    """With the store on lakeFS, commit it and tag the deployed version (idempotent)."""
    if not is_lakefs(store.root):
        return None
    found = tag_deployment(store.root, model_name, version,
                           metadata={"actor": actor or "", "trained_weights": trained_weights})
    tag = LakefsTag(tag=found["tag"], commit=found["commit"], created=found["created"] != "no")
    if tag.created:
        say(f"lakeFS tag {tag.tag} -> commit {tag.commit}")
    return tag
