"""Parts of the serving service, on their own: keys, canary verdicts, log retention, batching,
the catalog of served models and the Open Inference Protocol mapping."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pipelines.spec import CanarySpec
from serving.batching import MicroBatcher
from serving.canary import BUCKETS_MS, CanaryTotals, MemoryCanaryStats, to_canary, verdict
from serving.predlog import PredictionLog
from serving.security import ApiKeys, MemoryRateLimiter
from tests.conftest import ADULT_CSV, write_spec
from tests.serving_support import datasets_folder


def test_api_keys_are_stored_hashed_and_verified(tmp_path):
    keys = ApiKeys(tmp_path / "keys.json")
    alice = keys.create("alice")
    bob = keys.create("bob")
    stored = (tmp_path / "keys.json").read_text()
    assert alice not in stored and bob not in stored
    assert json.loads(stored)["keys"][0]["sha256"] and oct((tmp_path / "keys.json").stat(
    ).st_mode)[-3:] == "600"
    assert keys.verify(alice) == "alice" and keys.verify(bob) == "bob"
    assert keys.verify(alice + "x") is None and keys.verify(None) is None
    new_alice = keys.create("alice")  # re-creating a name replaces its key
    assert keys.verify(alice) is None and keys.verify(new_alice) == "alice"


def test_memory_rate_limit_counts_per_key_and_model():
    limiter = MemoryRateLimiter()

    async def hits(key, n, model="adult", per_minute=3):
        return [(await limiter.hit(key, model, per_minute))[0] for _ in range(n)]

    assert asyncio.run(hits("a", 5)) == [True, True, True, False, False]
    assert asyncio.run(hits("b", 1)) == [True]
    # Another model has its own count and its own limit (its spec's).
    assert asyncio.run(hits("a", 2, model="small", per_minute=1)) == [True, False]


def test_routing_key_is_sticky_and_follows_the_share():
    keys = [f"user-{i}" for i in range(5000)]
    share = sum(to_canary(0.2, k) for k in keys) / len(keys)
    assert 0.17 < share < 0.23
    assert all(to_canary(0.2, k) == to_canary(0.2, k) for k in keys[:100])
    assert not any(to_canary(0.0, k) for k in keys[:100])


def test_canary_verdicts():
    spec = CanarySpec(share=0.5, min_requests=100, max_error_rate=0.02, max_p99_latency_ms=50)
    fast = [0] * len(BUCKETS_MS)
    fast[2] = 50  # 50 requests at ≤ 5 ms
    assert verdict(spec, CanaryTotals(50, 0, fast))[0] is None
    # Three errors already exceed 2% of 100: no need to wait for the rest.
    decision, why = verdict(spec, CanaryTotals(50, 3, fast))
    assert decision == "abort" and "errors 3" in why
    done = [0] * len(BUCKETS_MS)
    done[2] = 100
    assert verdict(spec, CanaryTotals(100, 1, done))[0] == "promote"
    slow = [0] * len(BUCKETS_MS)
    slow[2], slow[9] = 98, 2  # 2% of requests in the 100–200 ms bucket: p99 over 50 ms
    decision, why = verdict(spec, CanaryTotals(100, 0, slow))
    assert decision == "abort" and "latency" in why

    stats = MemoryCanaryStats()
    totals = [asyncio.run(stats.record("adult", 7, ok, 3.0)) for ok in (True, False, True)]
    assert (totals[-1].requests, totals[-1].errors) == (3, 1)
    # Entry 7 of another model is another canary.
    assert asyncio.run(stats.record("small", 7, True, 3.0)).requests == 1


def test_prediction_log_keeps_only_the_newest_files(tmp_path):
    log = PredictionLog(tmp_path, flush_rows=10, flush_seconds=1, retention_files=3)
    for i in range(5):
        log._write([{"request_id": f"r{i}", "probability": 0.5, "age": 30.0 + i}])
    files = sorted((tmp_path / "predictions").glob("*/*.parquet"))
    assert len(files) == 3 and log.written == 5
    import pandas as pd

    kept = pd.concat([pd.read_parquet(f) for f in files])
    assert kept["request_id"].tolist() == ["r2", "r3", "r4"]


def test_micro_batcher_merges_concurrent_requests_and_splits_answers():
    calls = []

    def run(feeds):
        calls.append(len(feeds["x"]))
        return feeds["x"][:, 0] * 2

    async def scenario():
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(run, pool, max_batch=64, max_wait_s=0.02)
            outs = await asyncio.gather(*(
                batcher.submit({"x": np.full((n, 1), float(i))}) for i, n in
                enumerate([1, 2, 3, 1])))
            batcher.close()
            return outs

    outs = asyncio.run(scenario())
    assert [o.tolist() for o in outs] == [[0.0], [2.0, 2.0], [4.0, 4.0, 4.0], [6.0]]
    assert calls == [7], "four concurrent requests, one inference call"


# -- the models of the instance ------------------------------------------------------------------
@pytest.fixture
def datasets(tmp_path, monkeypatch):
    """A datasets folder with two Adult specs and a broken one; a home with nothing deployed."""
    folder = datasets_folder(tmp_path, monkeypatch, serving__max_records=3,
                             serving__rate_limit_per_minute=7)
    (folder / "broken.yaml").write_text("name: Broken\n")
    return folder


def test_config_has_every_loadable_spec_and_skips_a_broken_one(datasets, tmp_path, monkeypatch):
    from serving.config import ServiceConfig

    config = ServiceConfig.from_env()
    assert config.names == ["adult", "adult_small"]
    assert [p.path.name for p in config.spec_errors] == ["broken.yaml"]
    small = config.model("adult_small")
    assert small.numeric == ("age",) and small.categorical == ("sex", "occupation")
    assert small.categories_of("sex") == ("Female", "Male")
    assert small.categories_of("occupation") is None
    assert small.serving.rate_limit_per_minute == 7
    assert (small.positive_label, small.negative_label) == (">50K", "<=50K")
    # Each model logs its predictions where its drift monitoring reads them.
    assert small.production_dir == tmp_path / "home" / "production" / "adult_small"
    # Two models, neither named demo: /predict has no default until one is named.
    assert config.default_model is None
    assert "TIDELINE_DEFAULT_MODEL" in config.default_problem
    monkeypatch.setenv("TIDELINE_DEFAULT_MODEL", "adult_small")
    assert ServiceConfig.from_env().default_model == "adult_small"
    monkeypatch.setenv("TIDELINE_SPEC", str(datasets / "small.yaml"))
    monkeypatch.delenv("TIDELINE_DEFAULT_MODEL")
    alone = ServiceConfig.from_env()
    assert alone.names == ["adult_small"] and alone.default_model == "adult_small"


def _small_config(datasets):
    from serving.config import ServiceConfig

    return ServiceConfig.from_env().model("adult_small")


def _request(inputs, **extra):
    from serving.oip import InferRequest

    return InferRequest.model_validate({"inputs": inputs, **extra})


def _tensor(name, data, datatype=None, shape=None):
    datatype = datatype or ("FP32" if name == "age" else "BYTES")
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


def test_oip_tensors_become_records(datasets):
    from serving.oip import requested_outputs, to_records

    config = _small_config(datasets)
    request = _request([_tensor("sex", ["Male", None]), _tensor("age", [[39], [None]], "INT64",
                                                                 [2, 1]),
                        _tensor("occupation", ["Sales", "Tech-support"])],
                       outputs=[{"name": "label"}])
    assert to_records(config, request) == [
        {"age": 39.0, "sex": "Male", "occupation": "Sales"},
        {"age": None, "sex": None, "occupation": "Tech-support"}]
    assert requested_outputs(request) == ["label"]
    assert requested_outputs(_request([_tensor("age", [1])])) == ["probability", "label"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: [*t, _tensor("agee", [1.0, 2.0])], "unknown input 'agee'"),
    (lambda t: t[1:], "missing input(s) age"),
    (lambda t: [*t, t[0]], "input 'age' is given more than once"),
    (lambda t: [_tensor("age", ["40", "50"], "BYTES"), *t[1:]],
     "input 'age' has datatype 'BYTES'; it is numeric: send datatype FP32"),
    (lambda t: [t[0], _tensor("sex", [1.0, 2.0], "FP32"), t[2]],
     "input 'sex' has datatype 'FP32'; it is categorical: send datatype BYTES"),
    (lambda t: [_tensor("age", [1.0, 2.0], shape=[3]), *t[1:]],
     "input 'age': shape [3] holds 3 values but data has 2"),
    (lambda t: [_tensor("age", [1.0, 2.0], shape=[1, 2]), *t[1:]],
     "input 'age' has shape [1, 2]; send [n]"),
    (lambda t: [_tensor("age", [1.0]), *t[1:]], "inputs have different lengths (age 1, sex 2"),
    (lambda t: [_tensor("age", [1.0, "x"]), *t[1:]], "input 'age' data[1]: 'x' is not a number"),
    (lambda t: [_tensor("age", [1.0, True]), *t[1:]], "input 'age' data[1]: True is not a"),
    (lambda t: [_tensor("age", [1.0, 1e39]), *t[1:]], "is not a finite FP32 value"),
    (lambda t: [t[0], _tensor("sex", ["Male", 3]), t[2]], "input 'sex' data[1]: 3 is not a str"),
    (lambda t: [t[0], _tensor("sex", ["Male", {"a": 1}]), t[2]], "input 'sex' data[1]: {'a'"),
    (lambda t: [_tensor("age", [[[1.0]], [2.0]], shape=[2, 1]), *t[1:]], "nested deeper"),
    (lambda t: [_tensor(n, x["data"] * 2) for n, x in zip(("age", "sex", "occupation"), t)],
     "4 records: send 1 to 3 per request (serving.max_records of model 'adult_small')"),
    (lambda t: [_tensor(n, []) for n in ("age", "sex", "occupation")], "0 records"),
])
def test_oip_requests_that_do_not_fit_name_the_input(datasets, change, message):
    from serving.oip import InferError, to_records

    config = _small_config(datasets)
    good = [_tensor("age", [39.0, 50.0]), _tensor("sex", ["Male", "Female"]),
            _tensor("occupation", ["Sales", None])]
    assert len(to_records(config, _request(good))) == 2
    with pytest.raises(InferError) as err:
        to_records(config, _request(change(good)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_oip_unknown_output_is_refused(datasets):
    from serving.oip import InferError, requested_outputs

    with pytest.raises(InferError, match="unknown output 'score': the outputs are probability"):
        requested_outputs(_request([_tensor("age", [1.0])], outputs=[{"name": "score"}]))


def test_oip_metadata_lists_typed_inputs_and_the_spec_categories(datasets):
    from serving.oip import metadata

    meta = metadata(_small_config(datasets), ["3"]).model_dump(exclude_none=True)
    assert meta == {
        "name": "adult_small", "versions": ["3"], "platform": "onnx",
        "inputs": [{"name": "age", "datatype": "FP32", "shape": [-1]},
                   {"name": "sex", "datatype": "BYTES", "shape": [-1],
                    "parameters": {"categories": ["Female", "Male"]}},
                   {"name": "occupation", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1]},
                    {"name": "label", "datatype": "BYTES", "shape": [-1]}]}


def test_body_limit_is_the_named_models(datasets, monkeypatch):
    from serving.config import ServiceConfig
    from serving.http import body_limits

    monkeypatch.setenv("TIDELINE_DEFAULT_MODEL", "adult_small")
    small = write_spec(datasets / "small.yaml", "adult", ADULT_CSV, name="adult_small",
                       serving__max_body_bytes=5000)
    assert small.exists()
    limit = body_limits(ServiceConfig.from_env())
    assert limit("/predict") == 5000 and limit("/v2/models/adult_small/infer") == 5000
    assert limit("/v2/models/adult/predict") == 1_000_000
    assert limit("/v2/models/unknown/infer") == 5000


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_service_with_nothing_deployed_names_what_is_served(datasets, monkeypatch):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    monkeypatch.setenv("TIDELINE_DEFAULT_MODEL", "adult")
    with TestClient(create_app()) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["model"] == "adult"
        assert set(ready.json()["models"]) == {"adult", "adult_small"}
        assert "broken.yaml" in ready.json()["spec_errors"][0]["path"]
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").status_code == 503
        undeployed = client.get("/v2/models/adult_small")
        assert undeployed.status_code == 404
        assert undeployed.json()["error"].startswith("model 'adult_small' is not deployed")
        assert "no model is deployed here yet" in undeployed.json()["error"]
        assert "got 'Broken'" in client.get("/v2/models/broken/ready").json()["error"]
        assert client.get("/v2/models/nope").json()["error"].startswith("no model named 'nope'")
        body = {"inputs": [_tensor("age", [1.0])]}
        assert client.post("/v2/models/adult/infer", json=body).status_code == 401
        key = ApiKeys(datasets.parent / "home" / "serving" / "api_keys.json").create("t")
        answer = client.post("/v2/models/adult/infer", json=body, headers={"X-API-Key": key})
        assert answer.status_code == 404 and "is not deployed" in answer.json()["error"]
        malformed = client.post("/v2/models/adult/infer", json={"inputs": "age"},
                                headers={"X-API-Key": key})
        assert malformed.status_code == 404  # the model is looked up before the body
        paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}",
            "/v2/models/{name}/ready", "/v2/models/{name}/infer",
            "/v2/models/{name}/predict"} <= set(paths)
    name = paths["/v2/models/{name}/infer"]["post"]["parameters"][0]["schema"]
    assert name["enum"] == ["adult", "adult_small"]
