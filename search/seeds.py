"""Seeds as people write them: ``0-4``, ``0,2,5``, ``3`` or a list."""

from __future__ import annotations

import re
from typing import Any

#: The most seeds one command repeats the experiment over: each is a whole run (five
#: give an interval; a hundred is already a day or more of a scenario's runs).
MAX_SEEDS = 100


def parse_seeds(text: Any) -> list[int]:
    """Seeds from ``"0-4"``, ``"0,2,5"``, ``"3"``, an int or a list of ints."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a list of seeds")
    if isinstance(text, int):
        values = [text]
    elif isinstance(text, (list, tuple)):
        values = list(text)
    elif isinstance(text, str):
        values = []
        for part in text.replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not match:
                raise ValueError(f"{text!r} is not a list or range of seeds; e.g. 0-4 or 0,2,5")
            lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
            if hi < lo:
                raise ValueError(f"{part!r}: a range of seeds goes up, e.g. 0-4")
            if hi - lo >= MAX_SEEDS:
                raise ValueError(_too_many(hi - lo + 1))
            values += list(range(lo, hi + 1))
    else:
        raise ValueError(f"{text!r} is not a list or range of seeds; e.g. 0-4 or 0,2,5")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32:
            raise ValueError(f"a seed is an integer in [0, 2^32), not {v!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"each seed once; {values} repeats one")
    if not values:
        raise ValueError("list at least one seed")
    if len(values) > MAX_SEEDS:
        raise ValueError(_too_many(len(values)))
    return values


def _too_many(n: int) -> str:
    return f"{n:,} seeds: at most {MAX_SEEDS} (each seed is a whole run of the scenario); e.g. 0-4"
