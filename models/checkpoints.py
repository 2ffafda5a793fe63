"""Checkpoints: a network's spec, dropout rates and weights as plain data.

They load with ``torch.load(weights_only=True)``: a file holding anything else is
refused rather than unpickled.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from crossbar.common import resolve_device

from .networks import DropoutNet, build

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Union[str, os.PathLike], model: DropoutNet, **meta: Any) -> Path:
    """Save a network built by :func:`models.build` with its spec, dropout rates and any
    plain-data ``meta`` (numbers, strings, lists, dicts). Written atomically."""
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError("save_checkpoint needs a network made by models.build (it has no spec)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "spec": dict(spec),
        "dropout": list(model.dropout_rates),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(
    path: Union[str, os.PathLike], device: "str | torch.device | None" = "cpu"
) -> tuple[DropoutNet, dict]:
    """``(model, meta)`` from :func:`save_checkpoint`; the model is in eval mode.

    Loads with ``weights_only=True``: a file holding anything but tensors and plain data
    is refused rather than unpickled.
    """
    path = Path(path)
    payload = _safe_load(path, "write checkpoints with models.save_checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        held = f"format {payload.get('format')!r}" if isinstance(payload, dict) else f"a {type(payload).__name__}"
        raise ValueError(
            f"{path} is not a checkpoint of format {CHECKPOINT_FORMAT} (models.save_checkpoint's), found {held}"
        )
    model = build(**payload["spec"], dropout=payload["dropout"])
    model.load_state_dict(payload["state_dict"])
    model.to(resolve_device(device)).eval()
    return model, payload["meta"]


def _safe_load(path: Path, advice: str) -> Any:
    """``torch.load(path, weights_only=True)``, or one line saying why the file cannot be
    read safely (a pickled Python object is refused, never unpickled)."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # torch's message advises weights_only=False; say what the file holds instead
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            reason = (f"it holds Python objects ({found.group(1)}) besides tensors and plain data, "
                      "and is refused rather than unpickled")
        else:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            detail = next((ln for ln in lines if ln.startswith("Unsupported")), lines[0] if lines else "no detail")
            reason = f"torch.load cannot read it ({type(e).__name__}: {detail})"
        raise ValueError(f"{path} is not a checkpoint this tool can load safely: {reason}; {advice}") from None


STATE_DICT_ADVICE = "save the weights as a state dict: torch.save(model.state_dict(), path)"


def load_weights(model: nn.Module, path: Union[str, os.PathLike]) -> nn.Module:
    """Load trained weights into ``model`` (in place; returned in eval mode) from a file
    holding its state dict (``torch.save(model.state_dict(), path)``), or a mapping with
    one under ``"state_dict"`` (a :func:`save_checkpoint` file, a Lightning checkpoint).

    Loads with ``weights_only=True``. ValueError of one line for a pickled model (refused)
    and for keys or shapes that do not fit ``model`` (the missing and unexpected keys named).
    """
    path = Path(path)
    payload = _safe_load(path, STATE_DICT_ADVICE)
    state = payload.get("state_dict") if isinstance(payload, dict) and isinstance(
        payload.get("state_dict"), dict) else payload
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        held = f"keys {', '.join(map(str, list(payload)[:6]))}" if isinstance(payload, dict) \
            else f"a {type(payload).__name__}"
        raise ValueError(f"{path} holds no state dict (a mapping of parameter names to tensors), found {held}; "
                         f"{STATE_DICT_ADVICE}")
    problem = fit_problem(model, state)
    if problem:
        raise ValueError(f"{path} does not fit {type(model).__name__}: {problem}")
    model.load_state_dict(state)
    return model.eval()


def _names(keys: list[str], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def fit_problem(model: nn.Module, state: dict) -> str:
    """What keeps ``state`` from loading into ``model`` (strictly), or ``""``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    parts = []
    if missing:
        parts.append(f"missing keys {_names(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_names(unexpected)}")
    if unexpected and all(k.startswith("module.") for k in unexpected):
        parts.append("(saved from DataParallel? save model.module.state_dict())")
    shapes = [f"{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the network"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if shapes:
        parts.append(f"shapes differ: {_names(shapes, 3)}")
    return "; ".join(parts)
