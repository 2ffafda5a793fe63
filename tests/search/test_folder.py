"""The run folder keeps the history of a run's starts."""

import json

import search.run


def test_a_resume_keeps_the_first_start_and_adds_its_own(tiny, tmp_path):
    path = tiny(search={"n_trials": 1, "n_initial": 1},
                baselines={"uniform": [], "random": False, "hardware_aware": False})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    first = json.loads((out / "environment.json").read_text())
    assert "resumes" not in first
    for n in (1, 2):
        assert search.run.main([str(path), "--out", str(out), "--quiet", "--resume"]) == 0
        env = json.loads((out / "environment.json").read_text())
        assert {k: v for k, v in env.items() if k != "resumes"} == first  # the first start, as it was
        assert len(env["resumes"]) == n and env["resumes"][-1]["argv"][-1] == "--resume"
        assert set(env["resumes"][-1]) == set(first)  # each resume: the same facts
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--force"]) == 0
    assert "resumes" not in json.loads((out / "environment.json").read_text())  # started over


def test_a_folder_that_recorded_its_devices_as_written_resumes(tiny, tmp_path):
    """Runs recorded their devices as written ({name, base, p_sa0, ...}) before they were
    recorded with every parameter; the same scenario still resumes them, and a changed
    one is still refused."""
    import yaml

    path = tiny(search={"n_trials": 1, "n_initial": 1},
                baselines={"uniform": [], "random": False, "hardware_aware": False})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    resolved = yaml.safe_load((out / "resolved.yaml").read_text())
    resolved["devices"] = yaml.safe_load(path.read_text())["devices"]  # as written in the scenario
    (out / "resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--resume"]) == 0
    (out / "resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--resume", "--set", "devices.0.sigma=0.9"]) == 2
