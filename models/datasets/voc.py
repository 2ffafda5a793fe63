"""``voc``: a Pascal VOC folder as a detection data set, images resized to 96x96 with
their boxes, through torchvision's ``VOCDetection`` parser."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import DatasetNotFound
from .base import Dataset, register_dataset

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


register_dataset(Dataset(
    "voc", "a Pascal VOC folder (VOCdevkit/VOC2007: Annotations, JPEGImages, ImageSets/Main), resized to 96x96 "
    "(detection)", load_voc, official_test=False, scale=255.0, shape=(3, VOC_SIZE, VOC_SIZE),
    n_classes=len(VOC_CLASSES), files=expected_voc, present=lambda root: voc_folder(root) is not None,
    task="detection"))
