"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images), the offline
default; no download."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import Dataset, register_dataset


def load_digits(root: Path, download: bool, verify: bool):
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    x = torch.tensor(data.images, dtype=torch.uint8).unsqueeze(1)  # values 0..16
    return x, torch.tensor(data.target, dtype=torch.long), [str(c) for c in data.target_names]


register_dataset(Dataset("digits", "scikit-learn's bundled 8x8 handwritten digits, 1,797 images; no download",
                         load_digits, official_test=False, scale=16.0, shape=(1, 8, 8), n_classes=10))
