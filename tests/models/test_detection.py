"""The detection data sets (models.datasets.scenes, .voc) and the FCOS detector (models.fcos)."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from torchvision.models.detection import FCOS

import crossbar
import models
from models.datasets import voc
from models.datasets.scenes import INK, MAX_OBJECTS, OBJECT_SIZES, SCENE_SIZE, make_scenes


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(300, seed=5)


def test_scenes_are_deterministic_from_the_seed(scenes):
    images, targets = scenes
    again = make_scenes(300, seed=5)
    assert torch.equal(images, again[0]) and torch.equal(targets, again[1])
    other = make_scenes(300, seed=6)
    assert not torch.equal(images, other[0])


def test_scene_boxes_lie_inside_the_canvas_and_hold_their_digit(scenes):
    images, targets = scenes
    assert images.shape == (300, 1, SCENE_SIZE, SCENE_SIZE) and targets.shape == (300, MAX_OBJECTS, 5)
    assert images.min() >= 0 and images.max() <= 16
    real = targets[..., 0] >= 0
    counts = real.sum(1)
    assert counts.min() >= 1 and counts.max() <= MAX_OBJECTS
    assert all(int(c) > 0 for c in np.bincount(counts.numpy())[1:])  # 1, 2 and 3 objects all occur
    # padding rows come after the objects and are all zero
    assert torch.equal(real, torch.arange(MAX_OBJECTS)[None] < counts[:, None])
    assert (targets[~real][:, 1:] == 0).all() and (targets[~real][:, 0] == -1).all()
    labels = targets[real][:, 0]
    assert labels.min() >= 0 and labels.max() <= 9 and torch.equal(labels, labels.round())
    boxes = targets[real][:, 1:]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= SCENE_SIZE).all()
    sides = boxes[:, 2:] - boxes[:, :2]
    assert (sides > 0).all() and sides.max() <= OBJECT_SIZES[1]
    for i in range(len(images)):
        for x1, y1, x2, y2 in targets[i][real[i]][:, 1:].int().tolist():
            patch = images[i, 0, y1:y2, x1:x2]
            # the box is tight around ink: each of its four edges touches a pixel of it
            for edge in (patch[0], patch[-1], patch[:, 0], patch[:, -1]):
                assert edge.max() > INK
        objects = targets[i][real[i]][:, 1:]
        for a in range(len(objects)):  # pasted where no other object is
            for b in range(a + 1, len(objects)):
                (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = objects[a].tolist(), objects[b].tolist()
                assert ax2 <= bx1 or bx2 <= ax1 or ay2 <= by1 or by2 <= ay1


def test_scene_boxes_are_where_the_digits_are(scenes):
    """Inside the boxes the canvas is bright; outside it is background and faint clutter."""
    images, targets = scenes
    inside = torch.zeros(images.shape, dtype=torch.bool)
    for i in range(len(images)):
        for x1, y1, x2, y2 in targets[i][targets[i][:, 0] >= 0][:, 1:].int().tolist():
            inside[i, 0, y1:y2, x1:x2] = True
    assert images[inside].mean() > 3 * images[~inside].mean()
    assert (images[~inside] > 14).float().mean() < 0.002  # full-strength ink is (almost) only in boxes


def test_digit_scenes_split_like_the_other_data_sets():
    splits = models.load_dataset("digit_scenes", seed=0)
    assert splits.task == "detection" and splits.in_shape == (1, SCENE_SIZE, SCENE_SIZE) and splits.n_classes == 10
    assert splits.sizes() == {"train": 1360, "val": 240, "test": 400}
    assert models.dataset_shape("digit_scenes") == ((1, SCENE_SIZE, SCENE_SIZE), 10)
    keys = {k: {hash(x.numpy().tobytes()) for x in getattr(splits, k)[0]} for k in ("train", "val", "test")}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    assert models.load_dataset("digit_scenes", seed=1).test[1].shape == (400, MAX_OBJECTS, 5)
    assert models.dataset_task("digit_scenes") == "detection" and models.dataset_task("digits") == "classification"


def _write_voc(root, images):
    """A Pascal VOC folder in the real layout: JPEGs, XML annotations, ImageSets/Main."""
    from PIL import Image

    folder = root / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True)
    names = []
    for i, (size, objects) in enumerate(images):
        name = f"{i:06d}"
        names.append(name)
        Image.fromarray(np.full((size[1], size[0], 3), 40 * i, dtype=np.uint8)).save(folder / "JPEGImages" /
                                                                                     f"{name}.jpg")
        ann = ET.Element("annotation")
        ET.SubElement(ann, "filename").text = f"{name}.jpg"
        s = ET.SubElement(ann, "size")
        for key, value in zip(("width", "height", "depth"), (*size, 3)):
            ET.SubElement(s, key).text = str(value)
        for cls, box, difficult in objects:
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = cls
            ET.SubElement(obj, "difficult").text = str(difficult)
            bnd = ET.SubElement(obj, "bndbox")
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
                ET.SubElement(bnd, key).text = str(value)
        ET.ElementTree(ann).write(folder / "Annotations" / f"{name}.xml")
    (folder / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(names) + "\n")
    return folder


def test_voc_folder_is_read_with_boxes_scaled_and_difficult_ones_dropped(tmp_path):
    _write_voc(tmp_path, [
        ((192, 96), [("dog", (1, 1, 96, 48), 0), ("person", (97, 49, 192, 96), 0), ("cat", (10, 10, 20, 20), 1)]),
        ((96, 96), [("car", (11, 21, 60, 90), 0)]),
        ((48, 96), [("bird", (1, 1, 48, 96), 0)]),
        ((96, 48), [("boat", (1, 1, 10, 10), 0)]),
        ((96, 96), [("cow", (5, 5, 50, 50), 0)]),
    ])
    x, y, classes = voc.load_voc(tmp_path, False, False)
    assert x.shape == (5, 3, voc.VOC_SIZE, voc.VOC_SIZE) and classes == list(voc.VOC_CLASSES)
    first = y[0][y[0][:, 0] >= 0]
    assert len(first) == 2  # the difficult cat is dropped
    assert first[0].tolist() == [classes.index("dog"), 0, 0, 48, 48]  # the larger box first, scaled 192x96 -> 96x96
    assert first[1].tolist() == [classes.index("person"), 48, 48, 96, 96]
    assert y[1][0].tolist() == [classes.index("car"), 10, 20, 60, 90]
    splits = models.load_dataset("voc", root=tmp_path, seed=0, test_fraction=0.2, val_fraction=0.25)
    assert splits.task == "detection" and splits.sizes() == {"train": 3, "val": 1, "test": 1}


def test_missing_voc_folder_is_one_line(tmp_path):
    with pytest.raises(models.DatasetNotFound) as err:
        models.check_dataset("voc", tmp_path)
    assert "\n" not in str(err.value) and "VOCdevkit/VOC2007" in str(err.value)


# ------------------------------------------------------------------ the detector


def test_detector_slots_outputs_and_crossbar_mapping():
    net = models.build("fcos", (1, 48, 48), 10, dropout=0.1, seed=0)
    assert net.dropout_slots == ["stage1", "stage2", "stage3", "cls_head", "reg_head"]
    assert net.task == "detection" and models.metric_of(net) == "map50" and models.model_task("fcos") == "detection"
    out = net.eval()(torch.randn(2, 1, 48, 48))
    assert out.shape == (2, 36, 10 + 5)  # 6x6 locations of stride 8
    convs = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert [n for n, _ in crossbar.mapped_layers(net)] == convs and not crossbar.unmapped_layers(net)
    found = net.detect(out)
    assert len(found) == 2 and all(len(d["boxes"]) <= net.detections_per_img for d in found)
    for d in found:
        assert (d["boxes"] >= 0).all() and (d["boxes"] <= 48).all() and (d["scores"] > net.score_thresh).all()
    again = models.build(**net.spec, seed=0)
    assert torch.equal(again.eval()(torch.ones(1, 1, 48, 48)), net(torch.ones(1, 1, 48, 48)))


def test_matching_and_loss_are_torchvisions(scenes):
    """The batched matching gives torchvision FCOS.compute_loss's matches, so the loss is its loss."""
    images, targets = scenes
    net = models.build("fcos", (1, 48, 48), 10, seed=1)
    truth = models.target_dicts(targets[:64])
    truth[3] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}  # an image with no object
    out = net(images[:64] / 16)
    anchors = [net.anchors] * 64
    reference = FCOS.compute_loss(net, truth, net._split(out), anchors, [net.anchors.shape[0]])
    mine = net.head.compute_loss(truth, net._split(out), anchors, net.match(truth))
    assert all(torch.equal(reference[k], mine[k]) for k in reference)
    assert sum(int((m >= 0).sum()) for m in net.match(truth)) > 64  # most objects own several points
    assert torch.equal(net.loss(out, targets[:64]), sum(net.head.compute_loss(
        models.target_dicts(targets[:64]), net._split(out), anchors, net.match(models.target_dicts(targets[:64])))
        .values()))


def test_a_detector_learns_and_is_scored_by_map():
    splits = models.load_dataset("digit_scenes", seed=0, max_val=100)
    net = models.build("fcos", splits.in_shape, splits.n_classes, seed=0)
    before = models.clean_score(net, splits.val)
    result = models.train(net, splits, models.TrainConfig(epochs=6, lr=0.01), seed=0)
    assert result.ok and result.val_score == max(h["val_score"] for h in result.history)
    assert result.val_score == pytest.approx(models.mean_average_precision(net, splits.val, ("map50",))["map50"])
    assert result.val_score > before + 0.05
    scores = models.mean_average_precision(net, splits.val)
    assert 0 <= scores["map"] <= scores["map50"] <= 1


def test_bad_detector_options_are_one_line():
    for kwargs, message in [
        (dict(name="fcos", in_shape=(1, 8, 8), n_classes=10), "at least 16x16"),
        (dict(name="fcos", in_shape=(1, 44, 48), n_classes=10), "divisible by 8"),
        (dict(name="fcos", in_shape=(1, 48, 48), n_classes=10, width=6), "width must be a multiple of 4"),
        (dict(name="fcos", in_shape=(1, 48, 48), n_classes=10, head="ecoc"), "head: ecoc is for classifiers"),
    ]:
        with pytest.raises(ValueError, match=message) as err:
            models.build(**kwargs)
        assert "\n" not in str(err.value)


GOOD = ((96, 64), [("dog", (1, 1, 40, 30), 0)])


@pytest.mark.parametrize("objects, message", [
    ([("dog", (50, 1, 40, 30), 0)], "object 1 (dog)'s box (50, 1, 40, 30) is empty or reversed: xmin < xmax"),
    ([("dog", (1, 30, 40, 30), 0)], "object 1 (dog)'s box (1, 30, 40, 30) is empty or reversed"),
    ([("cat", (1, 1, 40, 30), 1), ("dog", ("nan", 1, 40, 30), 0)], "object 2 (dog)'s xmin is 'nan', not a finite"),
    ([("dog", (1, 1, 1e9, 30), 0)], "object 1 (dog)'s box (1, 1, 1e+09, 30) leaves the 96x64 image"),
    ([("dog", (1, 1, 40, 65), 0)], "object 1 (dog)'s box (1, 1, 40, 65) leaves the 96x64 image"),
    ([("dog", (-3, 1, 40, 30), 0)], "object 1 (dog)'s box (-3, 1, 40, 30) leaves the 96x64 image"),
    ([("dog", ("left", 1, 40, 30), 0)], "object 1 (dog)'s xmin is 'left', not a number"),
    ([("unicorn", (1, 1, 40, 30), 0)], "object 1 names class 'unicorn', not one of VOC's 20 (aeroplane, bicycle"),
])
def test_each_bad_voc_box_is_one_line_naming_the_file_before_any_work(tmp_path, objects, message):
    folder = _write_voc(tmp_path, [GOOD, ((96, 64), objects)])
    for call in (lambda: models.check_dataset("voc", tmp_path), lambda: voc.load_voc(tmp_path, False, False)):
        with pytest.raises(ValueError) as err:
            call()
        text = str(err.value)
        assert "\n" not in text and f"{folder / 'Annotations' / '000001.xml'}: {message}" in text, text
    _write_voc(tmp_path / "good", [GOOD, GOOD])
    models.check_dataset("voc", tmp_path / "good")  # the same folder without the fault passes


def test_garbage_voc_xml_and_a_missing_image_name_their_file(tmp_path):
    folder = _write_voc(tmp_path, [GOOD, GOOD])
    (folder / "Annotations" / "000001.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError) as err:
        models.check_dataset("voc", tmp_path)
    assert "\n" not in str(err.value)
    assert f"dataset 'voc': {folder / 'Annotations' / '000001.xml'} is not valid XML (" in str(err.value)
    _write_voc(tmp_path / "b", [GOOD, GOOD])
    (tmp_path / "b" / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000000.jpg").unlink()
    with pytest.raises(models.DatasetNotFound, match="dataset 'voc': cannot read 000000's files: .*000000.jpg"):
        models.check_dataset("voc", tmp_path / "b")


def test_a_scenario_on_a_bad_voc_folder_is_refused_before_its_run_folder_exists(tmp_path, capsys):
    import search.run

    _write_voc(tmp_path / "voc", [GOOD, ((96, 64), [("dog", (50, 1, 40, 30), 0)])])
    scenario = tmp_path / "voc.yaml"
    scenario.write_text(f"task: detection\nmodel: fcos\ndataset: {{name: voc, root: {tmp_path / 'voc'}}}\n")
    assert search.run.main([str(scenario), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert not (tmp_path / "run").exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "000001.xml: object 1 (dog)'s box (50, 1, 40, 30) is empty or reversed" in err, err
