"""The Grafana dashboard in deploy/grafana queries only metrics that Tideline exposes.

Every metric name in every panel's PromQL (and the model variable's query) must be a
sample name of a real service's ``/metrics`` after traffic, or of the chain exporter over
an instance holding each stage's materializations.
"""

import json
import re

import pytest

from cli.chain_metrics import registry_for
from tests.conftest import REPO
from tests.metrics_support import families, served

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

DASHBOARD = REPO / "deploy" / "grafana" / "tideline.json"
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
            "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    Names in ``__name__`` matchers count; label matchers, ranges, strings and the label
    lists of ``by``/``without``/``on``/``ignoring``/``group_*`` do not, nor do functions.
    """
    names = set()
    for matcher in re.findall(r'__name__\s*=~?\s*"([^"]*)"', expr):
        names |= set(matcher.split("|"))
    text = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r'"[^"]*"', " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, rest = match.group(), text[match.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue  # a function or aggregation, or a keyword
        if match.start() > 0 and text[match.start() - 1] in "$.0123456789":
            continue  # a Grafana variable, or a number's exponent
        names.add(word)
    return names


def test_metric_names_are_read_from_promql_as_prometheus_would():
    assert metric_names('histogram_quantile(0.99, sum by (le, model) (rate(a_bucket{model=~'
                        '"$model", x="y"}[$__rate_interval])))') == {"a_bucket"}
    assert metric_names("1000 * sum without (pid) (increase(b_total[1h])) / on (model) "
                        "group_left (hardware) c offset 5m") == {"b_total", "c"}
    assert metric_names(promql('label_values({__name__=~"d_total|e"}, model)')) == {"d_total",
                                                                                    "e"}
    assert metric_names("max(f) > bool 1e-3") == {"f"}


def promql(query: str) -> str:
    """A variable's query as PromQL: ``label_values(selector, label)`` selects ``selector``."""
    found = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    return found.group(1) if found else query


def _queries(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            out += [(inner["title"], t["expr"]) for t in inner.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            out.append((f"${variable['name']}", promql(
                query["query"] if isinstance(query, dict) else query)))
    return out


def _chain_exposition(tmp_path) -> str:
    """The chain exporter over an instance where each stage materialized, as stages do."""
    import dagster as dg
    from prometheus_client import generate_latest

    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster"),
                                             overrides={"telemetry": {"enabled": False}})
    cost = {"cpu_seconds": 12.5, "gpu_seconds": 0.0, "amount": 0.0002, "currency": "USD",
            "hardware": {"cpu_model": "test CPU", "cpu_cores": 4, "gpu": None}}
    facts = {"raw_data": {}, "validated_features": {},
             "trained_weights": {"cost": dg.MetadataValue.json(cost)},
             "quantized_weights": {}, "model_card": {"gate": "passed"},
             "drift_report": {"drift_score": 0.31, "drifted": False}}
    for cache in ("miss", "hit"):
        for stage, meta in facts.items():
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key=["adult", stage],
                metadata={"cache": cache, "seconds": 0.5, "content_hash": "b3:x"} | meta))
    return generate_latest(registry_for(instance)).decode()


def test_every_metric_the_dashboard_queries_is_exposed(tmp_path, monkeypatch):
    dashboard = json.loads(DASHBOARD.read_text())
    queries = _queries(dashboard)
    assert len(queries) >= 15
    with served(tmp_path, monkeypatch, cost={"cpu_core_hour": 0.05},
                serving__rate_limit_per_minute=2) as (client, key):
        for status in (200, 200, 429):  # predictions, then a refusal
            answer = client.post("/predict", json={"records": [{"age": 30.0}]},
                                 headers={"X-API-Key": key})
            assert answer.status_code == status
        service = client.get("/metrics").text
    chain = _chain_exposition(tmp_path)
    exposed = {s.name for text in (service, chain)
               for family in families(text).values() for s in family.samples}
    queried = set()
    for title, expr in queries:
        names = metric_names(expr)
        assert names, f"panel {title!r} queries no metric: {expr}"
        missing = names - exposed
        assert not missing, f"panel {title!r} queries {sorted(missing)}, which nothing exposes"
        queried |= names
    # The dashboard covers both sides: the service and the chain.
    assert any(n.startswith("tideline_chain_") for n in queried)
    assert {"tideline_inference_cost_total", "tideline_inference_cost_per_1000_predictions",
            "tideline_rate_limited_total", "tideline_model_reloads_total"} <= queried
