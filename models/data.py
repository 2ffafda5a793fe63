"""Datasets, split into train / validation / test with a fixed seed.

    splits = models.load_dataset("digits", seed=0)          # bundled, no download
    splits = models.load_dataset("mnist", root="data", download=True)
    splits = models.load_dataset("idx", root="../shared/data/mnist-t10k")
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
  :mod:`models.detection`. ``voc`` (detection): a Pascal VOC folder, resized to 96x96.
  Both are pooled and split like ``digits``.
- ``idx``: a folder of MNIST-format IDX files (``*-images-idx3-ubyte`` with the matching
  ``*-labels-idx1-ubyte``, plain or ``.gz``), pooled and split like ``digits``.

Images are scaled to [0, 1], then standardised per channel with the training split's
mean and standard deviation (``normalize=False`` keeps [0, 1]).

Missing data gets a :class:`DatasetNotFound` whose one-line message names the folder
and the files expected; :func:`check_dataset` finds that without loading anything, so
a caller can fail before any work.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor

from crossbar.common import check_seed

from . import detection
from . import torchvision_data as tv
from .errors import DatasetNotFound, Pathish
from .idx import expected_idx, idx_pairs, idx_shape, load_idx_folder

DEFAULT_ROOT_ENV = "CROSSBAR_DATA"


@dataclass
class Splits:
    """A dataset split three ways. Each split is an ``(inputs, labels)`` pair of tensors,
    which :func:`crossbar.evaluate` and :func:`models.train` take as they are."""

    name: str
    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    classes: list[str]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    task: str = "classification"  # or "detection": targets are padded box rows (models.detection)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)[1]) for k in ("train", "val", "test")}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes().items())
        return f"Splits({self.name!r}, in_shape={self.in_shape}, n_classes={self.n_classes}, {sizes})"


def default_root() -> Path:
    """``$CROSSBAR_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(DEFAULT_ROOT_ENV, "data"))


def _load_digits(root: Path, download: bool, verify: bool):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.uint8).unsqueeze(1)  # values 0..16
    return x, torch.tensor(data.target, dtype=torch.long), [str(c) for c in data.target_names]


@dataclass(frozen=True)
class Dataset:
    """One data set: where it comes from and what it holds.

    Attributes:
        load: ``load(root, download, verify)`` -> the official ``(train, test, classes)``
            when ``official_test``, else all of it as ``(images, labels, classes)``.
        official_test: it comes with a test split (else one is drawn with the seed).
        scale: the largest pixel value (images are divided by it).
        shape, n_classes: ``(channels, height, width)`` and the class count, or None
            where the files tell (``idx``).
        expected: ``expected(root)``, the files it needs and where, for messages.
        present: ``present(root)``, whether they are there, without reading them.
        downloads: torchvision can fetch it (``download=True``).
        needs_root: it has no default folder (``idx``).
        task: ``"classification"`` (labels) or ``"detection"`` (padded box rows, see
            :mod:`models.detection`).
    """

    name: str
    description: str
    load: Callable[[Path, bool, bool], tuple]
    official_test: bool
    scale: float
    shape: Optional[tuple[int, int, int]]
    n_classes: Optional[int]
    expected: Callable[[Path], str] = lambda root: ""
    present: Callable[[Path], bool] = lambda root: True
    downloads: bool = False
    needs_root: bool = False
    task: str = "classification"


#: The data sets :func:`load_dataset` reads, by name.
DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("digits", "scikit-learn's bundled 8x8 handwritten digits, 1,797 images; no download",
                _load_digits, official_test=False, scale=16.0, shape=(1, 8, 8), n_classes=10),
        Dataset("idx", "a folder of MNIST-format IDX files (*-images-idx3-ubyte[.gz] with *-labels-idx1-ubyte[.gz])",
                lambda root, download, verify: load_idx_folder(root), official_test=False, scale=255.0,
                shape=None, n_classes=None, expected=expected_idx,
                present=lambda root: root.is_dir() and bool(idx_pairs(root)), needs_root=True),
        Dataset("mnist", "MNIST through torchvision", tv.mnist_like("MNIST"), official_test=True, scale=255.0,
                shape=(1, 28, 28), n_classes=10, expected=tv.EXPECTED["mnist"], present=tv.PRESENT["mnist"],
                downloads=True),
        Dataset("fashion_mnist", "Fashion-MNIST through torchvision", tv.mnist_like("FashionMNIST"),
                official_test=True, scale=255.0, shape=(1, 28, 28), n_classes=10,
                expected=tv.EXPECTED["fashion_mnist"], present=tv.PRESENT["fashion_mnist"], downloads=True),
        Dataset("cifar10", "CIFAR-10 through torchvision (the python pickle batches)", tv.load_cifar10,
                official_test=True, scale=255.0, shape=(3, 32, 32), n_classes=10,
                expected=tv.EXPECTED["cifar10"], present=tv.PRESENT["cifar10"], downloads=True),
        Dataset("gtsrb", "GTSRB through torchvision, resized to 32x32", tv.load_gtsrb, official_test=True,
                scale=255.0, shape=(3, 32, 32), n_classes=43, expected=tv.EXPECTED["gtsrb"],
                present=tv.PRESENT["gtsrb"], downloads=True),
        Dataset("digit_scenes", "1 to 3 of scikit-learn's digits pasted on 48x48 canvases with clutter, 2,000 scenes, "
                "boxes and labels (detection); generated, no download", detection.load_digit_scenes,
                official_test=False, scale=16.0, shape=(1, detection.SCENE_SIZE, detection.SCENE_SIZE), n_classes=10,
                task="detection"),
        Dataset("voc", "a Pascal VOC folder (VOCdevkit/VOC2007: Annotations, JPEGImages, ImageSets/Main), resized to "
                "96x96 (detection)", detection.load_voc, official_test=False, scale=255.0,
                shape=(3, detection.VOC_SIZE, detection.VOC_SIZE), n_classes=len(detection.VOC_CLASSES),
                expected=detection.expected_voc, present=lambda root: detection.voc_folder(root) is not None,
                task="detection"),
    )
}


def dataset_task(name: str) -> str:
    """``"classification"`` or ``"detection"``: what the data set's targets are."""
    return _dataset(name).task


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(DATASETS)


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_shape(name: str, root: Optional[Pathish] = None) -> tuple[tuple[int, int, int], int]:
    """``(in_shape, n_classes)`` of a data set without loading it (``idx``: from its
    files' headers and labels; ``(1, 28, 28), 10`` while they are not there)."""
    dataset = _dataset(name)
    if dataset.shape is not None and dataset.n_classes is not None:
        return dataset.shape, dataset.n_classes
    try:
        return idx_shape(Path(root)) if root is not None else ((1, 28, 28), 10)
    except (DatasetNotFound, OSError):
        return (1, 28, 28), 10  # check_dataset says what is missing


def check_dataset(name: str, root: Optional[Pathish] = None, download: bool = False) -> None:
    """Fail now, with one line, if :func:`load_dataset` could not find the data.

    Checks the name and, without reading them, that the expected files are present
    (unless ``download`` is set, when they may be fetched).
    """
    dataset = _dataset(name)
    if dataset.needs_root:
        if root is None:
            raise ValueError(f"dataset {name!r} needs root: the folder holding the IDX files")
        if not dataset.present(Path(root)):
            raise DatasetNotFound(f"dataset {name!r}: {dataset.expected(Path(root))}")
        return
    root = Path(root) if root is not None else default_root()
    if (download and dataset.downloads) or dataset.present(root):
        return
    hint = ""
    flat = sorted(p.name for p in root.glob("*-idx3-ubyte*")) if root.is_dir() else []
    if flat and name in ("mnist", "fashion_mnist"):  # e.g. a folder of IDX files given as root
        hint = (f"; {root} itself holds IDX files ({', '.join(flat[:2])}{', ...' * (len(flat) > 2)}): "
                f"move them into {root / ('MNIST' if name == 'mnist' else 'FashionMNIST') / 'raw'}, "
                f"or read them as they are with dataset 'idx' (root: {root})")
    raise DatasetNotFound(
        f"dataset {name!r} not found: {dataset.expected(root)}; enable download to fetch it "
        f"(needs internet) or copy the files there{hint}"
    )


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
) -> Splits:
    """Load a dataset and split it into train / validation / test with ``seed``.

    ``root``: the data folder (default ``$CROSSBAR_DATA`` or ``./data``; for ``idx``, the
    folder of IDX files). ``test_fraction``: share of all samples held out for test,
    for datasets without an official test split (``digits``, ``idx``).
    ``val_fraction``: share of the remaining (training) samples held out for validation.
    ``max_train`` / ``max_val`` / ``max_test``: keep only that many (a random, seeded
    subset) for faster experiments. ``verify``: check CIFAR-10's md5 sums.
    """
    check_dataset(name, root, download)
    dataset = DATASETS[name]
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
        (x_pool, y_pool), test, classes = dataset.load(folder, download, verify)
    else:
        x_all, y_all, classes = dataset.load(folder, download, verify)
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
