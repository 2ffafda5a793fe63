"""The digital side: networks with per-layer dropout slots, datasets split into
train / validation / test, and training (plain and hardware-aware).

- :func:`build`, :func:`list_models`, :func:`register`: networks by name, adapted to a
  dataset's shape; ``net.dropout_slots`` / ``net.set_dropout(rates)`` are the BayesFT
  search space.
- :func:`load_dataset`, :func:`list_datasets`, :func:`check_dataset`,
  :func:`dataset_shape`, :data:`DATASETS`: data as :class:`Splits`.
- detection (:mod:`models.detection`): the ``digit_scenes`` and ``voc`` data sets,
  :class:`FCOSDetector` (``build("fcos", ...)``), :func:`mean_average_precision`;
  :func:`task_metric` / :func:`clean_score`: a network's metric, digitally.
- :func:`train`, :class:`TrainConfig`, :class:`HardwareAware`, :func:`accuracy`;
  :func:`save_checkpoint`, :func:`load_checkpoint`.

Files: ``networks`` (the networks and their registry), ``data`` (the dataset table,
splits), ``detection``, ``idx`` and ``torchvision_data`` (the readers), ``training``, ``checkpoints``.
"""

from .checkpoints import load_checkpoint, save_checkpoint
from .data import (
    DATASETS,
    Dataset,
    Splits,
    check_dataset,
    dataset_shape,
    dataset_task,
    default_root,
    list_datasets,
    load_dataset,
)
from .detection import FCOSDetector, make_scenes, mean_average_precision
from .errors import DatasetNotFound
from .idx import read_idx, write_idx
from .networks import (
    ACTIVATIONS,
    MLP,
    NORMS,
    VGG,
    DropoutNet,
    LeNet5,
    ResNet,
    build,
    list_models,
    model_task,
    register,
    resolve_rates,
)
from .training import (
    RAMP,
    SMALL_STEP,
    TASK_METRICS,
    WARMUP,
    HardwareAware,
    TrainConfig,
    TrainResult,
    accuracy,
    clean_score,
    multiply_adds,
    task_metric,
    train,
)

__all__ = [
    "ACTIVATIONS", "DATASETS", "MLP", "NORMS", "RAMP", "SMALL_STEP", "VGG", "WARMUP", "Dataset", "DatasetNotFound",
    "DropoutNet", "HardwareAware", "LeNet5", "ResNet", "Splits", "TrainConfig", "TrainResult", "accuracy", "build",
    "check_dataset", "dataset_shape", "default_root", "list_datasets", "list_models", "load_checkpoint",
    "load_dataset", "multiply_adds", "read_idx", "register", "resolve_rates", "save_checkpoint", "train", "write_idx",
    "FCOSDetector", "TASK_METRICS", "clean_score", "dataset_task",
    "make_scenes", "mean_average_precision", "model_task", "task_metric",
]
