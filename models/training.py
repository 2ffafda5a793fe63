"""Training: plain and hardware-aware, deterministic from a seed, with early stopping.

    config = models.TrainConfig(epochs=30, schedule="cosine", patience=5)
    result = models.train(net, splits, config, seed=0)
    result.ok, result.val_score, result.model

Hardware-aware training (``config.hardware_aware``) injects the crossbar's weight noise
into every training step, in the style of aihwkit's hardware-aware training: each
``Linear``/``Conv2d`` weight is replaced in the forward pass by the weight one simulated
chip of the chosen preset holds at ``t_inference`` (programming noise, drift, read noise
and stuck-at faults, drawn afresh every step from :func:`crossbar.sample_weights`), and
the gradient passes straight through to the clean weight. It combines with dropout.

A run whose loss stops being finite ends at once with ``ok=False`` and the reason; it
does not raise. Checkpoints are in :mod:`models.checkpoints`.

Threads: a training step of little work (under :data:`SMALL_STEP` multiply-adds: a batch
of 64 through LeNet-5 on 8x8 digits is 4 M) runs on one CPU thread by default: torch's
threads gain nothing there, and on a busy machine they fight over the cores. Larger
steps keep torch's count. docs/models.md has the figures, ``bench/train_speed.py``
measures them.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Iterator, Literal, Optional, Sequence, Union

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from torch import Tensor, nn
from torch.func import functional_call
from tqdm.auto import tqdm

import crossbar
from crossbar.common import Stream, check_int, check_seed, derive_seed, resolve_device
from crossbar.durations import parse_duration

from .datasets import Splits
from .tasks import TASKS, clean_score, metric_of, task_of

#: Hardware-aware training's default schedule (see HardwareAware): the share of the
#: epochs trained plainly first, and the share over which the noise then rises.
WARMUP, RAMP = 0.5, 0.0

#: Multiply-adds of a training step's forward pass below which training takes one
#: thread (see :func:`train`'s ``threads``).
SMALL_STEP = 10_000_000



class HardwareAware(BaseModel):
    """Weight noise of a crossbar preset injected during training.

    Each step, each crossbar weight ``w`` is replaced in the forward pass by
    ``w + strength * (chip - w)``, ``chip`` being the weight a freshly drawn chip holds
    at ``t_inference``; the gradient passes straight through to ``w``. The strength is
    0 for the first ``warmup`` of the epochs (plain training: a network that already
    classifies), then rises linearly to ``scale`` over the next ``ramp`` of them, and
    stays there; the last epoch is always at full strength. The best epoch is chosen
    among those at full strength.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    preset: Union[str, dict[str, Any]] = Field(
        "lognormal", description="a preset name or a mapping (base: NAME plus overrides, or noise: PHYSICS ...)"
    )
    t_inference: Annotated[float, BeforeValidator(parse_duration)] = Field(
        86400.0, ge=0.0, description="time since programming whose weights are injected: seconds or a duration ('1d')"
    )
    scale: float = Field(1.0, ge=0.0, le=10.0, description="the injected deviation times this: 0 plain, 1 the device's")
    warmup: float = Field(WARMUP, ge=0.0, lt=1.0, description="share of the epochs trained plainly first")
    ramp: float = Field(RAMP, ge=0.0, lt=1.0, description="share of the epochs over which the strength rises to scale")

    @model_validator(mode="after")
    def _check(self) -> "HardwareAware":
        self.resolved().check_time(self.t_inference)
        if self.warmup + self.ramp >= 1.0:
            raise ValueError(f"warmup + ramp ({self.warmup:g} + {self.ramp:g}) must leave epochs at full strength "
                             "(below 1)")
        return self

    def resolved(self) -> crossbar.Preset:
        return crossbar.preset(self.preset)

    def strength(self, epoch: int, epochs: int) -> float:
        """The noise strength of ``epoch`` (from 1) of ``epochs``."""
        done = (epoch - 1) / epochs
        if epoch >= epochs:  # the last epoch is at full strength, however few there are
            return self.scale
        if done < self.warmup:
            return 0.0
        if self.ramp > 0 and done < self.warmup + self.ramp:
            return self.scale * (done - self.warmup + 1 / epochs) / self.ramp
        return self.scale


class TrainConfig(BaseModel):
    """How to train. Every field has a default that trains the small networks on
    ``digits`` well in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(30, ge=1, le=10_000, description="maximum number of passes over the training split")
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(3e-3, gt=0.0, description="learning rate (peak rate of the one-cycle schedule)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0.0)
    schedule: Literal["constant", "cosine", "onecycle"] = "cosine"
    patience: Optional[int] = Field(
        None, ge=1, description="stop after this many epochs without a better validation score (None: never)"
    )
    hardware_aware: Optional[HardwareAware] = None


@dataclass
class TrainResult:
    """What :func:`train` returns. ``model`` holds the weights of the best validation
    epoch (the last epoch without validation data), in eval mode. ``val_score`` (and
    each epoch's in ``history``) is the network's score on validation by its task's
    metric (:func:`models.clean_score`): its accuracy, or a detector's mAP@0.5."""

    model: nn.Module
    ok: bool
    reason: Optional[str]
    epochs_run: int
    best_epoch: int
    val_score: Optional[float]
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def val_accuracy(self) -> Optional[float]:
        """The old name of :attr:`val_score` (it holds a detector's mAP too)."""
        return self.val_score

    def summary(self) -> dict[str, Any]:
        """Plain data for a report (everything but the model)."""
        data = asdict(self)
        data.pop("model")
        return data


def _optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(1, total_steps))
    return None


def _crossbar_weights(model: nn.Module) -> list[tuple[str, Tensor, int]]:
    """The parameters a crossbar would hold, ``(name, weight, parts)``: the weights of the
    layers ``crossbar.convert`` maps, then each attention block's projections (a packed
    ``in_proj_weight`` is 3 parts, q, k and v, each its own crossbar)."""
    first: dict[int, tuple[str, nn.Module]] = {}
    for name, module in crossbar.mapped_layers(model):
        first.setdefault(id(module), (name, module))  # a layer reached under two names: noise once
    found = [(f"{name}.weight" if name else "weight", module.weight, 1) for name, module in first.values()]
    blocks: dict[int, tuple[str, nn.Module]] = {}
    for name, block in crossbar.mapped_attention(model):
        blocks.setdefault(id(block), (name, block))
    for name, block in blocks.values():
        prefix = f"{name}." if name else ""
        if block._qkv_same_embed_dim:
            found.append((f"{prefix}in_proj_weight", block.in_proj_weight, 3))
        else:
            found += [(f"{prefix}{p}_proj_weight", getattr(block, f"{p}_proj_weight"), 1) for p in "qkv"]
        found.append((f"{prefix}out_proj.weight", block.out_proj.weight, 1))
    return found


def _split_data(data: Union[Splits, Sequence]) -> tuple[tuple[Tensor, Tensor], Optional[tuple[Tensor, Tensor]]]:
    if isinstance(data, Splits):
        return data.train, data.val
    if isinstance(data, (tuple, list)) and len(data) == 2:
        train, val = data
        if isinstance(train, Tensor):  # a bare (inputs, labels) pair: no validation
            return (data[0], data[1]), None
        return tuple(train), (tuple(val) if val is not None else None)  # type: ignore[return-value]
    raise ValueError("data must be a Splits, a (train, val) pair of (inputs, labels), or one (inputs, labels) pair")


def _check_fits(model: nn.Module, x: Tensor, y: Tensor) -> None:
    """A network from :func:`build` names the inputs and classes it was built for;
    data of another shape would fail deep in torch ("mat1 and mat2 shapes cannot be
    multiplied", "Target 9 is out of bounds")."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, dict) or "in_shape" not in spec or "n_classes" not in spec:
        return
    if tuple(spec["in_shape"]) != tuple(x.shape[1:]):
        raise ValueError(
            f"the model was built for inputs of shape {tuple(spec['in_shape'])} but the training inputs are "
            f"{tuple(x.shape[1:])}; build it with the data's shape (splits.in_shape)"
        )
    labels = TASKS[task_of(model)].labels(y) if task_of(model) in TASKS else y
    if len(labels) and int(labels.max()) >= spec["n_classes"]:
        raise ValueError(
            f"the model was built for {spec['n_classes']} classes but the training labels go up to "
            f"{int(labels.max())}; build it with the data's class count (splits.n_classes)"
        )


def train(
    model: nn.Module,
    data: Union[Splits, Sequence],
    config: Optional[TrainConfig] = None,
    *,
    seed: int = 0,
    device: "str | torch.device | None" = None,
    progress: bool = False,
    desc: str = "train",
    threads: Optional[int] = None,
    metric: "str | crossbar.Metric | None" = None,
) -> TrainResult:
    """Train ``model`` in place on ``data`` (a :class:`Splits`, or ``(train, val)``).

    Deterministic from ``seed`` on one machine and thread count: the batch order,
    dropout masks and hardware-aware noise all come from it, and the global RNG is
    left as it was. Build the model with ``models.build(..., seed=...)`` for
    deterministic initial weights. ``threads``: torch's CPU threads while training
    (the caller's count is put back); default one for steps under :data:`SMALL_STEP`
    multiply-adds, else torch's own. ``metric``: what each epoch is validated by (the
    best epoch is kept), by default the network's task's (:func:`models.metric_of`).
    """
    config = config or TrainConfig()
    check_seed(seed)
    if threads is not None:
        check_int(threads, "threads", 1, " or None (one for small steps, else torch's)")
    dev = resolve_device(device)
    (x_train, y_train), val = _split_data(data)
    if len(y_train) == 0:
        raise ValueError("the training split is empty")
    _check_fits(model, x_train, y_train)
    model.to(dev)
    hwa = config.hardware_aware
    preset = hwa.resolved() if hwa is not None else None

    steps_per_epoch = math.ceil(len(y_train) / config.batch_size)
    optimizer = _optimizer(model.parameters(), config)
    scheduler = _scheduler(optimizer, config, config.epochs * steps_per_epoch)
    order = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    history: list[dict[str, float]] = []
    metric = crossbar.get_metric(metric if metric is not None else metric_of(model))
    sign = 1.0 if metric.higher_is_better else -1.0  # what a better epoch is
    best_score, best_epoch, best_state = -sign * math.inf, 0, None
    ok, reason, epoch = True, None, 0
    step = 0

    if threads is None and dev.type == "cpu":
        threads = 1 if config.batch_size * multiply_adds(model, x_train[:1].to(dev)) < SMALL_STEP else None
    forked = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=forked), _torch_threads(threads):
        torch.manual_seed(seed)  # dropout masks
        bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", disable=not progress, leave=False)
        for epoch in bar:
            model.train()
            strength = hwa.strength(epoch, config.epochs) if hwa is not None else 0.0
            perm = torch.randperm(len(y_train), generator=order)
            total, count = 0.0, 0
            for i in range(0, len(y_train), config.batch_size):
                idx = perm[i:i + config.batch_size]
                if len(idx) < 2 and count:  # a batch of one breaks batch norm; it is dropped
                    continue
                x, y = x_train[idx].to(dev), y_train[idx].to(dev)
                if preset is None or strength == 0:
                    out = model(x)
                else:
                    noisy, layer = {}, 0
                    for name, weight, parts in _crossbar_weights(model):
                        pieces = []
                        for piece in weight.detach().chunk(parts):  # each crossbar's own draws
                            pieces.append(crossbar.sample_weights(
                                piece, preset, hwa.t_inference, 1,
                                derive_seed(seed, Stream.HARDWARE_AWARE, layer, 0, step), compensate=True,
                            )[0])
                            layer += 1
                        chip = torch.cat(pieces) if parts > 1 else pieces[0]
                        deviation = (chip - weight).detach()  # straight-through gradient
                        noisy[name] = weight + (deviation if strength == 1 else strength * deviation)
                    out = functional_call(model, noisy, (x,))
                loss = model.loss(out, y) if hasattr(model, "loss") else nn.functional.cross_entropy(out, y)
                if not torch.isfinite(loss):
                    ok, reason = False, f"loss became {loss.item()} in epoch {epoch}, step {step + 1} (diverged)"
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                total += loss.item() * len(idx)
                count += len(idx)
            if not ok:
                break
            record = {"epoch": epoch, "loss": total / max(1, count), "lr": optimizer.param_groups[0]["lr"]}
            if hwa is not None:
                record["noise_strength"] = strength
            if val is not None:
                record["val_score"] = clean_score(model, val, metric)  # a detector's: mAP@0.5
                eligible = hwa is None or strength == hwa.scale  # a robust network: trained at full strength
                if eligible and sign * record["val_score"] > sign * best_score:
                    best_score, best_epoch = record["val_score"], epoch
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            history.append(record)
            bar.set_postfix({k: round(v, 4) for k, v in record.items() if k in ("loss", "val_score")})
            if config.patience is not None and val is not None and best_epoch and epoch - best_epoch >= config.patience:
                break
        bar.close()

    if ok and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        ok=ok,
        reason=reason,
        epochs_run=len(history),
        best_epoch=best_epoch if val is not None else len(history),
        val_score=best_score if (ok and val is not None) else None,
        seconds=time.perf_counter() - start,
        history=history,
    )


def multiply_adds(model: nn.Module, sample: Tensor) -> int:
    """Multiply-adds of the ``nn.Linear`` and ``nn.Conv2d`` layers for one forward pass of
    ``sample`` (a batch of one, on the model's device), counted with forward hooks."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * module.in_channels // module.groups * kh * kw

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(sample)
    finally:
        model.train(was)
        for hook in hooks:
            hook.remove()
    return total


@contextlib.contextmanager
def _torch_threads(threads: Optional[int]) -> Iterator[None]:
    """torch's thread count set to ``threads`` (None: as it is) for a block."""
    previous = torch.get_num_threads()
    if threads is not None and threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
