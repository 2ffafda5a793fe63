"""A study's findings: each claim judged from paired differences over seeds, "agrees",
"disagrees" or "not significant"; its variants against the first over seeds."""

import pytest

from search.config import ScenarioError, load_scenario
from search.schema import Finding
from search.summary import finding_lines, judge, summarise, verdict

T95_4 = 2.776445  # Student's t, 97.5 % quantile, 4 degrees of freedom


@pytest.mark.parametrize("low, high, expect, n, answer", [
    (0.01, 0.05, "higher", 5, "agrees"), (-0.05, -0.01, "higher", 5, "disagrees"),
    (-0.01, 0.05, "higher", 5, "not significant"), (-0.05, -0.01, "lower", 5, "agrees"),
    (0.01, 0.05, "lower", 5, "disagrees"), (-0.01, 0.02, "same", 5, "agrees"), (0.01, 0.02, "same", 5, "disagrees"),
    (0.01, 0.05, "higher", 1, "not significant"),
])
def test_a_verdict_reads_the_interval(low, high, expect, n, answer):
    assert verdict(low, high, expect, n) == answer


def study(seed, accuracies):
    labels = list(accuracies)
    return {"scenario": "components", "mode": "study", "presets": ["drift"], "objective_times": [86400.0],
            "objective": {}, "methods": {k: {"label": k, "status": "ok", "test_clean": 0.9} for k in labels},
            "results": [{"method": k, "preset": "drift", "t_inference": 86400.0, "mean": v}
                        for k, v in accuracies.items()]}


def test_findings_are_judged_from_the_paired_differences_over_seeds():
    base = [0.80, 0.82, 0.78, 0.81, 0.79]
    up = [0.03, 0.05, 0.04, 0.02, 0.06]  # dropout: always ahead
    noise = [0.01, -0.02, 0.00, 0.02, -0.01]  # tanh: no difference
    per_seed = {s: study(s, {"plain": b, "dropout": b + u, "tanh": b + n, "norm": b - 0.1 + n})
                for s, (b, u, n) in enumerate(zip(base, up, noise))}
    findings = [Finding(claim="dropout helps", variants=["dropout"], expect="higher"),
                Finding(claim="activation does not matter", variants=["tanh"], expect="same"),
                Finding(claim="norm helps", variants=["norm"], expect="higher"),
                Finding(claim="dropout vs tanh", variants=["dropout"], expect="higher", baseline="tanh")]
    judged = judge(per_seed, findings, [86400.0])
    assert [f["verdict"] for f in judged] == ["agrees", "agrees", "disagrees", "agrees"]
    first = judged[0]["comparisons"][0]
    sd = (sum((u - 0.04) ** 2 for u in up) / 4) ** 0.5
    assert first["mean_diff"] == pytest.approx(0.04)
    assert first["ci_high"] - first["mean_diff"] == pytest.approx(T95_4 * sd / 5 ** 0.5, rel=1e-5)
    assert judged[3]["baseline"] == "tanh"
    text = "\n".join(finding_lines(judged))
    assert "agrees: dropout helps (against plain, at 1d)" in text and "drift: dropout: +0.040 [" in text
    summary = summarise(per_seed)  # the study's variants against its first, paired
    assert {(p["method"], p["baseline"]) for p in summary["paired"]} == {("dropout", "plain"), ("tanh", "plain"),
                                                                          ("norm", "plain")}


def test_one_seed_says_nothing_is_significant():
    judged = judge({0: study(0, {"plain": 0.8, "dropout": 0.9})},
                   [Finding(claim="dropout helps", variants=["dropout"], expect="higher")], [86400.0])
    assert judged[0]["verdict"] == "not significant" and "(one seed)" in finding_lines(judged)[1]


@pytest.mark.parametrize("change, message", [
    ({"findings": [{"claim": "x", "variants": ["dropuot 0.2"], "expect": "higher"}]},
     "findings[0]: no variant 'dropuot 0.2' (did you mean 'dropout 0.2'?); the variants: plain, dropout 0.2"),
    ({"findings": [{"claim": "x", "variants": ["dropout 0.2"], "expect": "better"}]},
     "findings[0].expect: Input should be 'higher', 'lower' or 'same'"),
    ({"mode": "search", "findings": [{"claim": "x", "variants": ["plain"], "expect": "same"}]},
     "findings are for mode: study"),
])
def test_a_finding_about_a_variant_that_does_not_exist_is_one_line(change, message):
    data = {"mode": "study", "model": "mlp", "variants": [{"label": "plain"}, {"label": "dropout 0.2", "dropout": 0.2}],
            **change}
    with pytest.raises(ScenarioError) as err:
        load_scenario(data=data)
    assert message in str(err.value), str(err.value)


def test_a_hardware_aware_variant_without_hardware_aware_noise_is_refused_not_recorded_as_such():
    data = {"mode": "study", "model": "mlp", "baselines": {"hardware_aware": False},
            "variants": [{"label": "plain"}, {"label": "hwa", "hardware_aware": True}]}
    with pytest.raises(ScenarioError) as err:
        load_scenario(data=data)
    assert "\n" not in str(err.value)
    assert ("variants[1] ('hwa'): hardware_aware: true trains with the noise of baselines.hardware_aware, which is "
            "false here") in str(err.value), str(err.value)
    scenario, _ = load_scenario(data={**data, "baselines": {"hardware_aware": {"scale": 0.5}}})
    assert scenario.hardware_aware_config().scale == 0.5  # the noise the variant trains with and records
