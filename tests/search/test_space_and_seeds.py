"""The search space's named dimensions (dropout and hardware-aware noise searched
together), and repeats over seeds with their statistics."""

import json
import math

import pytest
import yaml

import models
import search.plot
import search.run
from search.config import ScenarioError, load_scenario
from search.plan import make_plan
from search.seeds import parse_seeds
from search.summary import interval, paired_lines, summarise


def test_the_space_holds_the_slots_then_the_training_dimensions():
    scenario, _ = load_scenario(data={"model": "mlp", "search": {"bounds": [0, 0.5],
                                                                 "space": {"hwa_scale": [0, 1.5], "fc2": [0.1, 0.3]}}})
    assert [(d.name, d.low, d.high, d.dropout) for d in scenario.dimensions()] == [
        ("fc1", 0.0, 0.5, True), ("fc2", 0.1, 0.3, True), ("hwa_scale", 0.0, 1.5, False)]
    plan = make_plan(scenario)
    random = [spec for trial_id, spec in plan.trials if trial_id.startswith("random")]
    assert all(len(s["rates"]) == 2 and 0 <= s["hwa_scale"] <= 1.5 and 0.1 <= s["rates"][1] <= 0.3 for s in random)
    assert scenario.trained_with(0.0) is None
    hwa = scenario.trained_with(0.7)
    assert hwa.scale == 0.7 and hwa.t_inference == scenario.t_inference[0]
    assert hwa.resolved().full_spec() == scenario.resolved_presets()[0].full_spec()


def test_the_search_learns_from_the_baselines_that_are_points_of_its_space(tiny, tmp_path):
    from search.plan import warm_points

    def warm(**changes):
        scenario, _ = load_scenario(data={"model": "mlp", "search": {"bounds": [0, 0.5], **changes.pop("search", {})},
                                          "baselines": {"uniform": [0.2, 0.6], **changes}})
        return warm_points(scenario, make_plan(scenario))

    with_scale = {"space": {"hwa_scale": [0, 1.5]}}
    assert warm(search=with_scale) == {"erm": [0, 0, 0], "uniform-0.2": [0.2, 0.2, 0], "hardware_aware": [0, 0, 1]}
    assert warm() == {"erm": [0, 0], "uniform-0.2": [0.2, 0.2]}  # trained with noise: not a point of a dropout space
    assert "hardware_aware" not in warm(search=with_scale, hardware_aware={"preset": "pcm"})  # another noise
    assert "hardware_aware" not in warm(search={"space": {"hwa_scale": [0, 0.5]}})  # scale 1 is outside
    assert warm(search={**with_scale, "warm_start": False}) == {}
    # a run learns from them: the same first (random) proposal, then other ones
    rates = {}
    for flag in (True, False):
        path = tiny(search={"n_trials": 3, "n_initial": 1, "warm_start": flag},
                    baselines={"uniform": [0.2], "random": False, "hardware_aware": False})
        out = tmp_path / f"warm-{flag}"
        assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
        trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
        rates[flag] = [t["rates"] for t in trials if t["method"] == "bayesft"]
    assert rates[True][0] == rates[False][0] and rates[True][1:] != rates[False][1:]


@pytest.mark.parametrize("space, message", [
    ({"hwa_scal": [0, 1]}, "search.space: unknown dimension 'hwa_scal' (did you mean 'hwa_scale'?); the dimensions "
                           "are the dropout slots (fc1, fc2) and hwa_scale"),
    ({"hwa_scale": [0, 20]}, "search.space: hwa_scale: must be [low, high] with 0 <= low < high <= 10, "
                             "got [0.0, 20.0]"),
    ({"fc1": [0, 1.2]}, "search.space: fc1: a dropout rate's range must be [low, high] with 0 <= low < high < 1"),
    ({"hwa_scale": [1, 0.5]}, "must be [low, high] with 0 <= low < high <= 10"),
])
def test_a_dimension_that_does_not_exist_or_a_range_it_cannot_take_is_one_line(space, message):
    with pytest.raises(ScenarioError) as err:
        load_scenario(data={"model": "mlp", "search": {"space": space}})
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_dropout_and_the_noise_strength_are_searched_together_end_to_end(tiny, tmp_path, capsys):
    path = tiny(search={"n_trials": 3, "n_initial": 2, "space": {"hwa_scale": [0.0, 1.0]}},
                baselines={"uniform": [], "random": True, "hardware_aware": True})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    searched = [t for t in trials if t["method"] in ("bayesft", "random")]
    assert searched and all(0 <= t["hwa_scale"] <= 1 for t in searched)
    assert all("hwa_scale" not in t for t in trials if t["method"] in ("erm", "hardware_aware"))
    results = json.loads((out / "results.json").read_text())
    assert set(results["best_point"]) == {"fc1", "fc2", "hwa_scale"} and results["space"]["hwa_scale"] == [0.0, 1.0]
    assert "hwa_scale" in results["methods"]["bayesft"] and "hwa_scale" in results["methods"]["random"]
    assert "best point (validation objective" in capsys.readouterr().out
    before = (out / "trials.jsonl").read_text()
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--resume"]) == 0  # resumes a point space
    assert (out / "trials.jsonl").read_text() == before and not (out / "trials.jsonl.damaged").exists()


def test_hardware_aware_training_trains_and_is_robust_on_a_small_case():
    """Log-normal drift (sigma 0.5) on the digits: the default schedule (plain training
    first, then the device's noise) keeps the clean accuracy within 5 points of plain
    training's and is more robust on the chips than plain training."""
    import crossbar

    splits = models.load_dataset("digits", seed=0)
    preset = crossbar.get_preset("lognormal")
    scores = {}
    for name, config in (("plain", models.TrainConfig()),
                         ("hwa", models.TrainConfig(hardware_aware={"preset": "lognormal"}))):
        result = models.train(models.build("lenet5", splits.in_shape, splits.n_classes, seed=0), splits, config, seed=0)
        chips = crossbar.evaluate(result.model, splits.val, preset, [86400.0], 20, seed=1)
        scores[name] = (result.val_score, float(chips.mean()))
    assert scores["hwa"][0] >= scores["plain"][0] - 0.05
    assert scores["hwa"][1] > scores["plain"][1] + 0.02, scores


def test_a_training_that_did_not_learn_fails_its_trial_with_the_reason(tiny):
    from search.trial import trial_record

    scenario, _ = load_scenario(tiny(training={"epochs": 1, "lr": 1e-9}))
    record = trial_record(scenario.plain(), {"id": "hardware_aware", "method": "hardware_aware", "rates": [0.0, 0.0],
                                          "hardware_aware": True})
    assert record["status"] == "failed" and record["objective"] is None
    assert "training did not learn: clean validation accuracy" in record["reason"] and "10 classes" in record["reason"]
    scenario, _ = load_scenario(tiny())  # the same network, trained: scores
    assert trial_record(scenario.plain(), {"id": "erm", "method": "erm", "rates": [0.0, 0.0]})["status"] == "ok"


def test_the_noise_strength_follows_its_schedule():
    hwa = models.HardwareAware(preset="pcm", scale=0.8, warmup=0.5, ramp=0.2)
    strengths = [hwa.strength(epoch, 10) for epoch in range(1, 11)]
    assert strengths[:5] == [0.0] * 5 and strengths[7:] == [0.8] * 3
    assert 0 < strengths[5] < strengths[6] <= 0.8
    assert [hwa.strength(1, 1), hwa.strength(1, 2), hwa.strength(2, 2)] == [0.8, 0.0, 0.8]  # ends at full strength
    with pytest.raises(ValueError, match="warmup \\+ ramp .* must leave epochs at full strength"):
        models.HardwareAware(preset="pcm", warmup=0.7, ramp=0.3)


# ------------------------------------------------------------------ seeds


@pytest.mark.parametrize("text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("0,2,5", [0, 2, 5]), ("3", [3]), (7, [7]),
                                         ([1, 2], [1, 2]), ("0-1,5", [0, 1, 5])])
def test_seeds_as_people_write_them(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("bad", ["4-0", "a-b", "-1", [1, 1], [], "0-2,1", 1.5, True, [2**32]])
def test_seeds_that_are_not_a_list_or_range_of_non_negative_integers(bad):
    with pytest.raises(ValueError):
        parse_seeds(bad)
    with pytest.raises(ScenarioError, match="seeds: "):
        load_scenario(data={"seeds": bad})


def test_the_interval_over_seeds_is_students_t():
    mean, low, high = interval([1.0, 2.0, 3.0])  # sd 1, t(0.975, 2) = 4.3027
    assert mean == 2.0 and high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6) and mean - low == high - mean
    assert interval([0.5]) == (0.5, 0.5, 0.5)


def _results(values: dict) -> dict:
    """A results.json of one seed: method -> (accuracy at 1 d)."""
    return {"scenario": "s", "mode": "search", "presets": ["pcm"], "objective_times": [86400.0],
            "objective": {"aggregate": "mean"}, "n_classes": 10,
            "methods": {m: {"label": m.upper(), "status": "ok", "test_clean": 0.9} for m in values},
            "results": [{"method": m, "preset": "pcm", "t_inference": 86400.0, "mean": v} for m, v in values.items()]}


def test_the_summary_pairs_the_search_with_each_baseline_by_seed():
    per_seed = {0: _results({"bayesft": 0.80, "erm": 0.70}), 1: _results({"bayesft": 0.82, "erm": 0.83}),
                2: _results({"bayesft": 0.90, "erm": 0.85})}
    summary = summarise(per_seed)
    row = next(r for r in summary["results"] if r["method"] == "bayesft")
    assert row["mean"] == pytest.approx(0.84) and row["n_seeds"] == 3 and row["per_seed"] == [0.80, 0.82, 0.90]
    paired = summary["paired"][0]
    diffs = [0.10, -0.01, 0.05]
    mean, low, high = interval(diffs)
    assert paired["baseline"] == "erm" and paired["wins"] == 2 and paired["n_seeds"] == 3
    assert (paired["mean_diff"], paired["ci_low"], paired["ci_high"]) == pytest.approx((mean, low, high))
    assert paired_lines(summary) == [f"pcm, 1d: BayesFT - ERM: {mean:+.3f} [{low:+.3f}, {high:+.3f}], wins 2 of 3"]


def test_a_run_over_seeds_writes_a_sub_folder_per_seed_and_summarises_them(tiny, tmp_path, capsys):
    data = yaml.safe_load(tiny().read_text())
    data.update(search={"n_trials": 2, "n_initial": 1}, baselines={"uniform": [], "random": False,
                                                                   "hardware_aware": False})
    path = tmp_path / "rep.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--seeds", "0-1"]) == 0
    printed = capsys.readouterr().out
    assert "2 repeats (seeds 0, 1)" in printed and "paired by seed" in printed and "wins" in printed
    for seed in (0, 1):
        sub = out / f"seed-{seed}"
        assert (sub / "results.json").is_file() and (sub / "accuracy_vs_time.png").is_file()
        assert yaml.safe_load((sub / "resolved.yaml").read_text())["seed"] == seed
    summary = json.loads((out / "results.json").read_text())
    assert summary["seeds"] == [0, 1] and {r["n_seeds"] for r in summary["results"]} == {2}
    assert {p["baseline"] for p in summary["paired"]} == {"erm"} and (out / "accuracy_vs_time.png").is_file()
    one = json.loads((out / "seed-1" / "results.json").read_text())
    single = tmp_path / "single"
    assert search.run.main([str(path), "--out", str(single), "--quiet", "--set", "seed=1"]) == 0
    assert json.loads((single / "results.json").read_text())["results"] == one["results"]  # a repeat is that seed's run
    # resumed: nothing runs again; with other seeds: refused, nothing touched
    trials = (out / "seed-0" / "trials.jsonl").read_text()
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--seeds", "0-1", "--resume"]) == 0
    assert (out / "seed-0" / "trials.jsonl").read_text() == trials
    capsys.readouterr()
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--seeds", "0-2", "--resume"]) == 2
    assert "(changed: seeds)" in capsys.readouterr().err and not (out / "seed-2").exists()
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--seeds", "0-1"]) == 2  # holds a run
    assert search.plot.main([str(out)]) == 0
