"""The dataset table: one :class:`Dataset` record per data set, and the :class:`Splits`
a loaded one comes as."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from torch import Tensor

from crossbar.common import did_you_mean

from ..errors import DatasetNotFound, Pathish

DEFAULT_ROOT_ENV = "CROSSBAR_DATA"

Shape = tuple[tuple[int, int, int], int]  # ((channels, height, width), classes)


def default_root() -> Path:
    """``$CROSSBAR_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(DEFAULT_ROOT_ENV, "data"))


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
    task: str = "classification"  # or "detection": targets are padded box rows (models.tasks)

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


@dataclass(frozen=True)
class Dataset:
    """One data set: where it comes from, what it needs on disk and what it holds.

    Attributes:
        load: ``load(root, download, verify, **options)`` -> the official ``(train, test,
            classes)`` when ``official_test``, else all of it as ``(images, labels, classes)``.
        official_test: it comes with a test split (else one is drawn with the seed).
        scale: the largest pixel value (images are divided by it).
        shape, n_classes: ``(channels, height, width)`` and the class count, or None
            where the files tell (``read_shape``).
        read_shape: ``read_shape(root, **options)`` -> ``(shape, n_classes)`` from the files,
            without loading them; used where ``shape`` is None.
        guess: ``(shape, n_classes)`` assumed while the files are not there (the scenario
            is validated before :func:`models.check_dataset` says they are missing).
        files: ``files(root)``: the files it needs and where, for messages.
        present: ``present(root)``: whether they are there, without reading them.
        check: ``check(root, **options)``: read what can be wrong in them (annotations,
            image sizes, say) and the options' values, and raise one line naming the file
            or option at fault, before any work; None: nothing to check.
        advice: ``advice(root)``: a hint to add when they are not (``""``: none).
        downloads: torchvision can fetch it (``download=True``).
        needs_root: it has no default folder (``idx``).
        task: ``"classification"`` (labels) or ``"detection"`` (padded box rows, see
            :mod:`models.tasks`).
        options: the names of the keyword options ``load``, ``read_shape`` and ``check``
            take besides ``root`` (``image_folder``'s ``size`` and ``channels``); given as
            ``options={...}`` to :func:`models.load_dataset` and its neighbours, which refuse
            a name not listed here. Each is optional (the callables give defaults).
        root_is: what ``root`` names, for the message when a ``needs_root`` one has none.
    """

    name: str
    description: str
    load: Callable[..., tuple]
    official_test: bool
    scale: float
    shape: Optional[tuple[int, int, int]]
    n_classes: Optional[int]
    read_shape: Optional[Callable[..., Shape]] = None
    guess: Optional[Shape] = None
    files: Callable[[Path], str] = lambda root: ""
    present: Callable[[Path], bool] = lambda root: True
    check: Optional[Callable[..., None]] = None
    advice: Callable[[Path], str] = lambda root: ""
    downloads: bool = False
    needs_root: bool = False
    task: str = "classification"
    options: tuple[str, ...] = ()
    root_is: str = "the folder holding its files"

    def take_options(self, options: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """``options`` as a dict, each name one this data set takes (ValueError of one
        line naming the first that is not, and those it takes)."""
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise ValueError(f"dataset {self.name!r}: options must be a mapping of option names to values, "
                             f"got {type(options).__name__}")
        for key in options:
            if key not in self.options:
                takes = f"it takes {', '.join(self.options)}" if self.options else "it takes none"
                raise ValueError(f"dataset {self.name!r} has no option {key!r}{did_you_mean(key, self.options)}; "
                                 f"{takes}")
        return dict(options)

    def shape_of(self, root: Optional[Pathish] = None, options: Optional[Mapping[str, Any]] = None) -> Shape:
        """``(in_shape, n_classes)`` without loading the data: the table's, else read from
        the files under ``root`` (with ``options``), else the guess while they are not there."""
        options = self.take_options(options)
        if self.shape is not None and self.n_classes is not None:
            return self.shape, self.n_classes
        if root is not None and self.read_shape is not None:
            try:
                return self.read_shape(Path(root), **options)
            except (DatasetNotFound, OSError):
                pass  # check_dataset says what is missing
        if self.guess is None:
            raise ValueError(f"dataset {self.name!r}: its shape is read from its files; give root")
        return self.guess


#: The data sets :func:`models.load_dataset` reads, by name; :func:`register_dataset` adds one.
DATASETS: dict[str, Dataset] = {}


def register_dataset(dataset: Dataset) -> Dataset:
    """Make ``dataset`` known by its name (to :func:`models.load_dataset`, scenarios)."""
    if not isinstance(dataset, Dataset):
        raise ValueError(f"register_dataset takes a models.Dataset, got {type(dataset).__name__}")
    DATASETS[dataset.name] = dataset
    return dataset
