"""The scenario's schema: one YAML file describing a whole experiment, validated before any work.

Every mistake (an unknown key, a wrong type, a value out of range, an unknown preset, a
time a preset does not define) is found here; :mod:`search.config` turns it into one
line naming the field and what is allowed.

Times are seconds since programming; in YAML they may also be readable durations:
``1d``, ``12h``, ``30min``, ``1w``, ``1y`` (365 days), ``10s``, ``1 day``.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

import crossbar
import models
from crossbar.common import did_you_mean, error_text
from crossbar.durations import parse_duration, readable
from crossbar.presets import builtin_preset

from .space import Dimension, check_space, dimensions
from .summary import parse_seeds

#: Upper limits no real experiment reaches: a value beyond is a mistake (a unit, a typo).
MAX_TIME = 1000 * 365 * 86400.0  # 1,000 years
MAX_CHIPS = 100_000
MAX_EPOCHS = 10_000
MAX_TRIALS = 10_000


def _time(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds > MAX_TIME:
        raise ValueError(f"{value!r} is more than 1,000 years; times are seconds since programming (or 1d, 1y, ...)")
    return seconds


def _times(values: Any) -> list[float]:
    if not isinstance(values, (list, tuple)):
        values = [values]
    if not values:
        raise ValueError("list at least one time")
    times = [_time(v) for v in values]
    repeated = sorted({t for t in times if times.count(t) > 1})
    if repeated:  # [86400, 1d]: one time counted twice in the objective, two columns of one time
        raise ValueError(f"each time once; listed more than once: {', '.join(readable(t) for t in repeated)}")
    return times


Time = Annotated[float, BeforeValidator(_time)]  # seconds, or a duration such as "1d"
Times = Annotated[list[float], BeforeValidator(_times)]  # one time or a list of them
PresetSpec = Union[str, dict[str, Any]]


def _by_name(value: Any) -> Any:
    """``dataset: mnist`` is short for ``dataset: {name: mnist}`` (also for ``model``)."""
    return {"name": value} if isinstance(value, str) else value


def one_or_list(value: Any) -> Any:
    """``devices: pcm`` is short for ``devices: [pcm]``."""
    return [value] if isinstance(value, (str, dict)) else value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _one_of(kind: str, valid: Callable[[], list[str]]) -> AfterValidator:
    def check(name: str) -> str:
        if name not in valid():
            raise ValueError(f"unknown {kind} {name!r}{did_you_mean(name, valid())}; valid: {', '.join(valid())}")
        return name

    return AfterValidator(check)


_UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|]')


def _safe_name(name: str) -> str:
    """A scenario's name is the default run folder runs/<name>: one plain folder name."""
    if not name.strip() or name.startswith(".") or _UNSAFE.search(name) or len(name) > 100:
        raise ValueError(f"{name!r} cannot name a run folder (runs/<name>): use letters, digits, spaces and "
                         "_ - + . ( ), not starting with '.', at most 100 characters; --out chooses any folder")
    return name


def _seeds(value: Any) -> Any:
    return None if value is None else parse_seeds(value)


def full_preset(spec: PresetSpec) -> dict[str, Any]:
    """A device as a run records it: every parameter (:meth:`crossbar.Preset.full_spec`).

    A built-in preset's name labels that preset only as it is: changed (``{name: pcm,
    p_sa0: 0.05}``, what ``--set devices.0.p_sa0=0.05`` makes of ``devices: [pcm]``),
    it is labelled ``pcm (p_sa0=0.05)`` in tables and plots.
    """
    preset = crossbar.resolve_preset(spec)
    full = preset.full_spec()
    builtin = builtin_preset(preset.name)
    if isinstance(spec, dict) and builtin is not None:
        reference = builtin.full_spec()
        fields = crossbar.Preset.model_fields  # an array effect's companion at its default is no change
        changed = [k for k in full if k not in ("name", "description")
                   and full[k] != reference.get(k, fields[k].default if k in fields else None)]
        if changed:
            full["name"] = f"{preset.name} ({', '.join(f'{k}={full[k]}' for k in changed)})"
    return full


class DatasetSpec(Strict):
    name: Annotated[str, _one_of("dataset", models.list_datasets)] = "digits"
    root: Optional[str] = Field(
        None, description="data folder (default $CROSSBAR_DATA or ./data); for idx the IDX folder"
    )
    download: bool = False
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    max_train: Optional[int] = Field(None, ge=1)
    max_val: Optional[int] = Field(None, ge=1)
    max_test: Optional[int] = Field(None, ge=1)


class ModelSpec(Strict):
    name: Annotated[str, _one_of("model", models.list_models)] = "lenet5"
    options: dict[str, Any] = Field(default_factory=dict, description="activation, norm, depth, width (per network)")


class Objective(Strict):
    aggregate: Literal["mean", "quantile"] = Field("mean", description="over chips: the mean, or a low quantile")
    quantile: float = Field(
        0.1, gt=0, lt=1, description="with aggregate: quantile, e.g. 0.1 = the 10th-percentile chip"
    )
    min_clean_accuracy: Optional[float] = Field(
        None, ge=0, le=1,
        description="a trial whose clean validation accuracy (detection: mAP@0.5) is below this scores 0"
    )


class SearchSpec(Strict):
    n_trials: int = Field(
        20, ge=1, le=MAX_TRIALS, description="trials of the Bayesian optimisation (and of random search)"
    )
    n_initial: int = Field(5, ge=1, description="random trials before the Gaussian process takes over")
    acq_func: Literal["gp_hedge", "EI", "PI", "LCB"] = "gp_hedge"
    xi: float = Field(0.01, ge=0.0, le=1.0, description="EI and PI: the improvement sought over the best (exploration)")
    kappa: float = Field(1.96, ge=0.0, le=100.0, description="LCB: standard deviations of optimism (exploration)")
    bounds: tuple[float, float] = Field((0.0, 0.8), description="range of every dropout rate, within [0, 1)")
    warm_start: bool = Field(
        True, description="the optimiser also learns from the baselines' trials that are points of the space"
    )
    space: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="more dimensions: a slot's own dropout range, or training settings (hwa_scale: [0, 1.5])",
    )

    _capped: bool = PrivateAttr(False)

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        lo, hi = bounds
        if not (0.0 <= lo < hi < 1.0):
            raise ValueError(f"must be [low, high] with 0 <= low < high < 1, got [{lo:g}, {hi:g}]")
        return bounds

    @model_validator(mode="after")
    def _default_initial_within_budget(self) -> "SearchSpec":
        if self.n_initial > self.n_trials and "n_initial" not in self.model_fields_set:
            object.__setattr__(self, "n_initial", self.n_trials)  # the default, capped at a small budget
            self._capped = True
        return self


class HardwareAwareBaseline(Strict):
    preset: Optional[PresetSpec] = Field(None, description="default: the first device")
    t_inference: Optional[Time] = Field(None, description="default: the first objective time")
    scale: float = Field(1.0, ge=0.0, le=10.0, description="noise strength: 1 the device's own")
    warmup: float = Field(models.WARMUP, ge=0.0, lt=1.0, description="share of the epochs trained plainly first")
    ramp: float = Field(models.RAMP, ge=0.0, lt=1.0, description="share of the epochs over which the noise rises")

    @field_validator("preset")
    @classmethod
    def _full(cls, spec: Optional[PresetSpec]) -> Optional[dict[str, Any]]:
        return None if spec is None else full_preset(spec)  # recorded with every parameter, like the devices


class Baselines(Strict):
    erm: bool = Field(True, description="no dropout")
    uniform: list[float] = Field(
        [0.1, 0.2, 0.3, 0.5], description="one rate for every slot; the best on validation wins"
    )
    random: bool = Field(True, description="random search with the same trial budget")
    hardware_aware: Union[bool, HardwareAwareBaseline] = Field(True, description="hardware-aware training, no dropout")
    ecoc: bool = Field(False, description="error-correcting output codes (FTNA, the network's head: ecoc), no dropout")

    @field_validator("uniform")
    @classmethod
    def _rates(cls, rates: list[float]) -> list[float]:
        for r in rates:
            if not 0 <= r < 1:
                raise ValueError(f"every rate must lie in [0, 1), got {r:g}")
        return rates


MAX_SWEEP = 1000  # values of one sweep


def _sweep_values(value: Any) -> Any:
    """``[0, 0.5, 1]`` or ``{start: 0, stop: 1.5, num: 16}`` (both ends included)."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"start", "stop", "num"}
        if unknown or not {"start", "stop", "num"} <= set(value):
            raise ValueError("a list of values, or {start, stop, num} (both ends included)")
        num = value["num"]
        if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= MAX_SWEEP:
            raise ValueError(f"num must be an integer in [1, {MAX_SWEEP}], got {num!r}")
        start, stop = float(value["start"]), float(value["stop"])
        return [start + (stop - start) * i / (num - 1) for i in range(num)] if num > 1 else [start]
    if isinstance(value, (list, tuple)) and not 1 <= len(value) <= MAX_SWEEP:
        raise ValueError(f"between 1 and {MAX_SWEEP} values, got {len(value)}")
    return value


class Sweep(Strict):
    parameter: str = Field(description="a numeric parameter of every device: sigma, p_sa0, g_max, drift_scale, ...")
    values: Annotated[list[float], BeforeValidator(_sweep_values)] = Field(
        description="the values: a list, or {start, stop, num}"
    )


class Report(Strict):
    t_inference: Times = Field(default_factory=lambda: [1.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0])
    n_chips: int = Field(50, ge=1, le=MAX_CHIPS, description="chips per preset and time for the final test numbers")
    sweep: Optional[Sweep] = Field(None, description="each final network also measured at each value of a "
                                                     "device parameter")


class Variant(Strict):
    label: str
    model: dict[str, Any] = Field(
        default_factory=dict,
        description="options merged into model.options; with a name (another network), that network's own options only",
    )
    dropout: Union[float, list[float], dict[str, float]] = 0.0
    hardware_aware: bool = False


class Finding(Strict):
    """A claim a study tests: each of ``variants`` against ``baseline`` (default: the
    first variant), paired by seed, at the objective's first time on each device."""

    claim: str = Field(description="what the claim says, e.g. 'dropout improves robustness'")
    variants: list[str] = Field(min_length=1, description="labels of the variants the claim is about")
    expect: Literal["higher", "lower", "same"] = Field(description="their accuracy against the baseline's")
    baseline: Optional[str] = Field(None, description="the label compared with (default: the first variant)")


class Execution(Strict):
    """Where trials run; the command line's --workers / --dask override these."""

    workers: int = Field(
        1, ge=1, le=1024, description="parallel trials: local processes, or LocalCluster workers with dask: local"
    )
    dask: Optional[str] = Field(None, description="'local' (a LocalCluster) or a scheduler address tcp://HOST:PORT")
    threads_per_trial: int = Field(
        1, ge=1, le=1024,
        description="torch threads of one trial, whatever runs it: results depend on it in the last bits",
    )

    @field_validator("dask")
    @classmethod
    def _address(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and value != "local" and not re.match(r"^(tcp|tls|inproc|ucx)://[^\s]+$", value):
            raise ValueError(f"must be 'local' or a scheduler address such as tcp://10.0.0.5:8786, got {value!r}")
        return value


class Scenario(Strict):
    """One experiment. ``mode: search`` (the BayesFT search and its baselines) or
    ``mode: study`` (train and compare fixed ``variants``, e.g. the component study).

    ``presets`` is the YAML key ``devices``: the memristor technologies, each recorded
    with every parameter (:func:`full_preset`); ``device`` is where torch runs.
    """

    name: Annotated[str, AfterValidator(_safe_name)] = "scenario"
    description: str = ""
    mode: Literal["search", "study"] = "search"
    task: Literal["classification", "detection"] = Field(
        "classification", description="classification (scored by accuracy) or detection (mAP@0.5 per chip)")
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
    baselines: Baselines = Field(default_factory=Baselines)
    variants: list[Variant] = Field(default_factory=list, description="study mode: the networks to compare")
    findings: list[Finding] = Field(default_factory=list, description="study mode: claims the report says "
                                                                      "agrees, disagrees or not significant of")
    report: Report = Field(default_factory=Report)

    _repeat: Optional[int] = PrivateAttr(None)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value != "auto":
            crossbar.resolve_device(value)
        return value

    @field_validator("presets")
    @classmethod
    def _presets(cls, specs: list) -> list:
        full = []
        for i, spec in enumerate(specs):
            if isinstance(spec, dict) and "name" not in spec:
                try:
                    crossbar.resolve_preset(spec)
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
        if isinstance(self.baselines.hardware_aware, HardwareAwareBaseline):
            self.hardware_aware_config()  # validates its preset and time
        if self.mode == "study" and not self.variants:
            raise ValueError("mode study needs variants: a list of {label, model, dropout, hardware_aware}")
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise ValueError("variants: every label must be unique")
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
        self._check_sweep()
        problem = check_space(self.search.space, self.slots())  # the network builds: its slots are known
        if problem:
            raise ValueError(f"search.space: {problem}")
        return self

    def _check_task(self) -> None:
        """The data set and every network do what ``task`` says."""
        data_task = models.dataset_task(self.dataset.name)
        kinds = {task: [n for n in models.list_datasets() if models.dataset_task(n) == task]
                 for task in ("classification", "detection")}
        if data_task != self.task:
            hint = (f"set task: {data_task}" if "task" not in self.model_fields_set else
                    f"task: {self.task} takes the data sets {', '.join(kinds[self.task])}")
            raise ValueError(f"dataset: {self.dataset.name!r} is a {data_task} data set but the task is "
                             f"{self.task}; {hint}")
        networks = [n for n in models.list_models() if models.model_task(n) == self.task]
        for where, (name, _) in [("model", self.network())] + [
            (f"variants[{i}].model", self.network(v.model)) for i, v in enumerate(self.variants)
        ]:
            if models.model_task(name) != self.task:
                raise ValueError(f"{where}: {name!r} is a {models.model_task(name)} network; task {self.task} needs "
                                 f"one of {', '.join(networks)}")
        if self.task == "detection" and self.baselines.ecoc:
            raise ValueError("baselines.ecoc: error-correcting output codes are a classifier's head; "
                             "task detection has no ecoc baseline (set baselines.ecoc: false)")

    # --- derived values -------------------------------------------------------------

    @property
    def metric(self) -> str:
        """What each chip is scored by: ``accuracy``, or ``map50`` (mAP@0.5) for detection."""
        return models.TASK_METRICS[self.task]

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
        spec = self.baselines.hardware_aware
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
        for spec in self.presets:
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
                raise ValueError(f"report.sweep: device {spec['name']!r} with {sweep.parameter} = {value:g}: "
                                 f"{text}") from None

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
        return models.dataset_shape(self.dataset.name, self.dataset.root)

    def slots(self) -> list[str]:
        in_shape, n_classes = self.data_shape()
        return models.build(self.model.name, in_shape, n_classes, **self.model.options).dropout_slots

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
