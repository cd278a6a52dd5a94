"""No-op re-run of the whole chain ÷ the same chain of assets with empty bodies (target ≤ 2).

Both run through `<model>_training_job`-shaped jobs on the same SQLite Dagster instance, in
process, interleaved. The empty chain has the same steps, dependencies, checks and IO
manager; its bodies only return a fixed reference.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg

from resources.refs import ArtifactRef, RefIOManager


def empty_chain(check_names: list[str], refs_root: str) -> dg.Definitions:
    """Assets shaped like the real chain (prefixed keys), with empty bodies."""
    ref = ArtifactRef("empty", "b3:0")

    @dg.observable_source_asset(key=["empty", "raw_source"])
    def raw_source():
        return dg.DataVersion("0")

    @dg.multi_asset(
        outs={"raw_data": dg.AssetOut(key=["empty", "raw_data"]),
              "validated_features": dg.AssetOut(key=["empty", "validated_features"])},
        deps=[dg.AssetKey(["empty", "raw_source"])],
        check_specs=[dg.AssetCheckSpec(n, asset=dg.AssetKey(["empty", "validated_features"]))
                     for n in check_names],
        can_subset=False, name="empty_ingest")
    def ingest():
        yield dg.Output(ref, output_name="raw_data", data_version=dg.DataVersion("0"))
        yield dg.Output(ref, output_name="validated_features", data_version=dg.DataVersion("0"))
        for n in check_names:
            yield dg.AssetCheckResult(asset_key=dg.AssetKey(["empty", "validated_features"]),
                                      check_name=n, passed=True)

    @dg.asset(key=["empty", "trained_weights"],
              ins={"v": dg.AssetIn(["empty", "validated_features"])})
    def trained_weights(v: ArtifactRef):
        return dg.Output(ref, data_version=dg.DataVersion("0"))

    @dg.asset(key=["empty", "quantized_weights"],
              ins={"v": dg.AssetIn(["empty", "validated_features"]),
                   "t": dg.AssetIn(["empty", "trained_weights"])})
    def quantized(v: ArtifactRef, t: ArtifactRef):
        return dg.Output(ref, data_version=dg.DataVersion("0"))

    @dg.asset(key=["empty", "model_card"],
              ins={"v": dg.AssetIn(["empty", "validated_features"]),
                   "t": dg.AssetIn(["empty", "trained_weights"]),
                   "q": dg.AssetIn(["empty", "quantized_weights"])})
    def card(v: ArtifactRef, t: ArtifactRef, q: ArtifactRef):
        return dg.Output(ref, data_version=dg.DataVersion("0"))

    job = dg.define_asset_job("empty_job", selection=dg.AssetSelection.key_prefixes("empty"),
                              executor_def=dg.in_process_executor)
    return dg.Definitions(assets=[raw_source, ingest, trained_weights, quantized, card],
                          jobs=[job], resources={"io_manager": RefIOManager(root=refs_root)})


def main(repeats: int = 7) -> float:
    from bench.common import alternate, report
    from pipelines.demo_data import write_breast_cancer

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        os.environ["TIDELINE_HOME"] = str(state)
        os.environ["TIDELINE_SPEC"] = "demo"
        write_breast_cancer(state / "data" / "breast_cancer.parquet")
        (state / "dagster").mkdir()
        from definitions import build_definitions
        from pipelines.catalog import selected_spec
        from pipelines.validation import check_names

        defs = build_definitions()
        names = [n for n, _ in check_names(selected_spec())]
        empty = empty_chain(names, str(state / "refs"))
        instance = dg.DagsterInstance.local_temp(
            tempdir=str(state / "dagster"), overrides={"telemetry": {"enabled": False}})
        job = defs.resolve_job_def("breast_cancer_training_job")
        empty_job = empty.resolve_job_def("empty_job")
        assert job.execute_in_process(instance=instance).success  # first run: all misses
        run = lambda j: j.execute_in_process(instance=instance)  # noqa: E731
        run(empty_job)
        a, b = alternate(lambda: run(job), lambda: run(empty_job), repeats)
    return report("no-op re-run ÷ empty-bodied chain", a, b, 2.0, ("no-op", "empty"))


if __name__ == "__main__":
    main()
