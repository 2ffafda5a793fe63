"""The digital side: networks with per-layer dropout slots, datasets split into
train / validation / test, and training (plain and hardware-aware).

- :func:`build`, :func:`list_models`: networks by name, adapted to a dataset's shape;
  ``net.dropout_slots`` / ``net.set_dropout(rates)`` are the BayesFT search space.
- :func:`load_dataset`, :func:`list_datasets`, :func:`check_dataset`: data as :class:`Splits`.
- :func:`train`, :class:`TrainConfig`, :class:`HardwareAware`, :func:`accuracy`,
  :func:`save_checkpoint`, :func:`load_checkpoint`.
"""

from .data import DatasetNotFound, Splits, check_dataset, default_root, list_datasets, load_dataset, read_idx, write_idx
from .networks import ACTIVATIONS, MLP, NORMS, VGG, DropoutNet, LeNet5, ResNet, build, list_models, resolve_rates
from .training import HardwareAware, TrainConfig, TrainResult, accuracy, load_checkpoint, save_checkpoint, train

__all__ = [
    "ACTIVATIONS", "MLP", "NORMS", "VGG", "DatasetNotFound", "DropoutNet", "HardwareAware", "LeNet5", "ResNet",
    "Splits", "TrainConfig", "TrainResult", "accuracy", "build", "check_dataset", "default_root", "list_datasets",
    "list_models", "load_checkpoint", "load_dataset", "read_idx", "resolve_rates", "save_checkpoint", "train",
    "write_idx",
]
