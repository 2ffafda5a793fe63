"""Tasks: what a network's outputs mean and what it is judged by, in one table.

A :class:`Task` names its default metric; each metric is one :class:`crossbar.Metric`
record in :data:`crossbar.METRICS` (top-1 ``accuracy`` comes with the simulator; the
detection metrics are registered here). The same record scores a digital network
(:func:`clean_score`, what training validates by) and every simulated chip
(:func:`crossbar.evaluate`), with the same accumulator.

- ``classification``: one score per class, integer labels; scored by ``accuracy``.
- ``detection``: raw head outputs that the network's own ``detect`` turns into boxes
  (:class:`Detector`); targets one ``{"boxes", "labels"}`` dict per image
  (torchvision's convention, e.g. from a DataLoader with :func:`collate_detection`), or
  padded ``(batch, max_objects, 5)`` rows ``[label, x1, y1, x2, y2]`` with label -1 for
  no object (what :func:`models.load_dataset` gives, so that a split indexes like a
  classification one). Scored by COCO mean average precision from torchmetrics'
  ``MeanAveragePrecision`` (the COCO evaluation by faster-coco-eval): ``map50`` at IoU
  0.5 (the default), ``map`` averaged over IoU 0.5:0.95, ``map75`` at 0.75.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

import crossbar
from crossbar.common import resolve_device


@dataclass(frozen=True)
class Task:
    """One task.

    Attributes:
        name: what networks (``task``), data sets and scenarios call it.
        metric: its default metric, a name of :data:`crossbar.METRICS`.
        description: one line for messages and docs.
        batch_size: the batch of a digital evaluation (:func:`clean_score`).
        labels: ``labels(targets)`` -> the class indices in a tensor of targets (to check
            them against a network's classes before training).
    """

    name: str
    metric: str
    description: str
    batch_size: int = 1024
    labels: Callable[[Tensor], Tensor] = lambda targets: targets


#: The tasks by name; :func:`register_task` adds one.
TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def _box_labels(targets: Tensor) -> Tensor:
    """The labels of padded ``[label, x1, y1, x2, y2]`` rows (label -1: none)."""
    return targets[..., 0][targets[..., 0] >= 0]


register_task(Task("classification", "accuracy", "one score per class, integer labels"))
register_task(Task("detection", "map50", "boxes, scores and labels from a detector's detect()", batch_size=256,
                   labels=_box_labels))


@runtime_checkable
class Detector(Protocol):
    """What a detection network offers beside its ``forward`` (raw head outputs, which
    the crossbars compute): ``task = "detection"``, ``detect(outputs)`` -> one ``{"boxes",
    "scores", "labels"}`` dict per image (the digital post-processing), and ``loss(outputs,
    targets)`` for training. :class:`models.FCOSDetector` is one."""

    task: str

    def detect(self, outputs: Tensor) -> list[dict[str, Tensor]]: ...

    def loss(self, outputs: Tensor, targets: Any) -> Tensor: ...


def task_of(model: nn.Module) -> str:
    """The task a network does: its ``task`` attribute, classification without one."""
    return getattr(model, "task", "classification")


def metric_of(model: nn.Module) -> str:
    """The metric a network is judged by by default: its task's."""
    return TASKS[task_of(model)].metric


# ------------------------------------------------------------------ detection targets


def target_dicts(targets: Any) -> list[dict[str, Tensor]]:
    """One ``{"boxes", "labels"}`` dict per image from a padded ``(batch, max_objects, 5)``
    tensor of ``[label, x1, y1, x2, y2]`` rows (label < 0: no object) or a list of dicts."""
    if isinstance(targets, Tensor):
        if targets.dim() != 3 or targets.shape[-1] != 5:
            raise ValueError("data: detection targets must be (batch, max_objects, 5) rows of [label, x1, y1, x2, y2] "
                             f"or one {{'boxes', 'labels'}} dict per image, got a tensor of shape "
                             f"{tuple(targets.shape)}")
        out = []
        for image in targets:
            keep = image[:, 0] >= 0
            out.append({"boxes": image[keep, 1:].float(), "labels": image[keep, 0].long()})
        return out
    if isinstance(targets, (list, tuple)) and all(isinstance(t, dict) for t in targets):
        for t in targets:
            if not {"boxes", "labels"} <= set(t):
                raise ValueError(f"data: a detection target needs 'boxes' and 'labels', got keys {sorted(t)}")
        return [{"boxes": torch.as_tensor(t["boxes"]).float().reshape(-1, 4),
                 "labels": torch.as_tensor(t["labels"]).long().reshape(-1)} for t in targets]
    raise ValueError("data: detection targets must be (batch, max_objects, 5) tensors or lists of "
                     f"{{'boxes', 'labels'}} dicts, got {type(targets).__name__}")


def collate_detection(batch: Sequence[tuple[Tensor, dict]]) -> tuple[Tensor, list[dict]]:
    """A DataLoader's ``collate_fn`` for ``(image, {"boxes", "labels"})`` samples: the
    images stacked, the targets a list (their object counts differ)."""
    images, targets = zip(*batch)
    return torch.stack(list(images)), list(targets)


# ------------------------------------------------------------------ mean average precision

#: torchmetrics' key of each detection metric.
AP_KEYS = {"map50": "map_50", "map": "map", "map75": "map_75"}

#: torchmetrics' COCO evaluation backend: faster-coco-eval (pinned in requirements.txt) gives
#: pycocotools' numbers (checked equal on this project's detector) about 8x faster.
MAP_BACKEND = "faster_coco_eval"


def new_average_precision():
    """torchmetrics' ``MeanAveragePrecision`` as every detection score here uses it:
    boxes ``x1, y1, x2, y2``, the COCO evaluation by :data:`MAP_BACKEND`."""
    from torchmetrics.detection import MeanAveragePrecision

    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend=MAP_BACKEND)


class AveragePrecision:
    """The :class:`crossbar.metrics.ChipScores` of the detection metrics: one
    ``MeanAveragePrecision`` per chip, fed the boxes of the network's own ``detect``."""

    def __init__(self, n: int, module: nn.Module, names: Sequence[str]):
        if not callable(getattr(module, "detect", None)):
            raise ValueError(f"metric {names[0]!r} needs a detector: a model with detect(outputs) -> one "
                             f"{{'boxes', 'scores', 'labels'}} dict per image (models.build('fcos', ...)), got "
                             f"{type(module).__name__}")
        self.n, self.module, self.names = n, module, list(names)
        self._maps = [new_average_precision() for _ in range(n)]

    def update(self, outputs: Tensor, targets: Any) -> None:
        truth = [{k: v.cpu() for k, v in t.items()} for t in target_dicts(targets)]  # one copy for all chips
        for chip in range(self.n):
            found = self.module.detect(outputs[chip])
            self._maps[chip].update([{k: v.detach().cpu() for k, v in d.items()} for d in found], truth)

    def values(self) -> list[dict[str, float]]:
        """Each chip's ``{name: value}``; COCO's -1 (no image holds an object) counts as 0."""
        out = []
        for scores in self._maps:
            result = scores.compute()
            out.append({m: max(float(result[AP_KEYS[m]]), 0.0) for m in self.names})
        return out

    def compute(self) -> np.ndarray:
        return np.array([v[self.names[0]] for v in self.values()], dtype=np.float64)


for _name, _label in (("map50", "mAP@0.5"), ("map", "mAP@[.5:.95]"), ("map75", "mAP@0.75")):
    crossbar.register_metric(crossbar.Metric(
        _name, _label, "detection", lambda n, module, _name=_name: AveragePrecision(n, module, [_name]),
    ))


# ------------------------------------------------------------------ a digital network's score


def clean_score(model: nn.Module, data: tuple[Tensor, Any], metric: "str | crossbar.Metric | None" = None,
                batch_size: Optional[int] = None, device: "str | torch.device | None" = None) -> float:
    """The digital network's score on ``(inputs, targets)``: by ``metric`` (default its
    task's), accumulated as :func:`crossbar.evaluate` accumulates each chip's."""
    metric = crossbar.get_metric(metric if metric is not None else metric_of(model))
    return float(_digital_scores(model, data, metric.scores(1, model), batch_size, device).compute()[0])


def _digital_scores(model: nn.Module, data: tuple[Tensor, Any], scores, batch_size: Optional[int], device):
    """``scores`` (one chip's accumulator) fed the digital network's outputs on ``data``."""
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    if batch_size is None:
        task = TASKS.get(task_of(model))
        batch_size = task.batch_size if task is not None else 1024
    x, y = data
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                scores.update(model(x[i:i + batch_size].to(dev)).unsqueeze(0), y[i:i + batch_size].to(dev))
    finally:
        model.train(was)
    return scores


def accuracy(model: nn.Module, data: tuple[Tensor, Tensor], batch_size: int = 1024,
             device: "str | torch.device | None" = None) -> float:
    """Clean (digital) top-1 accuracy of ``model`` on an ``(inputs, labels)`` pair."""
    return clean_score(model, data, "accuracy", batch_size, device)


def mean_average_precision(model: nn.Module, data: tuple[Tensor, Any], metrics: Sequence[str] = ("map50", "map"),
                           batch_size: int = 256) -> dict[str, float]:
    """The digital detector's mAP on ``(images, targets)``, ``{name: value}`` for the names
    of :data:`AP_KEYS`: the measure :func:`crossbar.evaluate` takes per chip, all names from
    one COCO evaluation."""
    unknown = [m for m in metrics if m not in AP_KEYS]
    if unknown:
        raise ValueError(f"metrics: unknown {', '.join(unknown)}; valid: {', '.join(AP_KEYS)}")
    scores = _digital_scores(model, data, AveragePrecision(1, model, list(metrics)), batch_size, None)
    return scores.values()[0]
