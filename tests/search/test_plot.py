"""The plots' layout: what a reader needs is inside the figure and nothing hides anything.
Drawn from hand-made results (plain data, as results.json holds them)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from search import figures, plot
from search.folder import PLOT_FILES

LABELS = {"bayesft": "BayesFT (Bayesian search)", "erm": "no dropout (ERM)", "uniform": "best uniform dropout",
          "random": "random search", "hardware_aware": "hardware-aware training"}


def results(presets, times):
    rows = []
    for p, preset in enumerate(presets):
        for m, method in enumerate(LABELS):
            for t in times:
                mean = 0.9 - 0.02 * m - 0.01 * p
                rows.append({"method": method, "preset": preset, "t_inference": t, "mean": mean, "std": 0.01,
                             "p10": mean - 0.02, "p90": mean + 0.01, "n_chips": 20})
    return {"scenario": "layout", "presets": presets, "objective_times": [times[0]], "results": rows,
            "methods": {m: {"label": label} for m, label in LABELS.items()}}


def inside_figure(fig, artist):
    fig.canvas.draw()
    box, frame = artist.get_window_extent(fig.canvas.get_renderer()), fig.bbox
    return box.x0 >= frame.x0 - 1 and box.x1 <= frame.x1 + 1 and box.y0 >= frame.y0 - 1 and box.y1 <= frame.y1 + 1


@pytest.mark.parametrize("n_presets", [1, 2, 5])
def test_every_legend_fits_inside_its_figure(n_presets):
    res = results([f"preset {i}" for i in range(n_presets)], [1.0, 86400.0])
    for fig in (figures.technologies(res), figures.scores_vs_time(res)):
        legend = fig.legends[0] if fig.legends else fig.axes[0].get_legend()
        assert [t.get_text() for t in legend.get_texts()] == list(LABELS.values())
        assert inside_figure(fig, legend)
        plt.close(fig)


def test_one_time_spreads_the_methods_side_by_side_around_it():
    t = 86400.0
    fig = figures.scores_vs_time(results(["sigma 0.5", "sigma 1.0"], [t]))
    ax = fig.axes[0]
    xs = [float(line.get_xdata()[0]) for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(xs) == len(LABELS) and len(set(xs)) == len(LABELS)  # no two methods' points on top of each other
    assert xs == sorted(xs) and np.exp(np.mean(np.log(xs))) == pytest.approx(t)  # centred on the time
    lo, hi = ax.get_xlim()
    assert lo < min(xs) and max(xs) < hi and [tick.get_text() for tick in ax.get_xticklabels()] == ["1d"]
    assert "point = mean, bar = 10th to 90th percentile chip" in fig._suptitle.get_text()
    plt.close(fig)


def test_several_times_keep_each_point_at_its_own_time():
    times = [1.0, 3600.0, 86400.0]
    fig = figures.scores_vs_time(results(["pcm"], times))
    lines = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    assert len(lines) == len(LABELS) and all(list(line.get_xdata()) == times for line in lines)
    assert "line = mean, band = 10th to 90th percentile chip" in fig._suptitle.get_text()
    plt.close(fig)


def test_time_zero_is_labelled_0s_a_decade_before_the_first_time():
    fig = figures.scores_vs_time(results(["pcm"], [0.0, 60.0, 86400.0]))
    ax = fig.axes[0]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["0s", "1min", "1d"]
    assert list(ax.get_xticks()) == [6.0, 60.0, 86400.0]
    assert all(list(line.get_xdata()) == [6.0, 60.0, 86400.0] for line in ax.get_lines() if line.get_marker() == "o")
    plt.close(fig)


def test_methods_with_the_same_numbers_share_one_line_and_one_legend_entry():
    # BayesFT settling on no dropout trains the ERM network again: its line would hide under ERM's
    res = results(["pcm", "lognormal"], [1.0, 86400.0])
    for row in res["results"]:
        if row["method"] == "erm":
            row.update(next({k: r[k] for k in ("mean", "p10", "p90")} for r in res["results"]
                            if r["method"] == "bayesft" and r["preset"] == row["preset"]
                            and r["t_inference"] == row["t_inference"]))
    fig = figures.scores_vs_time(res)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["BayesFT (Bayesian search) = no dropout (ERM)", *list(LABELS.values())[2:]]
    assert len([line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]) == len(LABELS) - 1
    plt.close(fig)
    # the same numbers on one preset only are two networks: both drawn
    res["results"] = [r for r in res["results"] if not (r["method"] == "erm" and r["preset"] == "lognormal")]
    res["results"] += [{**r, "method": "erm", "mean": r["mean"] - 0.1} for r in res["results"]
                       if r["method"] == "bayesft" and r["preset"] == "lognormal"]
    fig = figures.scores_vs_time(res)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(LABELS.values())
    plt.close(fig)


def test_convergence_steps_at_trials_and_keeps_its_legend_off_the_points():
    res = results(["pcm"], [86400.0])
    for method, info in res["methods"].items():
        info["val_objective"] = 0.8
    objectives = {"bayesft": [0.70, 0.85, 0.80, 0.90], "random": [0.75, 0.72, 0.86, 0.60]}
    trials = [{"id": f"{m}-{i + 1:03d}", "method": m, "status": "ok", "objective": v}
              for m, values in objectives.items() for i, v in enumerate(values)]
    res["objective"] = {"aggregate": "mean", "quantile": 0.1}
    fig = figures.convergence(res, trials)
    ax = fig.axes[0]
    best = next(line for line in ax.get_lines() if line.get_label().startswith("BayesFT") and line.get_linewidth() == 2)
    assert best.get_drawstyle() == "steps-post" and list(best.get_ydata()) == [0.70, 0.85, 0.85, 0.90]
    legend, frame = ax.get_legend(), ax
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= frame.get_window_extent(renderer).x1  # beside the axes
    assert inside_figure(fig, legend)
    assert ax.get_title() == "layout: search convergence (objective at 1d)"
    plt.close(fig)
    # with a floor on clean accuracy, the title says what an objective of 0 means
    res["objective"]["min_clean_accuracy"] = 0.9
    fig = figures.convergence(res, trials)
    assert fig.axes[0].get_title() == "layout: search convergence (objective at 1d; 0 = clean accuracy below 0.9)"
    plt.close(fig)


def test_a_dropout_rate_of_zero_is_written_where_its_bar_would_be():
    res = results(["pcm"], [86400.0])
    res["slots"] = ["conv1", "conv2", "fc1"]
    res["methods"]["bayesft"]["rates"] = {"conv1": 0.31, "conv2": 0.0, "fc1": 0.0}
    res["methods"]["uniform"]["rates"] = {"conv1": 0.1, "conv2": 0.1, "fc1": 0.1}
    res["methods"]["random"]["rates"] = {"conv1": 0.0, "conv2": 0.4, "fc1": 0.2}
    fig = figures.dropout_rates(res)
    ax = fig.axes[0]
    zeros = sorted(round(t.get_position()[0], 6) for t in ax.texts if t.get_text() == "0")
    bars = {round(b.get_x() + b.get_width() / 2, 6): b.get_height() for b in ax.patches}
    assert len(zeros) == 3 and all(bars[x] == 0.0 for x in zeros)  # one label per zero-height bar, on it
    assert sum(h == 0.0 for h in bars.values()) == 3
    plt.close(fig)


def test_digital_accuracy_and_chance_are_marked_and_chance_far_below_is_named_not_drawn():
    res = results(["pcm"], [1.0, 86400.0])
    res["n_classes"] = 10
    res["methods"]["erm"]["test_clean"] = 0.97
    fig = figures.scores_vs_time(res)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "digital accuracy, no dropout (ERM): 0.970" in texts
    assert 0.97 in [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
    # every chip is near 0.9: chance (0.1) would squeeze them into a sliver; it is named at the bottom
    assert "chance (1 of 10 classes): 0.10, below this axis" in texts and ax.get_ylim()[0] > 0.5
    plt.close(fig)
    for row in res["results"]:  # chips near chance: its line is drawn, inside the axis
        row["p10"] = 0.12
    fig = figures.scores_vs_time(res)
    ax = fig.axes[0]
    assert "chance (1 of 10 classes): 0.10" in [t.get_text() for t in ax.texts]
    assert 0.1 in [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert ax.get_ylim()[0] < 0.1
    plt.close(fig)


def test_dropout_rates_are_drawn_against_the_search_bounds():
    res = results(["pcm"], [86400.0])
    res["slots"] = ["fc1", "fc2"]
    for method in ("bayesft", "uniform", "random"):
        res["methods"][method]["rates"] = {"fc1": 0.2, "fc2": 0.45}
    res["bounds"] = [0.0, 0.5]
    fig = figures.dropout_rates(res)
    ax = fig.axes[0]
    assert 0.5 < ax.get_ylim()[1] < 0.7  # the bounds' range, not 0 to 1
    assert [line.get_ydata()[0] for line in ax.get_lines()] == [0.5]
    assert "search bounds: 0 to 0.5" in [t.get_text() for t in ax.texts]
    plt.close(fig)


def test_a_run_of_one_preset_gets_no_side_by_side_plot(tmp_path):
    import json

    res = results(["pcm"], [1.0, 86400.0])
    res.update(mode="search", slots=["fc1"], objective={"aggregate": "mean"})
    for info in res["methods"].values():
        info["rates"] = {"fc1": 0.1}
    (tmp_path / "results.json").write_text(json.dumps(res))
    (tmp_path / "trials.jsonl").write_text("")
    names = {p.name for p in plot.plot_run(tmp_path)}
    assert names == {"accuracy_vs_time.png", "dropout_rates.png"}
    res["presets"] = ["pcm", "ideal"]
    res["results"] += [{**row, "preset": "ideal"} for row in res["results"]]
    (tmp_path / "results.json").write_text(json.dumps(res))
    assert "technologies.png" in {p.name for p in plot.plot_run(tmp_path)}


def test_a_results_json_of_the_wrong_shape_is_one_line(done, tmp_path, capsys):
    import json

    _, run = done
    good = json.loads((run / "results.json").read_text())
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "trials.jsonl").write_bytes((run / "trials.jsonl").read_bytes())
    wrong = {"'results' is a string, not a list": {"results": "x"},
             "results[0] is a number, not an object": {"results": [1, 2]},
             "'objective_times' is a number, not a list of numbers": {"objective_times": 5},
             "results[0]'s 'mean' is a string, not a number": {"results": [{**good["results"][0], "mean": "0.9"}]},
             "methods['erm'] is a list, not an object": {"methods": {**good["methods"], "erm": []}},
             "'chance' is a string, not a number": {"chance": "a tenth"}}
    for problem, change in wrong.items():
        (folder / "results.json").write_text(json.dumps({**good, **change}))
        assert plot.main([str(folder)]) == 2
        assert capsys.readouterr().err.strip() == (f"error: {folder / 'results.json'}: {problem}; is it a results.json "
                                                   "written by python -m search.run?")
    (folder / "results.json").write_text("[1, 2]")
    assert plot.main([str(folder)]) == 2
    assert "results.json: it holds a list, not an object" in capsys.readouterr().err
    assert not list(folder.glob("*.png"))


def test_a_run_over_seeds_stopped_before_its_summary_gets_the_finished_seeds_plots(done, tmp_path, capsys):
    import yaml

    _, run = done
    top = tmp_path / "seeds"
    for seed in (0, 1):
        (top / f"seed-{seed}").mkdir(parents=True)
    resolved = yaml.safe_load((run / "resolved.yaml").read_text())
    (top / "resolved.yaml").write_text(yaml.safe_dump({**resolved, "seeds": [0, 1, 2], "output": str(top)}))
    for name in ("results.json", "trials.jsonl", "final.jsonl"):  # seed 0 finished
        (top / "seed-0" / name).write_bytes((run / name).read_bytes())
    trials = (run / "trials.jsonl").read_text().splitlines(keepends=True)
    (top / "seed-1" / "trials.jsonl").write_text("".join(trials[:1]))  # seed 1 stopped early; seed 2 never began
    assert plot.main([str(top)]) == 0
    assert {p.name for p in (top / "seed-0").glob("*.png")} == set(PLOT_FILES)
    assert not list(top.glob("*.png")) and not list((top / "seed-1").glob("*.png"))
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"note: {top}: the run over seeds has not finished (seed-1 unfinished, seed-2 not "
                          "started): drew the plots of seed-0; the summary over seeds is drawn once the run is "
                          "finished: python -m search.run ") and err.endswith(" --resume")
