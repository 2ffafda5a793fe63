import pytest
import yaml
from run_helpers import SMALL

import search.run

TINY = {
    "name": "tiny",
    "seed": 3,
    "dataset": {"name": "digits", "max_train": 400, "max_val": 120, "max_test": 150},
    "model": {"name": "mlp", "options": {"depth": 2, "width": 32}},
    "training": {"epochs": 3, "lr": 0.01},
    "devices": ["lognormal", {"name": "cmo_faulty", "base": "reram_cmo", "p_sa0": 0.02, "p_sa1": 0.005}],
    "t_inference": ["1d"],
    "n_chips": 3,
    "search": {"n_trials": 4, "n_initial": 2},
    "baselines": {"uniform": [0.2], "hardware_aware": {"preset": "lognormal"}},
    "report": {"t_inference": ["1s", "1d", "1y"], "n_chips": 4},
}


@pytest.fixture(scope="session")
def tiny_data():
    return dict(TINY)


@pytest.fixture
def tiny(tmp_path):
    """A complete scenario that runs end to end in a few seconds; returns its path."""
    def write(**changes):
        data = {**TINY, **changes}
        path = tmp_path / f"{data['name']}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path
    return write


@pytest.fixture(scope="module")
def done(tmp_path_factory, tiny_data):
    """A finished small run, copied by the tests that damage it."""
    folder = tmp_path_factory.mktemp("done")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({**tiny_data, **SMALL}))
    assert search.run.main([str(path), "--out", str(folder / "run"), "--quiet"]) == 0
    return path, folder / "run"
