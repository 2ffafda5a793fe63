"""Each extension point is one entry, used end to end: a metric, a data set, a network
and a kind of device physics, each registered here with one call and then run through
the simulator and a whole scenario (the method table's is in tests/search/test_methods.py)."""

import json

import numpy as np
import pytest
import torch
import yaml
from aihwkit.inference.noise.base import BaseNoiseModel
from torch import nn

import crossbar
import models
import search.run
from crossbar.metrics import check_labels
from crossbar.physics import ALL_PARAMS, PHYSICS, Param
from models.networks import _NETWORKS
from search.config import ScenarioError, load_scenario

SMALL = {
    "seed": 1,
    "dataset": {"name": "digits", "max_train": 300, "max_val": 80, "max_test": 80},
    "model": {"name": "mlp", "options": {"depth": 1, "width": 16}},
    "training": {"epochs": 2, "lr": 0.01},
    "devices": ["lognormal"],
    "t_inference": ["1d"],
    "n_chips": 2,
    "search": {"n_trials": 3, "n_initial": 2},
    "baselines": {"uniform": [], "random": False, "hardware_aware": False},
    "report": {"t_inference": ["1s", "1d"], "n_chips": 3},
}


def run(tmp_path, **changes) -> dict:
    path = tmp_path / "extension.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "name": "extension", **changes}))
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "results.json").read_text())


# ------------------------------------------------------------------ a metric


class ErrorRate:
    """The share of wrong answers: a metric where lower is better."""

    def __init__(self, n, module):
        self.wrong, self.count = torch.zeros(n, dtype=torch.float64), 0

    def update(self, outputs, labels):
        self.wrong += (outputs.argmax(-1) != labels).sum(-1).double().cpu()
        self.count += len(labels)

    def compute(self):
        return (self.wrong / self.count).numpy()


@pytest.fixture
def error_rate():
    metric = crossbar.register_metric(crossbar.Metric(
        "error", "error rate", "classification", ErrorRate, higher_is_better=False,
        chance=lambda n_classes: 1 - 1 / n_classes, check_targets=check_labels, targets="labels"))
    yield metric
    crossbar.METRICS.pop("error")


def test_a_new_metric_is_one_call(error_rate, trained_mlp, digits_split, tmp_path):
    _, (x, y) = digits_split
    errors = crossbar.evaluate(trained_mlp, (x, y), "pcm", ["1d"], 4, seed=2, metric="error")
    accuracy = crossbar.evaluate(trained_mlp, (x, y), "pcm", ["1d"], 4, seed=2)
    np.testing.assert_allclose(errors, 1 - accuracy, atol=1e-12)
    assert models.clean_score(trained_mlp, (x, y), "error") == pytest.approx(1 - models.accuracy(trained_mlp, (x, y)))
    # a scenario names it; the search minimises it, training keeps its lowest epoch
    results = run(tmp_path, metric="error")
    assert results["metric"] == "error" and results["metric_label"] == "error rate"
    assert results["higher_is_better"] is False and results["chance"] == pytest.approx(0.9)
    trials = [json.loads(line) for line in (tmp_path / "run" / "trials.jsonl").read_text().splitlines()]
    searched = [t["objective"] for t in trials if t["method"] == "bayesft"]
    assert results["best_objective"] == min(searched) < max(searched) + 1e-12  # the lowest is the best
    assert all(r["metric"] == "error" for r in results["results"])
    assert (tmp_path / "run" / "error_vs_time.png").is_file() and (tmp_path / "run" / "convergence.png").is_file()
    with pytest.raises(ScenarioError, match="metric: 'error' scores classification; task detection is scored by"):
        load_scenario(data={"task": "detection", "dataset": "digit_scenes", "model": "fcos", "metric": "error"})


# ------------------------------------------------------------------ a data set


def stripes(root, download, verify):
    """Vertical against horizontal stripes, 8x8, with noise: two classes, generated."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 240)
    images = rng.uniform(0, 0.3, (240, 1, 8, 8))
    for i, label in enumerate(labels):
        lines = images[i, 0, :, ::2] if label else images[i, 0, ::2, :]
        lines += 0.7
    return torch.tensor(images, dtype=torch.float32), torch.tensor(labels), ["horizontal", "vertical"]


@pytest.fixture
def stripes_data():
    dataset = models.register_dataset(models.Dataset(
        "stripes", "stripes, two classes", stripes, official_test=False, scale=1.0, shape=(1, 8, 8), n_classes=2,
        files=lambda root: f"expected {root / 'STRIPES'}", present=lambda root: (root / "STRIPES").exists()))
    yield dataset
    models.DATASETS.pop("stripes")


def test_a_new_dataset_is_one_call(stripes_data, tmp_path):
    with pytest.raises(ScenarioError, match=f"dataset 'stripes' not found: expected {tmp_path / 'STRIPES'}; copy "):
        load_scenario(data={"dataset": {"name": "stripes", "root": str(tmp_path)}})
    (tmp_path / "STRIPES").touch()
    splits = models.load_dataset("stripes", root=tmp_path, seed=0)
    assert splits.in_shape == (1, 8, 8) and splits.n_classes == 2 and splits.classes == ["horizontal", "vertical"]
    results = run(tmp_path, dataset={"name": "stripes", "root": str(tmp_path)})
    assert results["n_classes"] == 2 and results["chance"] == 0.5
    assert min(info["test_clean"] for info in results["methods"].values()) > 0.9  # stripes are easy


# ------------------------------------------------------------------ a network


@pytest.fixture
def columns_net():
    @models.register("columns")
    class Columns(models.DropoutNet):
        """Each image's column means, then a hidden layer."""

        def __init__(self, in_shape, n_classes, hidden: int = 12):
            super().__init__()
            self.hidden = nn.Linear(in_shape[0] * in_shape[2], hidden)
            self.drop = self.slot("hidden")
            self.out = nn.Linear(hidden, n_classes)

        def forward(self, x):
            return self.out(self.drop(torch.relu(self.hidden(x.mean(2).flatten(1)))))

    yield Columns
    _NETWORKS.pop("columns")


def test_a_new_network_is_one_call(columns_net, tmp_path):
    net = models.build("columns", (1, 8, 8), 10, hidden=5)
    assert net.dropout_slots == ["hidden"] and len(crossbar.mapped_layers(net)) == 2
    results = run(tmp_path, model={"name": "columns", "options": {"hidden": 20}})
    assert results["slots"] == ["hidden"] and list(results["best_dropout"]) == ["hidden"]
    with pytest.raises(ScenarioError, match="columns: unknown option"):
        load_scenario(data={"model": {"name": "columns", "options": {"width": 3}}})


# ------------------------------------------------------------------ a kind of device physics


class Gain(BaseNoiseModel):
    """A made-up kind of physics: every device programmed at ``gain`` times its target."""

    def __init__(self, g_converter, gain: float = 1.0):
        super().__init__(g_converter)
        self.gain = gain

    def apply_programming_noise_to_conductance(self, g_target):
        return g_target * self.gain

    def generate_drift_coefficients(self, g_target):
        return None

    def apply_drift_noise_to_conductance(self, g_prog, drift_noise_param, t_inference):
        return g_prog.clone()


@pytest.fixture
def gain_kind():
    physics = crossbar.register_physics(crossbar.Physics(
        "gain", "devices at gain times their target",
        make=lambda converter, g_max, g_min, **params: Gain(converter, **params),
        params={"gain": Param("the devices' conductance over their target", gt=0)}, exact=True))
    yield physics
    PHYSICS.pop("gain")
    ALL_PARAMS.pop("gain")


def test_a_new_kind_of_physics_is_one_call(gain_kind, trained_mlp, digits_split, tmp_path):
    """Presets take it and its parameter (flat, checked), the chips run it, a full spec
    records it, a scenario's devices use it."""
    _, (x, y) = digits_split
    half = crossbar.preset({"name": "half", "physics": "gain", "gain": 0.5})
    assert half.gain == 0.5 and half.kind is gain_kind and half.full_spec()["gain"] == 0.5
    w = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(crossbar.sample_weights(w, half, 1.0, 2, seed=0), 0.5 * w.expand(2, -1, -1))
    exact = crossbar.evaluate(trained_mlp, (x, y), {"name": "one", "physics": "gain", "gain": 1.0}, [1.0], 2)
    assert (exact == crossbar.evaluate(trained_mlp, (x, y), "ideal", [1.0], 2)).all()  # gain 1: ideal devices
    with pytest.raises(ValueError, match="gain: Input should be greater than 0"):
        crossbar.preset({"name": "off", "physics": "gain", "gain": 0.0})
    with pytest.raises(ValueError, match="gain does not apply to physics='pcm'"):
        crossbar.preset("pcm", gain=0.5)
    with pytest.raises(ValueError, match="parameter 'sigma' has other bounds"):
        crossbar.register_physics(crossbar.Physics("bad", "", make=lambda *a: None,
                                                   params={"sigma": Param("", gt=1.0)}))
    results = run(tmp_path, devices=[{"name": "weak", "physics": "gain", "gain": 0.8}],
                  report={"t_inference": ["1s", "1d"], "n_chips": 3, "sweep": {"parameter": "gain", "values": [1.0]}})
    assert results["devices"][0]["physics"] == "gain" and results["devices"][0]["gain"] == 0.8
    ideal = {r["method"]: r["mean"] for r in results["sweep"] if r["t_inference"] == 1.0}
    digital = {m: info["test_clean"] for m, info in results["methods"].items()}
    assert ideal == pytest.approx(digital, abs=1e-12)  # gain 1: the digital score, on every chip
