"""A method is one entry of the method table: planning, the final networks, the report
and the plots all read it."""

import json

import search.run
from search import methods
from search.config import load_scenario
from search.plan import make_plan


def test_the_plan_runs_each_methods_trials_in_the_tables_order(tiny):
    scenario, _ = load_scenario(tiny())
    ids = make_plan(scenario).ids
    assert ids == ["erm", "uniform-0.2", "hardware_aware", "bayesft-001", "bayesft-002", "bayesft-003", "bayesft-004",
                   "random-001", "random-002", "random-003", "random-004"]
    off, _ = load_scenario(tiny(), overrides=["baselines.erm=false", "baselines.random=false", "baselines.uniform=[]",
                                              "baselines.hardware_aware=false"])
    assert make_plan(off).ids == ["bayesft-001", "bayesft-002", "bayesft-003", "bayesft-004"]


def test_a_new_baseline_is_one_entry(tiny, tmp_path, monkeypatch):
    def plan(scenario, slots):
        return [("tenth", {"id": "tenth", "method": "tenth", "rates": [0.1] * len(slots)})]

    table = dict(methods.METHODS)
    table["tenth"] = methods.Method("tenth", "a tenth everywhere", "tab:olive", plan, shows_rates=True, reference="-.")
    monkeypatch.setattr(methods, "METHODS", table)
    for module in ("search.plan", "search.plot"):
        monkeypatch.setattr(f"{module}.METHODS", table)
    path = tiny(search={"n_trials": 2, "n_initial": 1},
                baselines={"uniform": [], "random": False, "hardware_aware": False})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert [t["id"] for t in trials] == ["erm", "tenth", "bayesft-001", "bayesft-002"]
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["bayesft", "erm", "tenth"]
    assert results["methods"]["tenth"]["label"] == "a tenth everywhere"
    assert results["methods"]["tenth"]["rates"] == {"fc1": 0.1, "fc2": 0.1}
    assert {r["method"] for r in results["results"]} == {"bayesft", "erm", "tenth"}
    assert (out / "dropout_rates.png").is_file()
