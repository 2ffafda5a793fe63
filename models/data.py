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
- ``idx``: a folder of MNIST-format IDX files (``*-images-idx3-ubyte`` with the matching
  ``*-labels-idx1-ubyte``, plain or ``.gz``), pooled and split like ``digits``.

Images are scaled to [0, 1], then standardised per channel with the training split's
mean and standard deviation (``normalize=False`` keeps [0, 1]).

Missing data gets a :class:`DatasetNotFound` whose one-line message names the folder
and the files expected; :func:`check_dataset` finds that without loading anything, so
a caller can fail before any work.
"""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import Tensor

DEFAULT_ROOT_ENV = "CROSSBAR_DATA"
Pathish = Union[str, "os.PathLike[str]"]


class DatasetNotFound(FileNotFoundError):
    """The data of a dataset is missing or unreadable; the message says where and what."""


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


# --------------------------------------------------------------------------- IDX files


def read_idx(path: Pathish) -> np.ndarray:
    """An array from an IDX file (the MNIST format; plain or gzip-compressed)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatasetNotFound(f"cannot read IDX file {path}: {e}") from None
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in dtypes or data[3] < 1:
        raise DatasetNotFound(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[data[2]])
    expected = 4 + 4 * ndim + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise DatasetNotFound(f"{path}: IDX header says shape {shape} ({expected} bytes) but the file has {len(data)}")
    return np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Pathish, array: np.ndarray) -> None:
    """Write an array as an IDX file (gzip-compressed when the name ends in ``.gz``)."""
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B, np.dtype("i4"): 0x0C,
             np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}
    array = np.asarray(array)
    code = codes[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as f:
        f.write(payload)


def _idx_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(images, labels) file pairs in a folder, matched by their prefix."""
    pairs = []
    for images in sorted(folder.glob("*-images-idx3-ubyte*")):
        if images.name.endswith(".gz") and images.with_suffix("").exists():
            continue  # the plain file is read instead
        stem = images.name.split("-images-idx3-ubyte")[0]
        labels = [folder / f"{stem}-labels-idx1-ubyte{ext}" for ext in ("", ".gz")]
        found = [p for p in labels if p.exists()]
        if not found:
            raise DatasetNotFound(f"{images} has no matching {labels[0].name}[.gz] in {folder}")
        pairs.append((images, found[0]))
    return pairs


def _load_idx_folder(folder: Path) -> tuple[Tensor, Tensor, list[str]]:
    pairs = _idx_pairs(folder) if folder.is_dir() else []
    if not pairs:
        raise DatasetNotFound(
            f"dataset 'idx': no '*-images-idx3-ubyte[.gz]' with matching '*-labels-idx1-ubyte[.gz]' in {folder}"
        )
    xs, ys = [], []
    for images, labels in pairs:
        x, y = read_idx(images), read_idx(labels)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetNotFound(f"{images.name} / {labels.name}: expected (N, H, W) images and N labels, got {x.shape} and {y.shape}")
        xs.append(x)
        ys.append(y)
    x = torch.from_numpy(np.concatenate(xs)).unsqueeze(1)
    y = torch.from_numpy(np.concatenate(ys).astype(np.int64))
    classes = [str(c) for c in range(int(y.max()) + 1)]
    return x, y, classes


# ------------------------------------------------------------------ torchvision datasets

_MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _mnist_like(cls_name: str) -> Callable[[Path, bool, bool], tuple]:
    def load(root: Path, download: bool, verify: bool):
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import extract_archive

        cls = getattr(tvd, cls_name)
        raw = root / cls_name / "raw"
        for name in _MNIST_FILES:  # torchvision reads the unpacked files; unpack copied .gz ones
            if not (raw / name).exists() and (raw / f"{name}.gz").exists():
                extract_archive(str(raw / f"{name}.gz"), str(raw))
        out = []
        for train in (True, False):
            ds = _torchvision(cls, root, download, train=train)
            out.append((ds.data.unsqueeze(1), torch.as_tensor(ds.targets, dtype=torch.long)))
        return out[0], out[1], [str(c) for c in ds.classes]

    return load


def _load_cifar10(root: Path, download: bool, verify: bool):
    import torchvision.datasets as tvd
    class CIFAR10(tvd.CIFAR10):
        # torchvision checks every batch's md5 on each load; ``verify=False`` checks only
        # that the files exist (for copies re-packed in the same format, e.g. in tests).
        def _check_integrity(self) -> bool:
            if verify:
                return super()._check_integrity()
            folder = os.path.join(self.root, self.base_folder)
            return all(os.path.isfile(os.path.join(folder, f)) for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            if verify:
                return super()._load_meta()
            saved, self.meta = self.meta, {**self.meta, "md5": None}
            try:
                super()._load_meta()
            finally:
                self.meta = saved

    out = []
    for train in (True, False):
        ds = _torchvision(CIFAR10, root, download, train=train)
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)
        out.append((x, torch.as_tensor(ds.targets, dtype=torch.long)))
    return out[0], out[1], list(ds.classes)


def _load_gtsrb(root: Path, download: bool, verify: bool):
    import torchvision.datasets as tvd
    from torchvision.transforms import v2

    transform = v2.Compose([v2.Resize((32, 32), antialias=True), v2.PILToTensor()])
    out = []
    for split in ("train", "test"):
        ds = _torchvision(tvd.GTSRB, root, download, split=split, transform=transform)
        if len(ds) == 0:
            raise DatasetNotFound(f"dataset 'gtsrb': no .ppm images under {root / 'gtsrb' / 'GTSRB'} ({split} split)")
        images, labels = zip(*(ds[i] for i in range(len(ds))))
        out.append((torch.stack(images), torch.tensor(labels, dtype=torch.long)))
    n_classes = int(max(out[0][1].max(), out[1][1].max())) + 1
    return out[0], out[1], [str(c) for c in range(n_classes)]


def _torchvision(cls, root: Path, download: bool, **kwargs):
    """Construct a torchvision dataset, turning its errors into one clear line."""
    try:
        return cls(str(root), download=download, **kwargs)
    except DatasetNotFound:
        raise
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError from deep inside
        name = _TV_NAMES.get(cls.__name__, cls.__name__.lower())
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        what = "download failed" if download else "could not be read"
        raise DatasetNotFound(f"dataset {name!r}: {what} under {root} ({reason}); {_EXPECTED[name](root)}") from None


_TV_NAMES = {"MNIST": "mnist", "FashionMNIST": "fashion_mnist", "CIFAR10": "cifar10", "GTSRB": "gtsrb"}
_EXPECTED: dict[str, Callable[[Path], str]] = {
    "mnist": lambda root: f"expected {', '.join(_MNIST_FILES)} (or .gz) in {root / 'MNIST' / 'raw'}",
    "fashion_mnist": lambda root: f"expected {', '.join(_MNIST_FILES)} (or .gz) in {root / 'FashionMNIST' / 'raw'}",
    "cifar10": lambda root: (
        f"expected data_batch_1..5, test_batch and batches.meta in {root / 'cifar-10-batches-py'} "
        "(cifar-10-python.tar.gz unpacked)"
    ),
    "gtsrb": lambda root: (
        f"expected {root / 'gtsrb' / 'GTSRB' / 'Training'} (class folders of .ppm), "
        f"{root / 'gtsrb' / 'GTSRB' / 'Final_Test' / 'Images'} and {root / 'gtsrb' / 'GT-final_test.csv'}"
    ),
}


def _present(name: str, root: Path) -> bool:
    if name in ("mnist", "fashion_mnist"):
        raw = root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw"
        return all((raw / f).exists() or (raw / f"{f}.gz").exists() for f in _MNIST_FILES)
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        return all((folder / f).exists() for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"])
    if name == "gtsrb":
        base = root / "gtsrb"
        return (base / "GTSRB" / "Training").is_dir() and (base / "GTSRB" / "Final_Test" / "Images").is_dir() and (
            base / "GT-final_test.csv"
        ).exists()
    return True


def _load_digits(root: Path, download: bool, verify: bool):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.uint8).unsqueeze(1)  # values 0..16
    return x, torch.tensor(data.target, dtype=torch.long), [str(c) for c in data.target_names]


# name -> (loader, has an official test split, maximum pixel value)
_DATASETS: dict[str, tuple[Callable, bool, float]] = {
    "digits": (_load_digits, False, 16.0),
    "idx": (lambda root, download, verify: _load_idx_folder(root), False, 255.0),
    "mnist": (_mnist_like("MNIST"), True, 255.0),
    "fashion_mnist": (_mnist_like("FashionMNIST"), True, 255.0),
    "cifar10": (_load_cifar10, True, 255.0),
    "gtsrb": (_load_gtsrb, True, 255.0),
}
OFFLINE = ("digits",)


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(_DATASETS)


def check_dataset(name: str, root: Optional[Pathish] = None, download: bool = False) -> None:
    """Fail now, with one line, if :func:`load_dataset` could not find the data.

    Checks the name and, without reading them, that the expected files are present
    (unless ``download`` is set, when they may be fetched).
    """
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(_DATASETS)}")
    if name == "digits":
        return
    if name == "idx":
        if root is None:
            raise ValueError("dataset 'idx' needs root: the folder holding the IDX files")
        folder = Path(root)
        if not folder.is_dir() or not _idx_pairs(folder):
            raise DatasetNotFound(
                f"dataset 'idx': no '*-images-idx3-ubyte[.gz]' with matching '*-labels-idx1-ubyte[.gz]' in {folder}"
            )
        return
    root = Path(root) if root is not None else default_root()
    if not download and not _present(name, root):
        hint = ""
        flat = sorted(p.name for p in root.glob("*-idx3-ubyte*")) if root.is_dir() else []
        if flat and name in ("mnist", "fashion_mnist"):  # e.g. a folder of IDX files given as root
            hint = (f"; {root} itself holds IDX files ({', '.join(flat[:2])}{', ...' * (len(flat) > 2)}): "
                    f"move them into {root / ('MNIST' if name == 'mnist' else 'FashionMNIST') / 'raw'}, "
                    f"or read them as they are with dataset 'idx' (root: {root})")
        raise DatasetNotFound(
            f"dataset {name!r} not found: {_EXPECTED[name](root)}; enable download to fetch it "
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
    ``val_fraction``: share of the remaining (training) samples held out for validation. ``max_train`` / ``max_val`` / ``max_test``:
    keep only that many (a random, seeded subset) for faster experiments. ``verify``:
    check CIFAR-10's md5 sums.
    """
    check_dataset(name, root, download)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    limits = {k: _check_limit(k, v) for k, v in (("max_train", max_train), ("max_val", max_val), ("max_test", max_test))}
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    loader, official_test, scale = _DATASETS[name]
    folder = Path(root) if root is not None else default_root()
    if name != "idx" and download:
        folder.mkdir(parents=True, exist_ok=True)

    generator = torch.Generator().manual_seed(seed)
    if official_test:
        (x_pool, y_pool), test, classes = loader(folder, download, verify)
    else:
        x_all, y_all, classes = loader(folder, download, verify)
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

    splits = {k: (x.to(torch.float32) / scale, y) for k, (x, y) in splits.items()}
    x_train = splits["train"][0]
    if normalize:
        mean = x_train.mean(dim=(0, 2, 3))
        std = x_train.std(dim=(0, 2, 3)).clamp_min(1e-6)
        shape = (1, -1, 1, 1)
        splits = {k: ((x - mean.view(shape)) / std.view(shape), y) for k, (x, y) in splits.items()}
        mean_l, std_l = mean.tolist(), std.tolist()
    else:
        mean_l, std_l = [0.0] * x_train.shape[1], [1.0] * x_train.shape[1]
    return Splits(name, splits["train"], splits["val"], splits["test"], list(classes), mean_l, std_l)
