"""The data sets torchvision reads: MNIST, Fashion-MNIST, CIFAR-10, GTSRB.

Each comes with its official training and test splits, under ``root``; ``download=True``
fetches them (needs internet). Each record says the files it expects there and checks
that they are present without reading them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import DatasetNotFound
from .base import Dataset, register_dataset

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
CIFAR_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]

Reader = Callable[[Path, bool, bool], tuple]


def _read_errors(name: str, files: Callable[[Path], str], read: Reader) -> Reader:
    """``read`` with torchvision's errors (RuntimeError, URLError, OSError from deep inside)
    turned into one line naming the data set and the files it expects."""

    def load(root: Path, download: bool, verify: bool) -> tuple:
        try:
            return read(root, download, verify)
        except DatasetNotFound:
            raise
        except Exception as e:  # noqa: BLE001 - whatever torchvision raises
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            what = "download failed" if download else "could not be read"
            raise DatasetNotFound(f"dataset {name!r}: {what} under {root} ({reason}); {files(root)}") from None

    return load


def _mnist_like(name: str, cls_name: str, description: str) -> Dataset:
    folder = cls_name  # torchvision's folder under root: MNIST/raw, FashionMNIST/raw

    def read(root: Path, download: bool, verify: bool):
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import extract_archive

        raw = root / folder / "raw"
        for file in MNIST_FILES:  # torchvision reads the unpacked files; unpack copied .gz ones
            if not (raw / file).exists() and (raw / f"{file}.gz").exists():
                extract_archive(str(raw / f"{file}.gz"), str(raw))
        out = []
        for train in (True, False):
            ds = getattr(tvd, cls_name)(str(root), download=download, train=train)
            out.append((ds.data.unsqueeze(1), torch.as_tensor(ds.targets, dtype=torch.long)))
        return out[0], out[1], [str(c) for c in ds.classes]

    def files(root: Path) -> str:
        return f"expected {', '.join(MNIST_FILES)} (or .gz) in {root / folder / 'raw'}"

    def present(root: Path) -> bool:
        raw = root / folder / "raw"
        return all((raw / f).exists() or (raw / f"{f}.gz").exists() for f in MNIST_FILES)

    def advice(root: Path) -> str:
        flat = sorted(p.name for p in root.glob("*-idx3-ubyte*")) if root.is_dir() else []
        if not flat:  # e.g. a folder of IDX files given as root
            return ""
        return (f"; {root} itself holds IDX files ({', '.join(flat[:2])}{', ...' * (len(flat) > 2)}): "
                f"move them into {root / folder / 'raw'}, or read them as they are with dataset 'idx' (root: {root})")

    return Dataset(name, description, _read_errors(name, files, read), official_test=True, scale=255.0,
                   shape=(1, 28, 28), n_classes=10, files=files, present=present, advice=advice, downloads=True)


def _read_cifar10(root: Path, download: bool, verify: bool):
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
        ds = CIFAR10(str(root), download=download, train=train)
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)
        out.append((x, torch.as_tensor(ds.targets, dtype=torch.long)))
    return out[0], out[1], list(ds.classes)


def _cifar_files(root: Path) -> str:
    return (f"expected data_batch_1..5, test_batch and batches.meta in {root / 'cifar-10-batches-py'} "
            "(cifar-10-python.tar.gz unpacked)")


def _read_gtsrb(root: Path, download: bool, verify: bool):
    import torchvision.datasets as tvd
    from torchvision.transforms import v2

    transform = v2.Compose([v2.Resize((32, 32), antialias=True), v2.PILToTensor()])
    out = []
    for split in ("train", "test"):
        ds = tvd.GTSRB(str(root), download=download, split=split, transform=transform)
        if len(ds) == 0:
            raise DatasetNotFound(f"dataset 'gtsrb': no .ppm images under {root / 'gtsrb' / 'GTSRB'} ({split} split)")
        images, labels = zip(*(ds[i] for i in range(len(ds))))
        out.append((torch.stack(images), torch.tensor(labels, dtype=torch.long)))
    n_classes = int(max(out[0][1].max(), out[1][1].max())) + 1
    return out[0], out[1], [str(c) for c in range(n_classes)]


def _gtsrb_files(root: Path) -> str:
    return (f"expected {root / 'gtsrb' / 'GTSRB' / 'Training'} (class folders of .ppm), "
            f"{root / 'gtsrb' / 'GTSRB' / 'Final_Test' / 'Images'} and {root / 'gtsrb' / 'GT-final_test.csv'}")


def _gtsrb_present(root: Path) -> bool:
    return ((root / "gtsrb" / "GTSRB" / "Training").is_dir()
            and (root / "gtsrb" / "GTSRB" / "Final_Test" / "Images").is_dir()
            and (root / "gtsrb" / "GT-final_test.csv").exists())


for _dataset in (
    _mnist_like("mnist", "MNIST", "MNIST through torchvision"),
    _mnist_like("fashion_mnist", "FashionMNIST", "Fashion-MNIST through torchvision"),
    Dataset("cifar10", "CIFAR-10 through torchvision (the python pickle batches)",
            _read_errors("cifar10", _cifar_files, _read_cifar10), official_test=True, scale=255.0, shape=(3, 32, 32),
            n_classes=10, files=_cifar_files,
            present=lambda root: all((root / "cifar-10-batches-py" / f).exists() for f in CIFAR_FILES),
            downloads=True),
    Dataset("gtsrb", "GTSRB through torchvision, resized to 32x32", _read_errors("gtsrb", _gtsrb_files, _read_gtsrb),
            official_test=True, scale=255.0, shape=(3, 32, 32), n_classes=43, files=_gtsrb_files,
            present=_gtsrb_present, downloads=True),
):
    register_dataset(_dataset)
