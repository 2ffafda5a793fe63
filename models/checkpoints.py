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
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
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
        raise ValueError(
            f"{path} is not a checkpoint this tool can load safely: {reason}; "
            "write checkpoints with models.save_checkpoint"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        held = f"format {payload.get('format')!r}" if isinstance(payload, dict) else f"a {type(payload).__name__}"
        raise ValueError(
            f"{path} is not a checkpoint of format {CHECKPOINT_FORMAT} (models.save_checkpoint's), found {held}"
        )
    model = build(**payload["spec"], dropout=payload["dropout"])
    model.load_state_dict(payload["state_dict"])
    model.to(resolve_device(device)).eval()
    return model, payload["meta"]
