"""The ECOC (FTNA) baseline of a search run, and the search over an ECOC network."""

import json

import search.run
from search.config import load_scenario


def test_the_ecoc_baseline_runs_beside_the_search_and_the_search_runs_over_an_ecoc_network(tiny, tmp_path, capsys):
    path = tiny(search={"n_trials": 2, "n_initial": 1},
                baselines={"uniform": [], "random": False, "hardware_aware": False, "ecoc": True})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    assert "ECOC output codes (FTNA)" in capsys.readouterr().out
    trials = {t["id"]: t for t in map(json.loads, (out / "trials.jsonl").read_text().splitlines())}
    assert trials["ecoc"]["status"] == "ok" and trials["ecoc"]["model"] == {"head": "ecoc"}
    assert trials["ecoc"]["rates"] == [0.0, 0.0] and trials["ecoc"]["objective"] != trials["erm"]["objective"]
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["ecoc"]["label"] == "ECOC output codes (FTNA)"
    assert {r["method"] for r in results["results"]} == {"bayesft", "erm", "ecoc"}
    finals = [json.loads(line) for line in (out / "final.jsonl").read_text().splitlines()]
    assert next(f for f in finals if f["method"] == "ecoc")["model"] == {"head": "ecoc"}
    scenario, _ = load_scenario(tiny(model={"name": "mlp", "options": {"width": 32, "head": "ecoc", "code_bits": 9}}))
    assert scenario.slots() == ["fc1", "fc2"]
