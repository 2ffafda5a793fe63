"""mode: evaluate: a trained network (a registered one, or the user's own class from a
module beside the scenario) measured on chips at the report times, resumed and with
seeds; and the bad input it must refuse before anything is written."""

import json
import textwrap

import numpy as np
import pytest
import torch
import yaml

import models
import search.run

USER_MODULE = textwrap.dedent('''
    """A user's own network, as a researcher would write it (no dropout slots)."""
    from torch import nn


    class SmallNet(nn.Module):
        def __init__(self, in_shape, num_classes, width=24):
            super().__init__()
            c, h, w = in_shape
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, width), nn.ReLU())
            self.head = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.head(self.body(x))


    class TupleNet(SmallNet):
        def forward(self, x):
            return self.head(self.body(x)), x


    class TiedNet(SmallNet):
        def forward(self, x):  # reads the head's weight itself: a crossbar there would never run
            return nn.functional.linear(self.body(x), self.head.weight, self.head.bias)
''')

DATA = {"name": "digits", "max_train": 500, "max_val": 150, "max_test": 200}


def _train(net, seed=0):
    splits = models.load_dataset("digits", seed=seed, **{k: v for k, v in DATA.items() if k != "name"})
    result = models.train(net, splits, models.TrainConfig(epochs=6, lr=0.01), seed=0)
    assert result.ok
    return result.model, splits


def _scenario(tmp_path, model, **changes):
    data = {"name": "ev", "mode": "evaluate", "seed": 0, "dataset": DATA, "model": model,
            "devices": ["ideal", "pcm"], "report": {"t_inference": ["1s", "1d"], "n_chips": 4}, **changes}
    path = tmp_path / "ev.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """A user's class in my_nets.py beside the scenario, trained and saved as a state dict."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "my_nets.py").write_text(USER_MODULE)
    models.import_network("my_nets:SmallNet", folder)
    net = models.build("my_nets:SmallNet", (1, 8, 8), 10, seed=0, width=24)
    net, splits = _train(net)
    torch.save(net.state_dict(), folder / "small.pt")
    scenario = _scenario(folder, {"import": "my_nets:SmallNet", "options": {"width": 24}, "checkpoint": "small.pt"})
    return folder, scenario, net, splits


def test_a_users_class_from_its_module_is_measured_as_trained(user_run, capsys):
    folder, scenario, net, splits = user_run
    out = folder / "run"
    assert search.run.main([str(scenario), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "evaluate" and list(results["methods"]) == ["SmallNet"]
    clean = models.clean_score(net, splits.test)
    assert results["methods"]["SmallNet"]["test_clean"] == pytest.approx(clean)
    rows = {(r["preset"], r["t_inference"]): r for r in results["results"]}
    assert set(rows) == {(p, t) for p in ("ideal", "pcm") for t in (1.0, 86400.0)}
    # the ideal chips compute as the digital network: every chip scores its clean accuracy
    assert rows[("ideal", 1.0)]["mean"] == pytest.approx(clean) and rows[("ideal", 1.0)]["std"] == 0
    # PCM drifts: a day later the chips score lower than at 1 s, and differ from chip to chip
    assert rows[("pcm", 86400.0)]["std"] > 0
    assert "evaluate SmallNet (small.pt)" in capsys.readouterr().out
    recorded = yaml.safe_load((out / "resolved.yaml").read_text())["model"]
    assert recorded["name"] == "my_nets:SmallNet" and recorded["path"] == str(folder.resolve())
    assert recorded["checkpoint"] == str((folder / "small.pt").resolve())


def test_resumed_evaluation_keeps_what_was_measured(user_run, capsys):
    folder, scenario, _, _ = user_run
    out = folder / "resumed"
    assert search.run.main([str(scenario), "--out", str(out), "--quiet"]) == 0
    first = (out / "final.jsonl").read_text()
    assert search.run.main([str(scenario), "--out", str(out), "--quiet", "--resume"]) == 0
    assert (out / "final.jsonl").read_text() == first  # nothing measured twice
    assert "resuming" in capsys.readouterr().out


def test_a_registered_network_with_seeds_draws_chips_and_split_per_seed(tmp_path):
    net = models.build("mlp", (1, 8, 8), 10, seed=0, depth=1, width=32)
    net, _ = _train(net)
    torch.save(net.state_dict(), tmp_path / "mlp.pt")
    scenario = _scenario(tmp_path, {"name": "mlp", "options": {"depth": 1, "width": 32}, "checkpoint": "mlp.pt"},
                         devices=["pcm"])
    out = tmp_path / "seeds"
    assert search.run.main([str(scenario), "--out", str(out), "--quiet", "--seeds", "0-1"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["seeds"] == [0, 1]
    per_seed = [json.loads((out / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
    cleans = [r["methods"]["mlp"]["test_clean"] for r in per_seed]
    assert cleans[0] != cleans[1]  # another test split per seed
    chips = [np.array(json.loads((out / f"seed-{s}" / "final.jsonl").read_text().splitlines()[0])["rows"][1]["chips"])
             for s in (0, 1)]
    assert not np.array_equal(chips[0], chips[1])  # other chips per seed


def _refused(tmp_path, capsys, model, needle):
    scenario = _scenario(tmp_path, model)
    out = tmp_path / "never"
    assert search.run.main([str(scenario), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()
    return err


def test_bad_input_is_one_line_and_nothing_written(user_run, tmp_path, capsys):
    folder = user_run[0]
    (tmp_path / "my_nets.py").write_text((folder / "my_nets.py").read_text())
    good = {"import": "my_nets:SmallNet", "options": {"width": 24}}
    _refused(tmp_path, capsys, {**good, "import": "no_such_module:Net", "checkpoint": str(folder / "small.pt")},
             "no module 'no_such_module'")
    _refused(tmp_path, capsys, {**good, "import": "my_nets:Nope", "checkpoint": str(folder / "small.pt")},
             "has no 'Nope'; it defines SmallNet, TiedNet, TupleNet")
    # the weights of another architecture: the keys that are missing and unexpected are named
    other = models.build("mlp", (1, 8, 8), 10, depth=1, width=24)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    err = _refused(tmp_path, capsys, {**good, "checkpoint": "other.pt"}, "does not fit SmallNet")
    assert "missing keys body.1.weight" in err and "unexpected keys" in err
    torch.save(models.build("my_nets:SmallNet", (1, 8, 8), 10, width=16).state_dict(), tmp_path / "narrow.pt")
    _refused(tmp_path, capsys, {**good, "checkpoint": "narrow.pt"}, "shapes differ: body.1.weight (16, 64)")
    # a pickled model is refused, with how to save a state dict
    torch.save(other, tmp_path / "pickled.pt")
    _refused(tmp_path, capsys, {**good, "checkpoint": "pickled.pt"}, "torch.save(model.state_dict(), path)")
    _refused(tmp_path, capsys, {**good, "checkpoint": "absent.pt"}, "no checkpoint at")
    _refused(tmp_path, capsys, {**good, "import": "my_nets:TupleNet", "checkpoint": str(folder / "small.pt")},
             "returns a tuple, not a tensor of class scores")
    _refused(tmp_path, capsys, {**good, "import": "my_nets:TiedNet", "checkpoint": str(folder / "small.pt")},
             "layer head (CrossbarLinear) did not run in the model's first forward pass")
    _refused(tmp_path, capsys, good, "mode evaluate needs model.checkpoint")
    _refused(tmp_path, capsys, {**good, "checkpoint": str(folder / "small.pt"), "options": {"depth": 3}},
             "unknown option(s) depth")


def test_a_search_needs_dropout_slots_and_a_checkpoint_needs_evaluate(user_run, capsys):
    folder = user_run[0]
    scenario = _scenario(folder, {"import": "my_nets:SmallNet"}, mode="search")
    assert search.run.main([str(scenario), "--out", str(folder / "never"), "--quiet"]) == 2
    assert "has no dropout slots" in capsys.readouterr().err
    scenario = _scenario(folder, {"name": "mlp", "checkpoint": "small.pt"}, mode="study",
                         variants=[{"label": "a"}])
    assert search.run.main([str(scenario), "--out", str(folder / "never"), "--quiet"]) == 2
    assert "model.checkpoint is for mode: evaluate" in capsys.readouterr().err


def test_a_cost_report_of_a_network_it_cannot_price_is_refused(tmp_path, capsys):
    (tmp_path / "grouped.py").write_text(textwrap.dedent('''
        from torch import nn


        def make(in_shape, n_classes):
            return nn.Sequential(nn.Conv2d(in_shape[0], 4, 3), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(),
                                 nn.LazyLinear(n_classes))
    '''))
    scenario = _scenario(tmp_path, {"import": "grouped:make"}, mode="study", variants=[{"label": "a"}],
                         devices=["isaac"], report={"cost": True})
    assert search.run.main([str(scenario), "--out", str(tmp_path / "never"), "--quiet"]) == 2
    assert "report.cost: layer '1' (a grouped convolution, groups=2) of make is not priced" in capsys.readouterr().err


def test_the_command_line_shortcut_writes_the_scenario_and_runs_it(user_run, tmp_path, monkeypatch, capsys):
    import search.evaluate

    folder = user_run[0]
    (tmp_path / "my_nets.py").write_text((folder / "my_nets.py").read_text())
    (tmp_path / "small.pt").write_bytes((folder / "small.pt").read_bytes())
    monkeypatch.chdir(tmp_path)
    args = ["small.pt", "--model", "my_nets:SmallNet", "--option", "width=24", "--devices", "ideal", "--times", "1d",
            "--chips", "3", "--quiet"]
    # bad input first: nothing written, not even the scenario
    assert search.evaluate.main([*args, "--devices", "no_such_preset"]) == 2
    assert "no_such_preset" in capsys.readouterr().err and not (tmp_path / "evaluate_small.yaml").exists()
    assert search.evaluate.main(args) == 0
    written = yaml.safe_load((tmp_path / "evaluate_small.yaml").read_text())
    assert written["mode"] == "evaluate" and written["model"] == {
        "import": "my_nets:SmallNet", "options": {"width": 24}, "checkpoint": "small.pt"}
    results = json.loads((tmp_path / "runs" / "evaluate_small" / "results.json").read_text())
    assert results["results"][0]["mean"] == pytest.approx(results["methods"]["SmallNet"]["test_clean"])  # ideal
    # the same name for another experiment: refused, the first scenario kept
    assert search.evaluate.main([*args, "--chips", "4"]) == 2
    assert "evaluate_small.yaml exists with another scenario" in capsys.readouterr().err
    assert yaml.safe_load((tmp_path / "evaluate_small.yaml").read_text()) == written
