"""The serving service's API docs: /docs and /redoc work offline, and the OpenAPI document
lists the values each categorical field took in training."""

import hashlib
import json
import re
import time
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from pipelines import deploy
from pipelines.deploy import DeployedModel, ModelInputs, VariantFile
from pipelines.store import ArtifactStore
from serving.schema import KNOWN_VALUES_KEY, MAX_LISTED_VALUES
from serving.security import ApiKeys
from tests.serving_support import datasets_folder

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

BASE = "http://testserver"
CONTENT_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",),
                 ".png": ("image/png",), ".json": ("application/json",)}
# More occupations than the OpenAPI document lists (MAX_LISTED_VALUES).
OCCUPATIONS = tuple(sorted(f"job-{i:02d}" for i in range(MAX_LISTED_VALUES + 10)))


class _References(HTMLParser):
    """Every URL an HTML page makes the browser load: src, href and ReDoc's spec-url."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href", "spec-url") and v]


def _references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    # Swagger UI is handed the OpenAPI document's URL in its inline script.
    return parser.urls + re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", html)


def _model_bytes() -> bytes:
    """An ONNX model on the raw ``numeric`` input answering 0.5 for each record."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("IsNaN", ["numeric"], ["missing"]),
         helper.make_node("Where", ["missing", "half", "half"], ["p"])], "half",
        [helper.make_tensor_value_info("numeric", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


def _deploy(store: ArtifactStore, version: int, vocabularies: dict[str, list[str]]) -> None:
    """Deploy a version of adult_small whose training vocabularies are ``vocabularies``."""
    data = _model_bytes()
    params = {"numeric": {"age": {"median": 38.0, "mean": 38.5, "scale": 13.0}},
              "categorical": vocabularies}
    entry = DeployedModel(
        version=version, trained_weights=f"b3:tw{version}", quantized_weights=f"b3:qw{version}",
        model_card=f"b3:card{version}", inputs=ModelInputs(numeric=("age",),
                                                           categorical=tuple(vocabularies)),
        variants={"fp32": VariantFile(store.put_bytes(data), hashlib.sha256(data).hexdigest(),
                                      len(data))},
        preprocess=store.put_bytes(json.dumps(params).encode()))
    deploy.deploy(store, "adult_small", entry, canary_share=0.0)


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Two models, adult_small (the default, deployed as version 1) and adult (not deployed)."""
    datasets_folder(tmp_path, monkeypatch)
    home = tmp_path / "home"
    monkeypatch.setenv("TIDELINE_DEFAULT_MODEL", "adult_small")
    monkeypatch.setenv("TIDELINE_POLL_S", "0.05")
    store = ArtifactStore(home / "store")
    _deploy(store, 1, {"sex": ["Female", "Male"], "occupation": list(OCCUPATIONS)})
    return store, home


@pytest.fixture
def client(served):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app()) as client:
        assert client.get("/ready").json()["stable"] == 1
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_service(client, page):
    answer = client.get(page)  # no API key, as /openapi.json
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    html = answer.text
    assert "://" not in html, "the page names an absolute URL (a CDN or another host)"
    # ReDoc's bundle links an image on its CDN: the browser is told to load nothing off-host.
    policy = dict(d.strip().split(" ", 1) for d in
                  answer.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["img-src"] == "'self' data:"
    assert all("http" not in sources and "*" not in sources for sources in policy.values())
    urls = _references(html)
    kinds = {urlsplit(u).path.rsplit(".", 1)[-1] for u in urls}
    expected = {"js", "css", "png", "json"} if page == "/docs" else {"js", "png", "json"}
    assert kinds == expected, urls
    for url in urls:
        absolute = urljoin(f"{BASE}{page}", url)
        assert urlsplit(absolute).netloc == "testserver", url
        fetched = client.get(absolute)
        assert fetched.status_code == 200, (url, fetched.status_code)
        assert len(fetched.content) > 0, url
        suffix = "." + urlsplit(absolute).path.rsplit(".", 1)[-1]
        content_type = fetched.headers["content-type"].split(";")[0]
        assert content_type in CONTENT_TYPES[suffix], (url, content_type)
    # The assets are the real Swagger UI and ReDoc bundles, not placeholders.
    scripts = {u.rsplit("/", 1)[-1]: client.get(urljoin(f"{BASE}{page}", u)).text
               for u in urls if u.endswith(".js")}
    bundle = "swagger-ui-bundle.js" if page == "/docs" else "redoc.standalone.js"
    assert ("SwaggerUIBundle" if page == "/docs" else "Redoc") in scripts[bundle]
    assert len(scripts[bundle]) > 500_000


def test_openapi_lists_the_known_values_of_each_categorical_field(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    fields = schemas["Record"]["properties"]
    sex, occupation, age = fields["sex"], fields["occupation"], fields["age"]
    assert sex[KNOWN_VALUES_KEY] == ["Female", "Male"] and sex["examples"] == ["Female", "Male"]
    assert "saw 2 values in training" in sex["description"]
    assert '"Female", "Male"' in sex["description"]
    assert "treated as unknown" in sex["description"] and "enum" not in json.dumps(sex)
    # A long vocabulary is cut in the document, which says so and where the rest is.
    assert occupation[KNOWN_VALUES_KEY] == list(OCCUPATIONS[:MAX_LISTED_VALUES])
    assert occupation["examples"] == list(OCCUPATIONS[:3])
    text = occupation["description"]
    assert f"saw {len(OCCUPATIONS)} values" in text and f"first {MAX_LISTED_VALUES}" in text
    assert "GET /v2/models/adult_small" in text and f'"{OCCUPATIONS[-1]}"' not in text
    assert KNOWN_VALUES_KEY not in age and age["anyOf"][0]["type"] == "number"

    # The model's metadata lists them all, beside the values its spec allows.
    inputs = {i["name"]: i for i in client.get("/v2/models/adult_small").json()["inputs"]}
    assert inputs["sex"]["parameters"] == {"categories": ["Female", "Male"],
                                           "known_values": ["Female", "Male"]}
    assert inputs["occupation"]["parameters"] == {"known_values": list(OCCUPATIONS)}
    assert "parameters" not in inputs["age"]


def test_unseen_values_are_still_served_and_the_document_follows_a_new_version(client,
                                                                               served):
    store, home = served
    key = ApiKeys(home / "serving" / "api_keys.json").create("docs")
    record = {"age": 41.0, "sex": "Nonbinary", "occupation": "astronaut"}
    answer = client.post("/predict", json={"records": [record]}, headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["probability"] == pytest.approx(0.5)

    before = client.get("/openapi.json").json()["components"]["schemas"]["Record"]
    assert before["properties"]["sex"][KNOWN_VALUES_KEY] == ["Female", "Male"]

    _deploy(store, 2, {"sex": ["Female", "Male", "Nonbinary"], "occupation": ["Sales"]})
    deadline = time.monotonic() + 20
    while client.get("/ready").json()["stable"] != 2:
        assert time.monotonic() < deadline, "version 2 was never loaded"
        time.sleep(0.05)
    fields = client.get("/openapi.json").json()["components"]["schemas"]["Record"]["properties"]
    assert fields["sex"][KNOWN_VALUES_KEY] == ["Female", "Male", "Nonbinary"]
    assert "(version 2) saw 3 values" in fields["sex"]["description"]
    assert fields["occupation"][KNOWN_VALUES_KEY] == ["Sales"]
    assert "saw 1 value in training" in fields["occupation"]["description"]
    inputs = client.get("/v2/models/adult_small").json()["inputs"]
    assert inputs[2]["parameters"] == {"known_values": ["Sales"]}
