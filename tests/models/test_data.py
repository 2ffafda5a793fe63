"""Datasets: splits, the real on-disk formats (written here), and clear errors."""

import pickle

import numpy as np
import pytest
import torch

import models
from models.datasets.idx import read_idx, write_idx


def unique_images(n: int, size: int, offset: int = 0) -> np.ndarray:
    """``n`` distinct uint8 images: image i encodes ``offset + i`` in its first two pixels."""
    rng = np.random.default_rng(offset)
    x = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    ids = np.arange(offset, offset + n)
    x[:, 0, 0], x[:, 0, 1] = ids // 256, ids % 256
    return x


def ids_of(x: torch.Tensor, splits: models.Splits) -> set[int]:
    """Undo the normalisation and read back the ids of ``unique_images``."""
    mean, std = splits.mean[0], splits.std[0]
    raw = torch.round((x[:, 0, 0, :2] * std + mean) * 255).long()
    return set((raw[:, 0] * 256 + raw[:, 1]).tolist())


@pytest.fixture
def idx_folder(tmp_path):
    x = unique_images(500, 12)
    y = (np.arange(500) % 10).astype(np.uint8)
    write_idx(tmp_path / "part-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "part-labels-idx1-ubyte.gz", y)
    return tmp_path


def test_digits_offline_default_and_shapes():
    splits = models.load_dataset("digits", seed=0)
    assert splits.in_shape == (1, 8, 8) and splits.n_classes == 10
    assert sum(splits.sizes().values()) == 1797
    x, y = splits.train
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    # standardised with the training split's own statistics
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3


def test_same_seed_same_splits_other_seed_other_splits():
    a, b, c = (models.load_dataset("digits", seed=s) for s in (3, 3, 4))
    for key in ("train", "val", "test"):
        assert torch.equal(getattr(a, key)[0], getattr(b, key)[0])
    assert not torch.equal(a.test[1], c.test[1])


def test_idx_folder_splits_are_disjoint_and_cover_everything(idx_folder):
    splits = models.load_dataset("idx", root=idx_folder, seed=1, val_fraction=0.2, test_fraction=0.2)
    assert splits.sizes() == {"train": 320, "val": 80, "test": 100}  # val: a share of what test leaves
    sets = {k: ids_of(getattr(splits, k)[0], splits) for k in ("train", "val", "test")}
    assert all(len(s) == splits.sizes()[k] for k, s in sets.items())
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert sets["train"] | sets["val"] | sets["test"] == set(range(500))
    # labels travel with their images
    for key in ("train", "test"):
        x, y = getattr(splits, key)
        ids = torch.round((x[:, 0, 0, :2] * splits.std[0] + splits.mean[0]) * 255).long()
        assert torch.equal((ids[:, 0] * 256 + ids[:, 1]) % 10, y)


def test_limits_take_seeded_subsets(idx_folder):
    splits = models.load_dataset("idx", root=idx_folder, max_train=50, max_val=20, max_test=10, normalize=False)
    assert splits.sizes() == {"train": 50, "val": 20, "test": 10}
    assert float(splits.train[0].min()) >= 0 and float(splits.train[0].max()) <= 1


def test_idx_round_trip_all_types(tmp_path):
    for dtype in ("u1", "i1", ">i2", ">i4", ">f4", ">f8"):
        arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(np.dtype(dtype).newbyteorder("="))
        if dtype == "u1":
            arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
        for name in ("a-images-idx3-ubyte", "a-images-idx3-ubyte.gz"):
            write_idx(tmp_path / name, arr)
            assert np.array_equal(read_idx(tmp_path / name), arr)


def test_idx_errors_name_the_file(tmp_path):
    (tmp_path / "bad-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(models.DatasetNotFound, match="bad magic"):
        read_idx(tmp_path / "bad-images-idx3-ubyte")
    with pytest.raises(models.DatasetNotFound, match="no matching bad-labels-idx1-ubyte"):
        models.load_dataset("idx", root=tmp_path)
    with pytest.raises(models.DatasetNotFound, match="no '\\*-images-idx3-ubyte"):
        models.load_dataset("idx", root=tmp_path / "empty")
    with pytest.raises(ValueError, match="needs root"):
        models.load_dataset("idx")
    write_idx(tmp_path / "short-images-idx3-ubyte", unique_images(3, 4))
    data = (tmp_path / "short-images-idx3-ubyte").read_bytes()
    (tmp_path / "short-images-idx3-ubyte").write_bytes(data[:-5])
    with pytest.raises(models.DatasetNotFound, match="IDX header says shape"):
        read_idx(tmp_path / "short-images-idx3-ubyte")


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
@pytest.mark.parametrize("compressed", [False, True])
def test_mnist_like_through_torchvision(tmp_path, name, folder, compressed):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    ext = ".gz" if compressed else ""
    write_idx(raw / f"train-images-idx3-ubyte{ext}", unique_images(200, 28))
    write_idx(raw / f"train-labels-idx1-ubyte{ext}", (np.arange(200) % 10).astype(np.uint8))
    write_idx(raw / f"t10k-images-idx3-ubyte{ext}", unique_images(40, 28, offset=1000))
    write_idx(raw / f"t10k-labels-idx1-ubyte{ext}", (np.arange(40) % 10).astype(np.uint8))
    models.check_dataset(name, tmp_path)
    splits = models.load_dataset(name, root=tmp_path, val_fraction=0.25)
    assert splits.sizes() == {"train": 150, "val": 50, "test": 40}
    assert models.dataset_shape(name) == (splits.in_shape, splits.n_classes) == ((1, 28, 28), 10)  # the table's
    train, val, test = (ids_of(getattr(splits, k)[0], splits) for k in ("train", "val", "test"))
    assert test == set(range(1000, 1040))  # the official test split is the test split
    assert not train & val and train | val == set(range(200))


def write_cifar(root, n_train_per_batch=20, n_test=30):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(batches):
        n = n_test if name == "test_batch" else n_train_per_batch
        data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        data[:, 0] = b  # red channel of pixel (0, 0) holds the batch number
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": list(rng.integers(0, 10, n))}, f)
    with open(folder / "batches.meta", "wb") as f:
        label_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        pickle.dump({"label_names": label_names}, f)


def test_cifar10_reads_the_pickle_batches(tmp_path):
    write_cifar(tmp_path)
    splits = models.load_dataset("cifar10", root=tmp_path, verify=False, normalize=False, val_fraction=0.2)
    assert splits.in_shape == (3, 32, 32) and splits.classes[1] == "automobile"
    assert models.dataset_shape("cifar10") == (splits.in_shape, splits.n_classes)  # the table's, as read
    assert splits.sizes() == {"train": 80, "val": 20, "test": 30}
    batch = lambda x: set(torch.round(x[:, 0, 0, 0] * 255).long().tolist())  # noqa: E731
    assert batch(splits.test[0]) == {5}
    assert batch(splits.train[0]) | batch(splits.val[0]) <= {0, 1, 2, 3, 4}
    # with md5 verification (the default) these home-made files are refused, in one line
    with pytest.raises(models.DatasetNotFound) as err:
        models.load_dataset("cifar10", root=tmp_path)
    assert "cifar10" in str(err.value) and "\n" not in str(err.value)


def test_gtsrb_reads_ppm_folders_and_csv(tmp_path):
    from PIL import Image

    base = tmp_path / "gtsrb"
    rng = np.random.default_rng(0)
    for cls in range(3):
        folder = base / "GTSRB" / "Training" / f"{cls:05d}"
        folder.mkdir(parents=True)
        for i in range(4):
            size = (int(rng.integers(20, 50)), int(rng.integers(20, 50)))
            Image.fromarray(np.full((*size, 3), 60 * cls, dtype=np.uint8)).save(folder / f"{i:05d}_00000.ppm")
    test = base / "GTSRB" / "Final_Test" / "Images"
    test.mkdir(parents=True)
    lines = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i in range(5):
        Image.fromarray(np.full((30, 40, 3), 60 * (i % 3), dtype=np.uint8)).save(test / f"{i:05d}.ppm")
        lines.append(f"{i:05d}.ppm;40;30;1;1;39;29;{i % 3}")
    (base / "GT-final_test.csv").write_text("\n".join(lines) + "\n")
    splits = models.load_dataset("gtsrb", root=tmp_path, normalize=False, val_fraction=0.25)
    assert splits.in_shape == (3, 32, 32) and splits.sizes() == {"train": 9, "val": 3, "test": 5}
    assert models.dataset_shape("gtsrb")[0] == splits.in_shape  # the table's (its 43 classes: the real set's)
    for key in ("train", "val", "test"):  # the image's colour is its class
        x, y = getattr(splits, key)
        assert torch.allclose(x.mean(dim=(1, 2, 3)), y.float() * 60 / 255, atol=1e-2)


@pytest.mark.parametrize("name,expected", [
    ("mnist", "train-images-idx3-ubyte"), ("fashion_mnist", "FashionMNIST"),
    ("cifar10", "cifar-10-batches-py"), ("gtsrb", "GT-final_test.csv"),
])
def test_missing_data_is_one_clear_line_before_any_work(tmp_path, name, expected):
    root = tmp_path / "nothing-here"
    with pytest.raises(models.DatasetNotFound) as err:
        models.check_dataset(name, root)
    message = str(err.value)
    assert expected in message and str(root) in message and "download" in message and "\n" not in message
    with pytest.raises(models.DatasetNotFound):
        models.load_dataset(name, root=root)
    assert not root.exists()  # nothing written


def test_a_folder_of_idx_files_given_as_mnists_root_gets_a_hint(idx_folder):
    # e.g. root: ../shared/data/mnist-t10k, which holds the IDX files themselves
    with pytest.raises(models.DatasetNotFound) as err:
        models.check_dataset("mnist", idx_folder)
    message = str(err.value)
    assert message.endswith(f"; {idx_folder} itself holds IDX files (part-images-idx3-ubyte.gz): move them into "
                            f"{idx_folder / 'MNIST' / 'raw'}, or read them as they are with dataset 'idx' "
                            f"(root: {idx_folder})"), message
    models.check_dataset("idx", idx_folder)  # which works


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; valid datasets: digits"):
        models.load_dataset("imagenet")
    with pytest.raises(ValueError, match="val_fraction must lie in"):
        models.load_dataset("digits", val_fraction=1.2)
    with pytest.raises(ValueError, match="test_fraction must lie in"):
        models.load_dataset("digits", test_fraction=1.0)
    with pytest.raises(ValueError, match="max_train must be a positive integer"):
        models.load_dataset("digits", max_train=0)
    with pytest.raises(ValueError, match="seed must be"):
        models.load_dataset("digits", seed=-1)
