"""What the scenario records and says beyond its keys: full device parameters, honest
labels, defaults it had to adjust, files it refuses."""

import pytest
import yaml

import crossbar
import search.run
from search.config import ScenarioError, load_scenario


def test_every_device_is_recorded_with_its_full_parameter_set():
    scenario, _ = load_scenario(data={"devices": ["reram_cmo", {"name": "hot", "base": "pcm", "faults": "chen2015"}]})
    cmo, hot = scenario.plain()["devices"]
    assert (cmo["g_min"], cmo["g_max"], cmo["g_converter"]) == (9.0, 88.199997, "single_device")
    assert cmo["acceptance_range"] == 0.2 and cmo["drift_compensation"] is False  # aihwkit's default, written out
    assert (hot["p_sa0"], hot["p_sa1"], hot["drift_compensation"], hot["t_0"]) == (0.0904, 0.0175, True, 20.0)
    again, _ = load_scenario(data=scenario.plain())  # the resolved scenario is a scenario, the same one
    assert again.plain() == scenario.plain()


def test_a_changed_builtin_preset_is_not_labelled_as_the_original():
    scenario, _ = load_scenario(data={"devices": ["pcm"]}, overrides=["devices.0.p_sa0=0.05"])
    assert [p["name"] for p in scenario.presets] == ["pcm (p_sa0=0.05)"]
    assert scenario.resolved_presets()[0].p_sa0 == 0.05
    same, _ = load_scenario(data={"devices": [{"name": "pcm"}]})  # named, unchanged: plain pcm
    assert [p["name"] for p in same.presets] == ["pcm"]
    named, _ = load_scenario(data={"devices": [{"name": "mine", "base": "pcm", "g_max": 30}]})
    assert [p["name"] for p in named.presets] == ["mine"]


def test_a_scenario_says_what_it_chose_for_what_it_left_out():
    scenario, _ = load_scenario(data={"name": "x"})
    assert scenario.notes() == ["the scenario names no devices: using reram_cmo (set devices:, e.g. devices: [pcm])"]
    small, _ = load_scenario(data={"devices": ["pcm"]}, overrides=["search.n_trials=3"])
    assert small.search.n_initial == 3 and small.plain()["search"]["n_initial"] == 3
    assert small.notes() == ["search.n_initial is 3: the default, 5, capped at search.n_trials"]
    with pytest.raises(ScenarioError, match=r"n_initial \(4\) must not exceed search.n_trials \(3\); lower it too "
                                            r"\(--set search.n_initial=3\)"):
        load_scenario(data={"search": {"n_trials": 3, "n_initial": 4}})
    assert load_scenario(data={"devices": ["pcm"]})[0].notes() == []


def test_an_empty_scenario_file_is_refused_in_one_line(tmp_path, capsys):
    for text in ("", "# only a comment\n"):
        path = tmp_path / "empty.yaml"
        path.write_text(text)
        assert search.run.main([str(path), "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {path}: the file is empty; a scenario is a mapping") and "\n" not in err
        assert not (tmp_path / "run").exists()


def test_the_first_lines_of_a_run_say_what_it_chose(tiny, tmp_path, capsys):
    data = yaml.safe_load(tiny().read_text())
    data.pop("devices")
    data["baselines"] = {"uniform": [], "random": False, "hardware_aware": False}
    data["search"] = {"n_trials": 2}
    path = tmp_path / "nodevices.yaml"
    path.write_text(yaml.safe_dump(data))
    assert search.run.main([str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "devices reram_cmo" in out[0]
    assert out[1:3] == ["note: the scenario names no devices: using reram_cmo (set devices:, e.g. devices: [pcm])",
                        "note: search.n_initial is 2: the default, 5, capped at search.n_trials"]
    resolved = yaml.safe_load((tmp_path / "run" / "resolved.yaml").read_text())
    assert resolved["devices"] == [crossbar.get_preset("reram_cmo").full_spec()]
