"""A researcher's own network, named ``module:callable`` wherever a network's name goes.

    net = models.build("my_nets:SmallResNet", (1, 16, 16), 10, width=8)

``module`` is imported as Python imports it (a folder given to :func:`import_network`,
e.g. the scenario's, is searched first); ``callable`` (a class or a function, dotted
names allowed: ``my_nets:Zoo.small``) is called with the options as keyword arguments,
plus ``in_shape``, ``n_classes`` (or torchvision's ``num_classes``) when its signature
takes them and the options do not give them. It must return an ``nn.Module``.

For a search over dropout rates the network needs dropout slots: a
:class:`models.DropoutNet` that places ``self.slot("name")`` where a dropout goes. Its
``task`` attribute (default ``"classification"``) says what it does. Workers (local
processes, Dask) import the module the same way, so it needs no ``if __name__ ==
"__main__"`` guard and nothing it runs at import time should start work.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from crossbar.common import check_seed

REF_HINT = "module:callable, e.g. my_nets:SmallResNet (my_nets.py beside the scenario or on the Python path)"


def is_import(name: str) -> bool:
    """Whether ``name`` names a user's network (``module:callable``) rather than a registered one."""
    return isinstance(name, str) and ":" in name


def import_network(ref: str, path: "str | Path | None" = None) -> Callable[..., nn.Module]:
    """The callable ``ref`` names (``module:callable``); ``path``: a folder searched
    before the Python path. ValueError of one line when it cannot be imported."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr or ":" in attr:
        raise ValueError(f"{ref!r} does not name a network as {REF_HINT}")
    if path is not None:
        folder = str(Path(path).resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
    where = f" (looked in {path} and on the Python path)" if path is not None else " (looked on the Python path)"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise ValueError(f"{ref}: no module {module_name!r}{where}") from None
        raise ValueError(f"{ref}: importing {module_name} failed: {type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's module: whatever it raises, say it in one line
        raise ValueError(f"{ref}: importing {module_name} failed: {type(e).__name__}: {_first(e)}") from None
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
            raise ValueError(f"{ref}: module {module_name} ({getattr(module, '__file__', '?')}) has no {attr!r}; "
                             f"it defines {', '.join(names) or 'no callables'}")
        found = getattr(found, part)
    if not callable(found):
        raise ValueError(f"{ref}: {attr} is a {type(found).__name__}, not a class or function that makes a network")
    return found


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def imported_task(ref: str) -> str:
    """What the user's network does: its ``task`` attribute, default classification."""
    return getattr(import_network(ref), "task", "classification")


def build_imported(ref: str, in_shape: tuple, n_classes: int, options: dict) -> nn.Module:
    """The user's network: ``callable(**options)``, with ``in_shape`` / ``n_classes`` /
    ``num_classes`` added where its signature takes them and the options do not."""
    make = import_network(ref)
    kwargs = dict(options)
    try:
        params = inspect.signature(make).parameters
    except (TypeError, ValueError):  # a builtin without a signature: options as they are
        params = {}
    for key, value in (("in_shape", tuple(in_shape)), ("n_classes", n_classes), ("num_classes", n_classes)):
        if key in params and key not in kwargs:
            kwargs[key] = value
    if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            raise ValueError(f"{ref}: unknown option(s) {', '.join(unknown)}; it takes "
                             f"{', '.join(params) or 'no options'}")
    try:
        net = make(**kwargs)
    except Exception as e:  # noqa: BLE001 - the user's constructor
        raise ValueError(f"{ref}({', '.join(f'{k}={v!r}' for k, v in options.items())}) failed: "
                         f"{type(e).__name__}: {_first(e)}") from None
    if not isinstance(net, nn.Module):
        raise ValueError(f"{ref} returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def set_rates(net: nn.Module, ref: str, rates: Any) -> None:
    """Dropout rates for a user's network: through its slots (a :class:`models.DropoutNet`);
    one without slots takes only no rates (None or 0)."""
    if hasattr(net, "set_dropout") and hasattr(net, "dropout_slots"):
        net.set_dropout(rates)
        return
    if rates is None or (isinstance(rates, (int, float)) and not isinstance(rates, bool) and rates == 0) \
            or (isinstance(rates, (list, dict)) and not rates):
        return
    raise ValueError(f"{ref}: dropout rates {rates!r} given, but {type(net).__name__} has no dropout slots; make it "
                     "a models.DropoutNet that places self.slot('name') where a dropout goes")


def slots_of(net: nn.Module) -> list[str]:
    """A network's dropout slots (none for a module that is not a :class:`models.DropoutNet`)."""
    return list(getattr(net, "dropout_slots", []))


def build_user(ref: str, in_shape: Sequence[int], n_classes: int, dropout: Any, seed: Optional[int],
               options: dict) -> nn.Module:
    """:func:`models.build` of a user's network: initial weights from ``seed``, the
    dropout rates set through its slots, its ``spec`` recorded (checkpoints rebuild it)."""
    in_shape = tuple(int(d) for d in in_shape)
    if seed is None:
        net = build_imported(ref, in_shape, n_classes, options)
    else:
        check_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_imported(ref, in_shape, n_classes, options)
    set_rates(net, ref, dropout)
    net.spec = {"name": ref, "in_shape": list(in_shape), "n_classes": n_classes, **options}
    return net


def output_problem(net: nn.Module, in_shape: Sequence[int], n_classes: int) -> str:
    """What keeps a classifier from being scored (``""``: nothing): its forward on two
    inputs of ``in_shape`` must return one tensor of ``(2, n_classes)`` class scores
    (a scenario has no way to pick them from a tuple or a dict)."""
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            y = net(torch.zeros(2, *in_shape))
    except Exception as e:  # noqa: BLE001 - the user's forward
        return f"its forward fails on 2 inputs of shape {tuple(in_shape)}: {type(e).__name__}: {_first(e)}"
    finally:
        net.train(was)
    if not isinstance(y, torch.Tensor):
        what = f"a dict ({', '.join(map(str, y))})" if isinstance(y, dict) else f"a {type(y).__name__}"
        return (f"it returns {what}, not a tensor of class scores; return the scores alone (a scenario's network "
                "returns one (batch, classes) tensor)")
    if tuple(y.shape) != (2, n_classes):
        return f"it returns shape {tuple(y.shape)} for 2 inputs, not (2, {n_classes}): one score per class"
    return ""
