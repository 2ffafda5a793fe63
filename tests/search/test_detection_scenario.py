"""task: detection end to end: validation, a tiny search scored by mAP@0.5, its results and plots."""

import json

import pytest
import yaml

import search.run
from search.config import load_scenario
from search.errors import ScenarioError

TINY_DETECTION = {
    "name": "tiny_detection",
    "task": "detection",
    "seed": 0,
    "dataset": {"name": "digit_scenes", "max_train": 400, "max_val": 60, "max_test": 60},
    "model": {"name": "fcos", "options": {"width": 16}},
    "training": {"epochs": 4, "lr": 0.01},
    "devices": ["reram_cmo"],
    "t_inference": ["1h"],
    "n_chips": 2,
    "search": {"n_trials": 2, "n_initial": 1, "space": {"hwa_scale": [0.0, 0.5]}},
    "baselines": {"uniform": [0.1], "random": False, "hardware_aware": {"scale": 0.3}},
    "report": {"t_inference": ["1s", "1h"], "n_chips": 3},
}


@pytest.mark.parametrize("changes, message", [
    ({"task": "detection"}, "dataset: 'digits' is a classification data set but the task is detection; "
                            "task: detection takes the data sets digit_scenes, voc"),
    ({"dataset": "digit_scenes"}, "dataset: 'digit_scenes' is a detection data set but the task is classification; "
                                  "set task: detection"),
    ({"task": "detection", "dataset": "digit_scenes"}, "model: 'lenet5' is a classification network; task detection "
                                                       "needs one of fcos"),
    ({"model": "fcos"}, "model: 'fcos' is a detection network; task classification needs one of lenet5, mlp"),
    ({"task": "detection", "dataset": "digit_scenes", "model": "fcos", "baselines": {"ecoc": True}},
     "baselines.ecoc: ECOC output codes (FTNA) applies to classification only; task detection has no ecoc baseline"),
    ({"task": "segmentation"}, "task: unknown task 'segmentation'; valid: classification, detection"),
    ({"task": "detection", "dataset": "digit_scenes", "model": "fcos", "metric": "accuracy"},
     "metric: 'accuracy' scores classification; task detection is scored by map50, map, map75"),
    ({"metric": "map5"}, "metric: unknown metric 'map5'"),
])
def test_task_mismatches_are_one_line(changes, message):
    with pytest.raises(ScenarioError) as err:
        load_scenario(data=changes)
    text = str(err.value)
    assert "\n" not in text and message in text, text


def test_a_detection_scenario_is_scored_by_map(tmp_path):
    path = tmp_path / "tiny_detection.yaml"
    path.write_text(yaml.safe_dump(TINY_DETECTION))
    scenario, _ = load_scenario(path)
    assert scenario.metric == "map50" and scenario.slots() == ["stage1", "stage2", "stage3", "cls_head", "reg_head"]
    assert search.run.main([str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    run = tmp_path / "run"
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert [t["id"] for t in trials] == ["erm", "uniform-0.1", "hardware_aware", "bayesft-001", "bayesft-002"]
    for t in trials:
        assert t["status"] == "ok", t.get("reason")
        assert 0 <= t["objective"] <= t["val_clean"] + 0.2 and t["scores"][0]["metric"] == "map50"
        assert t["accuracy"] == t["scores"]  # the rows under their old name too
    results = json.loads((run / "results.json").read_text())
    assert results["task"] == "detection" and results["metric"] == "map50"
    assert set(results["methods"]) == {"bayesft", "erm", "uniform", "hardware_aware"}
    rows = results["results"]
    assert {(r["method"], r["t_inference"]) for r in rows} == {
        (m, t) for m in results["methods"] for t in (1.0, 3600.0)}
    for row in rows:  # the schema of classification rows, with the metric named
        assert {"method", "preset", "t_inference", "mean", "std", "n_chips", "p10", "p90", "metric"} <= set(row)
        assert row["metric"] == "map50" and row["n_chips"] == 3 and 0 <= row["p10"] <= row["mean"] <= row["p90"] <= 1
    for info in results["methods"].values():
        assert 0 <= info["test_clean"] <= 1  # the digital detector's mAP@0.5 on the test split
    assert max(info["test_clean"] for info in results["methods"].values()) > 0.01  # some detector learnt
    assert {p.name for p in run.glob("*.png")} == {"map50_vs_time.png", "convergence.png", "dropout_rates.png"}
