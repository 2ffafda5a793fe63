"""``image_folder``: a researcher's own images in torchvision's ``ImageFolder`` layout,
``root/<class>/<image>.png`` (one folder per class, named for it; classes in name order),
pooled and split like ``digits``.

Options (``load_dataset(..., options={"size": [32, 32], "channels": 3})``):

- ``size``: ``[height, width]``, or one number for both: every image resized to it
  (bilinear). Without it every image must have the same size (the first's).
- ``channels``: 1 (grey, PIL mode ``L``) or 3 (``RGB``): every image converted to it.
  Without it, the first image's kind: 1 for a grey one (modes ``1``, ``L``, ``LA``, ``I``,
  ``F``), else 3; then every image must be of that kind (grey and colour mixed: set it).

Images are read as 8-bit (scale 255). The files are listed by torchvision's
``ImageFolder`` (its extensions: .jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp,
at any depth in a class folder); other files are skipped, and so are hidden files and
folders (``.ipynb_checkpoints``, macOS's ``._a.png``). :func:`check_folder` reads each
image's header only (PIL opens lazily) and says in one line what would stop loading.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import BadData, DatasetNotFound
from .base import Dataset, register_dataset

NAME = "image_folder"
LAYOUT = "root/<class>/<image>.png, one folder per class"
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def _size(size: Any) -> Optional[tuple[int, int]]:
    def positive(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if size is None:
        return None
    if positive(size):
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(positive(v) for v in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"dataset {NAME!r}: size must be [height, width] or one positive number for both, got {size!r}")


def _channels(channels: Any) -> Optional[int]:
    if channels is None or (not isinstance(channels, bool) and channels in (1, 3)):
        return channels
    raise ValueError(f"dataset {NAME!r}: channels must be 1 (grey) or 3 (RGB), got {channels!r}")


def _few(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def expected_folder(root: Path) -> str:
    if root.exists():
        return f"{root} is a file, not a folder of class folders ({LAYOUT})"
    return f"no folder {root} (expected {LAYOUT.replace('root', str(root))})"


def _image_file(path: str) -> bool:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return path.lower().endswith(IMG_EXTENSIONS) and not os.path.basename(path).startswith(".")


def samples_of(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """``(path, label)`` of every image under ``root`` (by torchvision's ``ImageFolder``)
    and the class names, or one line saying what is not in the layout."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if not root.is_dir():
        raise DatasetNotFound(f"dataset {NAME!r}: {expected_folder(root)}")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        found = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        what = f"found only files ({_few(found)})" if found else "it is empty"
        hint = "; put each class's images in a folder of its own" if any(_image_file(f) for f in found) else ""
        raise DatasetNotFound(f"dataset {NAME!r}: no class folders in {root} (expected {LAYOUT}); {what}{hint}")
    samples = ImageFolder.make_dataset(str(root), {c: i for i, c in enumerate(classes)}, is_valid_file=_image_file,
                                       allow_empty=True)
    used = {label for _, label in samples}
    empty = [c for i, c in enumerate(classes) if i not in used]
    if empty:
        plural = len(empty) > 1
        raise DatasetNotFound(
            f"dataset {NAME!r}: class folder{'s' * plural} {_few(empty)} in {root} hold{'s' * (not plural)} no images "
            f"({', '.join(IMG_EXTENSIONS)}; expected {LAYOUT})"
        )
    return samples, classes


def _header(path: str) -> tuple[int, int, str]:
    """``(height, width, mode)`` from an image's header."""
    from PIL import Image

    try:
        with Image.open(path) as image:  # reads the header only
            return image.height, image.width, image.mode
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetNotFound(f"dataset {NAME!r}: cannot read image {path} ({_reason(e)})") from None


def _reason(error: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        return "not an image PIL recognises"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _kind(mode: str) -> str:
    return "grey" if mode in GREY_MODES else "colour"


def check_folder(root: Path, size: Any = None, channels: Any = None) -> None:
    """The options' values, the layout, and every image's header, before any work: one
    line for the first fault (no class folders, an empty class, an unreadable image,
    images of mixed sizes without ``size`` or mixed grey and colour without ``channels``)."""
    size, channels = _size(size), _channels(channels)
    samples, _ = samples_of(root)
    first: Optional[tuple[str, int, int, str]] = None
    for path, _ in tqdm(samples, desc="checking images", unit="file", leave=False, disable=len(samples) < 5000):
        height, width, mode = _header(path)
        if first is None:
            first = (path, height, width, mode)
            continue
        name, name0 = os.path.relpath(path, root), os.path.relpath(first[0], root)
        if size is None and (height, width) != first[1:3]:
            raise BadData(
                f"dataset {NAME!r}: images of mixed sizes in {root}: {name0} is {first[1]}x{first[2]} but {name} is "
                f"{height}x{width} (height x width); set size: [H, W] to resize them all"
            )
        if channels is None and _kind(mode) != _kind(first[3]):
            raise BadData(
                f"dataset {NAME!r}: grey and colour images mixed in {root}: {name0} is {_kind(first[3])} "
                f"({first[3]}) but {name} is {_kind(mode)} ({mode}); set channels: 1 (grey) or 3 (RGB)"
            )


def folder_shape(root: Path, size: Any = None, channels: Any = None) -> tuple[tuple[int, int, int], int]:
    """``((C, H, W), n_classes)``: the class folders, and ``size`` / ``channels`` or the
    first image's header."""
    samples, classes = samples_of(root)
    return _image_shape(samples[0][0], _size(size), _channels(channels)), len(classes)


def _image_shape(first: str, size: Optional[tuple[int, int]], channels: Optional[int]) -> tuple[int, int, int]:
    if size is None or channels is None:
        height, width, mode = _header(first)
        size = size or (height, width)
        channels = channels or (1 if _kind(mode) == "grey" else 3)
    return channels, size[0], size[1]


def load_folder(root: Path, download: bool, verify: bool, size: Any = None,
                channels: Any = None) -> tuple[Tensor, Tensor, list[str]]:
    """Every image as one uint8 ``(N, C, H, W)`` tensor, its label the index of its class
    folder, and the class names."""
    from PIL import Image

    samples, classes = samples_of(root)
    size = _size(size)
    c, h, w = _image_shape(samples[0][0], size, _channels(channels))
    images = torch.empty(len(samples), c, h, w, dtype=torch.uint8)
    for i, (path, _) in enumerate(tqdm(samples, desc="reading images", unit="file", leave=False,
                                       disable=len(samples) < 5000)):
        try:
            with Image.open(path) as image:
                image = image.convert("L" if c == 1 else "RGB")
                if image.size != (w, h):
                    if size is None:
                        raise BadData(f"dataset {NAME!r}: {path} is {image.height}x{image.width}, not {h}x{w} as the "
                                      "first image; set size: [H, W] to resize them all")
                    image = image.resize((w, h), Image.BILINEAR)
                pixels = np.asarray(image)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            if isinstance(e, BadData):
                raise
            raise DatasetNotFound(f"dataset {NAME!r}: cannot read image {path} ({_reason(e)})") from None
        images[i] = torch.from_numpy(pixels.reshape(h, w, c).copy()).permute(2, 0, 1)
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    return images, labels, classes


register_dataset(Dataset(
    NAME, "your own images, a folder of class folders (root/<class>/<image>.png); options size, channels",
    load_folder, official_test=False, scale=255.0, shape=None, n_classes=None, read_shape=folder_shape,
    guess=((3, 32, 32), 10), files=expected_folder, present=lambda root: root.is_dir(), check=check_folder,
    needs_root=True, options=("size", "channels"), root_is=f"the folder of class folders ({LAYOUT})"))
