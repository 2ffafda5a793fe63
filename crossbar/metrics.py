"""What :func:`crossbar.evaluate` scores each chip by: one :class:`Metric` record per
metric, in one table (:data:`METRICS`).

A metric says how its task's targets are checked before any work, and how each chip's
outputs accumulate into one score per chip (:class:`ChipScores`: ``update`` batch by
batch, then ``compute``). The hardware package knows no task: it holds the table, the
default metric (top-1 ``"accuracy"`` of a classifier, all that needs nothing but an
argmax) and the wrapper of a plain function. Other tasks register theirs where the
task is defined (a detector's mAP: :mod:`models.tasks`), so that ``evaluate(...,
metric="map50")`` works once :mod:`models` is imported.

- a name of :data:`METRICS`, e.g. ``"accuracy"`` or, with :mod:`models`, ``"map50"``;
- a :class:`Metric`;
- a callable ``metric(outputs, targets) -> float``: called once per chip and time with
  that chip's outputs over all the data (concatenated along the batch) and all the
  targets (concatenated tensors, or one list when the batches' targets are lists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Union

import numpy as np
import torch
from torch import Tensor, nn

from .common import did_you_mean


class ChipScores(Protocol):
    """A metric's accumulator for ``n`` chips."""

    def update(self, outputs: Tensor, targets: Any) -> None:
        """One batch: ``outputs`` ``(n, batch, ...)``, every chip's; ``targets`` the batch's."""

    def compute(self) -> np.ndarray:
        """``(n,)`` float64: each chip's score over every batch so far."""


def any_targets(targets: Any) -> None:
    """The check of a metric that takes any targets: a tensor or a list, one per sample."""
    if not isinstance(targets, (Tensor, list, tuple)):
        raise ValueError(f"data: targets must be a tensor or a list (one per sample), got {type(targets).__name__}")


@dataclass(frozen=True)
class Metric:
    """One way to score a chip.

    Attributes:
        name: how scenarios, records and :func:`crossbar.evaluate` name it. A search
            takes a metric whose scores lie in [0, 1] (its floor and failed trials are
            the ends of that range); :func:`crossbar.evaluate` takes any.
        label: how tables and plots name it (``"mAP@0.5"``).
        task: the task whose networks it scores (``"classification"``, ``"detection"``).
        scores: ``scores(n_chips, module)`` -> a new :class:`ChipScores`; ``module`` is the
            digital network (a detector's post-processing is its ``detect``).
        higher_is_better: a search maximises it (else minimises).
        chance: ``chance(n_classes)``, the score of guessing, or None where there is none.
        check_targets: raises a ValueError, before any work, for targets it cannot score.
        targets: what its targets are called in messages (``"labels"``).
    """

    name: str
    label: str
    task: str
    scores: Callable[[int, nn.Module], ChipScores]
    higher_is_better: bool = True
    chance: Optional[Callable[[int], float]] = None
    check_targets: Callable[[Any], None] = any_targets
    targets: str = "targets"


#: The metrics by name; :func:`register_metric` adds one.
METRICS: dict[str, Metric] = {}

MetricSpec = Union[str, Metric, Callable[[Any, Any], float]]


def register_metric(metric: Metric) -> Metric:
    """Make ``metric`` known by its name (to :func:`crossbar.evaluate`, scenarios, plots)."""
    if not isinstance(metric, Metric):
        raise ValueError(f"register_metric takes a crossbar.Metric, got {type(metric).__name__}")
    METRICS[metric.name] = metric
    return metric


def get_metric(metric: Any) -> Metric:
    """A metric's record from its name, the record itself, or a callable; anything else
    is one line naming what is allowed."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric in METRICS:
            return METRICS[metric]
        raise ValueError(f"metric: unknown {metric!r}{did_you_mean(metric, METRICS)}; known: {', '.join(METRICS)} "
                         "(importing models adds its tasks' metrics), a crossbar.Metric, or a callable "
                         "metric(outputs, targets) -> float")
    if callable(metric):
        name = getattr(metric, "__name__", "custom")
        return Metric(name, name, "custom", lambda n, module: PerChip(metric, n))
    raise ValueError(f"metric must be one of {', '.join(METRICS)}, a crossbar.Metric or a callable "
                     f"metric(outputs, targets) -> float, got {metric!r}")


def metric_label(name: str) -> str:
    """How tables and plots name the metric called ``name`` (the name itself when unknown)."""
    return METRICS[name].label if name in METRICS else name


def n_targets(targets: Any) -> int:
    """How many samples a batch's targets describe."""
    return len(targets) if not isinstance(targets, Tensor) else int(targets.shape[0])


# ------------------------------------------------------------------ accuracy


def check_labels(y: Any) -> None:
    """Class indices: a 1-D integer tensor of values >= 0."""
    if not isinstance(y, Tensor):
        raise ValueError(f"data: inputs and labels must be tensors, got labels of type {type(y).__name__}")
    if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(
            "data: labels must be a 1-D integer tensor of class indices, "
            f"got shape {tuple(y.shape)} and dtype {y.dtype}"
        )
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"data: labels must be class indices >= 0, got {int(y.min())}")


class Accuracy:
    """Top-1 accuracy of a classifier's ``(n, batch, classes)`` outputs against labels."""

    def __init__(self, n: int, module: Optional[nn.Module] = None):
        self._correct = torch.zeros(n, dtype=torch.float64)
        self._count = 0

    def update(self, outputs: Tensor, targets: Tensor) -> None:
        if outputs.dim() != 3:
            raise ValueError("evaluate needs a classifier: each chip's output must be (batch, classes), "
                             f"got {tuple(outputs.shape[1:])}; a detector is scored with metric='map50'")
        if len(targets) and int(targets.max()) >= outputs.shape[-1]:
            raise ValueError(f"data: labels must be class indices below the model's {outputs.shape[-1]} outputs, "
                             f"got {int(targets.max())}")
        self._correct += (outputs.argmax(-1) == targets).sum(-1).double().cpu()
        self._count += int(targets.shape[0])

    def compute(self) -> np.ndarray:
        return (self._correct / max(self._count, 1)).numpy()


ACCURACY = register_metric(Metric(
    "accuracy", "accuracy", "classification", Accuracy, chance=lambda n_classes: 1.0 / n_classes,
    check_targets=check_labels, targets="labels",
))


# ------------------------------------------------------------------ any function of a chip's outputs


class PerChip:
    """A callable ``metric(outputs, targets) -> float``, called once per chip on all its
    outputs (concatenated) and all the targets."""

    def __init__(self, metric: Callable[[Any, Any], Any], n: int):
        self.metric, self.n = metric, n
        self._outputs: list[list[Tensor]] = [[] for _ in range(n)]
        self._targets: list[Any] = []

    def update(self, outputs: Tensor, targets: Any) -> None:
        for chip in range(self.n):
            self._outputs[chip].append(outputs[chip].detach().cpu())
        self._targets.append(targets.cpu() if isinstance(targets, Tensor) else list(targets))

    def compute(self) -> np.ndarray:
        targets = (torch.cat(self._targets) if all(isinstance(t, Tensor) for t in self._targets)
                   else [t for batch in self._targets for t in batch])
        scores = []
        for chip in range(self.n):
            value = self.metric(torch.cat(self._outputs[chip]), targets)
            try:
                scores.append(float(value))
            except (TypeError, ValueError):
                raise ValueError(f"metric: a callable metric must return a number, got {type(value).__name__}") \
                    from None
        return np.array(scores, dtype=np.float64)
