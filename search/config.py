"""Reading a scenario: the YAML file, ``--set key=value`` overrides, validation.

:func:`load_scenario` returns a validated :class:`~search.schema.Scenario` or raises a
:class:`~search.errors.ScenarioError` of one line per problem, before any work:
anything that would make the run fail, missing data included. YAML is read with a
safe loader that also refuses a key given twice in one mapping.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import ValidationError

import models
from crossbar.durations import parse_duration, readable

from .errors import ScenarioError, format_errors
from .schema import Scenario
from .sections import one_or_list

# parse_duration and readable live in crossbar.durations; kept here for scripts that import them from here
__all__ = ["ScenarioError", "load_scenario", "parse_duration", "read_yaml", "readable", "set_path"]


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
                raise ScenarioError(
                    f"--set {dotted}: {'.'.join(keys[:i]) or 'value'} is a list; use an index 0..{len(node) - 1}"
                )
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
                node[key] = one_or_list(node[key])  # devices: pcm is short for devices: [pcm]
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
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); "
                            "save the scenario as UTF-8") from None
    except OSError as e:
        raise ScenarioError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except RecursionError:
        raise ScenarioError(f"{path}: {TOO_DEEP}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ScenarioError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        raise ScenarioError(f"{path}: the file is empty; a scenario is a mapping of keys to values, "
                            "e.g. devices: [pcm] (see scenarios/drift_1day.yaml and docs/scenarios.md)")
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario must be a mapping of keys to values, got {type(data).__name__}")
    return data


#: Deeper than a scenario ever nests (a preset's group within a device within a list is 4).
MAX_DEPTH = 32
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep; a scenario needs a handful (see docs/scenarios.md)"


def _depth_at_most(data: Any, limit: int) -> bool:
    """Whether ``data``'s lists and mappings nest at most ``limit`` deep (no recursion:
    the data may be nested deeper than Python's stack)."""
    level, seen = [data], set()
    for _ in range(limit + 1):
        below = []
        for node in level:
            if isinstance(node, (dict, list)) and id(node) not in seen:  # a node holding itself counts once
                seen.add(id(node))
                below += node.values() if isinstance(node, dict) else node
        if not below:
            return True
        level = below
    return False


#: More values than a scenario ever needs: what YAML aliases can expand to is refused
#: before anything else looks at it (a few lines of anchors make billions of values).
MAX_VALUES = 100_000


def check_raw(data: Any, source: str) -> None:
    """Refuse, in one line, raw scenario data that would expand beyond :data:`MAX_VALUES`
    (YAML aliases repeat a node without copying it) and any number that is not finite,
    wherever it stands (a preset's parameters, a network's options)."""
    if not _depth_at_most(data, MAX_DEPTH):
        raise ScenarioError(f"{source}: {TOO_DEEP}")
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:  # values once expanded, each shared node counted once per use
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) not in sizes:
            sizes[id(node)] = 0  # a node that contains itself (YAML allows it) counts once
            children = node.values() if isinstance(node, dict) else node
            sizes[id(node)] = 1 + sum(size(child) for child in children)
        return sizes[id(node)]

    if size(data) > MAX_VALUES:
        raise ScenarioError(f"{source}: expands to more than {MAX_VALUES:,} values (YAML anchors and aliases "
                            "repeated?); a scenario needs far fewer")

    def finite(node: Any, where: str, seen: set) -> None:
        if isinstance(node, float) and not math.isfinite(node):
            raise ScenarioError(f"{source}: {where or 'value'}: {node} is not a finite number")
        if isinstance(node, (dict, list)) and id(node) not in seen:
            seen.add(id(node))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                finite(child, f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else str(key)),
                       seen)

    finite(data, "", set())


def _found(value: Any, folder: Path) -> Optional[Path]:
    """A relative path as the current directory has it, else beside the scenario file."""
    if not isinstance(value, str) or not value:
        return None
    given = Path(value).expanduser()
    if given.is_absolute() or given.exists():
        return given
    return folder / given if (folder / given).exists() else None


def beside(raw: dict, folder: Path) -> dict:
    """The scenario's files found where a user expects them: a relative ``model.checkpoint``
    or data ``root`` (``file``) is looked up in the current directory, then beside the
    scenario file; a user's network (``module:callable``) is imported from the
    scenario's folder (``model.path``, default) or the Python path. The checkpoint and
    the module's folder are recorded as absolute paths (workers may start elsewhere)."""
    raw = dict(raw)
    model = raw.get("model")
    if isinstance(model, str) and ":" in model:
        model = {"name": model}
    if isinstance(model, dict):
        model = dict(model)
        if ":" in str(model.get("import", model.get("name", ""))):
            base = _found(model.get("path"), folder) if model.get("path") is not None else folder
            model["path"] = str((base or Path(model["path"])).resolve())
        checkpoint = _found(model.get("checkpoint"), folder)
        if checkpoint is not None:
            model["checkpoint"] = str(checkpoint.resolve())
        raw["model"] = model
    dataset = raw.get("dataset")
    if isinstance(dataset, dict):
        dataset = dict(dataset)
        for key in ("root", "file"):
            value = dataset.get(key)
            found = _found(value, folder)
            if found is not None and not Path(value).expanduser().exists():  # only beside the scenario
                dataset[key] = str(found)
        raw["dataset"] = dataset
    return raw


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
        if key.strip() == "seeds" and not text.strip():  # --seeds '': no seeds is not one run
            raise ScenarioError("--seeds '': name at least one seed, e.g. --seeds 0-4 or --seeds 0,2,5")
        try:
            value = yaml.safe_load(text)
        except RecursionError:
            raise ScenarioError(f"--set {key.strip()}=...: the value is {TOO_DEEP}") from None
        except yaml.YAMLError as e:
            if text.lstrip().startswith(("[", "{")):  # meant as a list or mapping: not a plain string
                problem = getattr(e, "problem", None) or str(e).splitlines()[0]
                raise ScenarioError(f"--set {item}: the value is not valid YAML ({problem}); "
                                    "e.g. --set 'devices=[pcm, reram_cmo]'") from None
            value = text  # a string YAML cannot read, e.g. one with ': ' inside
        set_path(raw, key.strip(), value)
    check_raw(raw, source)
    try:
        scenario = Scenario.model_validate(beside(raw, Path(path).parent) if path is not None else raw)
    except ValidationError as e:
        raise ScenarioError(format_errors(e, Scenario, source)) from None
    if check_data:
        try:
            models.check_dataset(scenario.dataset.name, scenario.dataset.root, scenario.dataset.download,
                                 options=scenario.dataset.options() or None)
        except (ValueError, FileNotFoundError) as e:
            message = str(e).replace("enable download", "set dataset.download: true (--set dataset.download=true)")
            raise ScenarioError(f"{source}: dataset: {message}") from None
    return scenario, raw
