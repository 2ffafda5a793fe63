"""Object detection: an offline data set of digit scenes, a Pascal VOC reader, and a small
FCOS detector with dropout slots built on torchvision's FCOS head, loss and post-processing.

    splits = models.load_dataset("digit_scenes", seed=0)      # generated, no download
    x, y = splits.train            # (N, 1, 48, 48) images; (N, 3, 5) rows [label, x1, y1, x2, y2]
    net = models.build("fcos", splits.in_shape, splits.n_classes, dropout=0.1)
    models.train(net, splits)      # validation by mAP@0.5
    crossbar.evaluate(net, splits.test, "reram_cmo", "1d", 16, metric="map50")

Targets are padded so that a split indexes like a classification one: each image's
objects are rows ``[label, x1, y1, x2, y2]`` (pixels, ``x2``/``y2`` exclusive), label -1
for the padding rows. :func:`crossbar.metrics.target_dicts` gives torchvision's one dict
per image.

The detector's ``forward`` returns its raw head outputs, ``(batch, locations, classes +
5)``: every ``Conv2d`` up to them runs on the crossbars after :func:`crossbar.convert`.
Decoding boxes, scores and non-maximum suppression (``detect``) stay digital, as on a
chip whose periphery hands the head's outputs to a digital processor.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSClassificationHead, FCOSHead, FCOSRegressionHead
from torchvision.models.detection.image_list import ImageList

from crossbar.common import check_seed
from crossbar.metrics import target_dicts

from .errors import DatasetNotFound
from .networks import DropoutNet, _activation, _groups, _norm, register

# ------------------------------------------------------------------ digit scenes

#: The generated set: how many scenes, their size and what is on them.
SCENES, SCENE_SIZE, MAX_OBJECTS = 2000, 48, 3
OBJECT_SIZES = (12, 24)  # side of a pasted digit in pixels (its 8x8 image scaled), both ends included
CLUTTER = (1, 4)  # strokes of clutter per scene (fragments of other digits, not objects)
BACKGROUND_NOISE = 1.0  # standard deviation of the background, on the digits' 0..16 scale
INK = 2.0  # a pasted pixel above this (of 16) is part of the object's box


def _digits() -> tuple[Tensor, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return torch.tensor(data.images, dtype=torch.float32), data.target


def _resize(image: Tensor, size: int) -> Tensor:
    return nn.functional.interpolate(image[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]


def make_scenes(n: int = SCENES, seed: int = 0, size: int = SCENE_SIZE, max_objects: int = MAX_OBJECTS
                ) -> tuple[Tensor, Tensor]:
    """``n`` scenes of 1 to ``max_objects`` digits from scikit-learn's set, each scaled to
    12-24 pixels and pasted where it overlaps no other, on a ``size`` x ``size`` canvas with
    background noise and clutter (fragments of digits that are not objects).

    Returns images ``(n, 1, size, size)`` on the digits' 0..16 scale and targets ``(n,
    max_objects, 5)``: rows ``[label, x1, y1, x2, y2]`` of each object's tight box around
    its ink (pixels above :data:`INK`), label -1 for padding. Deterministic from ``seed``.
    """
    check_seed(seed)
    if size < OBJECT_SIZES[1] + 4:
        raise ValueError(f"digit scenes: size must be at least {OBJECT_SIZES[1] + 4}, got {size}")
    digits, labels = _digits()
    rng = np.random.Generator(np.random.PCG64(seed))
    images = torch.zeros(n, 1, size, size)
    targets = torch.full((n, max_objects, 5), -1.0)
    targets[..., 1:] = 0.0
    for i in range(n):
        canvas = images[i, 0]
        canvas += torch.from_numpy(np.abs(rng.normal(0.0, BACKGROUND_NOISE, (size, size))).astype(np.float32))
        for _ in range(rng.integers(CLUTTER[0], CLUTTER[1] + 1)):  # a stroke: a small crop of a digit, faint
            side = int(rng.integers(3, 6))
            digit = digits[rng.integers(len(digits))]
            r, c = rng.integers(0, 8 - side + 1, 2)
            piece = _resize(digit[r:r + side, c:c + side], int(rng.integers(5, 10))) * float(rng.uniform(0.4, 0.8))
            y, x = rng.integers(0, size - piece.shape[0] + 1, 2)
            region = canvas[y:y + piece.shape[0], x:x + piece.shape[1]]
            torch.maximum(region, piece, out=region)
        placed: list[tuple[int, int, int, int]] = []
        for _ in range(rng.integers(1, max_objects + 1)):
            for _attempt in range(30):
                s = int(rng.integers(OBJECT_SIZES[0], OBJECT_SIZES[1] + 1))
                y, x = (int(v) for v in rng.integers(0, size - s + 1, 2))
                if all(x + s <= a or a + w <= x or y + s <= b or b + h <= y for a, b, w, h in placed):
                    break
            else:
                continue  # no free place for it
            k = int(rng.integers(len(digits)))
            patch = _resize(digits[k], s)
            ink = patch > INK
            rows, cols = torch.where(ink.any(1))[0], torch.where(ink.any(0))[0]
            region = canvas[y:y + s, x:x + s]
            torch.maximum(region, patch, out=region)
            j = len(placed)
            targets[i, j] = torch.tensor([float(labels[k]), x + int(cols[0]), y + int(rows[0]),
                                          x + int(cols[-1]) + 1, y + int(rows[-1]) + 1])
            placed.append((x, y, s, s))
    return images.clamp_(0.0, 16.0), targets


def load_digit_scenes(root: Path, download: bool, verify: bool) -> tuple[Tensor, Tensor, list[str]]:
    """The data set table's loader (:data:`models.DATASETS`): the scenes of seed 0 (the
    split's seed then draws train, validation and test from them)."""
    images, targets = make_scenes(SCENES, seed=0)
    return images, targets, [str(d) for d in range(10)]


# ------------------------------------------------------------------ Pascal VOC

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
VOC_SIZE = 96  # images are resized to VOC_SIZE x VOC_SIZE (boxes with them)
VOC_MAX_OBJECTS = 16  # objects kept per image (the largest first)


def voc_folder(root: Path) -> Optional[Path]:
    """The VOC year folder under ``root`` (``root/VOCdevkit/VOC2007``, ``root/VOC2012``, or
    ``root`` itself) that holds Annotations, JPEGImages and ImageSets/Main, or None."""
    candidates = [root, *sorted(root.glob("VOC20*")), *sorted(root.glob("VOCdevkit/VOC20*"))] if root.is_dir() else []
    for folder in candidates:
        if all((folder / sub).is_dir() for sub in ("Annotations", "JPEGImages", "ImageSets/Main")):
            return folder
    return None


def expected_voc(root: Path) -> str:
    return (f"no Pascal VOC folder under {root} (expected {root}/VOCdevkit/VOC2007 or {root} holding Annotations/, "
            "JPEGImages/ and ImageSets/Main/trainval.txt)")


def load_voc(root: Path, download: bool, verify: bool) -> tuple[Tensor, Tensor, list[str]]:
    """Every image of ``ImageSets/Main/trainval.txt`` and ``test.txt`` (those present),
    resized to :data:`VOC_SIZE` squared, with its boxes (difficult ones dropped), through
    torchvision's ``VOCDetection`` parser."""
    from PIL import Image
    from torchvision.datasets import VOCDetection

    folder = voc_folder(root)
    if folder is None:
        raise DatasetNotFound(f"dataset 'voc': {expected_voc(root)}")
    ids = []
    for split in ("trainval", "test"):
        listing = folder / "ImageSets" / "Main" / f"{split}.txt"
        if listing.is_file():
            ids += [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetNotFound(f"dataset 'voc': {folder}/ImageSets/Main holds neither trainval.txt nor test.txt")
    images = torch.zeros(len(ids), 3, VOC_SIZE, VOC_SIZE, dtype=torch.uint8)
    targets = torch.full((len(ids), VOC_MAX_OBJECTS, 5), -1.0)
    targets[..., 1:] = 0.0
    for i, name in enumerate(ids):
        annotation = VOCDetection.parse_voc_xml(ET.parse(folder / "Annotations" / f"{name}.xml").getroot())
        with Image.open(folder / "JPEGImages" / f"{name}.jpg") as image:
            width, height = image.size
            resized = image.convert("RGB").resize((VOC_SIZE, VOC_SIZE), Image.BILINEAR)
            images[i] = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)
        objects = annotation["annotation"].get("object", [])
        objects = objects if isinstance(objects, list) else [objects]
        rows = []
        for obj in objects:
            if str(obj.get("difficult", "0")) == "1":
                continue
            if obj["name"] not in VOC_CLASSES:
                raise ValueError(f"dataset 'voc': {name}.xml names class {obj['name']!r}, not one of VOC's 20")
            box = obj["bndbox"]
            x1, y1 = (float(box["xmin"]) - 1) * VOC_SIZE / width, (float(box["ymin"]) - 1) * VOC_SIZE / height
            x2, y2 = float(box["xmax"]) * VOC_SIZE / width, float(box["ymax"]) * VOC_SIZE / height
            rows.append([float(VOC_CLASSES.index(obj["name"])), x1, y1, x2, y2])
        rows.sort(key=lambda r: -(r[3] - r[1]) * (r[4] - r[2]))
        if rows:
            targets[i, :min(len(rows), VOC_MAX_OBJECTS)] = torch.tensor(rows[:VOC_MAX_OBJECTS])
    return images, targets, list(VOC_CLASSES)


# ------------------------------------------------------------------ the detector

STRIDE = 8  # the one feature level's stride


class _Head(FCOSHead):
    """torchvision's ``FCOSHead`` (one point per location) with group norms of
    :func:`models.networks._groups` groups: its own take 32, which narrow towers lack."""

    def __init__(self, width: int, n_classes: int, convs: int) -> None:
        nn.Module.__init__(self)
        group_norm = partial(nn.GroupNorm, _groups(width))
        self.box_coder = det_utils.BoxLinearCoder(normalize_by_size=True)
        self.classification_head = FCOSClassificationHead(width, 1, n_classes, convs, norm_layer=group_norm)
        self.regression_head = FCOSRegressionHead(width, 1, convs, norm_layer=group_norm)


@register("fcos")
class FCOSDetector(DropoutNet):
    """A small FCOS detector (Tian et al. 2019): a three-stage convolutional backbone to one
    feature map of stride 8, then torchvision's ``FCOSHead`` (classification, box
    regression and centre-ness towers of ``head_convs`` convolutions each), its loss
    (focal, GIoU, centre-ness) and post-processing (box decoding, NMS). One point per
    location (FCOS is anchor-free); one feature level, so every object is matched there.

    Dropout slots: after each backbone stage (``stage1``..``stage3``) and at the end of
    the classification and regression towers (``cls_head``, ``reg_head``).
    """

    task = "detection"

    def __init__(self, in_shape, n_classes, width: int = 32, head_convs: int = 1, activation: str = "relu",
                 norm: str = "batch", score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_img: int = 20):
        super().__init__()
        channels, height, w_img = in_shape
        if height % STRIDE or w_img % STRIDE or min(height, w_img) < 2 * STRIDE:
            raise ValueError(f"fcos: images must be at least {2 * STRIDE}x{2 * STRIDE} with sides divisible by "
                             f"{STRIDE}, got {height}x{w_img}")
        if width < 8 or width % 4:
            raise ValueError(f"fcos: width must be a multiple of 4, at least 8, got {width}")
        if head_convs < 0:
            raise ValueError(f"fcos: head_convs must be >= 0, got {head_convs}")
        layers: list[nn.Module] = []
        c_in = channels
        for stage, c_out in enumerate((width // 4, width // 2, width), start=1):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), _norm(norm, c_out, True), _activation(activation),
                       nn.MaxPool2d(2), self._slot(f"stage{stage}")]
            c_in = c_out
        self.backbone = nn.Sequential(*layers)
        self.head = _Head(width, n_classes, head_convs)
        self.head.classification_head.conv.append(self._slot("cls_head"))
        self.head.regression_head.conv.append(self._slot("reg_head"))
        self.n_classes = n_classes
        self.image_size = (height, w_img)
        # what torchvision's FCOS.compute_loss and FCOS.postprocess_detections read from their self
        self.box_coder = self.head.box_coder
        self.center_sampling_radius = 1.5
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img, self.topk_candidates = detections_per_img, 1000
        generator = AnchorGenerator(sizes=((STRIDE,),), aspect_ratios=((1.0,),))
        feature = torch.zeros(1, width, height // STRIDE, w_img // STRIDE)
        anchors = generator(ImageList(torch.zeros(1, channels, height, w_img), [self.image_size]), [feature])[0]
        self.register_buffer("anchors", anchors, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Raw head outputs ``(batch, locations, classes + 5)``: class logits, the four box
        distances, centre-ness."""
        out = self.head([self.backbone(x)])
        return torch.cat([out["cls_logits"], out["bbox_regression"], out["bbox_ctrness"]], dim=-1)

    def _split(self, out: Tensor) -> dict[str, Tensor]:
        c = self.n_classes
        return {"cls_logits": out[..., :c], "bbox_regression": out[..., c:c + 4], "bbox_ctrness": out[..., c + 4:]}

    def loss(self, out: Tensor, y: Any) -> Tensor:
        """torchvision's FCOS loss (sigmoid focal + GIoU + centre-ness, ``FCOSHead.compute_loss``)
        against targets (padded rows or one dict per image). The points are matched to boxes
        as torchvision's ``FCOS.compute_loss`` does, for a whole batch at once (:meth:`match`)."""
        targets = target_dicts(y)
        anchors = [self.anchors] * len(targets)
        losses = self.head.compute_loss(targets, self._split(out), anchors, self.match(targets))
        return sum(losses.values())

    def match(self, targets: list[dict[str, Tensor]]) -> list[Tensor]:
        """Each point's object per image (-1: background), torchvision's ``FCOS.compute_loss``
        rule on one feature level: the point lies inside the box and within
        ``center_sampling_radius`` strides of its centre; of several, the smallest box."""
        n_max = max((len(t["labels"]) for t in targets), default=0)
        points = (self.anchors[:, :2] + self.anchors[:, 2:]) / 2  # (A, 2)
        if n_max == 0:
            return [torch.full((len(points),), -1, dtype=torch.int64, device=points.device) for _ in targets]
        boxes = points.new_zeros(len(targets), n_max, 4)
        valid = torch.zeros(len(targets), n_max, dtype=torch.bool, device=points.device)
        for i, t in enumerate(targets):
            boxes[i, :len(t["boxes"])] = t["boxes"]
            valid[i, :len(t["boxes"])] = True
        centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # (B, M, 2)
        size = self.anchors[:, 2] - self.anchors[:, 0]  # (A,)
        near = ((points[None, :, None] - centres[:, None]).abs().amax(-1)
                < self.center_sampling_radius * size[None, :, None])  # (B, A, M)
        x, y = points[None, :, None, 0], points[None, :, None, 1]
        inside = torch.stack([x - boxes[:, None, :, 0], y - boxes[:, None, :, 1], boxes[:, None, :, 2] - x,
                              boxes[:, None, :, 3] - y], -1).amin(-1) > 0
        areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
        score = (near & inside & valid[:, None]).to(torch.float32) * (1e8 - areas[:, None])
        best, idx = score.max(-1)
        idx[best < 1e-5] = -1
        return list(idx)

    @torch.no_grad()
    def detect(self, out: Tensor) -> list[dict[str, Tensor]]:
        """Boxes, scores and labels per image from raw outputs (torchvision's FCOS
        post-processing: score threshold, top-k, box decoding, class-wise NMS)."""
        heads = {k: [v] for k, v in self._split(out).items()}
        return FCOS.postprocess_detections(self, heads, [[self.anchors]] * out.shape[0], [self.image_size] * len(out))


def mean_average_precision(model: nn.Module, data: tuple[Tensor, Any], metrics: Sequence[str] = ("map50", "map"),
                           batch_size: int = 256) -> dict[str, float]:
    """The digital detector's mAP on ``(images, targets)``: torchmetrics'
    ``MeanAveragePrecision`` (:func:`crossbar.metrics.new_average_precision`), the same
    measure :func:`crossbar.evaluate` takes per chip. Returns ``{name: value}`` for the names of
    :data:`crossbar.metrics.DETECTION_METRICS`."""
    from crossbar.metrics import DETECTION_METRICS, average_precisions, new_average_precision

    unknown = [m for m in metrics if m not in DETECTION_METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {', '.join(unknown)}; valid: {', '.join(DETECTION_METRICS)}")
    device = next(model.parameters()).device
    x, y = data
    was = model.training
    model.eval()
    scores = new_average_precision()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            found = model.detect(model(x[i:i + batch_size].to(device)))
            scores.update([{k: v.cpu() for k, v in d.items()} for d in found], target_dicts(y[i:i + batch_size]))
    model.train(was)
    return average_precisions(scores, metrics)


def box_count(targets: Tensor) -> int:
    """Objects in padded targets."""
    return int((targets[..., 0] >= 0).sum())


__all__ = ["FCOSDetector", "make_scenes", "load_digit_scenes", "load_voc", "mean_average_precision", "box_count",
           "voc_folder", "VOC_CLASSES"]
