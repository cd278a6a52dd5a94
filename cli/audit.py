"""Print a deployed model version's audit pack and check it from the store alone.

Usage: ``make audit [MODEL=<spec>] VERSION=n`` (``python -m cli.audit --version n``). Prints
the signatures (file, signed sha256, key), the ML-BOM's summary, the OpenLineage events kept
per stage and the model card, after recomputing every hash from the stored bytes and
verifying every model file's signature and the signed provenance against the trusted keys
(``pipelines/audit_verify.py``). Exit status 0 means everything checked out against a trusted
key; otherwise each failing file is listed with what to do, and the last line names the
first one.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.audit_verify import AuditReport


def show(report: AuditReport, store_root: str) -> None:
    print(f"audit pack of {report.model} v{report.version}: {report.pack or 'none'} "
          f"(store {store_root})")
    if report.signatures:
        print(f"signatures (OpenSSF model signing), checked with {report.key}:")
        for name, sha256, key in report.signatures:
            print(f"  {name}: sha256 {sha256[:16]}… signed by key {key[:16]}…")
    if report.provenance:
        print(f"provenance (signed): git commit {report.provenance.get('git_commit') or 'none'}")
    if report.bom:
        bom = report.bom
        data = ", ".join(f"{name} {str(version)[:19]}…" for name, version in bom["data"].items())
        print(f"ML-BOM (CycloneDX 1.6, valid): {bom['model']}; files {', '.join(bom['files'])}; "
              f"data {data}; {bom['libraries']} libraries; {bom['serial']}")
    if report.lineage:
        total = sum(report.lineage.values())
        stages = ", ".join(f"{stage} {n}" for stage, n in report.lineage.items())
        print(f"lineage: {total} OpenLineage events ({stages})")
    if report.card:
        card = report.card
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in card["metrics"].items())
        print(f"model card {card['hash'][:19]}… ({card['html']}): gate {card['gate']}; "
              f"{metrics}")
        if card["description"]:
            print(f"  {card['description']}")
    for line in report.not_retained:
        print(f"not retained (hash recorded in the BOM): {line}")
    for failure in report.failures:
        print(f"FAILED {failure.line()}")
    print(f"{report.checked} checks, {len(report.failures)} failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.audit",
                                     description="Check a deployed version's audit pack.")
    parser.add_argument("--version", type=int, required=True)
    args = parser.parse_args(argv)

    from cli.console import CommandFailed
    from pipelines.audit_verify import audit_version
    from pipelines.catalog import selected_spec
    from pipelines.paths import state_dir, store_root
    from pipelines.store import ArtifactStore

    state = state_dir()
    spec = selected_spec()
    store = ArtifactStore(store_root(state))
    try:
        report = audit_version(store, spec.name, args.version, state=state)
    except LookupError as exc:
        raise CommandFailed(str(exc)) from None
    show(report, store.root)
    if not report.ok:
        first = report.failures[0]
        raise CommandFailed(f"audit of {spec.name} v{args.version} failed: {first.line()}",
                            code=1)
    return 0


if __name__ == "__main__":
    from cli.console import run_command

    sys.exit(run_command(main, "audit"))
