"""The scenario: one YAML file describing a whole experiment, validated before any work.

Every mistake (an unknown key, a wrong type, a value out of range, an unknown preset, a
time a preset does not define) is found here; :mod:`search.config` turns it into one
line naming the field and what is allowed. The sections are in :mod:`search.sections`;
``baselines`` is made from the method table (:mod:`search.methods`), one key per method
that has an option.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

import crossbar
import models
from crossbar.common import did_you_mean, error_text, resolve_device
from crossbar.durations import readable

from .codesign import Codesign
from .methods import METHODS, HardwareAwareBaseline
from .networks import check_network, check_priced
from .sections import (
    MAX_CHIPS,
    NAMED_SWEEPS,
    DatasetSpec,
    Execution,
    Finding,
    ModelSpec,
    Objective,
    PresetSpec,
    Report,
    SearchSpec,
    Strict,
    Times,
    Variant,
    _by_name,
    _one_of,
    _safe_name,
    _seeds,
    full_preset,
    one_or_list,
)
from .space import Dimension, check_space, dimensions

_BASELINES: dict[tuple, type[BaseModel]] = {}


def baselines_model() -> type[BaseModel]:
    """The ``baselines`` section as the method table now makes it: one key per method
    with an option (:class:`search.methods.Option`), in the table's order."""
    options = tuple((m.id, m.option) for m in METHODS.values() if m.option is not None)
    key = tuple((name, id(option)) for name, option in options)
    if key not in _BASELINES:
        fields = {name: (option.type, Field(option.default, description=option.description))
                  for name, option in options}
        _BASELINES[key] = create_model("Baselines", __base__=Strict, __module__=__name__, **fields)
    return _BASELINES[key]


class FromTable:
    """Marks a field whose model the method table makes (for the keys an error lists)."""

    def __init__(self, model):
        self.model = model


def _baselines(value: Any) -> BaseModel:
    model = baselines_model()
    return value if isinstance(value, model) else model.model_validate({} if value is None else value)


class Scenario(Strict):
    """One experiment. ``mode: search`` (the BayesFT search and its baselines),
    ``mode: study`` (train and compare fixed ``variants``, e.g. the component study),
    ``mode: evaluate`` (measure a trained network, ``model.checkpoint``, as it is) or
    ``mode: codesign``.

    ``presets`` is the YAML key ``devices``: the memristor technologies, each recorded
    with every parameter (:func:`full_preset`); ``device`` is where torch runs.
    """

    name: Annotated[str, AfterValidator(_safe_name)] = "scenario"
    description: str = ""
    mode: Literal["search", "study", "evaluate", "codesign"] = "search"
    task: Annotated[str, _one_of("task", lambda: list(models.TASKS))] = Field(
        "classification", description="classification (scored by accuracy) or detection (mAP@0.5 per chip)")
    metric: Optional[str] = Field(
        None, description="what each chip is scored by (default: the task's: accuracy, map50); any metric of the "
                          "task: map, map75 for detection")
    seed: int = Field(0, ge=0, lt=2**32, description="every random stream of the run comes from it")
    seeds: Annotated[Optional[list[int]], BeforeValidator(_seeds)] = Field(
        None, description="repeat the experiment once per seed (0-4, [0, 2, 5]), each in runs/<name>/seed-<n>"
    )
    output: Optional[str] = Field(None, description="run folder (default runs/<name>)")
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda or cuda:N")
    dataset: Annotated[DatasetSpec, BeforeValidator(_by_name)] = Field(default_factory=DatasetSpec)
    model: Annotated[ModelSpec, BeforeValidator(_by_name)] = Field(default_factory=ModelSpec)
    training: models.TrainConfig = Field(default_factory=models.TrainConfig)
    presets: Annotated[list[PresetSpec], BeforeValidator(one_or_list)] = Field(
        ["reram_cmo"], min_length=1, alias="devices", validate_default=True, description="device presets"
    )
    t_inference: Times = Field([86400.0], description="times the objective is measured at")
    n_chips: int = Field(20, ge=1, le=MAX_CHIPS, description="simulated chips per trial, preset and time")
    batch_size: int = Field(512, ge=1, le=1_000_000, description="evaluation batch size")
    chunk_size: Optional[int] = Field(
        None, ge=1, le=MAX_CHIPS,
        description="chips simulated at once (default: as many as fit in a quarter of free memory)",
    )
    execution: Execution = Field(default_factory=Execution)
    objective: Objective = Field(default_factory=Objective)
    search: SearchSpec = Field(default_factory=SearchSpec)
    baselines: Annotated[Any, BeforeValidator(_baselines), FromTable(baselines_model)] = Field(
        default_factory=dict, validate_default=True, description="the baselines, one key per method of the table")
    variants: list[Variant] = Field(default_factory=list, description="study mode: the networks to compare")
    findings: list[Finding] = Field(default_factory=list, description="study mode: claims the report says "
                                                                      "agrees, disagrees or not significant of")
    report: Report = Field(default_factory=Report)
    codesign: Optional[Codesign] = Field(None, description="mode codesign: hardware dimensions and objectives")

    _repeat: Optional[int] = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _metric_of_task(cls, data: Any) -> Any:
        """The metric defaults to the task's (recorded, so that a run says what it scored)."""
        if isinstance(data, dict) and data.get("metric") is None:
            name = data.get("task", "classification")
            task = models.TASKS.get(name) if isinstance(name, str) else None
            if task is not None:
                data = {**data, "metric": task.metric}
        return data

    @field_validator("metric")
    @classmethod
    def _metric(cls, name: Optional[str]) -> Optional[str]:
        if name is not None and name not in crossbar.METRICS:
            known = list(crossbar.METRICS)
            raise ValueError(f"unknown metric {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")
        return name

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value != "auto":
            resolve_device(value)
        return value

    @field_validator("presets")
    @classmethod
    def _presets(cls, specs: list) -> list:
        full = []
        for i, spec in enumerate(specs):
            if isinstance(spec, dict) and "name" not in spec:
                try:
                    crossbar.preset(spec)
                except ValueError as e:
                    raise ValueError(f"devices[{i}]: {e}") from None
                raise ValueError(f"devices[{i}]: a custom preset needs a name (used in reports and plots)")
            try:
                full.append(full_preset(spec))
            except ValueError as e:
                raise ValueError(f"devices[{i}]: {e}") from None
        names = [spec["name"] for spec in full]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"device names must be unique; repeated: {', '.join(dupes)}")
        return full

    @model_validator(mode="after")
    def _consistent(self) -> "Scenario":
        for preset in self.resolved_presets():
            for t in self.t_inference:
                _check_time("t_inference", preset, t)
            for t in self.report_times(preset):
                _check_time("report.t_inference", preset, t)
            if preset.times is not None and not self.report_times(preset):
                raise ValueError(
                    f"report.t_inference: preset {preset.name!r} defines none of these times; "
                    f"it is defined at {', '.join(readable(t) for t in preset.times)}"
                )
        if self.search.n_initial > self.search.n_trials:
            raise ValueError(
                f"search.n_initial ({self.search.n_initial}) must not exceed search.n_trials ({self.search.n_trials}); "
                f"lower it too (--set search.n_initial={self.search.n_trials}) or leave it out"
            )
        if isinstance(getattr(self.baselines, "hardware_aware", None), HardwareAwareBaseline):
            self.hardware_aware_config()  # validates its preset and time
        if self.mode == "study" and not self.variants:
            raise ValueError("mode study needs variants: a list of {label, model, dropout, hardware_aware}")
        aware = [f"variants[{i}] ({v.label!r})" for i, v in enumerate(self.variants) if v.hardware_aware]
        if aware and self.hardware_aware_config() is None:
            raise ValueError(f"{aware[0]}: hardware_aware: true trains with the noise of baselines.hardware_aware, "
                             "which is false here; set baselines.hardware_aware (true, or {scale, preset, "
                             "t_inference}) or leave hardware_aware out of the variant")
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise ValueError("variants: every label must be unique")
        if (self.mode == "codesign") != (self.codesign is not None):
            raise ValueError("mode codesign needs a codesign section (space, objectives), and a codesign section "
                             f"needs mode: codesign (mode is {self.mode})")
        if self.findings and self.mode != "study":
            raise ValueError("findings are for mode: study (they compare its variants)")
        for i, finding in enumerate(self.findings):
            for name in [*finding.variants, *([finding.baseline] if finding.baseline else [])]:
                if name not in labels:
                    raise ValueError(f"findings[{i}]: no variant {name!r}{did_you_mean(name, labels)}; the variants: "
                                     f"{', '.join(labels)}")
        self._check_task()
        in_shape, n_classes = self.data_shape()
        for where, (name, options), dropout in [("model.options", self.network(), None)] + [
            (f"variants[{i}]", self.network(v.model), v.dropout) for i, v in enumerate(self.variants)
        ]:
            try:
                models.build(name, in_shape, n_classes, dropout=dropout, **options)
            except (ValueError, TypeError) as e:
                raise ValueError(f"{where}: {e}") from None
        check_network(self)
        self._check_sweep()
        if self.report.cost:
            for preset in self.resolved_presets():
                try:
                    crossbar.macro_cost(preset, 1)
                except ValueError as e:
                    raise ValueError(f"report.cost: device {preset.name!r}: {e}") from None
            check_priced(self)
        problem = check_space(self.search.space, self.slots())  # the network builds: its slots are known
        if problem:
            raise ValueError(f"search.space: {problem}")
        if self.codesign is not None:
            self.codesign.check(self.presets, (0.0, 1.0))
            in_shape, n_classes = self.data_shape()
            net = models.build(self.model.name, in_shape, n_classes, **self.model.options)
            self.codesign.check_layers([name for name, _ in crossbar.mapping.mapped_layers(net)])
        return self

    def _check_task(self) -> None:
        """The data set, every network, the metric and the baselines do what ``task`` says."""
        data_task = models.dataset_task(self.dataset.name)
        kinds = {task: [n for n in models.list_datasets() if models.dataset_task(n) == task] for task in models.TASKS}
        if data_task != self.task:
            hint = (f"set task: {data_task}" if "task" not in self.model_fields_set else
                    f"task: {self.task} takes the data sets {', '.join(kinds[self.task]) or 'none yet'}")
            raise ValueError(f"dataset: {self.dataset.name!r} is a {data_task} data set but the task is "
                             f"{self.task}; {hint}")
        networks = [n for n in models.list_models() if models.model_task(n) == self.task]
        for where, (name, _) in [("model", self.network())] + [
            (f"variants[{i}].model", self.network(v.model)) for i, v in enumerate(self.variants)
        ]:
            if models.model_task(name) != self.task:
                raise ValueError(f"{where}: {name!r} is a {models.model_task(name)} network; task {self.task} needs "
                                 f"one of {', '.join(networks)}")
        metric = crossbar.METRICS[self.metric]
        if metric.task != self.task:
            fitting = [m.name for m in crossbar.METRICS.values() if m.task == self.task]
            raise ValueError(f"metric: {self.metric!r} scores {metric.task}; task {self.task} is scored by "
                             f"{', '.join(fitting)}")
        for method in METHODS.values():
            if method.tasks is not None and self.task not in method.tasks and getattr(self.baselines, method.id, None):
                raise ValueError(f"baselines.{method.id}: {method.label} applies to {', '.join(method.tasks)} only; "
                                 f"task {self.task} has no {method.id} baseline (set baselines.{method.id}: false)")

    # --- derived values -------------------------------------------------------------

    @property
    def score(self) -> crossbar.Metric:
        """The record of what each chip is scored by (:attr:`metric` names it)."""
        return crossbar.METRICS[self.metric]

    def resolved_presets(self) -> list[crossbar.Preset]:
        return [crossbar.make_preset(spec) for spec in self.presets]

    def report_times(self, preset: crossbar.Preset) -> list[float]:
        """The report times this preset simulates (presets defined at a few times only,
        like reram_wan2022, skip the others)."""
        if preset.times is None:
            return list(self.report.t_inference)
        return [t for t in self.report.t_inference if t in preset.times]

    def hardware_aware_config(self) -> Optional[models.HardwareAware]:
        """The hardware-aware baseline's noise: by default the first device at the first time."""
        spec = getattr(self.baselines, "hardware_aware", False)
        if spec is False:
            return None
        spec = spec if isinstance(spec, HardwareAwareBaseline) else HardwareAwareBaseline()
        preset = spec.preset if spec.preset is not None else self.presets[0]
        t = spec.t_inference if spec.t_inference is not None else self.t_inference[0]
        try:
            return models.HardwareAware(preset=preset, t_inference=t, scale=spec.scale, warmup=spec.warmup,
                                        ramp=spec.ramp)
        except ValidationError as e:
            raise ValueError(f"baselines.hardware_aware: {error_text(e.errors()[0])}") from None

    def _check_sweep(self) -> None:
        sweep = self.report.sweep
        if sweep is None:
            return
        named = any(isinstance(v, str) for v in sweep.values)
        if named and sweep.parameter not in NAMED_SWEEPS:
            raise ValueError(f"report.sweep: {sweep.parameter} takes numbers, got {', '.join(map(str, sweep.values))}; "
                             f"the parameters that take names: {', '.join(NAMED_SWEEPS)}")
        for spec in self.presets if not named else ():
            numeric = [k for k, v in spec.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            numeric += [k for k in crossbar.presets.NUMERIC_ARRAY_FIELDS if k not in spec]  # off unless set
            if sweep.parameter not in numeric:
                raise ValueError(f"report.sweep: device {spec['name']!r} has no numeric parameter "
                                 f"{sweep.parameter!r}{did_you_mean(sweep.parameter, numeric)}; its numeric "
                                 f"parameters: {', '.join(numeric)}")
        for spec, value in itertools.product(self.presets, sweep.values):
            try:
                crossbar.make_preset({**spec, sweep.parameter: value})
            except (ValueError, TypeError, ValidationError) as e:
                text = error_text(e.errors()[0]) if isinstance(e, ValidationError) else str(e)
                raise ValueError(f"report.sweep: device {spec['name']!r} with {sweep.parameter} = "
                                 f"{value if named else format(value, 'g')}: {text}") from None

    def dimensions(self) -> list[Dimension]:
        """The search space: one dimension per dropout slot, then the training ones."""
        return dimensions(self.slots(), self.search.bounds, self.search.space)

    def trained_with(self, hwa_scale: float) -> Optional[models.HardwareAware]:
        """Hardware-aware noise of strength ``hwa_scale`` (a search dimension): the first
        device's, at the first objective time; None for 0 (plain training)."""
        if hwa_scale == 0:
            return None
        return models.HardwareAware(preset=self.presets[0], t_inference=self.t_inference[0], scale=hwa_scale)

    def replicate(self, seed: int, top: Path) -> "Scenario":
        """One repeat of a scenario with ``seeds``: this seed, in ``top/seed-<seed>``."""
        copy = self.model_copy(update={"seed": seed, "seeds": None, "output": str(Path(top) / f"seed-{seed}")})
        copy._repeat = seed
        return copy

    @property
    def seed_of_repeat(self) -> Optional[int]:
        """The seed of a repeat made by :meth:`replicate`, else None."""
        return self._repeat

    def network(self, change: Optional[dict] = None) -> tuple[str, dict]:
        """``(name, options)`` of the network to build: the scenario's model with a
        variant's ``change`` merged in; a change that names another network brings
        only its own options (the scenario's may not exist there: mlp's depth for lenet5)."""
        change = dict(change or {})
        name = change.pop("name", self.model.name)
        base = self.model.options if name == self.model.name else {}
        return name, {**base, **change}

    def data_shape(self) -> tuple[tuple[int, int, int], int]:
        """``(in_shape, n_classes)`` of the data, from models' dataset table."""
        return models.dataset_shape(self.dataset.name, self.dataset.root, options=self.dataset.options() or None)

    def slots(self) -> list[str]:
        in_shape, n_classes = self.data_shape()
        return models.imports.slots_of(models.build(self.model.name, in_shape, n_classes, **self.model.options))

    def trained_network(self, device: "str | None" = None):
        """mode evaluate: the network with the weights of ``model.checkpoint``, in eval mode."""
        in_shape, n_classes = self.data_shape()
        net = models.build(self.model.name, in_shape, n_classes, **self.model.options)
        return models.load_weights(net, self.model.checkpoint).to(resolve_device(device))

    def output_dir(self) -> Path:
        return Path(self.output) if self.output else Path("runs") / self.name

    def notes(self) -> list[str]:
        """What the run does that the scenario did not say, for its first lines."""
        notes = []
        if "presets" not in self.model_fields_set:
            notes.append(f"the scenario names no devices: using {self.presets[0]['name']} "
                         "(set devices:, e.g. devices: [pcm])")
        if self.search._capped:
            notes.append(f"search.n_initial is {self.search.n_initial}: the default, 5, capped at search.n_trials")
        return notes

    def plain(self) -> dict[str, Any]:
        """The resolved scenario as plain data (every default filled in, times in seconds)."""
        return self.model_dump(mode="json", by_alias=True)


def _check_time(field: str, preset: crossbar.Preset, t: float) -> None:
    try:
        preset.check_time(t)
    except ValueError as e:
        raise ValueError(f"{field}: {e}") from None

