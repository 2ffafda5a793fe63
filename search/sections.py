"""The sections of a scenario (everything but the whole, :class:`search.schema.Scenario`):
the data set, the network, the objective, the search, the report, a study's variants
and findings, where trials run; and the checks of times and devices they share.

Times are seconds since programming; in YAML they may also be readable durations:
``1d``, ``12h``, ``30min``, ``1w``, ``1y`` (365 days), ``10s``, ``1 day``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Union

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_serializer,
    model_validator,
)

import crossbar
import models
from crossbar.catalog import builtin_preset
from crossbar.common import did_you_mean
from crossbar.durations import parse_duration, readable

from .seeds import parse_seeds

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
    preset = crossbar.preset(spec)
    full = preset.full_spec()
    builtin = builtin_preset(preset.name)
    if isinstance(spec, dict) and builtin is not None:
        changed = preset.changes_from(builtin)
        if changed:
            full["name"] = f"{preset.name} ({', '.join(f'{k}={v}' for k, v in changed.items())})"
    return full


_DATA_OPTIONS = ("size", "channels")  # a data set's own options, not the split's


class DatasetSpec(Strict):
    """``dataset``: which data set, where, and how it is split."""

    name: Annotated[str, _one_of("dataset", models.list_datasets)] = "digits"
    root: Optional[str] = Field(
        None, validation_alias=AliasChoices("root", "file"),
        description="data folder (default $CROSSBAR_DATA or ./data); for idx the IDX folder, for image_folder "
                    "the folder of class folders; for tensors the file (also given as file:)",
    )
    download: bool = False
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    max_train: Optional[int] = Field(None, ge=1)
    max_val: Optional[int] = Field(None, ge=1)
    max_test: Optional[int] = Field(None, ge=1)
    size: Optional[Union[int, list[int]]] = Field(
        None, description="image_folder: every image resized to [height, width] (or one number for both)")
    channels: Optional[Literal[1, 3]] = Field(None, description="image_folder: 1 (grey) or 3 (RGB)")
    normalize: bool = Field(True, description="standardise each channel with the training split's mean and std; "
                                              "false keeps the inputs as read ([0, 1] images, a file's values)")

    def options(self) -> dict[str, Any]:
        """The data set's own options (:func:`models.load_dataset`'s ``options``), those given."""
        return {k: getattr(self, k) for k in _DATA_OPTIONS if getattr(self, k) is not None}

    def loader_arguments(self) -> dict[str, Any]:
        """:func:`models.load_dataset`'s arguments as plain data: the name, the split's
        settings and ``options`` (None when none is given)."""
        plain = {k: v for k, v in self.model_dump(mode="json").items() if k not in _DATA_OPTIONS}
        return {**plain, "options": self.options() or None}


def _network_name(name: str) -> str:
    if models.imports.is_import(name):
        return name  # a user's module:callable, imported by ModelSpec's check
    return _one_of("model", models.list_models).func(name)


class ModelSpec(Strict):
    """``model``: which network, with its options: one of :func:`models.list_models`, or
    the user's own, ``import: my_nets:SmallResNet`` (:mod:`models.imports`; stored as its
    ``name``), the module found in ``path`` (default: the scenario's folder) or on the
    Python path. ``checkpoint``: trained weights, a state dict (``mode: evaluate``)."""

    name: Annotated[str, AfterValidator(_network_name)] = Field(
        "lenet5", description="a registered network, or your own as module:callable (also given as import:)")
    options: dict[str, Any] = Field(default_factory=dict, description="activation, norm, depth, width (per network)")
    path: Optional[str] = Field(None, description="folder your module is imported from (default: the scenario's)")
    checkpoint: Optional[str] = Field(
        None, description="mode evaluate: the trained weights, torch.save(model.state_dict(), path)")

    @model_validator(mode="before")
    @classmethod
    def _import_is_a_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "import" in data:
            if "name" in data:
                raise ValueError("give name (a registered network) or import (your own, module:callable), not both")
            data = {("name" if k == "import" else k): v for k, v in data.items()}
            if not models.imports.is_import(data["name"]):
                raise ValueError(f"import: {data['name']!r} is not {models.imports.REF_HINT}")
        return data

    @model_validator(mode="after")
    def _importable(self) -> "ModelSpec":
        if models.imports.is_import(self.name):
            models.import_network(self.name, self.path)
        elif self.path is not None:
            raise ValueError(f"path is where your own network's module is found; {self.name!r} is a registered "
                             "network (give import: module:callable)")
        return self

    @property
    def label(self) -> str:
        """The network's short name: a registered name, or the callable of an import."""
        return self.name.rpartition(":")[2]


class Objective(Strict):
    """``objective``: how a trial's chips make one number, and a floor on its clean score."""

    aggregate: Literal["mean", "quantile"] = Field("mean", description="over chips: the mean, or a low quantile")
    quantile: float = Field(
        0.1, gt=0, lt=1, description="with aggregate: quantile, e.g. 0.1 = the 10th-percentile chip"
    )
    min_clean_score: Optional[float] = Field(
        None, ge=0, le=1, validation_alias=AliasChoices("min_clean_score", "min_clean_accuracy"),
        description="a trial whose clean validation score (accuracy; detection: mAP@0.5) is below this scores 0 "
                    "(min_clean_accuracy: its old name)"
    )

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "min_clean_score" in data and "min_clean_accuracy" in data:
            if data["min_clean_score"] != data["min_clean_accuracy"]:
                raise ValueError("give min_clean_score or its old name min_clean_accuracy, not both")
            data = {k: v for k, v in data.items() if k != "min_clean_accuracy"}  # a record of both names
        return data

    @model_serializer(mode="wrap")
    def _both_names(self, handler) -> dict[str, Any]:
        """Recorded (resolved.yaml, results.json) under the new name and the old one too."""
        data = handler(self)
        data["min_clean_accuracy"] = data["min_clean_score"]
        return data


class SearchSpec(Strict):
    """``search``: the Bayesian optimiser's budget, acquisition and space."""

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
    if isinstance(value, (list, tuple)) and len({isinstance(v, str) for v in value}) > 1:
        raise ValueError(f"either numbers or names, not both, got {list(value)!r}")
    return value


#: The device parameters a sweep takes names for, not numbers (a calibration on and off).
NAMED_SWEEPS = ("calibration", "drift_compensation")


class Sweep(Strict):
    """``report.sweep``: a device parameter and the values each final network is measured at."""

    parameter: str = Field(description="a numeric parameter of every device: sigma, p_sa0, g_max, drift_scale, ...; "
                                       f"or one that takes names: {', '.join(NAMED_SWEEPS)}")
    values: Annotated[list[Union[float, str]], BeforeValidator(_sweep_values)] = Field(
        description="the values: a list (numbers, or names such as [none, at_inference]), or {start, stop, num}"
    )


class Report(Strict):
    """``report``: the test measurements of the final networks."""

    t_inference: Times = Field(default_factory=lambda: [1.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0])
    n_chips: int = Field(50, ge=1, le=MAX_CHIPS, description="chips per preset and time for the final test numbers")
    sweep: Optional[Sweep] = Field(None, description="each final network also measured at each value of a "
                                                     "device parameter")
    cost: bool = Field(False, description="each final network's energy, latency and area per inference on each "
                                          "device (crossbar.cost; every device names its architecture)")


class Variant(Strict):
    """One network of a study (``mode: study``): a label and its changes."""

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


