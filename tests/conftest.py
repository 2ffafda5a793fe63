import pytest
import torch
from torch import nn


def pytest_sessionstart(session):
    """The fidelity tests run aihwkit's compiled (C++) tiles. With a torch other than the
    one its extension was built for, the import works but every tile fails (aihwkit 1.2.0
    with torch 2.10-2.12: "tensor does not have a device"): say so once, before any test."""
    import aihwkit
    from aihwkit.simulator.configs import InferenceRPUConfig
    from aihwkit.simulator.tiles.inference import InferenceTile

    weights = torch.arange(8.0).reshape(2, 4) / 8
    try:
        tile = InferenceTile(2, 4, rpu_config=InferenceRPUConfig())
        tile.set_weights(weights)
        problem = None if torch.equal(tile.get_weights()[0], weights) else "weights read back wrong"
    except RuntimeError as error:
        problem = str(error).splitlines()[0]
    if problem:
        pytest.exit(f"aihwkit {aihwkit.__version__}'s compiled tiles do not work with torch {torch.__version__} "
                    f"({problem}); "
                    "install the pinned stack: make venv (requirements.txt)", returncode=3)


@pytest.fixture(scope="session")
def digits_split():
    """scikit-learn's bundled digits (no download), split 1,200 / 597, fixed seed."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return (x[:1200], y[:1200]), (x[1200:], y[1200:])


@pytest.fixture(scope="session")
def trained_mlp(digits_split):
    """A small MLP trained to ~95 % on digits in about a second, deterministic."""
    (x, y), _ = digits_split
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()
