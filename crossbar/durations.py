"""Times since programming: seconds, or readable durations (``1d``, ``30min``, ``1 day``).

The simulator counts in seconds, as aihwkit does; these turn the durations people write
into seconds (:func:`parse_duration`, accepted wherever a time is) and seconds back into
labels (:func:`readable`: ``1d``) and words for messages (:func:`in_words`: ``1 day``).
"""

from __future__ import annotations

import math
import re
from typing import Any

#: Seconds per unit; ``y`` is 365 days.
UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "y": 365 * 86400.0}
_WORDS = {"second": "s", "minute": "min", "hour": "h", "day": "d", "week": "w", "year": "y"}
UNIT_NAMES = {**UNITS, **{w: UNITS[u] for w, u in _WORDS.items()}, **{w + "s": UNITS[u] for w, u in _WORDS.items()}}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)\s*$")
_LARGEST_FIRST = ("y", "w", "d", "h", "min")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a readable duration (``"1d"``, ``"30min"``, ``"1 year"``)."""
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


def _whole(seconds: float) -> "tuple[str, int] | None":
    """The largest unit that divides ``seconds`` evenly, and how many of it."""
    for unit in _LARGEST_FIRST:
        size = UNITS[unit]
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 1e-9:
            return unit, round(seconds / size)
    return None


def readable(seconds: float) -> str:
    """``86400 -> '1d'``: the largest unit that divides the time evenly, for labels."""
    whole = _whole(seconds)
    return f"{whole[1]}{whole[0]}" if whole else f"{seconds:g}s"


def in_words(seconds: float) -> str:
    """``86400 -> '1 day'``, ``172800 -> '2 days'``, ``3 -> '3 s'``: for messages (and
    :func:`parse_duration` reads it back)."""
    whole = _whole(seconds)
    if whole is None:
        return f"{seconds:g} s"
    unit, n = whole
    word = next(w for w, u in _WORDS.items() if u == unit)
    return f"{n} {word}{'s' * (n != 1)}"
