"""The co-design search (mode: codesign): its space and bad input, two objectives end to
end, resume to the same front, trained networks reused, constraints, --seeds."""

import json
import shutil

import pytest
import yaml

import search.run
from search.codesign_run import distributions
from search.config import ScenarioError, load_scenario

CHIP = {"inp_res": 1 / 126, "inp_bound": 1.0, "out_res": 1 / 510, "out_bound": 12.0, "out_noise": 0.06,
        "input_bits": 7, "adc_bits": 9, "read_time": 1e-7, "read_voltage": 0.2, "tech_node": 32, "cols_per_adc": 8}

CODESIGN = {
    "name": "tiny_codesign",
    "mode": "codesign",
    "seed": 1,
    "dataset": {"name": "digits", "max_train": 400, "max_val": 120, "max_test": 150},
    "model": {"name": "mlp", "options": {"depth": 2, "width": 32}},
    "training": {"epochs": 3, "lr": 0.01},
    "devices": [{"name": "cmo", "base": "reram_cmo", "p_sa0": 0.02, **CHIP},
                {"name": "pcm_chip", "base": "pcm", **CHIP}],
    "t_inference": ["1d"],
    "n_chips": 3,
    "search": {"n_trials": 6, "n_initial": 3, "space": {"hwa_scale": [0.0, 1.0]}},
    "baselines": {"random": True},
    "codesign": {
        "space": {"device": ["cmo", "pcm_chip"], "adc_bits": [4, 9], "max_in": {"choices": [32, 64]},
                  "g_max": [15.0, 30.0]},
        "digital": ["net.9"],
        "objectives": [{"name": "score"}, {"name": "energy_j"}],
        "reference": [0.0, 1e-8],
        "hardware_per_training": 3,
        "sampler": "tpe",
    },
    "report": {"t_inference": ["1d", "1y"], "n_chips": 4},
}


def write(tmp_path, **changes):
    data = {**CODESIGN, **changes}
    path = tmp_path / "codesign.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def codesign_with(**changes):
    return {**CODESIGN["codesign"], **changes}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codesign")
    path = write(folder)
    assert search.run.main([str(path), "--out", str(folder / "run"), "--quiet"]) == 0
    return path, folder / "run"


def test_the_space_is_mixed(tmp_path):
    scenario, _ = load_scenario(write(tmp_path), [])
    space = distributions(scenario)
    kinds = {name: type(d).__name__ for name, d in space.items()}
    assert kinds["hw.device"] == "CategoricalDistribution" and kinds["hw.max_in"] == "CategoricalDistribution"
    assert kinds["hw.adc_bits"] == "IntDistribution" and kinds["hw.g_max"] == "FloatDistribution"
    assert kinds["hwa_scale"] == "FloatDistribution" and space["hw.digital:net.9"].choices == (False, True)
    assert [n for n in space if not n.startswith("hw.")] == [*scenario.slots(), "hwa_scale"]


@pytest.mark.parametrize("codesign, message", [
    (codesign_with(space={"adc_bitz": [4, 8]}), "codesign.space.adc_bitz: no device has a field 'adc_bitz' "
                                                 "(did you mean 'adc_bits'?)"),
    (codesign_with(space={"adc_bits": [4, 20]}), "codesign.space.adc_bits: device 'cmo' with adc_bits = 20"),
    (codesign_with(space={"adc_bits": [8, 4]}), "a range is [low, high] with low < high"),
    (codesign_with(space={"device": ["cmo", "rram"]}), "unknown: 'rram'"),
    (codesign_with(reference=None), "codesign.reference: the hypervolume's reference point"),
    (codesign_with(reference=[1.0, 1e-8]), "the score's reference 1 leaves no score above it"),
    (codesign_with(reference=[0.0, 0.0]), "energy_j's reference 0 must be positive"),
    (codesign_with(reference=[0.0]), "one value per objective (score, energy_j), got 1"),
    (codesign_with(objectives=[{"name": "score"}, {"name": "power"}]), "codesign.objectives"),
    (codesign_with(digital=["net.8"]), "codesign.digital: 'net.8' is not a layer of the network that is mapped "
                                       "onto crossbars (did you mean 'net.9'?); its layers: net.1, net.5, net.9"),
])
def test_bad_input_is_one_line_before_any_work(tmp_path, codesign, message):
    path = write(tmp_path, codesign=codesign)
    with pytest.raises(ScenarioError) as e:
        load_scenario(path, [])
    assert message in str(e.value) and "\n" not in str(e.value)
    code = search.run.main([str(path), "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 2 and not (tmp_path / "run").exists()


def test_energy_needs_a_priced_device(tmp_path):
    devices = [{"name": "cmo", "base": "reram_cmo"}, {"name": "pcm_chip", "base": "pcm"}]
    with pytest.raises(ScenarioError, match="energy_j need the chip's cost, and device 'cmo' cannot be priced"):
        load_scenario(write(tmp_path, devices=devices, codesign=codesign_with(space={"device": ["cmo", "pcm_chip"]})),
                      [])


def test_mode_and_section_go_together(tmp_path):
    with pytest.raises(ScenarioError, match="mode codesign needs a codesign section"):
        load_scenario(write(tmp_path, codesign=None), [])


def test_two_objectives_end_to_end(finished):
    _, run = finished
    results = json.loads((run / "results.json").read_text())
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 6 + 6 + 2  # co-design, random, the grid's two devices
    assert all(t["status"] == "ok" for t in trials), [t.get("reason") for t in trials]
    for t in trials:
        assert set(t["values"]) == {"score", "energy_j"} and t["values"]["energy_j"] > 0
        assert t["hardware"].get("device", "cmo") in ("cmo", "pcm_chip")
    front = results["front"]
    assert front and all(r["test"] is not None for r in front)
    points = [(r["val"]["score"], r["val"]["energy_j"]) for r in front]
    others = [(t["values"]["score"], t["values"]["energy_j"]) for t in trials if t["method"] == "codesign"]
    for s, e in points:  # nothing of its method dominates a point of the front
        assert not any(s2 >= s and e2 <= e and (s2 > s or e2 < e) for s2, e2 in others)
    for method in ("codesign", "random", "grid"):
        assert 0 <= results["methods"][method]["hypervolume"] <= 1
    assert (run / "pareto_front.png").stat().st_size > 10_000


def test_hardware_only_trials_reuse_the_network(finished):
    _, run = finished
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    for method in ("codesign", "random"):
        mine = sorted((t for t in trials if t["method"] == method), key=lambda t: t["id"])
        groups = [mine[i:i + 3] for i in range(0, len(mine), 3)]
        for group in groups:  # the first trains; the rest keep its training point and load its network
            assert [t["trained"] for t in group] == [True, False, False]
            for t in group[1:]:
                assert t["rates"] == group[0]["rates"] and t["hwa_scale"] == group[0]["hwa_scale"]
    assert all(not t["trained"] for t in trials if t["method"] == "grid")
    results = json.loads((run / "results.json").read_text())
    assert results["trainings"] == {"trials": 14, "trained": 4, "saved": 10}
    assert len(list((run / "networks").glob("*.pt"))) == 4


def test_a_resumed_run_proposes_the_same_trials_and_front(finished, tmp_path):
    path, run = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    lines = (copy / "trials.jsonl").read_text().splitlines()
    (copy / "trials.jsonl").write_text("\n".join(lines[:4]) + "\n")  # as if killed after four trials
    for name in ("test.jsonl", "results.json"):
        (copy / name).unlink()
    shutil.rmtree(copy / "networks")
    assert search.run.main([str(path), "--out", str(copy), "--resume", "--quiet"]) == 0

    def strip(text):
        return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "trained")}
                for line in text.splitlines()]
    assert strip((copy / "trials.jsonl").read_text()) == strip((run / "trials.jsonl").read_text())
    before, after = (json.loads((d / "results.json").read_text()) for d in (run, copy))
    assert [r["id"] for r in after["front"]] == [r["id"] for r in before["front"]]
    assert after["hypervolume"] == before["hypervolume"]


def test_a_constraint_excludes_trials(tmp_path, finished):
    _, run = finished
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    energies = sorted(t["values"]["energy_j"] for t in trials if t["method"] == "codesign")
    bound = energies[len(energies) // 2]  # about half the co-design trials keep it
    objectives = [{"name": "score"}, {"name": "energy_j", "at_most": bound}]
    path = write(tmp_path, codesign=codesign_with(objectives=objectives), baselines={"random": False},
                 search={**CODESIGN["search"], "n_trials": 3})
    assert search.run.main([str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    done = [json.loads(line) for line in (tmp_path / "run" / "trials.jsonl").read_text().splitlines()]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for t in done:
        assert t["feasible"] == (t["values"]["energy_j"] <= bound)
        assert (t["violation"] > 0) == (not t["feasible"])
    infeasible = {t["id"] for t in done if not t["feasible"]}
    assert not infeasible & {r["id"] for rows in results["fronts"].values() for r in rows}


def test_seeds_summarise_the_hypervolume(tmp_path):
    search_spec = {**CODESIGN["search"], "n_trials": 3}
    path = write(tmp_path, search=search_spec, codesign=codesign_with(grid=False))
    assert search.run.main([str(path), "--out", str(tmp_path / "run"), "--seeds", "0-1", "--quiet"]) == 0
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    per_seed = [json.loads((tmp_path / "run" / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
    for method in ("codesign", "random"):
        row = summary["hypervolume"][method]
        values = [r["hypervolume"][method] for r in per_seed]
        assert row["mean"] == pytest.approx(sum(values) / 2)
        assert row["low"] <= row["mean"] <= row["high"]
    diffs = [r["hypervolume"]["codesign"] - r["hypervolume"]["random"] for r in per_seed]
    assert summary["paired"]["random"]["mean"] == pytest.approx(sum(diffs) / 2)
    assert summary["paired"]["random"]["wins"] == sum(d > 0 for d in diffs)


def test_the_hand_grid_is_each_device_at_its_own_periphery_with_the_best_training_point(finished):
    _, run = finished
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    ours = [t for t in trials if t["method"] == "codesign" and t["status"] == "ok" and t["feasible"]]
    best = max(ours, key=lambda t: t["values"]["score"])
    grid = [t for t in trials if t["method"] == "grid"]
    assert sorted(t["hardware"]["device"] for t in grid) == ["cmo", "pcm_chip"]
    for t in grid:
        assert t["hardware"] == {"device": t["hardware"]["device"]} and t["device"] == t["hardware"]["device"]
        assert t["rates"] == best["rates"] and t["hwa_scale"] == best["hwa_scale"]


def test_a_run_still_going_says_when_its_plot_comes(finished, tmp_path):
    from search import plot

    _, run = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "results.json").unlink()
    with pytest.raises(FileNotFoundError, match="a co-design run still going"):
        plot.plot_run(copy)


def test_a_layer_placed_digital_is_priced_as_digital_macs(finished):
    _, run = finished
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    searched = [t for t in trials if t["method"] != "grid" and t["status"] == "ok"]
    assert {tuple(t["hardware"]["digital"]) for t in searched} == {(), ("net.9",)}  # both placements tried
    for t in searched:
        placed = t["hardware"]["digital"] == ["net.9"]
        assert ("digital MAC" in t["cost"]["components"]) == placed
        assert t["device"].endswith(" + digital net.9") == placed
        if placed:  # 10 x 32 multiply-adds an input
            assert t["cost"]["components"]["digital MAC"] > 0


def test_a_calibration_is_a_choice_of_the_space_with_its_cost(tmp_path):
    """calibration as a hardware dimension: a choice among its names; a trial that
    calibrates is scored on chips that read training inputs, and priced with the reads
    and offsets (more energy than the same chip without)."""
    import models
    from search.codesign_trial import measure
    from search.trial import splits_of

    space = {"calibration": {"choices": ["none", "at_inference"]}, "adc_bits": [6, 9]}
    scenario, _ = load_scenario(write(tmp_path, codesign=codesign_with(space=space, digital=[])), [])
    assert distributions(scenario)["hw.calibration"].choices == ("none", "at_inference")
    splits = splits_of(scenario)
    net = models.build("mlp", splits.in_shape, splits.n_classes, depth=2, width=32, seed=0)
    models.train(net, splits, models.TrainConfig(epochs=5, lr=0.01), seed=0)
    off, on = (measure(scenario, net, {"hardware": {"calibration": c, "adc_bits": 9}}, "val", "cpu", False)
               for c in ("none", "at_inference"))
    assert on["values"]["energy_j"] > off["values"]["energy_j"]
    assert {"column offsets", "calibration reads"} <= set(on["cost"]["components"])
    assert on["values"]["score"] != off["values"]["score"]
    bad = codesign_with(space={"calibration": {"choices": ["none", "sometimes"]}})
    with pytest.raises(ScenarioError, match="calibration") as err:
        load_scenario(write(tmp_path, codesign=bad), [])
    assert "\n" not in str(err.value)
