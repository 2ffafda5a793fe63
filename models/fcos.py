"""A small FCOS detector with dropout slots, built on torchvision's FCOS head, loss and
post-processing.

    splits = models.load_dataset("digit_scenes", seed=0)      # generated, no download
    net = models.build("fcos", splits.in_shape, splits.n_classes, dropout=0.1)
    models.train(net, splits)      # validation by mAP@0.5
    crossbar.evaluate(net, splits.test, "reram_cmo", "1d", 16, metric="map50")

The detector's ``forward`` returns its raw head outputs, ``(batch, locations, classes +
5)``: every ``Conv2d`` up to them runs on the crossbars after :func:`crossbar.convert`.
Decoding boxes, scores and non-maximum suppression (``detect``) stay digital, as on a
chip whose periphery hands the head's outputs to a digital processor. It is a
:class:`models.tasks.Detector`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSClassificationHead, FCOSHead, FCOSRegressionHead
from torchvision.models.detection.image_list import ImageList

from .networks import DropoutNet, activation_layer, norm_groups, norm_layer, register
from .tasks import target_dicts

STRIDE = 8  # the one feature level's stride


class _Head(FCOSHead):
    """torchvision's ``FCOSHead`` (one point per location) with group norms of
    :func:`models.networks.norm_groups` groups: its own take 32, which narrow towers lack."""

    def __init__(self, width: int, n_classes: int, convs: int) -> None:
        nn.Module.__init__(self)
        group_norm = partial(nn.GroupNorm, norm_groups(width))
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
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), norm_layer(norm, c_out, True),
                       activation_layer(activation),
                       nn.MaxPool2d(2), self.slot(f"stage{stage}")]
            c_in = c_out
        self.backbone = nn.Sequential(*layers)
        self.head = _Head(width, n_classes, head_convs)
        self.head.classification_head.conv.append(self.slot("cls_head"))
        self.head.regression_head.conv.append(self.slot("reg_head"))
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
