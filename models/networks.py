"""Networks with named dropout slots, for the BayesFT search and the component study.

Every network takes the dataset's input shape ``(channels, height, width)`` and class
count, and places one dropout *slot* after each hidden layer or block, where the
BayesFT paper puts them. The slot names (``net.dropout_slots``) define the search
space; ``net.set_dropout(rates)`` sets one rate per slot (0 allowed). Normalisation,
activation and depth are options, for the paper's study of which components make a
network tolerant to weight drift.

    net = models.build("lenet5", (1, 28, 28), 10, dropout=[0.1, 0.2, 0.3, 0.0])
    net.dropout_slots   # ['conv1', 'conv2', 'fc1', 'fc2']
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from crossbar.common import check_seed

from .ecoc import EcocHead, code_book
from .imports import build_user, imported_task, is_import

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}
NORMS = ("none", "batch", "layer", "group")

Rates = Union[None, float, Sequence[float], Mapping[str, float]]


def activation_layer(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: unknown {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def norm_groups(channels: int) -> int:
    """The largest of 8, 4, 2, 1 that divides ``channels``."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


def norm_layer(kind: str, channels: int, spatial: bool) -> nn.Module:
    if kind not in NORMS:
        raise ValueError(f"norm: unknown {kind!r}; valid: {', '.join(NORMS)}")
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels) if spatial else nn.BatchNorm1d(channels)
    if kind == "layer":  # over all features of a sample (channels x space for images)
        return nn.GroupNorm(1, channels) if spatial else nn.LayerNorm(channels)
    return nn.GroupNorm(norm_groups(channels), channels)


class DropoutNet(nn.Module):
    """Base of the networks: the named dropout slots and their rates. ``task``:
    ``"classification"`` (one score per class) or ``"detection"`` (:mod:`models.fcos`)."""

    task = "classification"

    def __init__(self) -> None:
        super().__init__()
        self._slots = nn.ModuleDict()

    def slot(self, name: str) -> nn.Dropout:
        """A new dropout slot called ``name``, to place in the network where a dropout
        layer goes: the search tunes its rate (0 until set). Slots are in the order made."""
        if name in self._slots:
            raise ValueError(f"dropout slot {name!r} made twice; each slot needs its own name")
        self._slots[name] = nn.Dropout(0.0)
        return self._slots[name]

    _slot = slot  # its old name

    @property
    def dropout_slots(self) -> list[str]:
        """Names of the dropout slots, in network order (the search space's dimensions)."""
        return list(self._slots.keys())

    @property
    def dropout_rates(self) -> list[float]:
        return [slot.p for slot in self._slots.values()]

    def set_dropout(self, rates: Rates) -> "DropoutNet":
        """Set the rate of every slot: one number for all, a list (one per slot, in
        order) or a mapping from slot name to rate (others unchanged)."""
        for name, rate in resolve_rates(rates, self.dropout_slots).items():
            self._slots[name].p = rate
        return self

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """The training loss of the network's output: cross-entropy over the classes."""
        return nn.functional.cross_entropy(out, y)


class EcocNet(DropoutNet):
    """A network whose last layer outputs code bits, and the digital decoder after it
    (``head: ecoc``, see :mod:`models.ecoc`): its output is one score per class, its
    dropout slots are the network's."""

    def __init__(self, body: DropoutNet, book: Tensor) -> None:
        super().__init__()
        self.body = body
        self._slots = body._slots
        self.head = EcocHead(book)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        return self.head.loss(out, y)


def resolve_rates(rates: Rates, slots: Sequence[str]) -> dict[str, float]:
    """Validate dropout rates against slot names; every rate must lie in [0, 1)."""
    if rates is None:
        resolved = {s: 0.0 for s in slots}
    elif isinstance(rates, Mapping):
        unknown = [k for k in rates if k not in slots]
        if unknown:
            raise ValueError(f"dropout: unknown slot(s) {', '.join(map(repr, unknown))}; slots: {', '.join(slots)}")
        resolved = dict(rates)
    elif isinstance(rates, (int, float)) and not isinstance(rates, bool):
        resolved = {s: float(rates) for s in slots}
    else:
        values = list(rates)
        if len(values) != len(slots):
            raise ValueError(
                f"dropout: {len(values)} rate(s) given for {len(slots)} slot(s) ({', '.join(slots)})"
            )
        resolved = dict(zip(slots, values))
    for name, rate in resolved.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (0.0 <= rate < 1.0) or math.isnan(rate):
            raise ValueError(f"dropout: rate of slot {name!r} must lie in [0, 1), got {rate!r}")
    return {k: float(v) for k, v in resolved.items()}


@dataclass(frozen=True)
class Network:
    """A network :func:`build` makes by name: its class, the options fixed for this
    name (``vgg11`` is ``VGG`` with ``depth=11``) and the options a user may set, read
    from the constructor's signature."""

    cls: type
    fixed: dict[str, Any]
    options: tuple[str, ...]

    def make(self, in_shape, n_classes, **options) -> "DropoutNet":
        return self.cls(in_shape, n_classes, **self.fixed, **options)


_NETWORKS: dict[str, Network] = {}


def register(name: str, **fixed: Any) -> Callable[[type], type]:
    """Class decorator: make a :class:`DropoutNet` buildable as ``build(name, in_shape,
    n_classes, **options)``. The constructor takes ``(in_shape, n_classes, ...)``; its
    other keyword parameters, less ``fixed``, are the options."""

    def add(cls: type) -> type:
        params = list(inspect.signature(cls.__init__).parameters.values())[3:]  # self, in_shape, n_classes
        options = tuple(p.name for p in params if p.name not in fixed)
        _NETWORKS[name] = Network(cls, dict(fixed), options)
        return cls

    return add


def _flat_size(module: nn.Module, in_shape: Sequence[int]) -> tuple[int, ...]:
    with torch.no_grad():
        was = module.training
        module.eval()
        out = module(torch.zeros(1, *in_shape))
        module.train(was)
    return tuple(out.shape[1:])


@register("mlp")
class MLP(DropoutNet):
    """Fully connected: ``depth`` hidden layers of ``width`` units, a slot after each."""

    def __init__(
        self, in_shape, n_classes, depth: int = 2, width: int = 256, activation: str = "relu", norm: str = "none"
    ):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"mlp: depth and width must be >= 1, got depth={depth}, width={width}")
        layers: list[nn.Module] = [nn.Flatten()]
        n_in = math.prod(in_shape)
        for i in range(depth):
            layers += [
                nn.Linear(n_in, width), norm_layer(norm, width, False), activation_layer(activation),
                self.slot(f"fc{i + 1}"),
            ]
            n_in = width
        layers.append(nn.Linear(n_in, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@register("lenet5")
class LeNet5(DropoutNet):
    """LeNet-5 (LeCun et al. 1998): two 5x5 convolutions and three fully connected layers.

    The first convolution pads to keep the image size (28x28 -> the classic 400-feature
    layout); the second pads too when the image is too small for it (e.g. 8x8 digits).
    """

    def __init__(self, in_shape, n_classes, activation: str = "relu", norm: str = "none"):
        super().__init__()
        channels, height, width = in_shape
        if min(height, width) < 4:  # two 2x2 poolings must leave at least one pixel
            raise ValueError(f"lenet5: images must be at least 4x4, got {height}x{width}")
        pad2 = 0 if min(height, width) // 2 >= 10 else 2
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2), norm_layer(norm, 6, True), activation_layer(activation),
            nn.MaxPool2d(2), self.slot("conv1"),
            nn.Conv2d(6, 16, 5, padding=pad2), norm_layer(norm, 16, True), activation_layer(activation),
            nn.MaxPool2d(2), self.slot("conv2"),
            nn.Flatten(),
        )
        n_flat = _flat_size(self.features, in_shape)[0]
        self.classifier = nn.Sequential(
            nn.Linear(n_flat, 120), norm_layer(norm, 120, False), activation_layer(activation), self.slot("fc1"),
            nn.Linear(120, 84), norm_layer(norm, 84, False), activation_layer(activation), self.slot("fc2"),
            nn.Linear(84, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


_VGG_CONFIGS = {
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
}


@register("vgg")
@register("vgg11", depth=11)
class VGG(DropoutNet):
    """VGG for small images (Simonyan & Zisserman 2015, CIFAR variant): five stages of 3x3
    convolutions, each followed by 2x2 max-pooling while the image is large enough, a
    global average pool, and a 512-unit hidden layer. A slot after each stage and after
    the hidden layer. ``norm="batch"`` gives VGG-BN; ``width`` scales the channels."""

    def __init__(
        self, in_shape, n_classes, depth: int = 11, activation: str = "relu", norm: str = "batch", width: float = 1.0
    ):
        super().__init__()
        if depth not in _VGG_CONFIGS:
            raise ValueError(f"vgg: depth must be one of {', '.join(map(str, _VGG_CONFIGS))}, got {depth}")
        if width <= 0:
            raise ValueError(f"vgg: width must be > 0, got {width}")
        channels, size = in_shape[0], min(in_shape[1:])
        layers: list[nn.Module] = []
        for stage, widths in enumerate(_VGG_CONFIGS[depth], start=1):
            for w in widths:
                w = max(1, round(w * width))
                layers += [nn.Conv2d(channels, w, 3, padding=1), norm_layer(norm, w, True),
                           activation_layer(activation)]
                channels = w
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            layers.append(self.slot(f"stage{stage}"))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        hidden = max(1, round(512 * width))
        self.classifier = nn.Sequential(
            nn.Linear(channels, hidden), norm_layer(norm, hidden, False), activation_layer(activation),
            self.slot("fc1"),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, activation: str, slot: nn.Dropout):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm == "none")
        self.norm1 = norm_layer(norm, c_out, True)
        self.act1 = activation_layer(activation)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=norm == "none")
        self.norm2 = norm_layer(norm, c_out, True)
        self.act2 = activation_layer(activation)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:  # projection shortcut (option B of He et al.)
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm_layer(norm, c_out, True))
        self.dropout = slot

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.dropout(self.act2(out + self.shortcut(x)))


@register("resnet")
@register("resnet20", depth=20)
class ResNet(DropoutNet):
    """ResNet for small images (He et al. 2016, CIFAR variant): ``depth = 6n + 2`` (20, 32,
    44, 56) with three stages of ``n`` basic blocks (16, 32, 64 channels, scaled by
    ``width``); a slot after each block."""

    def __init__(
        self, in_shape, n_classes, depth: int = 20, activation: str = "relu", norm: str = "batch", width: float = 1.0
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"resnet: depth must be 6n + 2 (20, 32, 44, 56, ...), got {depth}")
        if width <= 0:
            raise ValueError(f"resnet: width must be > 0, got {width}")
        n = (depth - 2) // 6
        widths = [max(1, round(c * width)) for c in (16, 32, 64)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_shape[0], widths[0], 3, 1, 1, bias=norm == "none"),
            norm_layer(norm, widths[0], True),
            activation_layer(activation),
        )
        blocks: list[nn.Module] = []
        c_in = widths[0]
        for stage, c_out in enumerate(widths, start=1):
            for b in range(n):
                stride = 2 if stage > 1 and b == 0 else 1
                blocks.append(
                    _BasicBlock(c_in, c_out, stride, norm, activation, self.slot(f"stage{stage}_block{b + 1}"))
                )
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


#: The output heads every network takes (``head`` option): one score per class, or
#: error-correcting output codes (FTNA) with ``code_bits`` bits (:mod:`models.ecoc`).
HEADS = ("softmax", "ecoc")
HEAD_OPTIONS = ("head", "code_bits")


def model_task(name: str) -> str:
    """What the network ``name`` does: ``"classification"`` or ``"detection"`` (a user's
    ``module:callable``: its ``task`` attribute, default classification)."""
    if is_import(name):
        return imported_task(name)
    if name not in _NETWORKS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return getattr(_NETWORKS[name].cls, "task", "classification")


def list_models() -> list[str]:
    """Names accepted by :func:`build`."""
    return sorted(_NETWORKS)


def build(
    name: str, in_shape: Sequence[int], n_classes: int, dropout: Rates = None, *, seed: int | None = None, **options
) -> DropoutNet:
    """A network by name, adapted to ``in_shape`` (channels, height, width) and ``n_classes``.

    ``dropout``: one rate for every slot, a list (one per slot) or a mapping slot -> rate.
    ``seed``: the initial weights come from this seed (the global RNG is left as it was);
    ``None`` draws them from the global RNG, as torch does.
    ``options``: see each network (activation, norm, depth, width); every network also
    takes ``head`` ("softmax", or "ecoc": error-correcting output codes, FTNA) and, with
    ``head="ecoc"``, ``code_bits`` (default :func:`models.ecoc.default_bits`).

    The result's ``spec`` (plain data) rebuilds the same architecture:
    ``build(**net.spec)``; checkpoints store it.

    ``name`` may be a user's network, ``module:callable`` (:mod:`models.imports`): it is
    called with ``options``; ``head`` is not available there.
    """
    if is_import(name):
        return build_user(name, in_shape, n_classes, dropout, seed, options)
    if name not in _NETWORKS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    network = _NETWORKS[name]
    valid = (*network.options, *HEAD_OPTIONS)
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    head, bits = options.pop("head", "softmax"), options.pop("code_bits", None)
    if head not in HEADS:
        raise ValueError(f"{name}: head: unknown {head!r}; valid: {', '.join(HEADS)}")
    if bits is not None and head != "ecoc":
        raise ValueError(f"{name}: code_bits is an option of head: ecoc")
    if head != "softmax" and model_task(name) != "classification":
        raise ValueError(f"{name}: head: {head} is for classifiers; {name} is a {model_task(name)} network")
    in_shape = tuple(int(d) for d in in_shape)
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ValueError(f"in_shape must be (channels, height, width) with positive sizes, got {in_shape}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    book = code_book(n_classes, bits) if head == "ecoc" else None

    def make() -> DropoutNet:
        if book is None:
            return network.make(in_shape, n_classes, **options)
        return EcocNet(network.make(in_shape, book.shape[1], **options), book)

    if seed is None:
        net = make()
    else:
        check_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = make()
    net.set_dropout(dropout)
    net.spec = {"name": name, "in_shape": list(in_shape), "n_classes": n_classes, **options}
    if book is not None:
        net.spec.update(head="ecoc", code_bits=book.shape[1])
    return net

