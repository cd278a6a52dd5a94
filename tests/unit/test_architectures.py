"""Built-in architectures and user models: ONNX parity, clear errors, the code hash."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.architectures import BUILTIN, ModelInputs, build
from pipelines.model_ref import BUILTIN_NAMES, ModelCodeError, code_hash
from pipelines.spec import SpecError, load_spec
from tests.conftest import ADULT_CSV, REPO, write_spec

EXAMPLE = "models/residual_net.py:build"


@pytest.fixture(scope="module")
def adult():
    spec = load_spec(REPO / "datasets" / "adult.yaml")
    frame = pd.read_csv(ADULT_CSV, na_values=["", "?"])
    return spec, frame


def _fitted(spec, frame):
    from pipelines.features import LABEL_COLUMN, fit_preprocessing

    train = frame.iloc[:1500].copy()
    train[LABEL_COLUMN] = (train[spec.target.column] == ">50K").astype("float32")
    return train, fit_preprocessing(train, spec)


def _awkward_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Held-out rows with missing numbers, missing categories and categories never seen."""
    rows = frame.iloc[2000:2200].copy().reset_index(drop=True)
    rows.loc[0:19, "age"] = np.nan
    rows.loc[10:29, "capital-gain"] = np.nan
    rows.loc[30:49, "workclass"] = None
    rows.loc[40:59, "native-country"] = "Atlantis"
    rows.loc[60:69, "occupation"] = "Lighthouse-keeper"
    rows.loc[70, "capital-gain"] = 99_999.0  # the tail that overflows fp16 if not kept fp32
    return rows


@pytest.mark.parametrize("architecture", [*BUILTIN, EXAMPLE])
def test_onnx_export_matches_torch_on_rows_with_missing_and_unseen_values(adult, architecture):
    import torch

    from pipelines.export import export_predictor
    from pipelines.features import encode, onnx_feeds
    from pipelines.quantize import predict, session
    from pipelines.spec import TrainingSpec
    from pipelines.training import build_model, model_settings, train

    spec, frame = adult
    train_rows, params = _fitted(spec, frame)
    cfg = TrainingSpec(model=architecture, hidden=[16, 8], epochs=2, batch_size=128,
                       params={"frequencies": 8, "members": 4} if architecture in BUILTIN
                       else {"width": 16, "blocks": 1})
    result = train(train_rows.iloc[:1200], train_rows.iloc[1200:], params, cfg, threads=1)
    model = build_model(params, cfg.model, model_settings(cfg))
    model.load_state_dict(result.state_dict)
    model.eval()
    rows = _awkward_rows(frame)
    num, cat = encode(rows, params)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(num), torch.from_numpy(cat))).numpy()
    got = predict(session(export_predictor(model, params)), onnx_feeds(rows, params))
    assert np.isfinite(got).all() and got.shape == (len(rows),)
    assert np.abs(got - expected).max() <= 1e-5
    # fp16 runs the network at half precision but keeps the periodic phases in fp32.
    half = predict(session(export_predictor(model, params, precision="fp16")),
                   onnx_feeds(rows, params))
    assert np.abs(half - expected).max() <= spec.quantization.fp16_tolerance
    # The awkward rows are scored, not all alike: missing and unseen values went through.
    assert len(np.unique(np.round(got, 6))) > 10


def _user_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "my_net.py"
    path.write_text(body)
    return f"{path}:build"


INPUTS = ModelInputs(numeric=("a", "b"), categorical={"c": 4})


def test_a_user_file_that_cannot_be_imported_names_file_and_function(tmp_path):
    ref = _user_file(tmp_path, "import torch\ndef build(inputs, params)\n    pass\n")
    with pytest.raises(ModelCodeError) as err:
        build(ref, INPUTS, {"hidden": [4], "dropout": 0.0})
    text = str(err.value)
    assert "\n" not in text
    assert str(tmp_path / "my_net.py") in text and "SyntaxError" in text
    assert text.startswith(f"training.model {ref!r}: importing ")


def test_a_user_function_returning_the_wrong_thing_names_file_and_function(tmp_path):
    ref = _user_file(tmp_path, "def build(inputs, params):\n    return [inputs]\n")
    with pytest.raises(ModelCodeError, match=r"my_net\.py, function build returned list, "
                                             r"not a torch\.nn\.Module"):
        build(ref, INPUTS, {"hidden": [4], "dropout": 0.0})


def test_a_module_with_the_wrong_output_shape_says_what_forward_must_return(tmp_path):
    ref = _user_file(tmp_path, (
        "import torch\n"
        "def build(inputs, params):\n"
        "    return torch.nn.Linear(len(inputs.numeric), 3)\n"))
    with pytest.raises(ModelCodeError) as err:
        build(ref, INPUTS, {"hidden": [4], "dropout": 0.0})
    # Linear takes one argument: forward(numeric, categorical) fails, and says so.
    assert "fails on a two-row batch" in str(err.value)
    assert "forward(numeric, categorical)" in str(err.value)
    ref = _user_file(tmp_path, (
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def forward(self, numeric, categorical):\n"
        "        return numeric\n"
        "def build(inputs, params):\n"
        "    return Net()\n"))
    with pytest.raises(ModelCodeError, match=r"returned \(2, 2\) for a two-row batch; return "
                                             r"one logit per row"):
        build(ref, INPUTS, {"hidden": [4], "dropout": 0.0})


def test_a_network_that_fails_in_training_names_file_and_function(adult, tmp_path):
    from pipelines.spec import TrainingSpec
    from pipelines.stages.training import user_code
    from pipelines.training import train

    spec, frame = adult
    train_rows, params = _fitted(spec, frame)
    ref = _user_file(tmp_path, (
        "import torch\n"
        "class Constant(torch.nn.Module):\n"
        "    def forward(self, numeric, categorical):\n"
        "        return torch.zeros(len(numeric))\n"
        "def build(inputs, params):\n"
        "    return Constant()\n"))
    cfg = TrainingSpec(model=ref, epochs=1)
    with pytest.raises(ModelCodeError) as err, user_code(ref, "training"):
        train(train_rows.iloc[:300], train_rows.iloc[300:400], params, cfg, threads=1)
    text = str(err.value)
    assert text.startswith(f"training.model {ref!r}: training the module from ")
    assert "my_net.py, function build failed (ValueError: optimizer got an empty parameter " \
        "list)" in text and "\n" not in text


def test_missing_file_function_and_module_each_get_their_own_message(tmp_path):
    with pytest.raises(ModelCodeError, match=r"file nowhere/net\.py not found \(looked at "):
        build("nowhere/net.py:build", INPUTS, {})
    ref = _user_file(tmp_path, "def make(inputs, params):\n    return None\n")
    with pytest.raises(ModelCodeError, match=r"has no function build; define build\(inputs, "
                                             r"params\) there"):
        build(ref, INPUTS, {})
    with pytest.raises(ModelCodeError, match=r"cannot import module no_such_pkg\.nets"):
        build("no_such_pkg.nets:build", INPUTS, {})


def test_a_module_path_names_a_function_in_an_importable_package():
    net = build("tests.unit.test_architectures:_tiny", INPUTS, {"hidden": [4], "dropout": 0.0})
    assert net.__class__.__name__ == "Linear2"


def _tiny(inputs, params):
    import torch

    class Linear2(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(len(inputs.numeric), 1)

        def forward(self, numeric, categorical):
            return self.linear(numeric)

    return Linear2()


def test_code_hash_follows_the_code_not_its_comments_or_docstrings(tmp_path):
    ref = _user_file(tmp_path, '"""Doc."""\ndef build(inputs, params):\n    return 1\n')
    first = code_hash(ref)
    (tmp_path / "my_net.py").write_text(
        '"""Another doc."""\n# a comment\ndef build(inputs, params):\n\n    return 1\n')
    assert code_hash(ref) == first
    (tmp_path / "my_net.py").write_text('def build(inputs, params):\n    return 2\n')
    assert code_hash(ref) != first
    assert code_hash("plr_mlp") == "builtin:plr_mlp" != code_hash("mlp")
    # The spec checks names against the torch-free list; the builders are the same set.
    assert tuple(BUILTIN) == BUILTIN_NAMES


def test_the_spec_refuses_a_model_that_is_neither_built_in_nor_file_or_module(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "adult", ADULT_CSV, training__model="resnet")
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert "training.model 'resnet' is neither a built-in architecture (mlp, plr_mlp" in \
        str(err.value)
    spec = write_spec(tmp_path / "s.yaml", "adult", ADULT_CSV, training__params={"hidden": 3})
    with pytest.raises(SpecError, match=r"set training\.hidden instead of "
                                        r"training\.params\.hidden"):
        load_spec(spec)
    spec = write_spec(tmp_path / "s.yaml", "adult", ADULT_CSV,
                      tuning__search_space__params={"dropout": {"low": 0.1, "high": 0.5}})
    with pytest.raises(SpecError, match=r"params\.dropout: a training setting"):
        load_spec(spec)


def test_searched_params_replace_the_models_own_training_params():
    from pipelines.spec import TrainingSpec
    from pipelines.tuning import trial_config

    base = TrainingSpec(model="plr_mlp", params={"frequencies": 8, "frequency_scale": 1.0})
    cfg = trial_config({"learning_rate": 0.01, "width": 32, "depth": 2, "dropout": 0.1,
                        "weight_decay": 1e-4, "epochs": 3, "params.frequency_scale": 4.5},
                       base)
    assert cfg.params == {"frequencies": 8, "frequency_scale": 4.5}
    assert cfg.hidden == [32, 16] and cfg.model == "plr_mlp"


def test_int8_of_the_default_network_is_under_half_of_fp32_and_within_tolerance(adult):
    from pipelines.export import export_predictor
    from pipelines.features import onnx_feeds
    from pipelines.quantize import predict, quantize_int8, session
    from pipelines.training import build_model, model_settings, train

    spec, frame = adult  # datasets/adult.yaml's own settings: the default architecture
    assert spec.training.model == "plr_mlp"
    train_rows, params = _fitted(spec, frame)
    cfg = spec.training.model_copy(update={"epochs": 2})
    result = train(train_rows.iloc[:1200], train_rows.iloc[1200:], params, cfg, threads=1)
    model = build_model(params, cfg.model, model_settings(cfg))
    model.load_state_dict(result.state_dict)
    model.eval()
    assert model.body.bounded_layer_inputs
    fp32 = export_predictor(model, params)
    int8 = quantize_int8(fp32, onnx_feeds(train_rows.iloc[:256], params),
                         input_layer_fp32=False)
    assert len(int8) <= 0.5 * len(fp32)
    rows = _awkward_rows(frame)
    feeds = onnx_feeds(rows, params)
    diff = np.abs(predict(session(int8), feeds) - predict(session(fp32), feeds))
    assert diff.max() <= spec.quantization.int8_tolerance


def test_optuna_searches_the_models_own_params_in_their_ranges():
    import optuna

    from pipelines.spec import RangeSpec, SearchSpaceSpec, TrainingSpec
    from pipelines.tuning import _suggest, trial_config

    space = SearchSpaceSpec(params={"width": RangeSpec(low=8, high=64, log=True, integer=True),
                                    "frequency_scale": RangeSpec(low=0.5, high=50, log=True)})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        picked = _suggest(study.ask(), space)
        cfg = trial_config(picked, TrainingSpec(model=EXAMPLE, params={"blocks": 1}))
        assert isinstance(cfg.params["width"], int) and 8 <= cfg.params["width"] <= 64
        assert 0.5 <= cfg.params["frequency_scale"] <= 50
        assert cfg.params["blocks"] == 1


def test_a_long_epoch_reports_rows_rate_and_time_left_without_changing_the_fit(
        adult, monkeypatch):
    from pipelines import training
    from pipelines.spec import TrainingSpec

    spec, frame = adult
    train_rows, params = _fitted(spec, frame)
    cfg = TrainingSpec(model="mlp", hidden=[8], epochs=2, batch_size=200)
    quiet = training.train(train_rows.iloc[:1000], train_rows.iloc[1000:], params, cfg,
                           threads=1)
    monkeypatch.setattr(training, "PROGRESS_EVERY_S", 0.0)
    seen: list[training.Progress] = []
    loud = training.train(train_rows.iloc[:1000], train_rows.iloc[1000:], params, cfg,
                          threads=1, on_progress=seen.append)
    assert [(p.epoch, p.rows) for p in seen] == [
        (e, r) for e in (0, 1) for r in (200, 400, 600, 800, 1000)]
    assert all(p.rows_per_epoch == 1000 and p.epochs == 2 for p in seen)
    assert seen[-1].eta_seconds == 0.0 and seen[0].eta_seconds > 0
    assert seen[0].line().startswith("epoch 1/2: 200/1,000 rows, ")
    assert "min left" in seen[0].line()
    assert all(torch_equal(quiet.state_dict[k], loud.state_dict[k]) for k in quiet.state_dict)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


@pytest.mark.parametrize("architecture", [*BUILTIN, EXAMPLE])
def test_a_table_without_numeric_columns_is_scored_by_every_network(architecture):
    from pipelines.export import export_predictor
    from pipelines.features import onnx_feeds
    from pipelines.quantize import predict, quantize_int8, session
    from pipelines.training import build_model

    params = {"numeric": {}, "categorical": {"colour": ["blue", "red"], "size": ["L", "S"]}}
    settings = {"hidden": [4], "dropout": 0.0, "width": 8, "blocks": 1}
    model = build_model(params, architecture, settings).eval()
    rows = pd.DataFrame({"colour": ["blue", "red", "green", None],
                         "size": ["S", None, "L", "XL"]})
    fp32 = export_predictor(model, params)
    p = predict(session(fp32), onnx_feeds(rows, params))
    assert p.shape == (4,) and np.isfinite(p).all()
    int8 = quantize_int8(fp32, onnx_feeds(rows, params))
    assert np.isfinite(predict(session(int8), onnx_feeds(rows, params))).all()
