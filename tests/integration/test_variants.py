"""A quantized variant over its tolerance is dropped with its reason; the run deploys fp32."""

import hashlib
import json

import pytest

from pipelines import deploy
from tests.conftest import CHAIN, fast_adult_spec, materializations

pytestmark = pytest.mark.slow


def test_int8_over_a_tiny_tolerance_is_dropped_and_fp32_deploys(tmp_path, adult_sample,
                                                                chain_factory):
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    edge = tmp_path / "edge-target"
    spec = fast_adult_spec(tmp_path, source, quantization__int8_tolerance=1e-9,
                           deployment={"edge": {"target": str(edge)}})
    chain = chain_factory(spec)
    result = chain.run()
    assert result.success
    m = materializations(result)
    assert list(m) == [*CHAIN, "deployment"]
    q = m["quantized_weights"]
    assert list(q["dropped_variants"]) == ["int8"]
    assert q["dropped_variants"]["int8"].startswith("int8: max |Δp| ")
    assert "over tolerance 1e-09 (quantization.int8_tolerance)" in q["dropped_variants"]["int8"]
    assert q["published_variants"] == ["fp32", "fp16"]
    assert q["int8_size_ratio"] == round(q["bytes"]["int8"] / q["bytes"]["fp32"], 3)
    store = chain.store()
    manifest = store.get_manifest(q["content_hash"])
    assert "model_int8.onnx" not in manifest.files and manifest.info["dropped"] == \
        q["dropped_variants"]
    # fp32 is deployed; the history records the published variants only.
    assert m["deployment"]["outcome"] == "deployed"
    stable = deploy.current(store, "adult").stable
    assert stable is not None and sorted(stable.variants) == ["fp16", "fp32"]
    smallest = min(("fp32", "fp16"), key=lambda v: q["bytes"][v])
    assert stable.edge_variant == smallest
    bundle = edge / "adult" / "v1"
    name = f"model_{smallest}.onnx"
    assert sorted(p.name for p in bundle.iterdir()) == sorted(["manifest.json", "model.sig", name])
    said = json.loads((bundle / "manifest.json").read_text())
    data = (bundle / name).read_bytes()
    assert (said["variant"], said["file"]) == (smallest, name)
    assert said["sha256"] == hashlib.sha256(data).hexdigest() == \
        stable.variants[smallest].sha256
