"""``voc``: a Pascal VOC folder as a detection data set, images resized to 96x96 with
their boxes, through torchvision's ``VOCDetection`` parser."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

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


class BadAnnotation(ValueError):
    """A VOC annotation that cannot be used; the message names the file and the box."""


def _ids(root: Path) -> tuple[Path, list[str]]:
    """The VOC year folder and the image ids of its ``trainval.txt`` and ``test.txt``."""
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
    return folder, ids


def _number(text, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise BadAnnotation(f"{what} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise BadAnnotation(f"{what} is {text!r}, not a finite number")
    return value


def _boxes(annotation: dict, width: int, height: int) -> list[list[float]]:
    """``[class, xmin, ymin, xmax, ymax, difficult]`` in VOC's pixels (1-based) of each object,
    every field checked: a known class, numbers, ordered, inside the image."""
    objects = annotation.get("object", [])
    rows = []
    for k, obj in enumerate(objects if isinstance(objects, list) else [objects]):
        where = f"object {k + 1}"
        if not isinstance(obj, dict) or obj.get("name") not in VOC_CLASSES:
            name = obj.get("name") if isinstance(obj, dict) else obj
            raise BadAnnotation(f"{where} names class {name!r}, not one of VOC's 20 ({', '.join(VOC_CLASSES)})")
        where += f" ({obj['name']})"
        box = obj.get("bndbox")
        if not isinstance(box, dict):
            raise BadAnnotation(f"{where} has no bndbox")
        x1, y1, x2, y2 = (_number(box.get(key), f"{where}'s {key}") for key in ("xmin", "ymin", "xmax", "ymax"))
        corners = f"({x1:g}, {y1:g}, {x2:g}, {y2:g})"
        if not (x1 < x2 and y1 < y2):
            raise BadAnnotation(f"{where}'s box {corners} is empty or reversed: xmin < xmax and ymin < ymax")
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise BadAnnotation(f"{where}'s box {corners} leaves the {width}x{height} image")
        rows.append([float(VOC_CLASSES.index(obj["name"])), x1, y1, x2, y2, str(obj.get("difficult", "0")) == "1"])
    return rows


def _annotation(folder: Path, name: str) -> tuple[Path, int, int, list[list[float]]]:
    """An image's file, width, height and checked boxes; a fault is one line naming the file."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets import VOCDetection

    xml, jpeg = folder / "Annotations" / f"{name}.xml", folder / "JPEGImages" / f"{name}.jpg"
    try:
        with Image.open(jpeg) as image:  # reads the header only
            width, height = image.size
        annotation = VOCDetection.parse_voc_xml(ET.parse(xml).getroot()).get("annotation")
        if not isinstance(annotation, dict):
            raise BadAnnotation("has no <annotation> element")
        return jpeg, width, height, _boxes(annotation, width, height)
    except ET.ParseError as e:
        raise BadAnnotation(f"dataset 'voc': {xml} is not valid XML ({e})") from None
    except (OSError, UnidentifiedImageError) as e:
        raise DatasetNotFound(f"dataset 'voc': cannot read {name}'s files: {e}") from None
    except BadAnnotation as e:
        raise BadAnnotation(f"dataset 'voc': {xml}: {e}") from None


def check_voc(root: Path) -> None:
    """Every annotation of the folder parsed and checked, before any work: one line naming
    the first file and box at fault."""
    folder, ids = _ids(root)
    for name in tqdm(ids, desc="checking VOC annotations", unit="file", leave=False, disable=len(ids) < 2000):
        _annotation(folder, name)


def load_voc(root: Path, download: bool, verify: bool) -> tuple[Tensor, Tensor, list[str]]:
    """Every image of ``ImageSets/Main/trainval.txt`` and ``test.txt`` (those present),
    resized to :data:`VOC_SIZE` squared, with its boxes (difficult ones dropped), through
    torchvision's ``VOCDetection`` parser; every annotation checked as :func:`check_voc` does."""
    from PIL import Image

    folder, ids = _ids(root)
    images = torch.zeros(len(ids), 3, VOC_SIZE, VOC_SIZE, dtype=torch.uint8)
    targets = torch.full((len(ids), VOC_MAX_OBJECTS, 5), -1.0)
    targets[..., 1:] = 0.0
    for i, name in enumerate(ids):
        jpeg, width, height, boxes = _annotation(folder, name)
        with Image.open(jpeg) as image:
            resized = image.convert("RGB").resize((VOC_SIZE, VOC_SIZE), Image.BILINEAR)
            images[i] = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)
        rows = [[label, max(x1 - 1, 0.0) * VOC_SIZE / width, max(y1 - 1, 0.0) * VOC_SIZE / height,
                 x2 * VOC_SIZE / width, y2 * VOC_SIZE / height] for label, x1, y1, x2, y2, difficult in boxes
                if not difficult]
        rows.sort(key=lambda r: -(r[3] - r[1]) * (r[4] - r[2]))
        if rows:
            targets[i, :min(len(rows), VOC_MAX_OBJECTS)] = torch.tensor(rows[:VOC_MAX_OBJECTS])
    return images, targets, list(VOC_CLASSES)


register_dataset(Dataset(
    "voc", "a Pascal VOC folder (VOCdevkit/VOC2007: Annotations, JPEGImages, ImageSets/Main), resized to 96x96 "
    "(detection)", load_voc, official_test=False, scale=255.0, shape=(3, VOC_SIZE, VOC_SIZE),
    n_classes=len(VOC_CLASSES), files=expected_voc, present=lambda root: voc_folder(root) is not None, check=check_voc,
    task="detection"))
