"""IDX files, the MNIST format: reading, writing, and a folder of them as the data set
``idx`` (``*-images-idx3-ubyte`` with the matching ``*-labels-idx1-ubyte``, plain or
``.gz``), pooled and split like ``digits``; its shape and classes read from the files."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DatasetNotFound, Pathish
from .base import Dataset, register_dataset


def expected_idx(folder: Path) -> str:
    return f"no '*-images-idx3-ubyte[.gz]' with matching '*-labels-idx1-ubyte[.gz]' in {folder}"


def idx_shape(folder: Path) -> tuple[tuple[int, int, int], int]:
    """``((1, H, W), n_classes)`` of a folder's IDX files, read from their headers and labels."""
    pairs = idx_pairs(folder)
    if not pairs:
        raise DatasetNotFound(f"dataset 'idx': {expected_idx(folder)}")
    images, _ = pairs[0]
    opener = gzip.open if images.suffix == ".gz" else open
    with opener(images, "rb") as f:
        header = f.read(16)
    if len(header) < 16 or header[3] != 3:
        raise DatasetNotFound(f"{images}: not an IDX file of (N, H, W) images")
    height, width = int.from_bytes(header[8:12], "big"), int.from_bytes(header[12:16], "big")
    top = max(int(read_idx(labels).max()) for _, labels in pairs)
    return (1, height, width), top + 1


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


def idx_pairs(folder: Path) -> list[tuple[Path, Path]]:
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


def load_idx_folder(folder: Path) -> tuple[Tensor, Tensor, list[str]]:
    pairs = idx_pairs(folder) if folder.is_dir() else []
    if not pairs:
        raise DatasetNotFound(f"dataset 'idx': {expected_idx(folder)}")
    xs, ys = [], []
    for images, labels in pairs:
        x, y = read_idx(images), read_idx(labels)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetNotFound(
                f"{images.name} / {labels.name}: expected (N, H, W) images and N labels, got {x.shape} and {y.shape}"
            )
        xs.append(x)
        ys.append(y)
    x = torch.from_numpy(np.concatenate(xs)).unsqueeze(1)
    y = torch.from_numpy(np.concatenate(ys).astype(np.int64))
    classes = [str(c) for c in range(int(y.max()) + 1)]
    return x, y, classes


register_dataset(Dataset(
    "idx", "a folder of MNIST-format IDX files (*-images-idx3-ubyte[.gz] with *-labels-idx1-ubyte[.gz])",
    lambda root, download, verify: load_idx_folder(root), official_test=False, scale=255.0, shape=None,
    n_classes=None, read_shape=idx_shape, guess=((1, 28, 28), 10), files=expected_idx,
    present=lambda root: root.is_dir() and bool(idx_pairs(root)), needs_root=True))
