"""What one inference of a network costs on the chip a preset describes:
:func:`cost`, energy (J), latency (s) and area (mm²) by layer and component.

The periphery's figures are :func:`crossbar.macro_cost`'s, counted per inference: a
DAC conversion per tile row and input vector, an ADC conversion and a sample per tile
column and vector, register reads and writes of each input and output word, and a
digital add where tiles split a layer's inputs. The array's read energy is the
physics, ``V² G t`` per cell and vector: the conductances of each simulated chip at
the time asked (so drift, faults and levels move it) and the layer's actual inputs, each
vector at the DAC's full scale ``read_voltage`` where its largest |value| is (aihwkit's
noise management), so that zero inputs cost nothing. The inputs are those of the
digital network (one clean pass), not each chip's own. docs/cost.md has the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .arrays import ProgrammedArray, tile_grid
from .attention import mapped_attention
from .catalog import resolve_preset
from .common import check_n_chips, check_seed
from .cost import macro_cost
from .mapping import check_digital, mapped_layers, unmapped_layers
from .slicing import Slicing, input_codes, program_sliced

__all__ = ["InferenceCost", "cost"]

@lru_cache(maxsize=64)
def _adder(width: int, tech_node_m: float) -> float:
    from hwcomponents_library import AladdinAdder

    return AladdinAdder(tech_node=tech_node_m, width=width).add().energy


@lru_cache(maxsize=64)
def _multiplier(width_a: int, width_b: int, tech_node_m: float) -> float:
    from hwcomponents_library import AladdinMultiplier

    return AladdinMultiplier(tech_node=tech_node_m, width_a=width_a, width_b=width_b).multiply().energy


@dataclass(frozen=True)
class InferenceCost:
    """The cost of one inference (the mean over the inputs given), by layer and
    component. ``energy_j`` is the mean over chips; ``chip_energy_j`` each chip's;
    ``rows``: ``{layer, component, count, energy_j}`` with ``count`` the actions per
    inference."""

    preset: str
    t_inference: float
    n_inputs: int
    rows: tuple[dict, ...]
    chip_energy_j: np.ndarray
    latency_s: float
    area_mm2: float
    macs: float
    digital: tuple[str, ...]

    @property
    def energy_j(self) -> float:
        return float(self.chip_energy_j.mean())

    @property
    def ops(self) -> float:
        """Operations per inference, 1 MAC = 2 ops (the mapped layers', analog or placed digital)."""
        return 2.0 * self.macs

    @property
    def tops_per_w(self) -> float:
        return self.ops / self.energy_j / 1e12

    @property
    def tops_per_mm2(self) -> float:
        return self.ops / self.latency_s / self.area_mm2 / 1e12

    def by_component(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for row in self.rows:
            out[row["component"]] = out.get(row["component"], 0.0) + row["energy_j"]
        return out

    def by_layer(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for row in self.rows:
            out[row["layer"]] = out.get(row["layer"], 0.0) + row["energy_j"]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "t_inference": self.t_inference, "n_inputs": self.n_inputs,
                "energy_j": self.energy_j, "chip_energy_j": self.chip_energy_j.tolist(),
                "latency_s": self.latency_s, "area_mm2": self.area_mm2, "macs": self.macs, "ops": self.ops,
                "tops_per_w": self.tops_per_w, "tops_per_mm2": self.tops_per_mm2, "digital": list(self.digital),
                "rows": [dict(r) for r in self.rows]}

    def table(self) -> str:
        total = self.energy_j
        lines = [f"{self.preset} at {self.t_inference:g} s, per inference (mean over {self.n_inputs} inputs and "
                 f"{len(self.chip_energy_j)} chip(s)): {total * 1e9:.4g} nJ, {self.latency_s * 1e6:.4g} us, "
                 f"{self.area_mm2:.4g} mm2; {self.ops:.4g} ops (1 MAC = 2 ops): {self.tops_per_w:.3g} TOPS/W, "
                 f"{self.tops_per_mm2:.3g} TOPS/mm2",
                 f"{'layer':<14} {'component':<16} {'count':>12} {'energy nJ':>11} {'share':>6}"]
        for row in self.rows:
            lines.append(f"{row['layer']:<14} {row['component']:<16} {row['count']:>12.4g} "
                         f"{row['energy_j'] * 1e9:>11.4g} {row['energy_j'] / total:>6.1%}")
        if self.digital:
            lines.append(f"left digital, not priced: {', '.join(self.digital)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _batches(inputs: Any) -> Iterable[Tensor]:
    if isinstance(inputs, Tensor):
        yield inputs
        return
    if isinstance(inputs, (tuple, list)) and len(inputs) == 2 and isinstance(inputs[0], Tensor):
        yield inputs[0]
        return
    if isinstance(inputs, torch.utils.data.DataLoader):
        for batch in inputs:
            yield batch[0] if isinstance(batch, (tuple, list)) else batch
        return
    raise ValueError(f"inputs must be a tensor, an (inputs, labels) pair or a DataLoader, got {type(inputs).__name__}")


class _Rows:
    """Per tile of one layer: the sum over vectors of each row's squared input at the
    DAC's scale, and the vector count."""

    def __init__(self, layer: nn.Module, tiles: list[tuple[int, int, int, int]], slicing: Optional[Slicing]):
        self.layer = layer
        self.slicing = slicing
        self.slices = sorted({(i0, i1) for _, _, i0, i1 in tiles})
        self.u = {s: torch.zeros(s[1] - s[0], dtype=torch.float64) for s in self.slices}
        self.vectors = 0
        self.reads = {s: 0 for s in self.slices}  # read cycles of each input slice: vectors x planes

    def _add_vectors(self, v: Tensor) -> None:
        self.vectors += v.shape[0]
        for i0, i1 in self.slices:
            if self.slicing is None:
                self.u[(i0, i1)] += _scaled_squares(v[:, i0:i1])
                self.reads[(i0, i1)] += v.shape[0]
            else:
                u, reads = _plane_squares(v[:, i0:i1], self.slicing)
                self.u[(i0, i1)] += u
                self.reads[(i0, i1)] += reads

    def add(self, x: Tensor) -> None:
        layer = self.layer
        x = x.detach()
        if not isinstance(layer, nn.Conv2d):
            self._add_vectors(x.reshape(-1, x.shape[-1]).to(torch.float64))
            return
        mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        x = F.pad(x, layer._reversed_padding_repeated_twice, mode=mode)  # as nn.Conv2d pads
        if self.slicing is not None:  # the bits of each vector's codes: its patches
            for chunk in x.split(64):
                v = F.unfold(chunk.to(torch.float64), layer.kernel_size, layer.dilation, 0, layer.stride)
                self._add_vectors(v.transpose(1, 2).reshape(-1, v.shape[1]))
            return
        x = x.float()  # float32 for the heavy passes; the sums are kept in float64
        # Per input slice (a tile's rows), without patches: a patch's largest |value|
        # over the slice's rows is a running maximum of strided views of the channels'
        # largest (separable over the kernel's height and width for the channels the
        # slice holds whole), and the sum over patches of each row's x^2 / max^2 a
        # convolution of x^2 with the patches' 1 / max^2 (the weight gradient).
        kh, kw = layer.kernel_size
        ax = x.abs()
        sq = x * x
        (sh, sw), (dh, dw) = layer.stride, layer.dilation
        oh = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
        ow = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1

        def view(t: Tensor, ki: int, kj: int) -> Tensor:
            return t[:, :, ki * dh: ki * dh + sh * (oh - 1) + 1: sh, kj * dw: kj * dw + sw * (ow - 1) + 1: sw]

        k = kh * kw
        for i0, i1 in self.slices:
            c0, c1 = i0 // k, (i1 - 1) // k + 1  # the channels the slice's rows read
            whole0, whole1 = -(-i0 // k), i1 // k  # those it reads at every kernel position
            top: Optional[Tensor] = None
            if whole1 > whole0:
                m = ax[:, whole0:whole1].amax(1, keepdim=True)
                rows = m[:, :, 0: sh * (oh - 1) + 1: sh].clone()  # over the kernel's height, then its width
                for ki in range(1, kh):
                    torch.maximum(rows, m[:, :, ki * dh: ki * dh + sh * (oh - 1) + 1: sh], out=rows)
                top = rows[:, :, :, 0: sw * (ow - 1) + 1: sw].clone()
                for kj in range(1, kw):
                    torch.maximum(top, rows[:, :, :, kj * dw: kj * dw + sw * (ow - 1) + 1: sw], out=top)
            for c in sorted({c0, c1 - 1} - set(range(whole0, whole1))):  # a channel split between slices
                for p in range(max(i0 - c * k, 0), min(i1 - c * k, k)):
                    part = view(ax[:, c:c + 1], p // kw, p % kw)
                    top = part.clone() if top is None else torch.maximum(top, part, out=top)
            assert top is not None
            w = top.pow(-2).masked_fill_(top == 0, 0.0)  # a patch of zeros costs nothing (no 0 x inf)
            u = _patch_sums(sq[:, c0:c1], w[:, 0], (kh, kw), (sh, sw), (dh, dw)).reshape(-1)
            first = c0 * k
            self.u[(i0, i1)] += u[i0 - first:i1 - first].double()
            self.reads[(i0, i1)] += x.shape[0] * oh * ow
        self.vectors += x.shape[0] * oh * ow


def _patch_sums(sq: Tensor, w: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                dilation: tuple[int, int]) -> Tensor:
    """``u[c, ki, kj]``: the sum over images and patches of ``sq`` at the kernel's position
    (ki, kj) of each patch, weighted by the patch's ``w`` (B, oh, ow): a convolution's
    weight gradient, as one matrix product per kernel row (torch's own is several times
    slower for so many images and so few weights)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    batch, channels, _, width = sq.shape
    oh, ow = w.shape[1:]
    weights = w.reshape(batch * oh, ow)
    cols = torch.arange(ow)
    u = sq.new_empty((channels, kh, kw))
    for ki in range(kh):
        rows = sq[:, :, ki * dh: ki * dh + sh * (oh - 1) + 1: sh]  # (B, C, oh, W)
        g = (rows.permute(0, 2, 1, 3).reshape(batch * oh, channels * width).T @ weights).view(channels, width, ow)
        for kj in range(kw):
            u[:, ki, kj] = g[:, cols * sw + kj * dw, cols].sum(1)
    return u


def _plane_squares(part: Tensor, s: Slicing) -> tuple[Tensor, int]:
    """Sliced inputs: the sum over vectors and read cycles of each row's (DAC level /
    its largest)^2, and the number of read cycles (each sign present takes its own)."""
    codes, _ = input_codes(part, s)
    mag = codes.abs().to(torch.int64)
    u = torch.zeros(part.shape[1], dtype=torch.float64)
    for c in range(s.cycles):
        plane = ((mag >> (c * s.bits_per_input_cycle)) & s.plane_max).to(torch.float64) / s.plane_max
        u += (plane * plane).sum(0)
    signs = (codes > 0).any(1).sum() + (codes < 0).any(1).sum()
    return u, int(signs) * s.cycles


def _scaled_squares(part: Tensor) -> Tensor:
    """Sum over vectors of each element's (x / max|x| of its vector)^2."""
    top = part.abs().amax(dim=1, keepdim=True)
    scaled = part / top.clamp_min(torch.finfo(torch.float64).tiny)  # an all-zero vector stays 0
    return (scaled * scaled).sum(0)


def _calibration_rows(preset: Any, name: str, vectors: float, out_size: int, grid: list, layer_energy: float,
                      add: float, multiply: Callable[[], float]) -> list[dict]:
    """What a layer's calibrations add per inference. The scales (drift compensation's,
    a column's calibrated gain) fold into the digital scale each tile's outputs already
    get (its largest weight), so they add no operation; a column's offset adds one add an
    output; the input-sum term one add an input (each input split's sum, shared by its
    columns) and a multiply and an add per output and split. Each calibration reads
    reference vectors (drift compensation: one one-hot vector a tile row; column
    calibration: the calibration inputs' vectors), each priced as the layer's mean
    vector and shared by the ``calibration_period`` inferences between two calibrations."""
    rows = []
    per_vector, period = layer_energy / vectors, preset.calibration_period
    splits = {(i0, i1) for _, _, i0, i1 in grid}
    if preset.drift_compensation_model is not None:
        reads = sum(i1 - i0 for i0, i1 in splits) / period
        rows.append({"layer": name, "component": "reference reads", "count": reads, "energy_j": reads * per_vector})
    if preset.calibration != "none":
        outputs, reads = vectors * out_size, preset.calibration_samples * vectors / period
        rows.append({"layer": name, "component": "column offsets", "count": outputs, "energy_j": outputs * add})
        if preset.calibration_input_sum:
            sums, terms = vectors * sum(i1 - i0 for i0, i1 in splits), outputs * len(splits)
            rows += [{"layer": name, "component": "input sums", "count": sums, "energy_j": sums * add},
                     {"layer": name, "component": "input-sum terms", "count": terms,
                      "energy_j": terms * (multiply() + add)}]
        rows.append({"layer": name, "component": "calibration reads", "count": reads, "energy_j": reads * per_vector})
    return rows


def unpriced_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of what :func:`cost` does not price unless it is placed digital:
    the attention blocks (their projections are crossbars), then grouped convolutions."""
    grouped = [(name, m) for name, m in mapped_layers(model) if isinstance(m, nn.Conv2d) and m.groups != 1]
    return mapped_attention(model) + grouped


def cost(
    model: nn.Module,
    preset: Any,
    inputs: Any,
    t_inference: Any = "1s",
    n_chips: int = 1,
    seed: int = 0,
    digital: Sequence[str] = (),
) -> InferenceCost:
    """Energy, latency and area of one inference of ``model`` on the chip ``preset``
    describes, by layer and component (:class:`InferenceCost`; ``print`` it).

    Args:
        model: the digital network (as for :func:`crossbar.evaluate`).
        preset: a name, mapping or :class:`crossbar.Preset` whose architecture gives the
            read time, read voltage, node and converters (:func:`crossbar.macro_cost`).
        inputs: a tensor of inputs, an ``(inputs, labels)`` pair or a DataLoader: the
            cost is the mean over them.
        t_inference: the time since programming whose conductances are read.
        n_chips, seed: the simulated chips, the same as :func:`crossbar.evaluate`'s
            for the same seed.
        digital: layers placed digital (:func:`crossbar.convert`): each MAC priced as
            a digital multiply and add (Aladdin's, at the preset's node, the weight and
            input bits wide, 8 where the architecture does not say); their area and
            time are not counted. An ``nn.MultiheadAttention`` (on the chips, its
            projections are crossbars) is not priced: it must be placed digital here,
            and is then left out and named in ``digital``.

    The chip has one array per tile, all of a layer's tiles read in parallel, vectors
    one after another, layers one after another: latency is the sum over layers of
    vectors x input cycles x the macro's cycle, and area the macro of all the tiles.
    """
    preset = resolve_preset(preset)
    t = preset.check_time(t_inference)
    n_chips = check_n_chips(n_chips)
    seed = check_seed(seed)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    one = macro_cost(preset, 1)  # checks the architecture's fields before any work
    layers: dict[int, tuple[str, nn.Module]] = {}
    for name, layer in mapped_layers(model):
        layers.setdefault(id(layer), (name or type(model).__name__, layer))
    blocks = mapped_attention(model)
    placed = check_digital(digital, mapped_layers(model) + blocks, model)
    for name, layer in unpriced_layers(model):
        if id(layer) in placed:
            continue
        if isinstance(layer, nn.MultiheadAttention):  # on the chips (crossbar.convert maps them), not priced here
            raise ValueError(f"layer {name or type(model).__name__!r} (MultiheadAttention): attention's projections "
                             f"on crossbars are not priced; place it digital (digital=[{name!r}]) to price the "
                             "other layers without it")
        raise ValueError(f"layer {layers[id(layer)][0]!r}: a grouped convolution (groups={layer.groups}) is not "
                         f"priced; allowed: groups=1")
    if not layers:
        raise ValueError(f"model ({type(model).__name__}) has no nn.Linear or nn.Conv2d layer to price")
    tiles = {key: tile_grid(layer.weight.shape[0], layer.weight[0].numel(), preset.max_out, preset.max_in)
             for key, (_, layer) in layers.items()}
    slicing = Slicing.of(preset) if preset.architecture.sliced else None
    # a layer placed digital needs only its vector count: no tiles, no input statistics
    rows = {key: _Rows(layer, [] if key in placed else tiles[key], slicing) for key, (_, layer) in layers.items()}
    hooks = [layer.register_forward_pre_hook(lambda m, args, key=key: rows[key].add(args[0]))
             for key, (_, layer) in layers.items()]
    n_inputs = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in _batches(inputs):
                if not isinstance(batch, Tensor) or not batch.is_floating_point() or batch.shape[0] == 0:
                    raise ValueError("inputs must hold a floating-point tensor with at least one input")
                n_inputs += batch.shape[0]
                model(batch)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)

    arch, layout = preset.architecture, one.layout
    per_action = {p.component: p.energy_per_action_j for p in one.parts}
    node = layout["tech_node_nm"] * 1e-9
    add_energy = _adder(layout["output_bits"], node)
    g_scale = arch.read_voltage**2 * arch.read_time * 1e-6  # uS -> S
    out_rows: list[dict] = []
    chip_energy = np.zeros(n_chips)
    latency, n_tiles, macs = 0.0, 0, 0.0
    for index, (key, (name, layer)) in enumerate(layers.items()):
        r = rows[key]
        if r.vectors == 0:
            raise ValueError(f"layer {name!r} never ran on these inputs; cost prices the layers a forward pass uses")
        vectors = r.vectors / n_inputs  # per inference
        out_size, in_size = layer.weight.shape[0], layer.weight[0].numel()
        if key in placed:  # exact digital multiply-adds
            count = vectors * out_size * in_size
            each = _multiplier(arch.weight_bits or 8, arch.input_bits or 8, node) + add_energy
            out_rows.append({"layer": name, "component": "digital MAC", "count": count, "energy_j": count * each})
            chip_energy += count * each
            macs += count
            continue
        grid = tiles[key]
        n_tiles += len(grid)
        macs += vectors * out_size * in_size
        reads = {k: v / n_inputs for k, v in r.reads.items()}  # read cycles per inference, per input slice
        latency += max(reads.values()) * one.cycle_s  # a layer's tiles in parallel
        if slicing is None:
            array = ProgrammedArray(layer.weight.detach(), preset, n_chips, seed, 0, index)
        else:
            array = program_sliced(layer.weight.detach(), preset, n_chips, seed, 0, index)[0]
        g = array.conductances(t).sum(1)  # (C, out x slices, in): the devices of a weight (slice) summed
        energy = np.zeros(n_chips)
        for o0, o1, i0, i1 in grid:
            per_row = g[:, o0 * arch.slices:o1 * arch.slices, i0:i1].sum(1).to(torch.float64)  # (C, rows)
            energy += (per_row @ r.u[(i0, i1)]).cpu().numpy()
        energy *= g_scale / n_inputs
        chip_energy += energy
        dac = sum(reads[(i0, i1)] * (i1 - i0) for _, _, i0, i1 in grid)
        adc = sum(reads[(i0, i1)] * (o1 - o0) for o0, o1, i0, i1 in grid) * arch.slices
        rows_used = sum(i1 - i0 for _, _, i0, i1 in grid)
        splits = len({(i0, i1) for _, _, i0, i1 in grid})
        counts = {
            "DAC": dac,
            "ADC": adc,
            "sample-and-hold": adc,
            "shift-add": adc if "shift-add" in per_action else 0.0,
            "accumulation": vectors * out_size * (splits - 1),
            "input register": 2 * vectors * rows_used,
            "output register": 2 * vectors * sum(o1 - o0 for o0, o1, _, _ in grid),
        }
        out_rows.append({"layer": name, "component": "crossbar", "count": dac,
                         "energy_j": float(energy.mean())})
        layer_energy = float(energy.mean())
        for component, count in counts.items():
            if count == 0:
                continue
            # registers: per_action is a read and a write averaged, counted twice per word
            each = add_energy if component == "accumulation" else per_action[component]
            out_rows.append({"layer": name, "component": component, "count": count, "energy_j": count * each})
            chip_energy += count * each
            layer_energy += count * each
        for row in _calibration_rows(preset, name, vectors, out_size, grid, layer_energy, add_energy,
                                     lambda: _multiplier(layout["output_bits"], layout["output_bits"], node)):
            out_rows.append(row)
            chip_energy += row["energy_j"]
    area = macro_cost(preset, n_tiles).area_mm2
    attention: dict[int, str] = {}  # the blocks placed digital, each once
    for n, block in blocks:
        attention.setdefault(id(block), f"{n or type(model).__name__} (MultiheadAttention)")
    digital = tuple(f"{n or type(model).__name__} ({type(m).__name__})" for n, m in unmapped_layers(model)) \
        + tuple(attention.values())
    return InferenceCost(preset.name, t, n_inputs, tuple(out_rows), chip_energy, latency, area, macs, digital)

