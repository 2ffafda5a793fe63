"""The tables of models/: networks by name, datasets by name; training's thread default."""

import numpy as np
import pytest
import torch
from torch import nn

import models
from models.datasets.idx import write_idx
from models.networks import _NETWORKS
from models.training import SMALL_STEP, multiply_adds


def test_a_registered_network_builds_by_name_with_options_from_its_signature():
    @models.register("tiny_test_net")
    @models.register("tiny_test_net_wide", width=32)
    class TinyNet(models.DropoutNet):
        def __init__(self, in_shape, n_classes, width: int = 4, activation: str = "relu"):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(in_shape)), width), nn.ReLU(),
                                     self.slot("hidden"), nn.Linear(width, n_classes))

        def forward(self, x):
            return self.net(x)

    try:
        assert {"tiny_test_net", "tiny_test_net_wide"} <= set(models.list_models())
        net = models.build("tiny_test_net", (1, 8, 8), 10, dropout=0.2, width=6, seed=0)
        assert net.net[1].out_features == 6 and net.dropout_slots == ["hidden"] and net.dropout_rates == [0.2]
        assert net.spec == {"name": "tiny_test_net", "in_shape": [1, 8, 8], "n_classes": 10, "width": 6}
        assert models.build("tiny_test_net_wide", (1, 8, 8), 10).net[1].out_features == 32  # its fixed option
        with pytest.raises(ValueError, match=r"tiny_test_net_wide: unknown option\(s\) width; valid: activation"):
            models.build("tiny_test_net_wide", (1, 8, 8), 10, width=8)
    finally:
        _NETWORKS.pop("tiny_test_net", None)
        _NETWORKS.pop("tiny_test_net_wide", None)


def test_the_dataset_table_knows_each_shape_without_loading(tmp_path):
    splits = models.load_dataset("digits", seed=0)
    assert models.dataset_shape("digits") == (splits.in_shape, splits.n_classes) == ((1, 8, 8), 10)
    # the torchvision data sets' shapes are checked against their readers in test_data.py
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "x-images-idx3-ubyte", rng.integers(0, 255, (30, 12, 9), dtype=np.uint8))
    write_idx(tmp_path / "x-labels-idx1-ubyte.gz", rng.integers(0, 7, 30).astype(np.uint8))
    shape, classes = models.dataset_shape("idx", tmp_path)  # read from the files' headers and labels
    splits = models.load_dataset("idx", root=tmp_path, seed=0)
    assert (shape, classes) == (splits.in_shape, splits.n_classes) == ((1, 12, 9), 7)
    assert models.dataset_shape("idx", tmp_path / "missing") == ((1, 28, 28), 10)  # check_dataset says it is missing


class _ThreadProbe(nn.Module):
    """Records torch's thread count in each training step; ``n_in * 10`` multiply-adds a sample."""

    def __init__(self, n_in: int):
        super().__init__()
        self.fc = nn.Linear(n_in, 10)
        self.seen: list[int] = []

    def forward(self, x):
        if self.training:
            self.seen.append(torch.get_num_threads())
        return self.fc(x)


def test_multiply_adds_counts_linear_and_convolution_layers():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 7))
    assert multiply_adds(net, torch.zeros(1, 3, 5, 5)) == 4 * 5 * 5 * 3 * 3 * 3 + 100 * 7
    lenet = models.build("lenet5", (1, 8, 8), 10)
    assert 2e6 < 64 * multiply_adds(lenet, torch.zeros(1, 1, 8, 8)) < SMALL_STEP  # digits: one thread
    lenet = models.build("lenet5", (1, 28, 28), 10)
    assert 64 * multiply_adds(lenet, torch.zeros(1, 1, 28, 28)) > 2 * SMALL_STEP  # MNIST: torch's


@pytest.mark.parametrize("n_in, threads, expected", [
    (200, None, 1),                                # a small step: one thread
    (200, 2, 2),                                   # asked for
    (SMALL_STEP // (32 * 10) * 2, None, None),  # a large step (batch 32): torch's own count
])
def test_small_steps_train_on_one_thread_and_the_callers_count_comes_back(n_in, threads, expected):
    x = torch.randn(64, n_in)
    y = torch.randint(0, 10, (64,))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = _ThreadProbe(n_in)
        models.train(net, ((x, y), (x, y)), models.TrainConfig(epochs=1, batch_size=32), threads=threads)
        assert set(net.seen) == {expected or 2}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
