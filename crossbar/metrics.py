"""What :func:`crossbar.evaluate` scores each chip by: classification accuracy, a
detector's mean average precision, or any function of a chip's outputs.

- ``"accuracy"`` (the default): top-1 accuracy of a classifier's ``(batch, classes)``
  outputs against integer labels.
- ``"map50"``, ``"map"``, ``"map75"``: COCO mean average precision of a detector at IoU
  0.5, averaged over IoU 0.5:0.95, and at 0.75, from torchmetrics'
  ``MeanAveragePrecision`` (the COCO evaluation, by faster-coco-eval). The network's own digital
  post-processing turns a chip's raw outputs into boxes: the model must have
  ``detect(outputs) -> [{"boxes", "scores", "labels"}, ...]`` (one dict per image, boxes
  ``x1, y1, x2, y2`` in pixels), as :class:`models.detection.FCOSDetector` has.
- a callable ``metric(outputs, targets) -> float``: called once per chip and time with
  that chip's outputs over all the data (concatenated along the batch) and all the
  targets (concatenated tensors, or one list when the batches' targets are lists).

Detection targets come as one dict per image (``{"boxes": (n, 4), "labels": (n,)}``,
torchvision's convention, e.g. from a DataLoader with :func:`collate_detection`), or as
one padded tensor per batch, ``(batch, max_objects, 5)`` rows of ``[label, x1, y1, x2,
y2]`` with label -1 for no object (what :func:`models.load_dataset` gives for detection
data sets, so that a split indexes like a classification one).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
from torch import Tensor

#: The named metrics of detection: torchmetrics' key for each.
DETECTION_METRICS = {"map50": "map_50", "map": "map", "map75": "map_75"}
METRICS = ("accuracy", *DETECTION_METRICS)
#: How tables and plots name each metric.
METRIC_LABELS = {"accuracy": "accuracy", "map50": "mAP@0.5", "map": "mAP@[.5:.95]", "map75": "mAP@0.75"}

#: torchmetrics' COCO evaluation backend: faster-coco-eval (pinned in requirements.txt) gives
#: pycocotools' numbers (checked equal on this project's detector) about 8x faster.
MAP_BACKEND = "faster_coco_eval"

MetricSpec = Union[str, Callable[[Any, Any], float]]


def metric_label(metric: str) -> str:
    """How tables and plots name ``metric`` (itself when it has no label)."""
    return METRIC_LABELS.get(metric, metric)


def new_average_precision():
    """torchmetrics' ``MeanAveragePrecision`` as every detection score here uses it:
    boxes ``x1, y1, x2, y2``, the COCO evaluation by :data:`MAP_BACKEND`."""
    from torchmetrics.detection import MeanAveragePrecision

    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend=MAP_BACKEND)


def average_precisions(scores, metrics: Sequence[str]) -> dict[str, float]:
    """``{name: value}`` of a ``MeanAveragePrecision``'s result for the names of
    :data:`DETECTION_METRICS`; COCO's -1 (no image holds an object) counts as 0."""
    result = scores.compute()
    return {m: max(float(result[DETECTION_METRICS[m]]), 0.0) for m in metrics}


def check_metric(metric: Any) -> Union[str, Callable]:
    """A metric's name, or a callable; anything else is one line naming what is allowed."""
    if callable(metric):
        return metric
    if isinstance(metric, str) and metric in METRICS:
        return metric
    raise ValueError(f"metric must be one of {', '.join(METRICS)} or a callable metric(outputs, targets) -> float, "
                     f"got {metric!r}")


def is_detection(metric: Any) -> bool:
    return isinstance(metric, str) and metric in DETECTION_METRICS


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


def n_targets(targets: Any) -> int:
    """How many samples a batch's targets describe."""
    return len(targets) if not isinstance(targets, Tensor) else int(targets.shape[0])


class ChipScores:
    """Accumulates one metric for ``n`` chips over batches: ``update(outputs, targets)``
    with outputs ``(n, batch, ...)``, then ``compute()`` -> ``(n,)`` float64."""

    def __init__(self, metric: Union[str, Callable], n: int, module: torch.nn.Module):
        self.metric, self.n, self.module = metric, n, module
        if is_detection(metric):
            if not callable(getattr(module, "detect", None)):
                raise ValueError(f"metric {metric!r} needs a detector: a model with detect(outputs) -> one "
                                 f"{{'boxes', 'scores', 'labels'}} dict per image (models.build('fcos', ...)), got "
                                 f"{type(module).__name__}")
            self._maps = [new_average_precision() for _ in range(n)]
        elif metric == "accuracy":
            self._correct = torch.zeros(n, dtype=torch.float64)
            self._count = 0
        else:
            self._outputs: list[list[Tensor]] = [[] for _ in range(n)]
            self._targets: list[Any] = []

    def update(self, outputs: Tensor, targets: Any) -> None:
        if is_detection(self.metric):
            truth = [{k: v.cpu() for k, v in t.items()} for t in target_dicts(targets)]  # one copy for all chips
            for chip in range(self.n):
                found = self.module.detect(outputs[chip])
                self._maps[chip].update([{k: v.detach().cpu() for k, v in d.items()} for d in found], truth)
        elif self.metric == "accuracy":
            self._correct += (outputs.argmax(-1) == targets).sum(-1).double().cpu()
            self._count += int(targets.shape[0])
        else:
            for chip in range(self.n):
                self._outputs[chip].append(outputs[chip].detach().cpu())
            self._targets.append(targets.cpu() if isinstance(targets, Tensor) else list(targets))

    def compute(self) -> np.ndarray:
        if is_detection(self.metric):
            return np.array([average_precisions(m, [self.metric])[self.metric] for m in self._maps],
                            dtype=np.float64)
        if self.metric == "accuracy":
            return (self._correct / max(self._count, 1)).numpy()
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
