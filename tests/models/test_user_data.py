"""A researcher's own data: a folder of class folders of images (``image_folder``) and one
file of arrays (``tensors``), written here in the real formats (PNG, .pt, .npz), with
their options and a one-line error for each way they can be wrong."""

import collections

import numpy as np
import pytest
import torch
from PIL import Image

import models
from models.errors import BadData

load, check, shape = models.load_dataset, models.check_dataset, models.dataset_shape


def png(path, height, width, mode="L", value=0, label=0):
    """A PNG whose pixel (0, 0) is ``value`` and (0, 1) is ``label`` (every channel), the rest a ramp."""
    channels = 1 if mode == "L" else 3
    pixels = (np.arange(height * width * channels) % 200).astype(np.uint8).reshape(height, width, channels)
    pixels[0, 0], pixels[0, 1] = value, label
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(path)


@pytest.fixture
def folder(tmp_path):
    """cat/ and dog/, 10 grey 6x5 images each: pixel (0, 0) an id 0..19, (0, 1) the label."""
    root = tmp_path / "pets"
    for label, name in enumerate(["cat", "dog"]):
        for i in range(10):
            png(root / name / f"{i}.png", 6, 5, value=label * 10 + i, label=label)
    return root


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def all_of(splits: models.Splits) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.cat([splits.train[0], splits.val[0], splits.test[0]]),
            torch.cat([splits.train[1], splits.val[1], splits.test[1]]))


# ------------------------------------------------------------------ image_folder


def test_image_folder_loads_classes_splits_and_pixels(folder):
    splits = load("image_folder", folder, seed=0, normalize=False)
    assert splits.classes == ["cat", "dog"] and splits.in_shape == (1, 6, 5) and splits.n_classes == 2
    assert splits.sizes() == {"train": 14, "val": 2, "test": 4}  # 20 pooled: test 20%, then val 15%
    x, y = all_of(splits)
    raw = torch.round(x * 255).long()
    assert sorted(raw[:, 0, 0, 0].tolist()) == list(range(20))  # every image once
    assert torch.equal(raw[:, 0, 0, 1], y) and torch.equal(raw[:, 0, 0, 0] // 10, y)  # each with its class
    assert raw[0, 0, 2, 3].item() == 13  # the ramp: pixel (2, 3) of a 6x5 image
    assert shape("image_folder", folder) == (splits.in_shape, splits.n_classes)
    same = load("image_folder", str(folder), seed=0, normalize=False)
    assert torch.equal(same.test[0], splits.test[0])  # the seed fixes the split


def test_image_folder_colour_size_and_channels(tmp_path):
    root = tmp_path / "signs"
    png(root / "stop" / "a.png", 8, 8, "RGB", value=255, label=0)
    png(root / "stop" / "b.png", 6, 10, "RGB", value=10, label=0)
    png(root / "yield" / "c.png", 8, 8, "RGB", value=20, label=1)
    png(root / "yield" / "d.png", 8, 8, "RGB", value=30, label=1)
    with pytest.raises(BadData, match=r"mixed sizes .*stop/a.png is 8x8 but stop/b.png is 6x10 .*set size: \[H, W\]"):
        check("image_folder", root)
    options = {"size": [4, 6]}
    assert shape("image_folder", root, options=options) == ((3, 4, 6), 2)
    splits = load("image_folder", root, seed=0, normalize=False, val_fraction=0.3, test_fraction=0.25,
                  options=options)
    assert splits.in_shape == (3, 4, 6) and splits.sizes() == {"train": 2, "val": 1, "test": 1}
    assert load("image_folder", root, options={"size": 5}).in_shape == (3, 5, 5)
    grey = load("image_folder", root, seed=0, normalize=False, options={"size": [8, 8], "channels": 1})
    x, _ = all_of(grey)
    assert grey.in_shape == (1, 8, 8) and shape("image_folder", root, options={"size": 8, "channels": 1}) == \
        ((1, 8, 8), 2)
    # a's pixel (0, 0) is (255, 255, 255): white stays white in L; not resized, so exact
    assert 255 in torch.round(x[:, 0, 0, 0] * 255).long().tolist()


def test_image_folder_grey_to_rgb_and_hidden_files(folder):
    (folder / "cat" / "._0.png").write_bytes(b"macOS resource fork, not an image")
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / "dog" / "notes.txt").write_text("not an image")
    splits = load("image_folder", folder, seed=0, normalize=False, options={"channels": 3})
    assert splits.in_shape == (3, 6, 5) and splits.classes == ["cat", "dog"]
    x, _ = all_of(splits)
    assert len(x) == 20 and torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # grey copied


def test_image_folder_default_channels_follow_the_first_image(tmp_path):
    root = tmp_path / "mixed"
    png(root / "a" / "1.png", 4, 4, "L")
    png(root / "b" / "2.png", 4, 4, "RGB", value=255)
    with pytest.raises(BadData, match=r"grey and colour .*a/1.png is grey \(L\) but b/2.png is colour \(RGB\); "
                                      r"set channels: 1 \(grey\) or 3 \(RGB\)"):
        check("image_folder", root)
    assert shape("image_folder", root) == ((1, 4, 4), 2)  # the first image's
    red = tmp_path / "red"
    png(red / "a" / "1.png", 4, 4, "RGB", value=0)
    with Image.open(red / "a" / "1.png") as image:
        pixels = np.asarray(image).copy()
    pixels[1, 1] = (255, 0, 0)
    Image.fromarray(pixels).save(red / "a" / "1.png")
    png(red / "b" / "2.png", 4, 4, "RGB")
    png(red / "b" / "3.png", 4, 4, "RGB")
    splits = load("image_folder", red, seed=0, normalize=False, options={"channels": 1})
    x, y = all_of(splits)
    assert splits.in_shape == (1, 4, 4)
    assert round(x[y == 0][0, 0, 1, 1].item() * 255) == 76  # ITU-R 601 luma of pure red, as PIL's L


def test_image_folder_errors_are_one_line(tmp_path, folder):
    with pytest.raises(models.DatasetNotFound, match=r"dataset 'image_folder': no folder .*nowhere .*<class>/<image>"):
        check("image_folder", tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"needs root: the folder of class folders"):
        check("image_folder")
    flat = tmp_path / "flat"
    for name in ("a.png", "b.png"):
        png(flat / name, 4, 4)
    with pytest.raises(models.DatasetNotFound) as error:
        check("image_folder", flat)
    assert all(word in one_line(error) for word in
               ("no class folders", "root/<class>/<image>.png", "found only files (a.png, b.png)", "folder of its own"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(models.DatasetNotFound, match=r"no class folders .*; it is empty"):
        check("image_folder", tmp_path / "empty")
    (folder / "bird").mkdir()
    (folder / "bird" / "readme.txt").write_text("no images yet")
    with pytest.raises(models.DatasetNotFound, match=r"class folder bird in .* holds no images \(.jpg, .jpeg, .png"):
        check("image_folder", folder)
    (folder / "bird" / "0.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(models.DatasetNotFound) as error:
        load("image_folder", folder)
    assert "cannot read image" in one_line(error) and str(folder / "bird" / "0.png") in str(error.value)
    assert "not an image PIL recognises" in str(error.value)
    png(folder / "bird" / "0.png", 6, 5)
    check("image_folder", folder)
    noise = np.random.default_rng(0).integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(noise, "L").save(folder / "bird" / "0.png")
    whole = (folder / "bird" / "0.png").read_bytes()
    (folder / "bird" / "0.png").write_bytes(whole[:-30])  # the header reads, the pixels do not
    check("image_folder", folder)
    with pytest.raises(models.DatasetNotFound, match=r"cannot read image .*bird/0.png \(") as error:
        load("image_folder", folder)
    one_line(error)
    as_file = folder / "cat" / "0.png"
    with pytest.raises(models.DatasetNotFound, match=r"0.png is a file, not a folder of class folders"):
        check("image_folder", as_file)


@pytest.mark.parametrize("options, message", [
    ({"sise": 8}, r"dataset 'image_folder' has no option 'sise' \(did you mean 'size'\?\); it takes size, channels"),
    ({"size": 0}, r"size must be \[height, width\] or one positive number for both, got 0"),
    ({"size": [8, 8, 8]}, r"size must be \[height, width\]"),
    ({"size": True}, r"size must be"),
    ({"channels": 2}, r"channels must be 1 \(grey\) or 3 \(RGB\), got 2"),
    (["size"], r"options must be a mapping"),
])
def test_image_folder_bad_options(folder, options, message):
    for call in (lambda: check("image_folder", folder, options=options),
                 lambda: load("image_folder", folder, options=options)):
        with pytest.raises(ValueError, match=message) as error:
            call()
        one_line(error)
    if "sise" in options:
        with pytest.raises(ValueError, match=message):
            shape("image_folder", folder, options=options)


def test_datasets_without_options_refuse_them_and_keep_their_calls(tmp_path):
    with pytest.raises(ValueError, match=r"dataset 'digits' has no option 'size'; it takes none"):
        load("digits", options={"size": 8})
    with pytest.raises(ValueError, match=r"dataset 'tensors' has no option 'channels'; it takes none"):
        check("tensors", tmp_path / "data.pt", options={"channels": 1})
    assert shape("digits", options={}) == ((1, 8, 8), 10) and shape("digits") == ((1, 8, 8), 10)
    assert load("digits", None, options=None, max_train=10).sizes()["train"] == 10
    assert models.DATASETS["digits"].options == () and models.DATASETS["image_folder"].options == ("size", "channels")
    assert shape("image_folder", tmp_path / "nowhere") == ((3, 32, 32), 10)  # the guess until check_dataset says


# ------------------------------------------------------------------ tensors


def images_and_labels(n=20, h=4, w=3):
    x = torch.randint(0, 256, (n, h, w), dtype=torch.uint8)
    x[:, 0, 0] = torch.arange(n, dtype=torch.uint8)  # an id
    return x, torch.arange(n) % 4


def test_tensors_pt_uint8_with_classes(tmp_path):
    x, y = images_and_labels()
    path = tmp_path / "data.pt"
    torch.save({"x": x, "y": y, "classes": ["a", "b", "c", "d", "e"]}, path)
    check("tensors", path)
    assert shape("tensors", path) == ((1, 4, 3), 5)
    splits = load("tensors", path, seed=1, normalize=False)
    assert splits.classes == ["a", "b", "c", "d", "e"] and splits.in_shape == (1, 4, 3)
    assert splits.sizes() == {"train": 14, "val": 2, "test": 4}
    xs, ys = all_of(splits)
    ids = torch.round(xs[:, 0, 0, 0] * 255).long()
    assert sorted(ids.tolist()) == list(range(20)) and torch.equal(ys, y[ids])
    assert torch.allclose(xs, x[ids].unsqueeze(1).float() / 255)  # every pixel scaled by 255


def test_tensors_npz_floats_kept_and_other_key_names(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2, 3, 3)).astype(np.float64)
    x[:, 0, 0, 0] = np.arange(12)
    path = tmp_path / "data.npz"
    np.savez(path, images=x, labels=np.arange(12) % 3)
    assert shape("tensors", path) == ((2, 3, 3), 3)
    splits = load("tensors", str(path), seed=0, normalize=False)
    assert splits.classes == ["0", "1", "2"] and splits.in_shape == (2, 3, 3)
    xs, ys = all_of(splits)
    ids = xs[:, 0, 0, 0].long()
    assert xs.dtype == torch.float32 and torch.allclose(xs, torch.from_numpy(x[ids.numpy()]).float())  # as they are
    assert torch.equal(ys, ids % 3)
    compressed = tmp_path / "small.npz"
    np.savez_compressed(compressed, inputs=x.astype(np.float32), targets=np.arange(12) % 3,
                        classes=np.array(["r", "g", "b"]))
    assert shape("tensors", compressed) == ((2, 3, 3), 3) and load("tensors", compressed).classes == ["r", "g", "b"]


def test_tensors_legacy_pt_and_int_inputs(tmp_path):
    x, y = images_and_labels()
    path = tmp_path / "old.pt"
    torch.save({"inputs": x.long(), "targets": y}, path, _use_new_zipfile_serialization=False)
    splits = load("tensors", path, seed=0, normalize=False)
    assert splits.in_shape == (1, 4, 3) and splits.n_classes == 4 and float(all_of(splits)[0].max()) <= 1.0


class Holder:
    pass


def save_pt(path, payload):
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("name, make, error, words", [
    ("suffix", lambda p: np.savetxt(p.with_suffix(".csv"), np.zeros(3)) or p.with_suffix(".csv"), BadData,
     ["suffix '.csv'", ".pt", ".npz"]),
    ("objects", lambda p: save_pt(p, {"x": torch.zeros(4, 2, 2), "y": Holder()}), BadData,
     ["Holder", "refused rather than unpickled", 'torch.save({"x": images, "y": labels}, "data.pt")']),
    ("numpy in pt", lambda p: save_pt(p, {"x": np.zeros((4, 2, 2)), "y": np.zeros(4, int)}), BadData,
     ["numpy", "refused", 'torch.save({"x": images, "y": labels}, "data.pt")']),
    ("not a dict", lambda p: save_pt(p, (torch.zeros(4, 2, 2), torch.zeros(4))), BadData, ["holds a tuple"]),
    ("list labels", lambda p: save_pt(p, {"x": torch.zeros(4, 2, 2), "y": [0, 1, 0, 1]}), BadData,
     ["labels 'y' is a list, not a tensor"]),
    ("no labels", lambda p: save_pt(p, {"x": torch.zeros(4, 2, 2), "z": torch.zeros(4)}), BadData,
     ["no labels under 'y' / 'labels' / 'targets'", "found 'x', 'z'"]),
    ("positional npz", lambda p: np.savez(p.with_suffix(".npz"), np.zeros((4, 2, 2)), np.zeros(4)) or
     p.with_suffix(".npz"), BadData, ["no inputs under 'x' / 'images' / 'inputs'", "found 'arr_0', 'arr_1'"]),
    ("object npz", lambda p: np.savez(p.with_suffix(".npz"), x=np.array([{}] * 4, dtype=object), y=np.zeros(4, int))
     or p.with_suffix(".npz"), BadData, ["inputs 'x' holds Python objects"]),
    ("counts", lambda p: save_pt(p, {"x": torch.zeros(5, 2, 2), "y": torch.zeros(4, dtype=torch.long)}), BadData,
     ["5 inputs 'x' but 4 labels 'y'"]),
    ("float labels", lambda p: save_pt(p, {"x": torch.zeros(4, 2, 2), "y": torch.tensor([0.0, 1.0, 0.5, 1.0])}),
     BadData, ["labels 'y' are float32, not integers"]),
    ("negative", lambda p: save_pt(p, {"x": torch.zeros(4, 2, 2), "y": torch.tensor([0, 1, -1, 1])}), BadData,
     ["0..K-1, found -1"]),
    ("2-d inputs", lambda p: save_pt(p, {"x": torch.zeros(4, 5), "y": torch.zeros(4, dtype=torch.long)}), BadData,
     ["(N, C, H, W) or (N, H, W), got shape (4, 5)"]),
    ("5-d inputs", lambda p: np.savez(p.with_suffix(".npz"), x=np.zeros((4, 1, 1, 2, 2)), y=np.zeros(4, int)) or
     p.with_suffix(".npz"), BadData, ["got shape (4, 1, 1, 2, 2)"]),
    ("2-d labels", lambda p: save_pt(p, {"x": torch.zeros(4, 2, 2), "y": torch.zeros(4, 1, dtype=torch.long)}),
     BadData, ["shape (N,), got shape (4, 1)"]),
    ("bool inputs", lambda p: save_pt(p, {"x": torch.zeros(4, 2, 2, dtype=torch.bool), "y": torch.zeros(4).long()}),
     BadData, ["inputs 'x' are bool"]),
    ("few classes", lambda p: save_pt(p, {"x": torch.zeros(4, 2, 2), "y": torch.arange(4), "classes": ["a", "b"]}),
     BadData, ["2 classes named but the labels reach 3"]),
    ("text", lambda p: p.write_text("not a torch file") and p, models.DatasetNotFound,
     ["torch.load cannot read", "not a file torch.save wrote"]),
    ("broken zip", lambda p: p.write_bytes(b"PK\x03\x04broken") and p, models.DatasetNotFound,
     ["torch.load cannot read", "RuntimeError"]),
    ("text npz", lambda p: p.with_suffix(".npz").write_text("not numpy") and p.with_suffix(".npz"),
     models.DatasetNotFound, ["numpy cannot read"]),
    ("missing", lambda p: p, models.DatasetNotFound, ["no file", "data.pt", ".pt or .npz"]),
    ("folder", lambda p: p.parent, models.DatasetNotFound, ["is a folder", "the .pt or .npz file itself"]),
])
def test_tensors_bad_files_are_one_line(tmp_path, name, make, error, words):
    path = make(tmp_path / "data.pt")
    with pytest.raises(error) as caught:
        check("tensors", path)
    text = one_line(caught)
    assert all(word in text for word in words), text
    assert "weights_only" not in text and "allow_pickle" not in text  # never advise unpickling
    with pytest.raises(error):
        load("tensors", path)


def test_tensors_values_checked_on_loading(tmp_path):
    big = save_pt(tmp_path / "big.pt", {"x": torch.full((4, 2, 2), 300), "y": torch.arange(4)})
    with pytest.raises(BadData, match=r"integer inputs \(int64\) must lie in 0..255 .*found 300..300"):
        load("tensors", big)
    x = torch.zeros(4, 2, 2)
    x[1, 0, 0] = float("nan")
    with pytest.raises(BadData, match=r"the inputs hold NaN or infinite values"):
        load("tensors", save_pt(tmp_path / "nan.pt", {"x": x, "y": torch.arange(4)}))
    with pytest.raises(ValueError, match=r"dataset 'tensors' needs root: the .pt or .npz file"):
        check("tensors")


def test_the_table_lists_both():
    assert {"image_folder", "tensors"} <= set(models.list_datasets())
    assert all(isinstance(v, models.Dataset) for v in models.DATASETS.values())
    assert collections.Counter(models.list_datasets())["tensors"] == 1
