"""The digital side: networks with per-layer dropout slots, tasks and their metrics,
datasets split into train / validation / test, and training (plain and hardware-aware).

The user-facing API (``__all__``):

- networks: :func:`build`, :func:`list_models`, :func:`register`, :func:`model_task`,
  :class:`DropoutNet` (``slot()`` makes a dropout slot; ``net.dropout_slots`` /
  ``net.set_dropout(rates)`` are the BayesFT search space), the networks
  (:class:`MLP`, :class:`LeNet5`, :class:`VGG`, :class:`ResNet`, :class:`FCOSDetector`).
- tasks: :data:`TASKS` (:class:`Task`, :func:`register_task`), :func:`task_of`,
  :func:`metric_of`, :func:`clean_score` (a network's score digitally, by any metric),
  :func:`accuracy`, :func:`mean_average_precision`; a detector's interface
  (:class:`Detector`) and targets (:func:`target_dicts`, :func:`collate_detection`).
- data: :func:`load_dataset` (:class:`Splits`), :func:`list_datasets`,
  :func:`check_dataset`, :func:`dataset_shape`, :func:`dataset_task`, :data:`DATASETS`
  (:class:`Dataset`, :func:`register_dataset`), :class:`DatasetNotFound`, :class:`BadData`,
  :func:`read_idx`, :func:`write_idx`.
- training: :func:`train`, :class:`TrainConfig`, :class:`HardwareAware`,
  :class:`TrainResult`; :func:`save_checkpoint`, :func:`load_checkpoint`,
  :func:`load_weights` (a state dict into any network).
- a user's own network: any name ``module:callable`` (:mod:`models.imports`,
  :func:`import_network`) builds wherever a registered name does.

Files: ``networks`` (the networks and their registry), ``fcos`` (the detector), ``ecoc``
(output codes), ``imports`` (users' networks), ``tasks``, ``datasets/`` (the table and one reader per source),
``training``, ``checkpoints``. Their other names are importable from there.
"""

from .checkpoints import load_checkpoint, load_weights, save_checkpoint
from .datasets import (
    DATASETS,
    Dataset,
    Splits,
    check_dataset,
    dataset_shape,
    dataset_task,
    list_datasets,
    load_dataset,
    register_dataset,
)
from .datasets.idx import read_idx, write_idx
from .errors import BadData, DatasetNotFound
from .fcos import FCOSDetector
from .imports import import_network
from .networks import MLP, VGG, DropoutNet, LeNet5, ResNet, build, list_models, model_task, register
from .tasks import (
    TASKS,
    Detector,
    Task,
    accuracy,
    clean_score,
    collate_detection,
    mean_average_precision,
    metric_of,
    register_task,
    target_dicts,
    task_of,
)
from .training import RAMP, WARMUP, HardwareAware, TrainConfig, TrainResult, train

__all__ = [
    "BadData",
    "DATASETS",
    "Dataset",
    "DatasetNotFound",
    "Detector",
    "DropoutNet",
    "FCOSDetector",
    "HardwareAware",
    "LeNet5",
    "MLP",
    "RAMP",
    "ResNet",
    "Splits",
    "TASKS",
    "Task",
    "TrainConfig",
    "TrainResult",
    "VGG",
    "WARMUP",
    "accuracy",
    "build",
    "check_dataset",
    "clean_score",
    "collate_detection",
    "dataset_shape",
    "dataset_task",
    "list_datasets",
    "list_models",
    "import_network",
    "load_checkpoint",
    "load_dataset",
    "load_weights",
    "mean_average_precision",
    "metric_of",
    "model_task",
    "read_idx",
    "register",
    "register_dataset",
    "register_task",
    "save_checkpoint",
    "target_dicts",
    "task_of",
    "train",
    "write_idx",
]
