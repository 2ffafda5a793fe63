"""The scenario: one YAML file describing a whole experiment, validated before any work.

Every mistake (an unknown key, a wrong type, a value out of range, an unknown preset, a
time a preset does not define, missing data) is found here and reported as one line
naming the field and what is allowed; see :class:`ScenarioError`.

Times are seconds since programming; in YAML they may also be readable durations:
``1d``, ``12h``, ``30min``, ``1w``, ``1y`` (365 days), ``10s``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Union

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

import crossbar
import models
from crossbar.common import did_you_mean

UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "y": 365 * 86400.0}
# the words too, as the tool's own messages write times ("1 s, 1 day, 2 days")
_WORDS = {"second": "s", "minute": "min", "hour": "h", "day": "d", "week": "w", "year": "y"}
UNIT_NAMES = {**UNITS, **{w: UNITS[u] for w, u in _WORDS.items()}, **{w + "s": UNITS[u] for w, u in _WORDS.items()}}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)\s*$")

# input shape of each dataset (idx folders are read for it)
DATASET_SHAPES = {
    "digits": ((1, 8, 8), 10),
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "gtsrb": ((3, 32, 32), 43),
}


class ScenarioError(ValueError):
    """A scenario that cannot run; ``str(error)`` is one line per problem."""


def parse_duration(value: Any) -> float:
    """Seconds from a number or a readable duration (``"1d"``, ``"30min"``, ``"1y"``)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value.lower())
        if not match or match.group(2) not in ("", *UNIT_NAMES):
            raise ValueError(f"{value!r} is not a duration; use seconds or a number with one of s, min, h, d, w, y "
                             "(e.g. 1d or 1 day)")
        seconds = float(match.group(1)) * UNIT_NAMES[match.group(2) or "s"]
    else:
        raise ValueError(f"{value!r} is not a time; use seconds or a duration such as 1d")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r}: a time must be finite and >= 0 s")
    return seconds


def readable(seconds: float) -> str:
    """``86400 -> '1d'``: the largest unit that divides the time evenly, for labels."""
    for unit in ("y", "w", "d", "h", "min"):
        size = UNITS[unit]
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 1e-9:
            return f"{round(seconds / size)}{unit}"
    return f"{seconds:g}s"


def _times(values: Any) -> list[float]:
    if not isinstance(values, (list, tuple)):
        values = [values]
    if not values:
        raise ValueError("list at least one time")
    times = [parse_duration(v) for v in values]
    repeated = sorted({t for t in times if times.count(t) > 1})
    if repeated:  # [86400, 1d]: one time counted twice in the objective, two columns of one time
        raise ValueError(f"each time once; listed more than once: {', '.join(readable(t) for t in repeated)}")
    return times


Time = Annotated[float, BeforeValidator(parse_duration)]  # seconds, or a duration such as "1d"
Times = Annotated[list[float], BeforeValidator(_times)]  # one time or a list of them


def _by_name(value: Any) -> Any:
    """``dataset: mnist`` is short for ``dataset: {name: mnist}`` (also for ``model``)."""
    return {"name": value} if isinstance(value, str) else value


def _one_or_list(value: Any) -> Any:
    """``devices: pcm`` is short for ``devices: [pcm]``."""
    return [value] if isinstance(value, (str, dict)) else value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_of(kind: str, valid: Callable[[], list[str]]) -> AfterValidator:
    def check(name: str) -> str:
        if name not in valid():
            raise ValueError(f"unknown {kind} {name!r}{did_you_mean(name, valid())}; valid: {', '.join(valid())}")
        return name

    return AfterValidator(check)


class DatasetSpec(Strict):
    name: Annotated[str, _one_of("dataset", models.list_datasets)] = "digits"
    root: Optional[str] = Field(None, description="data folder (default $CROSSBAR_DATA or ./data); for idx the IDX folder")
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
    quantile: float = Field(0.1, gt=0, lt=1, description="with aggregate: quantile, e.g. 0.1 = the 10th-percentile chip")
    min_clean_accuracy: Optional[float] = Field(
        None, ge=0, le=1, description="a trial whose clean validation accuracy is below this scores 0"
    )


class SearchSpec(Strict):
    n_trials: int = Field(20, ge=1, description="trials of the Bayesian optimisation (and of random search)")
    n_initial: int = Field(5, ge=1, description="random trials before the Gaussian process takes over")
    acq_func: Literal["gp_hedge", "EI", "PI", "LCB"] = "gp_hedge"
    bounds: tuple[float, float] = Field((0.0, 0.8), description="range of every dropout rate, within [0, 1)")

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        lo, hi = bounds
        if not (0.0 <= lo < hi < 1.0):
            raise ValueError(f"must be [low, high] with 0 <= low < high < 1, got [{lo:g}, {hi:g}]")
        return bounds


class HardwareAwareBaseline(Strict):
    preset: Optional[Union[str, dict[str, Any]]] = Field(None, description="default: the first device")
    t_inference: Optional[Time] = Field(None, description="default: the first objective time")


class Baselines(Strict):
    erm: bool = Field(True, description="no dropout")
    uniform: list[float] = Field([0.1, 0.2, 0.3, 0.5], description="one rate for every slot; the best on validation wins")
    random: bool = Field(True, description="random search with the same trial budget")
    hardware_aware: Union[bool, HardwareAwareBaseline] = Field(True, description="hardware-aware training, no dropout")

    @field_validator("uniform")
    @classmethod
    def _rates(cls, rates: list[float]) -> list[float]:
        for r in rates:
            if not 0 <= r < 1:
                raise ValueError(f"every rate must lie in [0, 1), got {r:g}")
        return rates


class Report(Strict):
    t_inference: Times = Field(default_factory=lambda: [1.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0])
    n_chips: int = Field(50, ge=1, description="chips per preset and time for the final test numbers")


class Variant(Strict):
    label: str
    model: dict[str, Any] = Field(
        default_factory=dict,
        description="options merged into model.options; with a name (another network), that network's own options only",
    )
    dropout: Union[float, list[float], dict[str, float]] = 0.0
    hardware_aware: bool = False


class Execution(Strict):
    """Where trials run; the command line's --workers / --dask override these."""

    workers: int = Field(1, ge=1, description="parallel trials: local processes, or LocalCluster workers with dask: local")
    dask: Optional[str] = Field(None, description="'local' (a LocalCluster) or a scheduler address tcp://HOST:PORT")
    threads_per_trial: int = Field(
        1, ge=1, description="torch threads of one trial, whatever runs it: results depend on it in the last bits"
    )

    @field_validator("dask")
    @classmethod
    def _address(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and value != "local" and not re.match(r"^(tcp|tls|inproc|ucx)://[^\s]+$", value):
            raise ValueError(f"must be 'local' or a scheduler address such as tcp://10.0.0.5:8786, got {value!r}")
        return value


class Scenario(Strict):
    """One experiment. ``mode: search`` (the BayesFT search and its baselines) or
    ``mode: study`` (train and compare fixed ``variants``, e.g. the component study)."""

    name: str = "scenario"
    description: str = ""
    mode: Literal["search", "study"] = "search"
    seed: int = Field(0, ge=0)
    output: Optional[str] = Field(None, description="run folder (default runs/<name>)")
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda or cuda:N")
    dataset: Annotated[DatasetSpec, BeforeValidator(_by_name)] = Field(default_factory=DatasetSpec)
    model: Annotated[ModelSpec, BeforeValidator(_by_name)] = Field(default_factory=ModelSpec)
    training: models.TrainConfig = Field(default_factory=models.TrainConfig)
    devices: Annotated[list[Union[str, dict[str, Any]]], BeforeValidator(_one_or_list)] = Field(["reram_cmo"], min_length=1, description="device presets")
    t_inference: Times = Field([86400.0], description="times the objective is measured at")
    n_chips: int = Field(20, ge=1, description="simulated chips per trial, preset and time")
    batch_size: int = Field(512, ge=1, description="evaluation batch size")
    chunk_size: Optional[int] = Field(
        None, ge=1, description="chips simulated at once (default: as many as fit in a quarter of free memory)"
    )
    execution: Execution = Field(default_factory=Execution)
    objective: Objective = Field(default_factory=Objective)
    search: SearchSpec = Field(default_factory=SearchSpec)
    baselines: Baselines = Field(default_factory=Baselines)
    variants: list[Variant] = Field(default_factory=list, description="study mode: the networks to compare")
    report: Report = Field(default_factory=Report)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value != "auto":
            crossbar.resolve_device(value)
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, specs: list) -> list:
        names = []
        for i, spec in enumerate(specs):
            try:
                preset = crossbar.resolve_preset(spec)
            except ValueError as e:
                raise ValueError(f"devices[{i}]: {e}") from None
            if isinstance(spec, dict) and "name" not in spec:
                raise ValueError(f"devices[{i}]: a custom preset needs a name (used in reports and plots)")
            names.append(preset.name)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"device names must be unique; repeated: {', '.join(dupes)}")
        return specs

    @model_validator(mode="after")
    def _consistent(self) -> "Scenario":
        for preset in self.presets():
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
            raise ValueError(f"search.n_initial ({self.search.n_initial}) must not exceed search.n_trials ({self.search.n_trials})")
        if isinstance(self.baselines.hardware_aware, HardwareAwareBaseline):
            self.hardware_aware_config()  # validates its preset and time
        if self.mode == "study" and not self.variants:
            raise ValueError("mode study needs variants: a list of {label, model, dropout, hardware_aware}")
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise ValueError("variants: every label must be unique")
        in_shape, n_classes = self.data_shape()
        for where, (name, options), dropout in [("model.options", self.network(), None)] + [
            (f"variants[{i}]", self.network(v.model), v.dropout) for i, v in enumerate(self.variants)
        ]:
            try:
                models.build(name, in_shape, n_classes, dropout=dropout, **options)
            except (ValueError, TypeError) as e:
                raise ValueError(f"{where}: {e}") from None
        return self

    # --- derived values -------------------------------------------------------------

    def presets(self) -> list[crossbar.Preset]:
        return [crossbar.resolve_preset(spec) for spec in self.devices]

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
        preset = spec.preset if spec.preset is not None else self.devices[0]
        t = spec.t_inference if spec.t_inference is not None else self.t_inference[0]
        try:
            return models.HardwareAware(preset=preset, t_inference=t)
        except ValidationError as e:
            raise ValueError(f"baselines.hardware_aware: {_message(e.errors()[0])}") from None

    def network(self, change: Optional[dict] = None) -> tuple[str, dict]:
        """``(name, options)`` of the network to build: the scenario's model with a
        variant's ``change`` merged in; a change that names another network brings
        only its own options (the scenario's may not exist there: mlp's depth for lenet5)."""
        change = dict(change or {})
        name = change.pop("name", self.model.name)
        base = self.model.options if name == self.model.name else {}
        return name, {**base, **change}

    def data_shape(self) -> tuple[tuple[int, int, int], int]:
        if self.dataset.name in DATASET_SHAPES:
            return DATASET_SHAPES[self.dataset.name]
        return (1, 28, 28), 10  # idx: checked against the files when they are read

    def slots(self) -> list[str]:
        in_shape, n_classes = self.data_shape()
        return models.build(self.model.name, in_shape, n_classes, **self.model.options).dropout_slots

    def output_dir(self) -> Path:
        return Path(self.output) if self.output else Path("runs") / self.name

    def plain(self) -> dict[str, Any]:
        """The resolved scenario as plain data (every default filled in, times in seconds)."""
        return self.model_dump(mode="json")


def _check_time(field: str, preset: crossbar.Preset, t: float) -> None:
    try:
        preset.check_time(t)
    except ValueError as e:
        raise ValueError(f"{field}: {e}") from None


def _message(error: dict) -> str:
    msg = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg


def _location(loc: tuple) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]" if parts else f"[{p}]"]
        elif "function-" in str(p) or p in ("str", "bool", "dict[str,any]") or str(p)[:1].isupper():
            continue  # pydantic's tags of union members (types and model names)
        else:
            parts.append(str(p))
    return ".".join(parts)


def format_errors(err: ValidationError, source: str = "scenario") -> str:
    """One line per problem: ``source: field: what is wrong (what is allowed)``."""
    errors = err.errors()
    wheres = [_location(e["loc"]) for e in errors]
    problems: dict[str, list[str]] = {}  # location -> messages (several for a union's members)
    for e, where in zip(errors, wheres):
        if any(other.startswith(where + ".") for other in wheres):
            continue  # a union's other member failed deeper down: that error says more
        msg = _message(e)
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(e["loc"][:-1])
            msg = f"unknown key{did_you_mean(e['loc'][-1], allowed)}" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        if where and msg.startswith(where + "["):
            where = ""  # the message names the list item itself
        problems.setdefault(where, [])
        if msg not in problems[where]:
            problems[where].append(msg)
        if "input" in e and e["type"] not in ("value_error", "assertion_error", "missing", "extra_forbidden"):
            problems[where].append(f"(got {e['input']!r})")
    lines = []
    for where, messages in problems.items():
        got = next((m for m in messages if m.startswith("(got ")), None)
        texts = [m.split(",")[0] if len(messages) > 2 else m for m in messages if not m.startswith("(got ")]
        text = " or ".join([texts[0]] + [t.replace("Input should be ", "") for t in texts[1:]])
        lines.append(f"{source}: {where + ': ' if where else ''}{text}{' ' + got if got else ''}")
    return "\n".join(lines[:5]) + (f"\n{source}: ... and {len(lines) - 5} more" if len(lines) > 5 else "")


def _allowed_keys(loc: tuple) -> list[str]:
    model: Any = Scenario
    for p in loc:
        if isinstance(p, int):
            continue
        field = getattr(model, "model_fields", {}).get(p)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        for c in candidates:  # list[Variant]
            nested += [a for a in getattr(c, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(getattr(model, "model_fields", {}))


def set_path(data: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` (or ``devices.0``) in nested YAML data, creating mappings as needed."""
    keys = dotted.split(".")
    if not all(keys):
        raise ScenarioError(f"--set {dotted}={value}: a key is empty; write e.g. --set search.n_trials=10")
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ScenarioError(f"--set {dotted}: {'.'.join(keys[:i]) or 'value'} is a list; use an index 0..{len(node) - 1}")
            key = int(key)  # type: ignore[assignment]
            if last:
                node[key] = value
            else:
                if isinstance(node[key], str) and keys[:i] == ["devices"]:
                    node[key] = {"name": node[key]}  # a preset's name is short for {name: it}
                node = node[key]
            continue
        if not isinstance(node, dict):
            raise ScenarioError(f"--set {dotted}: {'.'.join(keys[:i])} is not a mapping (it is {node!r})")
        if last:
            node[key] = value
        else:
            if node.get(key) is None:
                node[key] = {}
            elif i == 0 and key == "devices" and keys[1].isdigit():
                node[key] = _one_or_list(node[key])  # devices: pcm is short for devices: [pcm]
            elif isinstance(node[key], str) and i == 0 and key in ("model", "dataset"):
                node[key] = {"name": node[key]}  # model: lenet5 is short for {name: lenet5}
            node = node[key]


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a key given twice in one mapping is an
    error: PyYAML keeps the last value silently, so a block copied and edited in one
    place only would quietly lose the other."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`; its keys may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            line = seen.get(key)
        except TypeError:  # an unhashable key: the base constructor says so
            break
        if line is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice in one mapping ("
                + (f"lines {line} and {key_node.start_mark.line + 1})" if line != key_node.start_mark.line + 1
                   else f"line {line})"), key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: Union[str, Path]) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ScenarioError(f"{path}: is a folder; give a scenario file, e.g. scenarios/drift_1day.yaml")
    if not path.is_file():
        nearby = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f"; {path.parent} holds {', '.join(nearby)}" if nearby else ""
        raise ScenarioError(f"{path}: no such scenario file{hint}")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ScenarioError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario must be a mapping of keys to values, got {type(data).__name__}")
    return data


def load_scenario(
    path: Union[str, Path, None] = None, overrides: Optional[list[str]] = None, data: Optional[dict] = None,
    check_data: bool = True,
) -> tuple[Scenario, dict]:
    """Read, apply ``--set key=value`` overrides, validate. Returns (scenario, raw data).

    Raises :class:`ScenarioError` (one line per problem) for anything that would make
    the run fail, including missing data when ``check_data`` is set.
    """
    source = str(path) if path is not None else "scenario"
    raw = read_yaml(path) if path is not None else dict(data or {})
    if path is not None and "name" not in raw:
        raw["name"] = Path(path).stem
    for item in overrides or []:
        if "=" not in item:
            raise ScenarioError(f"--set {item}: expected key=value, e.g. --set search.n_trials=10")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            if text.lstrip().startswith(("[", "{")):  # meant as a list or mapping: not a plain string
                problem = getattr(e, "problem", None) or str(e).splitlines()[0]
                raise ScenarioError(f"--set {item}: the value is not valid YAML ({problem}); "
                                    "e.g. --set 'devices=[pcm, reram_cmo]'") from None
            value = text  # a string YAML cannot read, e.g. one with ': ' inside
        set_path(raw, key.strip(), value)
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as e:
        raise ScenarioError(format_errors(e, source)) from None
    if check_data:
        try:
            models.check_dataset(scenario.dataset.name, scenario.dataset.root, scenario.dataset.download)
        except (ValueError, FileNotFoundError) as e:
            message = str(e).replace("enable download", "set dataset.download: true (--set dataset.download=true)")
            raise ScenarioError(f"{source}: dataset: {message}") from None
    return scenario, raw
