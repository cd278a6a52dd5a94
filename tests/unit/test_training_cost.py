"""What training cost: hardware and measured seconds at the spec's (or environment's) prices,
a fact of the run that never enters the artifact; and the Cost table of the card shown for a
run."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipelines.artifacts import save_result
from pipelines.cost import cpu_model
from pipelines.store import ArtifactStore
from tests.conftest import save_validated_features
from tests.unit.test_baselines import _card
from tests.unit.test_training_budget import LARGE, adult_spec, build, features_frame

PRICE_ENV = ("TIDELINE_PRICE_CPU_CORE_HOUR", "TIDELINE_PRICE_GPU_HOUR", "TIDELINE_PRICE_CURRENCY")


@pytest.fixture
def adult_features(tmp_path):
    """A store holding a validated_features artifact of a few hundred Adult rows."""
    spec = adult_spec(tmp_path / "base", LARGE)
    store = ArtifactStore(tmp_path / "store")
    manifest, _ = save_validated_features(store, spec, features_frame(spec))
    return store, manifest


@pytest.fixture
def no_price_env(monkeypatch):
    for name in PRICE_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _cost(result) -> dict:
    spent = result.metadata["cost"]
    assert spent["hardware"] == {"cpu_model": cpu_model(), "cpu_cores": os.cpu_count(),
                                 "gpu": None}
    assert spent["cpu_seconds"] > 0 and spent["gpu_seconds"] == 0  # trained on the CPU
    return spent


def test_training_cost_at_the_specs_price_stays_out_of_the_artifact(tmp_path, adult_features,
                                                                    no_price_env):
    store, manifest = adult_features
    no_price_env.setenv("TIDELINE_PRICE_CPU_CORE_HOUR", "1")  # the spec's prices win
    # 3,600 a core-hour: one CPU second costs 1.
    priced = adult_spec(tmp_path / "priced", LARGE,
                        cost={"cpu_core_hour": 3600.0, "gpu_hour": {"H100": 2.5},
                              "currency": "EUR"})
    first = build(priced, store, manifest, tmp_path, "priced")
    spent = _cost(first)
    assert spent["currency"] == "EUR"
    assert spent["amount"] == pytest.approx(spent["cpu_seconds"], abs=1e-3)

    # Other prices, the same weights: the cost is a fact of the run, not of the artifact.
    cheap = adult_spec(tmp_path / "cheap", LARGE, cost={"cpu_core_hour": 36.0})
    second = build(cheap, store, manifest, tmp_path, "cheap")
    assert _cost(second)["amount"] == pytest.approx(second.metadata["cost"]["cpu_seconds"]
                                                    / 100, abs=1e-5)
    assert save_result(store, first).content_hash == save_result(store, second).content_hash
    assert all("cost" not in name for name in first.files)


def test_training_cost_at_the_environments_price(tmp_path, adult_features, no_price_env):
    store, manifest = adult_features
    no_price_env.setenv("TIDELINE_PRICE_CPU_CORE_HOUR", "7200")
    no_price_env.setenv("TIDELINE_PRICE_CURRENCY", "CHF")
    spent = _cost(build(adult_spec(tmp_path / "env", LARGE), store, manifest, tmp_path, "env"))
    assert spent["currency"] == "CHF"
    assert spent["amount"] == pytest.approx(2 * spent["cpu_seconds"], abs=2e-3)


def test_card_shown_for_a_run_has_a_cost_table_the_stored_card_has_not():
    from pipelines.baselines import BOOSTING, LOGISTIC, BaselineFit
    from pipelines.cost import Prices, cost, hardware
    from pipelines.model_card import render_markdown
    from pipelines.stages.model_card import _cost_card, recorded_cost

    trained = cost(720.0, 360.0, hardware("NVIDIA H100 80GB HBM3"),
                   Prices(3.6, {"H100": 2.0}, "EUR"))
    assert trained.amount == pytest.approx(0.72 + 0.2)
    metadata = {"content_hash": "b3:weights", "cost": trained.to_json()}
    recorded = recorded_cost(metadata, "b3:weights")
    assert recorded is not None and recorded.hardware == trained.hardware
    assert (recorded.cpu_seconds, recorded.gpu_seconds, recorded.currency) == (720, 360, "EUR")
    assert recorded.amount == pytest.approx(trained.amount)
    assert recorded_cost(metadata, "b3:other") is None, "another version's cost is not its"
    assert recorded_cost({"content_hash": "b3:weights"}, "b3:weights") is None

    fits = [BaselineFit(LOGISTIC, np.zeros(3), 2.0, 1.5),
            BaselineFit(BOOSTING, np.zeros(3), 10.0, 20.0)]
    bill = _cost_card(trained, fits, Prices(3.6, {"H100": 2.0}, "EUR"), threads=2)
    # A baseline is priced on the CPU seconds its fit used (all threads), as training is.
    assert bill["baselines"][BOOSTING]["cpu_seconds"] == 20.0
    assert bill["baselines"][LOGISTIC]["cpu_seconds"] == 1.5
    assert bill["baselines"][BOOSTING]["amount"] == pytest.approx(0.02)

    shown = render_markdown(_card(timed=True, dropped={}) | {"cost": bill})
    section = shown.split("## Cost", 1)[1].split("\n## ", 1)[0]
    assert "| training (trained_weights) | " in section
    assert "NVIDIA H100 80GB HBM3" in section and f"{os.cpu_count()} cores" in section
    assert "| 720.00 | 360.00 | 0.920000 EUR |" in section
    assert "| histogram gradient boosting (baseline fit, 2 threads) |" in section
    assert "| 20.00 | — | 0.020000 EUR |" in section
    assert "3.6 EUR per CPU core-hour and per GPU-hour H100 2" in section

    unknown = render_markdown(_card(timed=True, dropped={})
                              | {"cost": _cost_card(None, fits, Prices(), threads=1)})
    assert "training's cost is unknown" in unknown and "No prices are set" in unknown
    stored = render_markdown(_card(timed=False, dropped={}))
    assert "## Cost" not in stored, "run facts stay out of the stored card"


@pytest.mark.gpu
def test_training_on_cuda_records_the_gpu_and_prices_its_seconds(tmp_path, adult_features,
                                                                no_price_env):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    store, manifest = adult_features
    name = torch.cuda.get_device_name()
    # Every GPU name contains itself: a GPU second costs 1, a CPU second 0.5.
    spec = adult_spec(tmp_path / "gpu", LARGE,
                      cost={"cpu_core_hour": 1800.0, "gpu_hour": {name: 3600.0}})
    from pipelines.stages.training import build_trained_weights

    result = build_trained_weights(spec, store, manifest, threads=1, device="cuda",
                                   checkpoint_dir=tmp_path / "cuda")
    spent = result.metadata["cost"]
    assert spent["hardware"]["gpu"] == name and result.metadata["device"] == "cuda"
    assert spent["gpu_seconds"] > 0
    assert spent["amount"] == pytest.approx(spent["cpu_seconds"] / 2 + spent["gpu_seconds"],
                                            abs=2e-3)


@pytest.mark.parametrize(("variable", "value", "shown"), [
    ("TIDELINE_PRICE_CPU_CORE_HOUR", "cheap", "'cheap'"),
    ("TIDELINE_PRICE_CPU_CORE_HOUR", "-1", "'-1'"),
    ("TIDELINE_PRICE_GPU_HOUR", "H100", "'H100'"),
    ("TIDELINE_PRICE_GPU_HOUR", "H100=2.5,A10G=lots", "'A10G=lots'"),
])
def test_a_bad_price_in_the_environment_is_one_line_naming_the_variable(
        monkeypatch, no_price_env, variable, value, shown):
    from pipelines.cost import PriceError, prices

    monkeypatch.setenv(variable, value)
    with pytest.raises(PriceError) as failure:
        prices()
    message = str(failure.value)
    assert "\n" not in message and message.startswith(f"{variable}: {shown} is not a price")
    assert "fix the variable or unset it" in message


def test_gpu_prices_from_the_environment_match_a_listed_name_inside_the_device(
        monkeypatch, no_price_env):
    from pipelines.cost import prices

    monkeypatch.setenv("TIDELINE_PRICE_GPU_HOUR", "H100=2.5, A10G=1")
    price = prices()
    assert price.gpu_hour == {"H100": 2.5, "A10G": 1.0}
    assert price.gpu_price("NVIDIA H100 80GB HBM3") == 2.5 and price.gpu_price(None) == 0.0
