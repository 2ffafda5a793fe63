"""``digit_scenes``: an offline detection data set, 2,000 generated 48x48 scenes of 1 to
3 of scikit-learn's digits with clutter, each object's tight box and label.

Targets are padded so that a split indexes like a classification one: each image's
objects are rows ``[label, x1, y1, x2, y2]`` (pixels, ``x2``/``y2`` exclusive), label -1
for the padding rows. :func:`models.target_dicts` gives torchvision's one dict per image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from crossbar.common import check_seed

from .base import Dataset, register_dataset

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
    """The scenes of seed 0 (the split's seed then draws train, validation and test from them)."""
    images, targets = make_scenes(SCENES, seed=0)
    return images, targets, [str(d) for d in range(10)]


register_dataset(Dataset(
    "digit_scenes", "1 to 3 of scikit-learn's digits pasted on 48x48 canvases with clutter, 2,000 scenes, boxes and "
    "labels (detection); generated, no download", load_digit_scenes, official_test=False, scale=16.0,
    shape=(1, SCENE_SIZE, SCENE_SIZE), n_classes=10, task="detection"))
