"""The exact shortcuts behind the Monte-Carlo speed: the window max-pool that converted
models use, and chips run side by side on threads."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import crossbar
from crossbar.pooling import WindowMaxPool2d, window_max


@settings(max_examples=150, deadline=None)
@given(
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    nan=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_window_max_equals_torch_max_pool(kernel, stride, dilation, size, nan, seed):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed))
    if nan:
        x[1, 2, size[0] // 2, size[1] // 2] = float("nan")
    fits = all(s >= d * (k - 1) + 1 for s, d, k in zip(size, dilation, kernel))
    if not fits:
        with pytest.raises(ValueError, match="does not fit"):
            window_max(x, kernel, stride, dilation)
        return
    ref = F.max_pool2d(x, kernel, stride, 0, dilation)
    out = window_max(x, kernel, stride, dilation)
    assert out.shape == ref.shape
    assert torch.equal(out.isnan(), ref.isnan())
    assert torch.equal(out.nan_to_num(), ref.nan_to_num())


@pytest.mark.parametrize(
    "pool, shape",
    [
        (nn.MaxPool2d(2), (3, 4, 9, 9)),
        (nn.MaxPool2d(3, stride=1, dilation=2), (3, 4, 9, 8)),
        (nn.MaxPool2d(2, padding=1), (3, 4, 9, 9)),  # falls back to torch's kernel
        (nn.MaxPool2d(2, ceil_mode=True), (3, 4, 9, 9)),  # falls back too
        (nn.MaxPool2d(2), (4, 9, 9)),  # unbatched
    ],
)
def test_window_pool_module_matches_its_original(pool, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    fast = WindowMaxPool2d.from_module(pool)
    assert torch.equal(fast(x), pool(x))
    tiny = torch.randn(1, 1, 1, 1)
    try:
        expected = pool(tiny)
    except RuntimeError as exc:  # a window larger than the input: torch's own error
        with pytest.raises(RuntimeError, match=re.escape(str(exc))):
            fast(tiny)
    else:
        assert torch.equal(fast(tiny), expected)


def test_convert_swaps_max_pools_in_the_copy_only():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 4))
    xmodel = crossbar.convert(model, "ideal")
    assert type(model[1]) is nn.MaxPool2d
    assert isinstance(xmodel.module[1], WindowMaxPool2d)
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    xmodel.program(2).drift(1.0)
    with torch.no_grad():
        out = xmodel(x)
        assert torch.equal(out[0], model(x)) and torch.equal(out[1], model(x))


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 10),
    ).eval()


@pytest.mark.parametrize("overrides", [{}, dict(crossbar.AIHWKIT_PERIPHERY)])
def test_chip_threads_do_not_change_results(overrides):
    """Each chip runs on one thread, so neither the number of chip threads nor the
    caller's torch thread count changes a single logit, and the caller's thread count
    is left as it was."""
    model = _cnn()
    preset = crossbar.get_preset("pcm", **overrides)
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    before = torch.get_num_threads()
    outs = []
    for torch_threads, chip_threads in ((1, None), (2, None), (2, 1), (2, 3), (1, 4)):
        torch.set_num_threads(torch_threads)
        try:
            xmodel = crossbar.convert(model, preset, threads=chip_threads).program(5, seed=3).drift(3600.0)
            with torch.no_grad():
                outs.append(xmodel(x))
            assert torch.get_num_threads() == torch_threads
        finally:
            torch.set_num_threads(before)
    for other in outs[1:]:
        assert torch.equal(outs[0], other)
    assert not torch.equal(outs[0][0], outs[0][1])  # the chips differ
    acc = [crossbar.evaluate(model, (x, model(x).argmax(-1)), preset, [3600.0], 5, seed=3, threads=t) for t in (1, 2)]
    np.testing.assert_array_equal(acc[0], acc[1])


def test_threads_must_be_a_positive_integer():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be an integer >= 1 or None"):
            crossbar.evaluate(
                _cnn(), (torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)), "ideal", [1.0], 1, threads=bad
            )


def test_new_threads_still_start_with_the_callers_thread_count():
    import threading

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(16, 1, 8, 8)
        crossbar.evaluate(_cnn(), (x, torch.zeros(16, dtype=torch.long)), "pcm", [1.0], 4, threads=2)
        seen = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert seen == [2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_converted_model_can_be_copied_and_pickled_with_its_thread_state():
    import copy
    import pickle

    model = _cnn()
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    xmodel = crossbar.convert(model, crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY), threads=2)
    for clone in (copy.deepcopy(xmodel), pickle.loads(pickle.dumps(xmodel))):
        with torch.no_grad():
            a = xmodel.program(3, seed=1).drift(60.0)(x)
            b = clone.program(3, seed=1).drift(60.0)(x)
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(crossbar.AIHWKIT_PERIPHERY),  # output noise: each block takes its own values of the chip's draw
        dict(inp_res=1 / 254, out_res=1 / 254, inp_bound=1.0, out_bound=12.0),  # no noise
        dict(crossbar.AIHWKIT_PERIPHERY, out_bound=1.5),  # outputs clip: bound management
    ],
)
@pytest.mark.parametrize("strategy", ["loop", "fold"])
def test_convolution_codes_made_in_blocks_give_the_same_logits(monkeypatch, overrides, strategy):
    """On a CPU a convolution's DAC codes are made a few images at a time, as the
    products use them; every block size gives the same logits as whole batches."""
    import crossbar.inputs
    from crossbar.inputs import CodeBlocks
    from crossbar.periphery import Periphery

    calls = []
    products = Periphery._adc_products

    def spy(self, codes, *args):
        if isinstance(codes, CodeBlocks):
            calls.append(codes.block)
        return products(self, codes, *args)

    monkeypatch.setattr(Periphery, "_adc_products", spy)
    model = _cnn()
    preset = crossbar.get_preset("pcm", **overrides)
    x = torch.randn(24, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    outs = {}
    for block_bytes in (1 << 40, 1, 3 * 36 * 4 * 4 * 6):
        monkeypatch.setattr(crossbar.inputs, "CODE_BLOCK_BYTES", block_bytes)
        calls.clear()
        xmodel = crossbar.convert(model, preset, strategy=strategy, threads=2).program(3, seed=4).drift(86400.0)
        with torch.no_grad():
            outs[block_bytes] = xmodel(x)
        if block_bytes == 1 << 40:
            assert calls == []
        else:
            assert calls and min(calls) >= 1 and max(calls) < 24  # blocks of fewer images than the batch
    whole = outs.pop(1 << 40)
    assert not torch.equal(whole[0], whole[1])
    for other in outs.values():
        assert torch.equal(other, whole)
