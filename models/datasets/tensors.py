"""``tensors``: a researcher's own arrays in one file (the data set's ``root`` is the file),
pooled and split like ``digits``.

- ``.pt``: ``torch.save({"x": images, "y": labels}, "data.pt")`` (torch tensors), read
  with ``torch.load(weights_only=True)``: a file holding other Python objects (numpy
  arrays, a ``TensorDataset``) is refused, never unpickled.
- ``.npz``: ``numpy.savez("data.npz", x=images, y=labels)``, read with
  ``allow_pickle=False``.

Keys: the inputs under ``x`` (or ``images``, ``inputs``), the labels under ``y`` (or
``labels``, ``targets``), the class names optionally under ``classes``. Inputs are
``(N, C, H, W)`` or ``(N, H, W)`` (one channel added); uint8 ones (or other integers in
0..255) are divided by 255, floating-point ones kept as they are. Labels: N integers
0..K-1, K the number of ``classes`` where given, else the largest label + 1.
:func:`check_tensors` reads the keys, the inputs' shape and type (not their values) and
the labels, and says in one line what would stop loading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import BadData, DatasetNotFound
from .base import Dataset, register_dataset

NAME = "tensors"
X_KEYS = ("x", "images", "inputs")
Y_KEYS = ("y", "labels", "targets")
SUFFIXES = (".pt", ".npz")
SAVE = ('save plain tensors: torch.save({"x": images, "y": labels}, "data.pt") with torch tensors '
        '(or numpy.savez("data.npz", x=images, y=labels))')


@dataclass
class _Array:
    """One array of the file: its shape and kind (``uint8``, ``int``, ``float``, ``bool``,
    ``other``) known from its header, its values read on demand; ``fault``: why it cannot
    be used at all (not a tensor, Python objects)."""

    shape: tuple[int, ...]
    dtype: str
    kind: str
    read: Callable[[], Tensor]
    fault: str = ""


def _torch_array(value: Any) -> _Array:
    if not isinstance(value, Tensor):
        return _Array((), type(value).__name__, "other", torch.empty, f"is a {type(value).__name__}, not a tensor")
    kind = ("uint8" if value.dtype == torch.uint8 else "bool" if value.dtype == torch.bool
            else "float" if value.dtype.is_floating_point else "other" if value.dtype.is_complex else "int")
    return _Array(tuple(value.shape), str(value.dtype).removeprefix("torch."), kind, lambda: value)


def _numpy_kind(dtype: np.dtype) -> str:
    if dtype == np.uint8:
        return "uint8"
    return {"u": "int", "i": "int", "f": "float", "b": "bool"}.get(dtype.kind, "other")


def expected_file(root: Path) -> str:
    if root.is_dir():
        found = sorted(p.name for suffix in SUFFIXES for p in root.glob(f"*{suffix}"))
        hint = f" (it holds {', '.join(found[:3])})" if found else ""
        return f"{root} is a folder{hint}; root (file:) names the .pt or .npz file itself"
    return f"no file {root} (expected a .pt or .npz file of inputs and labels)"


def _load_pt(path: Path, lazy: bool = True) -> Any:
    try:  # lazy: the storages mapped, not read (files of torch's zip format)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=lazy)
    except Exception as e:  # noqa: BLE001 - whatever torch.load raises, said in one line
        if lazy:
            return _load_pt(path, False)  # an old (non-zip) file cannot be mapped
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise BadData(f"dataset {NAME!r}: {path} holds Python objects ({found.group(1)}) besides tensors and "
                          f"plain data, and is refused rather than unpickled; {SAVE}") from None
        # torch's first line advises weights_only=False: give its detail instead, or just the error's type
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "weights_only" not in ln]
        detail = next((ln for ln in lines if ln.startswith("Unsupported")), lines[0] if lines else "")
        reason = f"{type(e).__name__}: {detail.split('. ')[0]}" if detail else type(e).__name__
        raise DatasetNotFound(f"dataset {NAME!r}: torch.load cannot read {path}, not a file torch.save wrote "
                              f"({reason}); {SAVE}") from None


def _npz_array(npz: Any, key: str) -> _Array:
    def read() -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(npz[key]))

    try:  # the .npy header only
        with npz.zip.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(f)
    except Exception:  # noqa: BLE001 - read it whole instead, which says what is wrong
        try:
            array = npz[key]
        except ValueError:
            return _Array((), "object", "other", read, "holds Python objects (an object array)")
        shape, dtype = array.shape, array.dtype
    if dtype.hasobject:
        return _Array((), "object", "other", read, "holds Python objects (an object array)")
    return _Array(tuple(shape), str(dtype), _numpy_kind(dtype), read)


def _contents(path: Path) -> tuple[dict[str, _Array], Any, Callable[[], None]]:
    """The file's arrays by key (their values read on demand), its ``classes`` (None
    where it has none) and what closes it."""
    if path.suffix == ".pt":
        payload = _load_pt(path)
        if not isinstance(payload, dict):
            raise BadData(f"dataset {NAME!r}: {path} holds a {type(payload).__name__}, not a dict of tensors; {SAVE}")
        arrays = {str(key): _torch_array(value) for key, value in payload.items() if key != "classes"}
        return arrays, payload.get("classes"), lambda: None
    if path.suffix == ".npz":
        try:
            npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            # numpy's ValueError advises allow_pickle: say what the file is not instead
            reason = "neither a zip of .npy arrays nor one array" if isinstance(e, ValueError) else str(e)
            raise DatasetNotFound(f"dataset {NAME!r}: numpy cannot read {path} as an .npz file ({reason}); "
                                  f"{SAVE}") from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise BadData(f"dataset {NAME!r}: {path} holds one array, not named arrays x and y; {SAVE}")
        try:
            classes = npz["classes"].tolist() if "classes" in npz.files else None
        except ValueError:
            npz.close()
            raise BadData(f"dataset {NAME!r}: {path}: 'classes' holds Python objects; save a list of names "
                          "(numpy.savez(..., classes=numpy.array(names)))") from None
        return {key: _npz_array(npz, key) for key in npz.files if key != "classes"}, classes, npz.close
    raise BadData(f"dataset {NAME!r}: {path} has suffix {path.suffix or '(none)'!r}; the file must be .pt "
                  f"(torch.save) or .npz (numpy.savez)")


def _pick(path: Path, arrays: dict[str, _Array], keys: tuple[str, ...], what: str) -> tuple[str, _Array]:
    for key in keys:
        if key in arrays:
            if arrays[key].fault:
                raise BadData(f"dataset {NAME!r}: {path}: {what} {key!r} {arrays[key].fault}; {SAVE}")
            return key, arrays[key]
    found = f"found {', '.join(map(repr, arrays))}" if arrays else "found no arrays"
    raise BadData(f"dataset {NAME!r}: {path} has no {what} under {' / '.join(map(repr, keys))}; {found}; {SAVE}")


def _read(path: Path, read_inputs: bool) -> tuple[_Array, Optional[Tensor], Tensor, list[str], tuple[int, int, int]]:
    """The inputs (their values only where ``read_inputs``), the labels, the class names
    and the input shape, each checked: one line for the first fault."""
    arrays, classes, close = _contents(path)
    try:
        xk, x = _pick(path, arrays, X_KEYS, "inputs")
        yk, y = _pick(path, arrays, Y_KEYS, "labels")
        at = f"dataset {NAME!r}: {path}:"
        if len(x.shape) not in (3, 4):
            raise BadData(f"{at} inputs {xk!r} must be (N, C, H, W) or (N, H, W), got shape {x.shape}")
        if x.kind not in ("uint8", "int", "float"):
            raise BadData(f"{at} inputs {xk!r} are {x.dtype}: they must be uint8 (0..255) or floating point")
        if len(y.shape) != 1:
            raise BadData(f"{at} labels {yk!r} must be one per input, shape (N,), got shape {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise BadData(f"{at} {x.shape[0]} inputs {xk!r} but {y.shape[0]} labels {yk!r}: they must be as many")
        if x.shape[0] == 0:
            raise BadData(f"{at} holds no samples (inputs {xk!r} of shape {x.shape})")
        if y.kind not in ("uint8", "int"):
            raise BadData(f"{at} labels {yk!r} are {y.dtype}, not integers: save them as integers 0..K-1 "
                          "(labels.long())")
        labels = y.read().to(torch.long)
        if int(labels.min()) < 0:
            raise BadData(f"{at} labels {yk!r} must be integers 0..K-1, found {int(labels.min())}")
        top = int(labels.max())
        if classes is not None:
            if not isinstance(classes, (list, tuple)):
                raise BadData(f"{at} classes must be a list of names, got {type(classes).__name__}")
            classes = [str(c) for c in classes]
            if len(classes) <= top:
                raise BadData(f"{at} {len(classes)} classes named but the labels reach {top} (0..K-1 for K classes)")
        else:
            classes = [str(c) for c in range(top + 1)]
        shape = tuple(x.shape[1:]) if len(x.shape) == 4 else (1, *x.shape[1:])
        inputs = x.read() if read_inputs else None
    finally:
        close()
    return x, inputs, labels, classes, shape  # type: ignore[return-value]


def tensors_shape(root: Path) -> tuple[tuple[int, int, int], int]:
    """``((C, H, W), n_classes)`` from the file's keys, the inputs' header and the labels."""
    _, _, _, classes, shape = _read(root, read_inputs=False)
    return shape, len(classes)


def check_tensors(root: Path) -> None:
    """What would stop :func:`load_tensors`, found before any work (the inputs' values
    are not read: integer ones outside 0..255 and non-finite ones are found on loading)."""
    _read(root, read_inputs=False)


def load_tensors(root: Path, download: bool, verify: bool) -> tuple[Tensor, Tensor, list[str]]:
    """The inputs as float32 ``(N, C, H, W)`` (uint8 and integers divided by 255), the
    labels and the class names."""
    x, inputs, labels, classes, shape = _read(root, read_inputs=True)
    assert inputs is not None
    if x.kind == "float":
        inputs = inputs.to(torch.float32)
        if not bool(torch.isfinite(inputs).all()):
            raise BadData(f"dataset {NAME!r}: {root}: the inputs hold NaN or infinite values")
    else:
        low, high = int(inputs.min()), int(inputs.max())
        if low < 0 or high > 255:
            raise BadData(f"dataset {NAME!r}: {root}: integer inputs ({x.dtype}) must lie in 0..255 (they are "
                          f"divided by 255), found {low}..{high}; save floats to keep other values as they are")
        inputs = inputs.to(torch.float32) / 255.0
    return inputs.reshape(len(labels), *shape), labels, classes


def _present(root: Path) -> bool:
    return root.is_file()


register_dataset(Dataset(
    NAME, 'your own arrays in one file: .pt (torch.save({"x": images, "y": labels})) or .npz (numpy.savez)',
    load_tensors, official_test=False, scale=1.0, shape=None, n_classes=None, read_shape=tensors_shape,
    guess=((1, 28, 28), 10), files=expected_file, present=_present, check=check_tensors, needs_root=True,
    root_is="the .pt or .npz file holding its arrays (file: data.pt)"))
