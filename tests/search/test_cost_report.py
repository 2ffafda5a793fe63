"""report.cost: each final network's energy, latency and area per inference on each
device, in results.json, the printed table and <metric>_vs_energy.png; refused in one
line, before any work, for a device that does not say what a cost needs."""

import json

import pytest
from run_helpers import SMALL

import crossbar
import search.run
from search.config import ScenarioError, load_scenario

CHIP = {"max_in": 64, "max_out": 64, "read_time": 1.0e-7, "read_voltage": 0.2, "tech_node": 32,
        **crossbar.AIHWKIT_PERIPHERY}


def devices():
    return [{"name": "pcm chip", "base": "pcm", **CHIP},
            {"name": "sliced", "base": "lognormal", "sigma": 0.2, "g_converter": "single_device", "max_in": 64,
             "max_out": 16, "weight_bits": 8, "bits_per_cell": 2, "input_bits": 8, "bits_per_input_cycle": 2,
             "adc_bits": 10, "read_time": 1.0e-7, "read_voltage": 0.2, "tech_node": 32}]


def test_a_device_without_what_a_cost_needs_is_one_line(tiny):
    with pytest.raises(ScenarioError) as err:
        load_scenario(tiny(report={"t_inference": ["1d"], "cost": True}))  # lognormal names no architecture
    message = str(err.value)
    assert "report.cost: device 'lognormal': cost of preset 'lognormal' needs read_time" in message
    assert "\n" not in message
    scenario, _ = load_scenario(tiny(devices=devices(), report={"t_inference": ["1d"], "cost": True}))
    assert scenario.report.cost


def test_each_method_and_device_is_priced_at_each_report_time(tiny, tmp_path, capsys):
    path = tiny(devices=devices(), **SMALL, report={"t_inference": ["1s", "1d"], "n_chips": 3, "cost": True})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "cost per inference at 1d (mean over chips; 1 MAC = 2 ops):" in printed
    results = json.loads((out / "results.json").read_text())
    cost = results["cost"]
    methods = [m for m, info in results["methods"].items() if info["status"] == "ok"]
    assert len(cost) == len(methods) * 2 * 2  # methods, devices, times
    keys = {"method", "preset", "t_inference", "energy_j", "latency_s", "area_mm2", "tops_per_w", "ops", "components"}
    assert all(keys <= set(r) for r in cost)
    assert all(r["energy_j"] > 0 and r["energy_j_p10"] <= r["energy_j_p90"] for r in cost)
    assert all(abs(sum(r["components"].values()) - r["energy_j"]) <= 1e-9 * r["energy_j"] for r in cost)
    assert len({r["ops"] for r in cost}) == 1  # one network shape: the same op count everywhere
    sliced = [r for r in cost if r["preset"] == "sliced"]
    assert all(r["components"]["shift-add"] > 0 for r in sliced)
    assert all("shift-add" not in r["components"] for r in cost if r["preset"] == "pcm chip")
    assert (out / "accuracy_vs_energy.png").is_file()
    assert "accuracy_vs_energy" not in json.dumps(results)


def test_runs_without_cost_keep_their_results(done):
    _, run = done
    results = json.loads((run / "results.json").read_text())
    assert "cost" not in results and not list(run.glob("*_vs_energy.png"))
