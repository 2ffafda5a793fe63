"""crossbar.evaluate's metrics: accuracy as before, a detector's mAP per chip, callables."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import crossbar
import models


@pytest.fixture(scope="module")
def detector():
    splits = models.load_dataset("digit_scenes", seed=0, max_val=60, max_test=120)
    net = models.build("fcos", splits.in_shape, splits.n_classes, seed=0)
    models.train(net, splits, models.TrainConfig(epochs=6, lr=0.01), seed=0)
    return net.eval(), splits


def test_accuracy_by_name_and_by_callable_is_todays_accuracy(trained_mlp, digits_split):
    _, (x, y) = digits_split
    times = [1.0, 86400.0]
    default = crossbar.evaluate(trained_mlp, (x, y), "pcm", times, 5, seed=3)
    named = crossbar.evaluate(trained_mlp, (x, y), "pcm", times, 5, seed=3, metric="accuracy")
    assert np.array_equal(default, named)

    def accuracy(outputs, labels):
        return (outputs.argmax(-1) == labels).double().mean()

    called = crossbar.evaluate(trained_mlp, (x, y), "pcm", times, 5, seed=3, metric=accuracy, batch_size=37)
    np.testing.assert_allclose(called, default, rtol=0, atol=1e-12)
    # the accuracies are those of the chips' own outputs
    xmodel = crossbar.convert(trained_mlp, "pcm").program(5, seed=3).drift(86400.0)
    with torch.no_grad():
        hand = (xmodel(x).argmax(-1) == y).double().mean(-1).numpy()
    assert np.array_equal(default[1], hand)


def test_ideal_chips_score_the_digital_detectors_map_exactly(detector):
    net, splits = detector
    digital = models.mean_average_precision(net, splits.test)
    assert digital["map50"] > 0.05  # it learnt something, so equality means something
    for metric in ("map50", "map"):
        chips = crossbar.evaluate(net, splits.test, "ideal", [1.0, 86400.0], 3, metric=metric, batch_size=50)
        assert chips.shape == (2, 3) and (chips == digital[metric]).all()


def test_map_falls_with_lognormal_sigma(detector):
    net, splits = detector
    sigmas, n_chips = [0.05, 0.5, 1.5], 8
    scores = [crossbar.evaluate(net, splits.test, {"name": f"s{s}", "base": "lognormal", "sigma": s}, [1.0],
                                n_chips, seed=1, metric="map50")[0] for s in sigmas]
    means = [s.mean() for s in scores]
    for a, b, low, high in zip(means, means[1:], scores, scores[1:]):
        # each step down exceeds 3 standard errors of the difference of the two means
        se = math.sqrt(low.var(ddof=1) / n_chips + high.var(ddof=1) / n_chips)
        assert a - b > 3 * se, (means, se)


def test_map_chips_keep_their_identity_over_chunks_strategies_and_targets(detector):
    net, splits = detector
    x, y = splits.test
    full = crossbar.evaluate(net, (x, y), "reram_cmo", [3600.0], 4, seed=2, metric="map50")
    assert len(set(full[0].tolist())) > 1  # chips differ
    assert np.array_equal(crossbar.evaluate(net, (x, y), "reram_cmo", [3600.0], 2, seed=2, metric="map50"),
                          full[:, :2])
    assert np.array_equal(crossbar.evaluate(net, (x, y), "reram_cmo", [3600.0], 4, seed=2, metric="map50",
                                            chunk_size=3), full)
    fold = crossbar.evaluate(net, (x, y), "reram_cmo", [3600.0], 4, seed=2, metric="map50", strategy="fold")
    np.testing.assert_allclose(fold, full, atol=1e-6)
    # a DataLoader of images and one {boxes, labels} dict per image gives the same scores
    samples = list(zip(x, models.target_dicts(y)))
    loader = DataLoader(samples, batch_size=32, collate_fn=models.collate_detection)
    assert np.array_equal(crossbar.evaluate(net, loader, "reram_cmo", [3600.0], 4, seed=2, metric="map50"), full)


def test_a_callable_metric_sees_each_chips_outputs_and_all_targets(detector):
    net, splits = detector
    x, y = splits.test
    seen = []

    def count(outputs, targets):
        seen.append((outputs.shape, targets.shape))
        return float(outputs[..., 0].mean())

    scores = crossbar.evaluate(net, (x, y), "reram_cmo", [1.0, 60.0], 3, metric=count, batch_size=50)
    assert seen == [((len(x), 36, 15), tuple(y.shape))] * 6
    assert scores.shape == (2, 3) and len(set(scores.ravel().tolist())) == 6


def test_bad_metrics_are_one_line(detector, trained_mlp, digits_split):
    net, splits = detector
    cases = [
        (dict(model=net, data=splits.test, metric="f1"), "metric: unknown 'f1'; known: accuracy, map50, map, map75"),
        (dict(model=trained_mlp, data=digits_split[1], metric="map50"), "metric 'map50' needs a detector"),
        (dict(model=net, data=splits.test, metric="accuracy"), "labels must be a 1-D integer tensor"),
        (dict(model=net, data=splits.test, metric=lambda o, t: "high"), "must return a number"),
        (dict(model=net, data=(splits.test[0], splits.test[1][:, :, :4]), metric="map50"),
         r"\(batch, max_objects, 5\)"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            crossbar.evaluate(preset="ideal", t_inference=1.0, n_chips=1, **kwargs)
        assert "\n" not in str(err.value)
