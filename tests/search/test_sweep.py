"""report.sweep: every method's final network measured at each value of a device
parameter, in results.json, the printed table, sweep_<parameter>.png and the summary
over seeds."""

import json

import pytest

import search.plot
import search.run
from search.config import ScenarioError, load_scenario
from search.summary import summarise


@pytest.mark.parametrize("values, expected", [
    ([0, 0.01, 0.1], [0.0, 0.01, 0.1]),
    ({"start": 0, "stop": 0.2, "num": 5}, [0.0, 0.05, 0.1, 0.15, 0.2]),
    ({"start": 0.3, "stop": 0.3, "num": 1}, [0.3]),
])
def test_the_values_as_a_list_or_a_range(tiny, values, expected):
    scenario, _ = load_scenario(tiny(report={"sweep": {"parameter": "p_sa0", "values": values}}))
    assert scenario.report.sweep.values == pytest.approx(expected)


@pytest.mark.parametrize("sweep, message", [
    ({"parameter": "sigma", "values": [0, 1]}, "report.sweep: device 'cmo_faulty' has no numeric parameter 'sigma'; "
                                                "its numeric parameters: g_max, g_min, p_sa0, p_sa1,"),
    ({"parameter": "gmax", "values": [10]}, "has no numeric parameter 'gmax' (did you mean 'g_max'?)"),
    ({"parameter": "p_sa0", "values": [-0.1]}, "report.sweep: device 'lognormal' with p_sa0 = -0.1: "),
    ({"parameter": "p_sa0", "values": {"start": 0, "num": 3}}, "report.sweep.values: a list of values, or "
                                                                "{start, stop, num}"),
    ({"parameter": "p_sa0", "values": []}, "report.sweep.values: between 1 and 1000 values, got 0"),
    ({"parameter": "w_noise", "values": [0, 0.1]},
     "with w_noise = 0.1: preset 'lognormal': w_noise > 0 needs w_noise_type"),
    ({"parameter": "levels", "values": [1]}, "with levels = 1: preset 'lognormal': levels must be an integer >= 2"),
    ({"parameter": "g_max", "values": ["high"]}, "report.sweep: g_max takes numbers, got high; the parameters that "
                                                 "take names: calibration, drift_compensation"),
    ({"parameter": "calibration", "values": ["none", 1]}, "either numbers or names, not both"),
    ({"parameter": "calibration", "values": ["none", "always"]}, "with calibration = always: preset 'lognormal': "
                                                                 "calibration: Input should be 'none', "),
])
def test_a_parameter_a_device_lacks_or_a_value_it_cannot_take_is_one_line(tiny, sweep, message):
    with pytest.raises(ScenarioError) as err:
        load_scenario(tiny(report={"sweep": sweep, "t_inference": ["1d"]}))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_every_method_is_measured_at_every_value_on_the_same_chips(tiny, tmp_path, capsys):
    path = tiny(search={"n_trials": 2, "n_initial": 1},
                baselines={"uniform": [], "random": False, "hardware_aware": False},
                report={"t_inference": ["1s", "1d"], "n_chips": 6,
                        "sweep": {"parameter": "p_sa0", "values": [0.0, 0.02, 0.6]}})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy against p_sa0 at 1d:" in printed
    results = json.loads((out / "results.json").read_text())
    sweep = results["sweep"]
    keys = {"method", "preset", "t_inference", "parameter", "value", "mean", "std", "n_chips", "p10", "p90"}
    assert all(keys <= set(r) for r in sweep) and len(sweep) == 2 * 2 * 2 * 3  # methods, presets, times, values
    assert {r["parameter"] for r in sweep} == {"p_sa0"} and all(r["n_chips"] == 6 for r in sweep)
    assert all("parameter" not in r for r in results["results"])  # today's rows keep their form

    def at(method, preset, value, t=86400.0):
        return next(r for r in sweep if (r["method"], r["preset"], r["value"], r["t_inference"]) ==
                    (method, preset, value, t))

    for row in results["results"]:  # cmo_faulty's own p_sa0 is 0.02: the same chips, the same numbers
        if row["preset"] == "cmo_faulty":
            assert at(row["method"], "cmo_faulty", 0.02, row["t_inference"])["mean"] == row["mean"]
    for method in ("erm", "bayesft"):  # most devices stuck at g_min: far less accurate
        assert at(method, "lognormal", 0.6)["mean"] < at(method, "lognormal", 0.0)["mean"] - 0.2
    assert (out / "sweep_p_sa0.png").is_file()
    (out / "sweep_sigma.png").write_bytes(b"stale")  # from before the sweep was changed: redrawing removes it
    assert search.plot.main([str(out)]) == 0
    assert (out / "sweep_p_sa0.png").is_file() and not (out / "sweep_sigma.png").exists()


def test_the_summary_over_seeds_gives_each_values_interval(tmp_path):
    def run(seed, accuracy):
        return {"scenario": "s", "mode": "search", "presets": ["pcm"], "objective_times": [1.0], "objective": {},
                "methods": {"erm": {"label": "no dropout", "status": "ok", "test_clean": 0.9}},
                "results": [{"method": "erm", "preset": "pcm", "t_inference": 1.0, "mean": accuracy}],
                "sweep": [{"method": "erm", "preset": "pcm", "t_inference": 1.0, "parameter": "g_max", "value": v,
                           "mean": accuracy - v / 100} for v in (10.0, 20.0)]}

    summary = summarise({0: run(0, 0.8), 1: run(1, 0.9), 2: run(2, 0.7)})
    from search.plot import plot_sweep

    assert plot_sweep({**summary, "n_classes": 10}, tmp_path).name == "sweep_g_max.png"  # a summary's plot draws
    row = next(r for r in summary["sweep"] if r["value"] == 20.0)
    assert row["mean"] == pytest.approx(0.6) and row["n_seeds"] == 3 and row["parameter"] == "g_max"
    assert row["ci_high"] - row["mean"] == pytest.approx(4.302653 * 0.1 / 3 ** 0.5, rel=1e-5)  # t(0.975, 2) s / sqrt(n)


@pytest.mark.parametrize("parameter, values", [
    ("g_max", [20.0, 60.0]),
    ("p_row_fault", [0.0, 0.2]),  # array effects: any device sweeps them, though none sets them
    ("levels", [4, 16]),
])
def test_a_sweep_row_is_a_plain_evaluation_with_the_parameter_set(tiny, parameter, values):
    import crossbar
    import models
    from search.trial import _sweep, chip_seed, splits_of

    scenario, _ = load_scenario(tiny(report={"t_inference": ["1d"], "n_chips": 5,
                                             "sweep": {"parameter": parameter, "values": values}}))
    splits = splits_of(scenario)
    net = models.build("mlp", splits.in_shape, splits.n_classes, depth=2, width=32, seed=0)
    rows = _sweep(scenario, net, splits.test, "cpu", False)
    for row in rows:
        spec = next(p for p in scenario.presets if p["name"] == row["preset"])
        preset = crossbar.make_preset({**spec, parameter: row["value"]})
        chips = crossbar.evaluate(net, splits.test, preset, [86400.0], 5, seed=chip_seed(scenario, "test"),
                                  batch_size=scenario.batch_size)
        assert row["mean"] == pytest.approx(float(chips.mean()), abs=1e-12)
    assert len(rows) == 2 * 2 and len({r["mean"] for r in rows}) > 1


def test_a_calibration_sweep_measures_each_final_network_with_and_without_it(tiny, capsys):
    """Named values: each row is the evaluation with the calibration set, the chips
    reading training inputs to calibrate; the table lists the names as given."""
    import crossbar
    import models
    from search.report import sweep_table
    from search.trial import _sweep, chip_seed, splits_of

    values = ["none", "at_inference"]
    scenario, _ = load_scenario(tiny(devices=[{"name": "cmo", "base": "reram_cmo"}],
                                     report={"t_inference": ["1d"], "n_chips": 4,
                                             "sweep": {"parameter": "calibration", "values": values}}))
    splits = splits_of(scenario)
    net = models.build("mlp", splits.in_shape, splits.n_classes, depth=2, width=32, seed=0)
    models.train(net, splits, models.TrainConfig(epochs=10, lr=0.01), seed=0)
    rows = _sweep(scenario, net, splits.test, "cpu", False)
    assert [r["value"] for r in rows] == values
    for row in rows:
        preset = crossbar.make_preset({"name": "cmo", "base": "reram_cmo", "calibration": row["value"]})
        chips = crossbar.evaluate(net, splits.test, preset, [86400.0], 4, seed=chip_seed(scenario, "test"),
                                  batch_size=scenario.batch_size, calibration_data=splits.train)
        assert row["mean"] == pytest.approx(float(chips.mean()), abs=1e-12)
    assert rows[1]["mean"] > rows[0]["mean"]  # CMO ReRAM a day on: calibrated chips do better
    results = {"presets": ["cmo"], "objective_times": [86400.0], "methods": {"erm": {"label": "no dropout"}},
               "sweep": [{**r, "method": "erm"} for r in rows]}
    table = sweep_table(results)
    assert "against calibration at 1d" in table and table.index("none") < table.index("at_inference")


def test_a_run_that_sweeps_a_calibration_prints_and_plots_it(tiny, tmp_path, capsys):
    path = tiny(search={"n_trials": 2, "n_initial": 1},
                baselines={"uniform": [], "random": False, "hardware_aware": False},
                report={"t_inference": ["1d"], "n_chips": 3,
                        "sweep": {"parameter": "calibration", "values": ["none", "at_inference"]}})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy against calibration at 1d:" in printed and "warning" not in printed
    results = json.loads((out / "results.json").read_text())
    assert {r["value"] for r in results["sweep"]} == {"none", "at_inference"}
    assert (out / "sweep_calibration.png").is_file()
