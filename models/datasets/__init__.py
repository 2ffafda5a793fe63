"""Datasets, split into train / validation / test with a fixed seed.

    splits = models.load_dataset("digits", seed=0)          # bundled, no download
    splits = models.load_dataset("mnist", root="data", download=True)
    splits = models.load_dataset("idx", root="../shared/data/mnist-t10k")
    splits = models.load_dataset("image_folder", root="my_images", options={"size": [32, 32]})
    splits = models.load_dataset("tensors", root="data.pt")   # or data.npz
    x, y = splits.train                                     # float32 (N, C, H, W), int64 (N,)

The search selects on ``val`` and reports on ``test``; the two never overlap.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images), split into
  train / validation / test by ``val_fraction`` and ``test_fraction``.
- ``mnist``, ``fashion_mnist``, ``cifar10``, ``gtsrb``: through torchvision, under
  ``root``; ``download=True`` fetches them (needs internet). Their official test split
  is the test split; the validation split is ``val_fraction`` of the official training
  split. GTSRB images are resized to 32x32.
- ``digit_scenes`` (detection): 2,000 generated 48x48 scenes of 1 to 3 digits with
  clutter; targets ``(N, 3, 5)`` rows ``[label, x1, y1, x2, y2]`` (label -1: none), see
  :mod:`models.datasets.scenes`. ``voc`` (detection): a Pascal VOC folder, resized to
  96x96. Both are pooled and split like ``digits``.
- ``idx``: a folder of MNIST-format IDX files (``*-images-idx3-ubyte`` with the matching
  ``*-labels-idx1-ubyte``, plain or ``.gz``), pooled and split like ``digits``.
- A researcher's own data, pooled and split like ``digits``:

  - ``image_folder``: torchvision's ``ImageFolder`` layout, ``root/<class>/<image>.png``
    (one folder per class, named for it). Options ``size`` (``[H, W]`` or one number:
    every image resized to it; without it all must be the same size) and ``channels``
    (1 grey or 3 RGB; without it the first image's kind, and all must be of it). See
    :mod:`models.datasets.image_folder`.
  - ``tensors``: one file, the ``root``: ``.pt`` (``torch.save({"x": images, "y":
    labels}, "data.pt")``, read with ``weights_only=True``) or ``.npz``
    (``numpy.savez``, read without pickle); inputs ``(N, C, H, W)`` or ``(N, H, W)``,
    uint8 divided by 255, floats kept as they are; labels 0..K-1, optional ``classes``.
    See :mod:`models.datasets.tensors`.

Each is one :class:`Dataset` record of :data:`DATASETS` (its loader, shape, classes,
task, the files it needs and a check that they are there, the options it takes),
registered by the module that reads it: ``digits``, ``idx``, ``vision`` (torchvision's),
``scenes``, ``voc``, ``image_folder``, ``tensors``. A new data set is one call,
:func:`register_dataset`. A data set's own options come as ``options={...}`` to
:func:`load_dataset`, :func:`check_dataset` and :func:`dataset_shape`; a name it does
not take is a ValueError naming those it does.

Images are scaled to [0, 1] (a ``tensors`` file's floats are kept as they are), then
standardised per channel with the training split's mean and standard deviation
(``normalize=False`` keeps them as read).

Missing data gets a :class:`DatasetNotFound` whose one-line message names the folder
and the files expected; data that is there but unusable as it is (images of mixed
sizes, a file's missing keys or bad labels) a :class:`~models.errors.BadData` (a
ValueError) naming the file and what to change. :func:`check_dataset` finds these
without loading anything (headers and labels only), so a caller can fail before any work.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from crossbar.common import check_seed, did_you_mean

from ..errors import DatasetNotFound, Pathish

# each registers its data sets, in the order they are listed
from . import digits, idx, vision, scenes, voc, image_folder, tensors  # noqa: F401  # isort: skip
from .base import DATASETS, Dataset, Splits, default_root, register_dataset

__all__ = ["DATASETS", "Dataset", "Splits", "check_dataset", "dataset_shape", "dataset_task", "default_root",
           "list_datasets", "load_dataset", "register_dataset"]


def dataset_task(name: str) -> str:
    """``"classification"`` or ``"detection"``: what the data set's targets are."""
    return _dataset(name).task


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(DATASETS)


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; valid datasets: "
                         f"{', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_shape(
    name: str, root: Optional[Pathish] = None, *, options: Optional[Mapping[str, Any]] = None
) -> tuple[tuple[int, int, int], int]:
    """``(in_shape, n_classes)`` of a data set without loading it (:meth:`Dataset.shape_of`);
    ``options``: the data set's own (``image_folder``'s ``size`` and ``channels``)."""
    return _dataset(name).shape_of(root, options)


def check_dataset(
    name: str, root: Optional[Pathish] = None, download: bool = False, *, options: Optional[Mapping[str, Any]] = None
) -> None:
    """Fail now, with one line, if :func:`load_dataset` could not find the data.

    Checks the name, the ``options`` (names the data set takes, then their values), that
    the expected files are present (unless ``download`` is set, when they may be fetched)
    and, where the data set has a ``check`` (VOC's annotations, a folder's image headers,
    a file's arrays), what is in them.
    """
    dataset = _dataset(name)
    options = dataset.take_options(options)
    if dataset.needs_root:
        if root is None:
            raise ValueError(f"dataset {name!r} needs root: {dataset.root_is}")
        if not dataset.present(Path(root)):
            raise DatasetNotFound(f"dataset {name!r}: {dataset.files(Path(root))}")
    else:
        root = Path(root) if root is not None else default_root()
        if not dataset.present(root):
            if download and dataset.downloads:
                return  # fetched (and so not checked) when loaded
            fetch = "enable download to fetch it (needs internet) or " if dataset.downloads else ""
            raise DatasetNotFound(
                f"dataset {name!r} not found: {dataset.files(root)}; {fetch}copy the files there{dataset.advice(root)}"
            )
    if dataset.check is not None:
        dataset.check(Path(root), **options)


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value < 1.0):
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return float(value)


def _check_limit(name: str, value: Optional[int]) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return value


def load_dataset(
    name: str = "digits",
    root: Optional[Pathish] = None,
    *,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    max_train: Optional[int] = None,
    max_val: Optional[int] = None,
    max_test: Optional[int] = None,
    normalize: bool = True,
    verify: bool = True,
    options: Optional[Mapping[str, Any]] = None,
) -> Splits:
    """Load a dataset and split it into train / validation / test with ``seed``.

    ``root``: the data folder (default ``$CROSSBAR_DATA`` or ``./data``; for ``idx``, the
    folder of IDX files, for ``image_folder`` the folder of class folders, for ``tensors``
    the file). ``test_fraction``: share of all samples held out for test,
    for datasets without an official test split (``digits``, ``idx``, your own).
    ``val_fraction``: share of the remaining (training) samples held out for validation.
    ``max_train`` / ``max_val`` / ``max_test``: keep only that many (a random, seeded
    subset) for faster experiments. ``verify``: check CIFAR-10's md5 sums. ``options``: the
    data set's own (:attr:`Dataset.options`; ``image_folder``'s ``size`` and ``channels``),
    given to its loader; a name it does not take is a ValueError.
    """
    check_dataset(name, root, download, options=options)
    dataset = DATASETS[name]
    options = dataset.take_options(options)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    limits = {
        k: _check_limit(k, v) for k, v in (("max_train", max_train), ("max_val", max_val), ("max_test", max_test))
    }
    check_seed(seed)
    folder = Path(root) if root is not None else default_root()
    if download and dataset.downloads:
        folder.mkdir(parents=True, exist_ok=True)

    generator = torch.Generator().manual_seed(seed)
    if dataset.official_test:
        (x_pool, y_pool), test, classes = dataset.load(folder, download, verify, **options)
    else:
        x_all, y_all, classes = dataset.load(folder, download, verify, **options)
        perm = torch.randperm(len(y_all), generator=generator)
        n_test = max(1, round(test_fraction * len(y_all)))
        test = (x_all[perm[:n_test]], y_all[perm[:n_test]])
        x_pool, y_pool = x_all[perm[n_test:]], y_all[perm[n_test:]]
    perm = torch.randperm(len(y_pool), generator=generator)
    n_val = max(1, round(val_fraction * len(y_pool)))
    if len(y_pool) - n_val < 1:
        raise ValueError(f"dataset {name!r}: too few samples ({len(y_pool)}) to split off validation")
    val = (x_pool[perm[:n_val]], y_pool[perm[:n_val]])
    train = (x_pool[perm[n_val:]], y_pool[perm[n_val:]])

    splits = {"train": train, "val": val, "test": test}
    for key, limit in zip(splits, limits.values()):
        x, y = splits[key]
        if limit is not None and limit < len(y):
            keep = torch.randperm(len(y), generator=generator)[:limit]
            splits[key] = (x[keep], y[keep])

    splits = {k: (x.to(torch.float32) / dataset.scale, y) for k, (x, y) in splits.items()}
    x_train = splits["train"][0]
    if normalize:
        mean = x_train.mean(dim=(0, 2, 3))
        std = x_train.std(dim=(0, 2, 3)).clamp_min(1e-6)
        shape = (1, -1, 1, 1)
        splits = {k: ((x - mean.view(shape)) / std.view(shape), y) for k, (x, y) in splits.items()}
        mean_l, std_l = mean.tolist(), std.tolist()
    else:
        mean_l, std_l = [0.0] * x_train.shape[1], [1.0] * x_train.shape[1]
    return Splits(name, splits["train"], splits["val"], splits["test"], list(classes), mean_l, std_l, dataset.task)
