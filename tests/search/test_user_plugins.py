"""A user's network (a module beside the scenario, with dropout slots) and a folder of
their images, searched with two worker processes: no wrapper script, nothing edited in
the package."""

import json
import textwrap

import numpy as np
import yaml
from PIL import Image

import search.run

SLOT_MODULE = textwrap.dedent('''
    """A user's network for a search: a models.DropoutNet with one dropout slot. No
    `if __name__ == "__main__"` guard: workers import this module as it is."""
    from torch import nn

    import models


    class SlotNet(models.DropoutNet):
        def __init__(self, in_shape, n_classes, width=16):
            super().__init__()
            c, h, w = in_shape
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, width), nn.ReLU(), self.slot("hidden"),
                                     nn.Linear(width, n_classes))

        def forward(self, x):
            return self.net(x)
''')


def image_folder(root, n_per_class=30, size=8, seed=0):
    """Three classes of grey images: a bright row at 1, 4 or 7, on noise."""
    rng = np.random.default_rng(seed)
    for k, row in enumerate((1, 4, 7)):
        folder = root / f"class_{k}"
        folder.mkdir(parents=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 80, (size, size), dtype=np.uint8)
            pixels[row] = 230
            Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")


def test_a_search_over_a_users_network_and_images_on_two_workers(tmp_path, capsys):
    (tmp_path / "my_slots.py").write_text(SLOT_MODULE)
    image_folder(tmp_path / "images")
    scenario = {
        "name": "plugins", "seed": 1, "dataset": {"name": "image_folder", "root": "images", "channels": 1},
        "model": {"import": "my_slots:SlotNet", "options": {"width": 16}},
        "training": {"epochs": 4, "lr": 0.02}, "devices": ["pcm"], "t_inference": ["1d"], "n_chips": 2,
        "search": {"n_trials": 2, "n_initial": 2},
        "baselines": {"uniform": [], "random": False, "hardware_aware": False},
        "report": {"t_inference": ["1d"], "n_chips": 2},
    }
    path = tmp_path / "plugins.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--workers", "2"]) == 0
    assert "trials run on processes: 2 at a time" in capsys.readouterr().out
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 3 and all(t["status"] == "ok" for t in trials), trials  # ERM's and the search's two
    assert all(t["val_clean"] > 0.9 for t in trials)  # the rows are easy to tell apart: the network learnt them
    results = json.loads((out / "results.json").read_text())
    assert results["slots"] == ["hidden"] and results["methods"]["bayesft"]["status"] == "ok"


def test_an_image_folder_it_cannot_use_is_one_line_before_anything_is_written(tmp_path, capsys):
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "flat" / "a.png")  # no class folders
    mixed = tmp_path / "mixed"
    image_folder(mixed, n_per_class=2)
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(mixed / "class_0" / "big.png")

    def refused(dataset, needle):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"name": "bad", "dataset": dataset, "model": "mlp"}))
        out = tmp_path / "never"
        assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
        assert not out.exists()

    refused({"name": "image_folder", "root": "flat"}, "no class folders")
    refused({"name": "image_folder", "root": "mixed"}, "size: [H, W]")
    refused({"name": "image_folder", "root": "nowhere"}, "nowhere")
    refused({"name": "tensors", "file": "absent.pt"}, "absent.pt")
