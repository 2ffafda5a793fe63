"""A method is one entry of the method table: planning, the final networks, the report
and the plots all read it."""

import json

import pytest

import search.run
from search import methods
from search.config import ScenarioError, load_scenario
from search.plan import make_plan, warm_points


def test_the_plan_runs_each_methods_trials_in_the_tables_order(tiny):
    scenario, _ = load_scenario(tiny())
    ids = make_plan(scenario).ids
    assert ids == ["erm", "uniform-0.2", "hardware_aware", "bayesft-001", "bayesft-002", "bayesft-003", "bayesft-004",
                   "random-001", "random-002", "random-003", "random-004"]
    off, _ = load_scenario(tiny(), overrides=["baselines.erm=false", "baselines.random=false", "baselines.uniform=[]",
                                              "baselines.hardware_aware=false"])
    assert make_plan(off).ids == ["bayesft-001", "bayesft-002", "bayesft-003", "bayesft-004"]


def test_a_new_baseline_is_one_call(tiny, tmp_path):
    """register_method alone: the scenario takes its option, and a run plans, runs,
    resumes, reports and plots it; the optimiser learns from it (warm_start)."""
    def plan(scenario, slots):
        if not scenario.baselines.tenth:
            return []
        return [("tenth", {"id": "tenth", "method": "tenth", "rates": [0.1] * len(slots)})]

    methods.register_method(methods.Method(
        "tenth", "a tenth everywhere", "tab:olive", plan, methods.Option(bool, False, "a rate of 0.1 in every slot"),
        warm_start=True, shows_rates=True, reference="-."))
    try:
        base = {"uniform": [], "random": False, "hardware_aware": False}
        off, _ = load_scenario(tiny(baselines=base))
        assert "tenth" not in make_plan(off).ids and off.plain()["baselines"]["tenth"] is False  # its default
        with pytest.raises(ScenarioError, match="unknown key \\(did you mean 'tenth'\\?\\); allowed here: erm, "):
            load_scenario(tiny(baselines={"tenh": True}))
        path = tiny(search={"n_trials": 2, "n_initial": 1}, baselines={**base, "tenth": True})
        scenario, _ = load_scenario(path)
        assert list(warm_points(scenario, make_plan(scenario))) == ["erm", "tenth"]
        out = tmp_path / "run"
        assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
        lines = (out / "trials.jsonl").read_text().splitlines()
        assert [json.loads(line)["id"] for line in lines] == ["erm", "tenth", "bayesft-001", "bayesft-002"]
        first = json.loads((out / "results.json").read_text())
        # resumed after the search's trials were lost: only they run again
        (out / "trials.jsonl").write_text("\n".join(lines[:2]) + "\n")
        for name in ("final.jsonl", "results.json"):
            (out / name).unlink()
        assert search.run.main([str(path), "--out", str(out), "--quiet", "--resume"]) == 0
        again = (out / "trials.jsonl").read_text().splitlines()
        assert again[:2] == lines[:2] and [json.loads(line)["id"] for line in again[2:]] == ["bayesft-001",
                                                                                             "bayesft-002"]
        results = json.loads((out / "results.json").read_text())
        assert results["results"] == first["results"]  # the same numbers
        assert list(results["methods"]) == ["bayesft", "erm", "tenth"]
        assert results["methods"]["tenth"]["label"] == "a tenth everywhere"
        assert results["methods"]["tenth"]["rates"] == {"fc1": 0.1, "fc2": 0.1}
        assert {r["method"] for r in results["results"]} == {"bayesft", "erm", "tenth"}
        assert (out / "dropout_rates.png").is_file() and (out / "convergence.png").is_file()
    finally:
        methods.METHODS.pop("tenth", None)
    assert "tenth" not in load_scenario(tiny())[0].plain()["baselines"]


def test_one_method_at_most_is_the_optimisers():
    other = methods.Method("other", "another search", "tab:olive", lambda scenario, slots: [], optimiser=True)
    with pytest.raises(ValueError, match="the optimiser already proposes the trials of 'bayesft'"):
        methods.register_method(other)
    assert "other" not in methods.METHODS
