"""Scenario validation: every mistake is one clear line, exit code 2, nothing written; and
what a hostile but realistic user gets wrong in numbers and names, in the API too."""

import math
import os
import time
from pathlib import Path

import pytest
import torch
import yaml

import crossbar
import models
import search.run
from crossbar.durations import parse_duration, readable
from search.config import ScenarioError, load_scenario
from search.schema import Scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("text,seconds", [
    (5, 5.0), (2.5, 2.5), ("10s", 10.0), ("30min", 1800.0), ("12h", 43200.0), ("1d", 86400.0),
    ("2 d", 172800.0), ("1w", 604800.0), ("1y", 365 * 86400.0), ("1e3", 1000.0), ("0", 0.0),
    ("1 day", 86400.0), ("2 days", 172800.0), ("1 second", 1.0), ("10 minutes", 600.0), ("3 hours", 10800.0),
    ("2 weeks", 1209600.0), ("1 year", 365 * 86400.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["1 month", "soon", "-1d", True, "1m", None])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_readable_round_trip():
    for t in (1.0, 60.0, 3600.0, 86400.0, 2 * 86400.0, 365 * 86400.0, 1.5):
        assert parse_duration(readable(t)) == t
    # the times an error lists can be copied into a scenario as they are written
    with pytest.raises(ValueError, match=r"defined at t_inference = (.*); got") as error:
        crossbar.get_preset("reram_wan2022").check_time(3600.0)
    listed = error.value.args[0].split("t_inference = ")[1].split(";")[0].split(", ")
    assert [parse_duration(t) for t in listed] == [1.0, 86400.0, 172800.0]


@pytest.mark.parametrize("change,expected", [
    ({"bogus": 1}, "scenario: bogus: unknown key; allowed here: name,"),
    ({"search": {"n_trials": 0}}, "search.n_trials: Input should be greater than or equal to 1 (got 0)"),
    ({"search": {"n_trialz": 3}}, "search.n_trialz: unknown key (did you mean 'n_trials'?); allowed here: "
     "n_trials, n_initial, acq_func, xi, kappa, bounds, warm_start, space"),
    ({"search": {"bounds": [0.5, 0.2]}}, "search.bounds: must be [low, high] with 0 <= low < high < 1"),
    ({"search": {"n_trials": 2, "n_initial": 5}}, "search.n_initial (5) must not exceed search.n_trials (2)"),
    ({"devices": ["nope"]}, "devices[0]: unknown preset 'nope'; valid presets: ideal, isaac, lognormal, pcm, "
     "reram_cmo, reram_wan2022"),
    ({"devices": [{"base": "pcm", "g_max": -1, "name": "x"}]}, "devices[0]: preset 'x': g_max"),
    ({"devices": [{"base": "pcm"}]}, "devices[0]: a custom preset needs a name"),
    ({"devices": ["pcm", "pcm"]}, "device names must be unique; repeated: pcm"),
    ({"devices": ["reram_wan2022"], "t_inference": "1h"},
     "t_inference: preset 'reram_wan2022' is only defined at t_inference = 1 s, 1 day, 2 days; got 3600 s"),
    ({"devices": ["reram_wan2022"], "report": {"t_inference": ["1h", "1y"]}},
     "report.t_inference: preset 'reram_wan2022' defines none of these times"),
    ({"devices": ["reram_cmo"], "report": {"t_inference": [0, 1e-7, "1d"]}},
     "report.t_inference: preset 'reram_cmo' is defined at t_inference = 0 s (programming only) "
     "and from its read time"),
    ({"t_inference": [86400, "1d"]}, "t_inference: each time once; listed more than once: 1d"),
    ({"report": {"t_inference": ["1s", "1h", "60min"]}}, "report.t_inference: each time once; "
     "listed more than once: 1h"),
    ({"t_inference": ["1 month"]}, "t_inference: '1 month' is not a duration; "
     "use seconds or a number with one of s, min, h, d, w, y"),
    ({"training": {"epochs": "many"}}, "training.epochs: Input should be a valid integer"),
    ({"training": {"hardware_aware": {"preset": "nope"}}}, "training.hardware_aware: unknown preset 'nope'"),
    ({"model": {"name": "resnet9"}}, "model.name: unknown model 'resnet9' (did you mean 'resnet'?); "
     "valid: fcos, lenet5, mlp"),
    ({"model": {"name": "lenet5", "options": {"norm": "weird"}}}, "model.options: norm: unknown 'weird'; "
     "valid: none, batch, layer, group"),
    ({"dataset": {"name": "imagenet"}}, "dataset.name: unknown dataset 'imagenet'; valid: digits"),
    ({"objective": {"aggregate": "median"}}, "objective.aggregate: Input should be 'mean' or 'quantile' "
     "(got 'median')"),
    ({"objective": {"quantile": 1.5}}, "objective.quantile: Input should be less than 1"),
    ({"mode": "study"}, "mode study needs variants"),
    ({"baselines": {"hardware_aware": {"preset": "reram_wan2022", "t_inference": "5h"}}},
     "baselines.hardware_aware: preset 'reram_wan2022' is only defined at"),
    ({"device": "tpu"}, "device: device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    ({"n_chips": -4}, "n_chips: Input should be greater than or equal to 1 (got -4)"),
    ({"seed": "x"}, "seed: Input should be a valid integer"),
    ({"devices": [3]}, "devices[0]: Input should be a valid string or a valid dictionary (got 3)"),
    ({"baselines": {"hardware_aware": {"t_inference": "x"}}}, "baselines.hardware_aware.t_inference: "
     "'x' is not a duration"),
])
def test_each_mistake_is_one_clear_line(change, expected):
    with pytest.raises(ScenarioError) as err:
        load_scenario(data=change)
    message = str(err.value)
    assert expected in message, message
    assert "\n" not in message


def test_missing_dataset_is_caught_before_work(monkeypatch, tmp_path):
    monkeypatch.setenv("CROSSBAR_DATA", str(tmp_path / "empty"))
    with pytest.raises(ScenarioError, match=r"dataset: dataset 'mnist' not found: "
                                            r"expected train-images-idx3-ubyte.*empty/MNIST/raw"):
        load_scenario(data={"dataset": {"name": "mnist"}})


def test_a_variant_changes_options_or_names_another_network():
    scenario, _ = load_scenario(data={"model": {"name": "mlp", "options": {"depth": 3, "width": 64}}})
    assert scenario.network() == ("mlp", {"depth": 3, "width": 64})
    assert scenario.network({"width": 16}) == ("mlp", {"depth": 3, "width": 16})
    # the mlp's depth would be an unknown option of lenet5: another network starts from its own defaults
    assert scenario.network({"name": "lenet5", "activation": "tanh"}) == ("lenet5", {"activation": "tanh"})
    with pytest.raises(ScenarioError, match=r"variants\[0\]: lenet5: unknown option\(s\) depth"):
        load_scenario(data={"mode": "study", "variants": [{"label": "x", "model": {"name": "lenet5", "depth": 2}}]})


def test_one_name_is_short_for_the_full_form():
    short, _ = load_scenario(data={"dataset": "digits", "model": "mlp", "devices": "pcm"})
    full, _ = load_scenario(data={"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "devices": ["pcm"]})
    assert short == full and short.model.name == "mlp" and [p.name for p in short.resolved_presets()] == ["pcm"]
    one, _ = load_scenario(data={"devices": {"name": "hot", "base": "pcm", "g_max": 30}})
    assert [p.name for p in one.resolved_presets()] == ["hot"]
    with pytest.raises(ScenarioError, match=r"model.name: unknown model 'lenet' \(did you mean 'lenet5'\?\); "
                                            r"valid: fcos, lenet5"):
        load_scenario(data={"model": "lenet"})


def test_set_overrides():
    scenario, raw = load_scenario(data={}, overrides=[
        "search.n_trials=7", "devices=[pcm, lognormal]", "devices.1=ideal", "t_inference=[1h, 2d]", "training.lr=0.01",
    ])
    assert scenario.search.n_trials == 7 and [p.name for p in scenario.resolved_presets()] == ["pcm", "ideal"]
    assert scenario.t_inference == [3600.0, 172800.0] and scenario.training.lr == 0.01
    # a bare name (a device, the model, the dataset) is short for {name: it}, so a --set can reach inside it
    scenario, raw = load_scenario(data={"model": "lenet5", "dataset": "digits", "devices": ["ideal", "pcm"]},
                                  overrides=["devices.0.p_sa0=0.05", "model.options.norm=batch",
                                             "dataset.max_train=100"])
    assert raw["devices"] == [{"name": "ideal", "p_sa0": 0.05}, "pcm"]
    # a changed preset is not labelled as the original
    assert [(p.name, p.p_sa0) for p in scenario.resolved_presets()] == [("ideal (p_sa0=0.05)", 0.05), ("pcm", 0.0)]
    assert scenario.model.options == {"norm": "batch"} and scenario.dataset.max_train == 100
    # devices: pcm (one device, not a list) is short for [pcm], also for --set devices.0...
    for one in ("pcm", {"name": "pcm"}):
        scenario, raw = load_scenario(data={"devices": one}, overrides=["devices.0.p_sa1=0.01"])
        assert raw["devices"] == [{"name": "pcm", "p_sa1": 0.01}]
        assert [(p.name, p.p_sa1) for p in scenario.resolved_presets()] == [("pcm (p_sa1=0.01)", 0.01)]
    for bad, expected in (("search.n_trials", "expected key=value"), ("devices.5=pcm", "is a list; use an index 0..0"),
                          ("seed.x=1", "seed is not a mapping"), ("=5", "--set =5: a key is empty"),
                          ("search..n_trials=3", "a key is empty"),
                          ("devices=[pcm", r"--set devices=\[pcm: the value is not valid YAML \(expected ','"),
                          ("devices.0.name=pcmm",
                           r"devices\[0\]: unknown preset 'pcmm' \(did you mean 'pcm'\?\); valid presets: ideal")):
        with pytest.raises(ScenarioError, match=expected):
            load_scenario(data={"seed": 1, "devices": ["pcm"]}, overrides=[bad])


def test_the_documented_list_of_keys_is_a_valid_scenario(tmp_path):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "scenarios.md").read_text()
    block = doc.split("## Every key")[1].split("```yaml\n")[1].split("```")[0]
    path = tmp_path / "keys.yaml"
    assert "\nmode: search " in block
    path.write_text(block.replace("\nmode: search ", "\nmode: study ", 1))  # its variants are study mode's
    scenario, _ = load_scenario(path)
    assert [v.label for v in scenario.variants] == ["plain", "tanh, dropout 0.2", "LeNet-5", "hardware-aware"]
    keys = set(yaml.safe_load(block))  # every key of the schema is shown
    assert keys == {field.alias or name for name, field in Scenario.model_fields.items()}


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_validates(path, monkeypatch, tmp_path):
    monkeypatch.setenv("CROSSBAR_DATA", str(tmp_path / "no-data"))
    scenario, _ = load_scenario(path, check_data=False)
    assert scenario.name == path.stem and scenario.description
    text = path.read_text()
    assert text.startswith("#") and "Needs:" in text and "Takes:" in text  # says what it needs and how long
    if scenario.dataset.name in ("digits", "digit_scenes"):
        load_scenario(path)  # offline: nothing missing
    else:  # needs a download: the clear offline message, not a traceback
        with pytest.raises(ScenarioError, match="not found: expected .* set dataset.download: true"):
            load_scenario(path)


def test_cli_bad_scenario_exits_2_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("search:\n  n_trials: 0\n")
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {path}: search.n_trials: Input should be greater than or equal to 1 (got 0)"
    assert not out.exists()
    path.write_text("search: [unclosed\n")
    assert search.run.main([str(path), "--out", str(out)]) == 2
    assert "not valid YAML (line 2" in capsys.readouterr().err
    assert search.run.main([str(tmp_path / "missing.yaml")]) == 2  # a misspelt name: the folder's scenarios listed
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path / 'missing.yaml'}: no such scenario file; "
                                               f"{tmp_path} holds bad.yaml")
    assert search.run.main([str(tmp_path / "nowhere" / "x.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nowhere' / 'x.yaml'}: no such scenario file"
    assert search.run.main([str(tmp_path)]) == 2
    assert f"{tmp_path}: is a folder; give a scenario file" in capsys.readouterr().err
    assert not out.exists()


def test_a_key_given_twice_is_refused_not_silently_the_last(tmp_path):
    # PyYAML's safe_load keeps the last value: an edited copy of a line would win unseen
    path = tmp_path / "twice.yaml"
    path.write_text("seed: 1\ntraining:\n  epochs: 5\n  lr: 0.01\n  epochs: 50\n")
    with pytest.raises(ScenarioError, match=r"line 5, column 3\): key 'epochs' is given twice in one mapping "
                                            r"\(lines 3 and 5\)"):
        load_scenario(path)
    path.write_text("model: {name: mlp, options: {depth: 1, depth: 3}}\n")
    with pytest.raises(ScenarioError, match=r"key 'depth' is given twice in one mapping \(line 1\)"):
        load_scenario(path)
    # the same key in different mappings is fine, and so is overriding a merged `<<` key
    path.write_text("training: &d {epochs: 3, lr: 0.01}\nbaselines:\n  hardware_aware: {preset: pcm, t_inference: 1d}\n"
                    "search: {n_trials: 3, n_initial: 3}\nreport: {n_chips: 3}\n")
    scenario, _ = load_scenario(path)
    assert scenario.search.n_trials == 3 and scenario.report.n_chips == 3
    from search.config import read_yaml
    path.write_text("a: &d {x: 1, y: 2}\nb:\n  <<: *d\n  y: 3\n")
    assert read_yaml(path) == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3}}


# ------------------------------------------------------------------ numbers and names


@pytest.mark.parametrize("change, where", [
    ({"devices": [{"name": "x", "base": "pcm", "g_max": math.inf}]}, "devices[0].g_max: inf is not a finite number"),
    ({"devices": [{"name": "x", "base": "lognormal", "sigma": math.inf}]}, "devices[0].sigma: inf"),
    ({"devices": [{"name": "x", "base": "pcm", "read_noise_scale": math.nan}]}, "devices[0].read_noise_scale: nan"),
    ({"training": {"lr": math.inf}}, "training.lr: inf is not a finite number"),
    ({"training": {"weight_decay": math.inf}}, "training.weight_decay: inf"),
    ({"model": {"name": "mlp", "options": {"width": math.inf}}}, "model.options.width: inf"),
    ({"n_chips": 1e10}, "n_chips: Input should be less than or equal to 100000"),
    ({"training": {"epochs": 100_000_000}}, "training.epochs: Input should be less than or equal to 10000"),
    ({"t_inference": 1e300}, "t_inference: 1e+300 is more than 1,000 years"),
    ({"seed": 2**32}, "seed: Input should be less than 4294967296"),
    ({"name": "../../escaped"}, "name: '../../escaped' cannot name a run folder"),
    ({"name": "/tmp/absolute"}, "name: '/tmp/absolute' cannot name a run folder"),
    ({"name": ""}, "name: '' cannot name a run folder"),
    ({"name": ".."}, "name: '..' cannot name a run folder"),
])
def test_a_number_or_name_no_run_can_use_is_one_line(change, where):
    with pytest.raises(ScenarioError) as err:
        load_scenario(data=change)
    assert where in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_the_api_refuses_non_finite_parameters_and_a_set_cannot_sneak_one_in():
    for kw in ({"g_max": math.inf}, {"sigma": math.inf}, {"p_sa0": math.nan}):
        with pytest.raises(ValueError, match="Input should be a finite number"):
            crossbar.get_preset("lognormal", **kw)
    with pytest.raises(ValueError, match="Input should be a finite number"):
        models.TrainConfig(lr=math.inf)
    with pytest.raises(ScenarioError, match=r"devices\[0\].sigma: inf is not a finite number"):
        load_scenario(data={"devices": ["lognormal"]}, overrides=["devices.0.sigma=.inf"])


def test_a_yaml_alias_bomb_is_refused_within_a_second(tmp_path):
    lines_ = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines_.append(f"{'abcdefghij'[i]}: &{'abcdefghij'[i]} [" + ", ".join([f"*{'abcdefghij'[i - 1]}"] * 10) + "]")
    lines_.append("description: *i")  # 10^9 strings once expanded
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines_) + "\n")
    start = time.perf_counter()
    with pytest.raises(ScenarioError, match=r"expands to more than 100,000 values \(YAML anchors and aliases"):
        load_scenario(path)
    assert time.perf_counter() - start < 1.0
    ok = tmp_path / "merge.yaml"  # anchors and merges as people use them stay fine
    ok.write_text("defaults: &d {epochs: 3, lr: 0.01}\ntraining: {<<: *d, epochs: 4}\n".replace("defaults", "x-d"))
    with pytest.raises(ScenarioError, match="x-d: unknown key"):
        load_scenario(ok)


@pytest.mark.parametrize("depth", [40, 5000])
def test_deeply_nested_yaml_is_one_line_from_a_file_or_a_set(tmp_path, depth):
    path = tmp_path / "deep.yaml"
    path.write_text("model: {options: " + "{a: " * depth + "1" + "}" * depth + "}\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == f"{path}: nested more than 32 levels deep; a scenario needs a handful (see " \
                             "docs/scenarios.md)"
    for override in ("model.options.x=" + "[" * depth + "]" * depth, "model.options" + ".a" * depth + "=1"):
        with pytest.raises(ScenarioError, match="nested more than 32 levels deep") as err:
            load_scenario(data={}, overrides=[override])
        assert "\n" not in str(err.value)
    with pytest.raises(ScenarioError, match="unknown option"):  # 20 levels pass the depth check
        load_scenario(data={}, overrides=["model.options.x=" + "[" * 20 + "]" * 20])


def test_seeds_are_capped_and_an_empty_seeds_is_refused_not_one_run():
    from search.seeds import MAX_SEEDS

    with pytest.raises(ScenarioError, match=f"seeds: 1,001 seeds: at most {MAX_SEEDS} \\(each seed is a whole run"):
        load_scenario(data={"seeds": "0-1000"})
    with pytest.raises(ScenarioError, match=f"seeds: 101 seeds: at most {MAX_SEEDS}"):
        load_scenario(data={"seeds": list(range(101))})
    assert len(load_scenario(data={"seeds": f"0-{MAX_SEEDS - 1}"})[0].seeds) == MAX_SEEDS
    with pytest.raises(ScenarioError, match="--seeds '': name at least one seed, e.g. --seeds 0-4"):
        load_scenario(data={}, overrides=["seeds="])


def test_a_scenario_that_is_not_utf8_text_is_one_line(tmp_path):
    for name, content in (("binary.yaml", bytes(range(256))), ("utf16.yaml", "seed: 1\n".encode("utf-16"))):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ScenarioError, match=r"not UTF-8 text \(byte \d+: .*\); save the scenario as UTF-8"):
            load_scenario(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_scenario_is_one_line(tmp_path):
    path = tmp_path / "secret.yaml"
    path.write_text("seed: 1\n")
    path.chmod(0)
    with pytest.raises(ScenarioError, match=r"cannot be read \(Permission denied\)"):
        load_scenario(path)


def test_a_seed_numpy_cannot_take_writes_nothing(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert search.run.main([str(tiny()), "--out", str(out), "--set", f"seed={2**32}"]) == 2
    assert "seed: Input should be less than 4294967296" in capsys.readouterr().err and not out.exists()


def test_a_model_on_the_meta_device_and_non_finite_inputs_are_one_line():
    with torch.device("meta"):
        model = torch.nn.Linear(4, 3)
    with pytest.raises(ValueError, match="weight is on the meta device: it has a shape but no values"):
        crossbar.convert(model, "ideal")
    model = torch.nn.Linear(4, 3)
    x = torch.randn(8, 4)
    x[2, 1] = math.nan
    with pytest.raises(ValueError, match=r"data: the inputs hold 1 NaN or infinite value\(s\) of 32"):
        crossbar.evaluate(model, (x, torch.zeros(8, dtype=torch.long)), "ideal", [1.0], 2)
