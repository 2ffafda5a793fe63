"""The digital side: networks with per-layer dropout slots (this module), and, to come
in the rest of issue 3, datasets with train/validation/test splits and training.

- :func:`build`, :func:`list_models`: networks by name, adapted to a dataset's shape.
- ``net.dropout_slots`` / ``net.set_dropout(rates)``: the BayesFT search space.
"""

from .networks import ACTIVATIONS, MLP, NORMS, VGG, DropoutNet, LeNet5, ResNet, build, list_models, resolve_rates

__all__ = ["ACTIVATIONS", "MLP", "NORMS", "VGG", "DropoutNet", "LeNet5", "ResNet", "build", "list_models", "resolve_rates"]
