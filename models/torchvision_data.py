"""The data sets torchvision reads: MNIST, Fashion-MNIST, CIFAR-10, GTSRB.

Each loader takes ``(root, download, verify)`` and returns the official training and
test splits as ``(images, labels)`` uint8/int64 tensors plus the class names; the
dataset table (:mod:`models.data`) holds them with the files each expects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .errors import DatasetNotFound

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def mnist_like(cls_name: str) -> Callable[[Path, bool, bool], tuple]:
    def load(root: Path, download: bool, verify: bool):
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import extract_archive

        cls = getattr(tvd, cls_name)
        raw = root / cls_name / "raw"
        for name in MNIST_FILES:  # torchvision reads the unpacked files; unpack copied .gz ones
            if not (raw / name).exists() and (raw / f"{name}.gz").exists():
                extract_archive(str(raw / f"{name}.gz"), str(raw))
        out = []
        for train in (True, False):
            ds = _torchvision(cls, root, download, train=train)
            out.append((ds.data.unsqueeze(1), torch.as_tensor(ds.targets, dtype=torch.long)))
        return out[0], out[1], [str(c) for c in ds.classes]

    return load


def load_cifar10(root: Path, download: bool, verify: bool):
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


def load_gtsrb(root: Path, download: bool, verify: bool):
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
        name = _NAMES.get(cls.__name__, cls.__name__.lower())
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        what = "download failed" if download else "could not be read"
        raise DatasetNotFound(f"dataset {name!r}: {what} under {root} ({reason}); {EXPECTED[name](root)}") from None


_NAMES = {"MNIST": "mnist", "FashionMNIST": "fashion_mnist", "CIFAR10": "cifar10", "GTSRB": "gtsrb"}
_CIFAR_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]

#: What each data set expects under ``root`` (for messages) ...
EXPECTED: dict[str, Callable[[Path], str]] = {
    "mnist": lambda root: f"expected {', '.join(MNIST_FILES)} (or .gz) in {root / 'MNIST' / 'raw'}",
    "fashion_mnist": lambda root: f"expected {', '.join(MNIST_FILES)} (or .gz) in {root / 'FashionMNIST' / 'raw'}",
    "cifar10": lambda root: (
        f"expected data_batch_1..5, test_batch and batches.meta in {root / 'cifar-10-batches-py'} "
        "(cifar-10-python.tar.gz unpacked)"
    ),
    "gtsrb": lambda root: (
        f"expected {root / 'gtsrb' / 'GTSRB' / 'Training'} (class folders of .ppm), "
        f"{root / 'gtsrb' / 'GTSRB' / 'Final_Test' / 'Images'} and {root / 'gtsrb' / 'GT-final_test.csv'}"
    ),
}


def _mnist_present(folder: str) -> Callable[[Path], bool]:
    return lambda root: all((root / folder / "raw" / f).exists() or (root / folder / "raw" / f"{f}.gz").exists()
                            for f in MNIST_FILES)


#: ... and whether it is there, without reading it.
PRESENT: dict[str, Callable[[Path], bool]] = {
    "mnist": _mnist_present("MNIST"),
    "fashion_mnist": _mnist_present("FashionMNIST"),
    "cifar10": lambda root: all((root / "cifar-10-batches-py" / f).exists() for f in _CIFAR_FILES),
    "gtsrb": lambda root: (
        (root / "gtsrb" / "GTSRB" / "Training").is_dir()
        and (root / "gtsrb" / "GTSRB" / "Final_Test" / "Images").is_dir()
        and (root / "gtsrb" / "GT-final_test.csv").exists()
    ),
}
