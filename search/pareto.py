"""Pareto fronts and hypervolumes of trials with several objectives.

Objectives are given with their goals (``True``: maximised). Internally every objective
is turned into one to minimise (maximised ones negated), so that a point dominates
another when it is no worse in every objective and better in one. The hypervolume of a
set of points against a reference point is the volume of the region they dominate and
the reference bounds: larger is better, and only points better than the reference in
every objective count. It is computed exactly (the sweep in two dimensions, slicing by
the last objective above), which is quick for the tens of points a search makes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _minimised(points: Sequence[Sequence[float]], maximise: Sequence[bool]) -> np.ndarray:
    p = np.asarray(points, dtype=float).reshape(len(points), len(maximise))
    return np.where(np.asarray(maximise, dtype=bool), -p, p)


def dominates(a: Sequence[float], b: Sequence[float], maximise: Sequence[bool]) -> bool:
    """Whether ``a`` is no worse than ``b`` in every objective and better in one."""
    x, y = _minimised([a, b], maximise)
    return bool(np.all(x <= y) and np.any(x < y))


def non_dominated(points: Sequence[Sequence[float]], maximise: Sequence[bool]) -> list[int]:
    """The indices of the points no other point dominates (duplicates all kept), in order."""
    if len(points) == 0:
        return []
    p = _minimised(points, maximise)
    keep = []
    for i in range(len(p)):
        worse_or_equal = np.all(p <= p[i], axis=1) & np.any(p < p[i], axis=1)
        if not worse_or_equal.any():
            keep.append(i)
    return keep


def _volume(p: np.ndarray, ref: np.ndarray) -> float:
    """The volume dominated by the minimisation points ``p`` (each < ref) up to ``ref``."""
    if len(p) == 0:
        return 0.0
    if p.shape[1] == 1:
        return float(ref[0] - p[:, 0].min())
    if p.shape[1] == 2:
        order = np.lexsort((p[:, 1], p[:, 0]))
        volume, best = 0.0, ref[1]
        for x, y in p[order]:
            if y < best:
                volume += (ref[0] - x) * (best - y)
                best = y
        return float(volume)
    # slice along the last objective: between consecutive levels, the points at or below a
    # level dominate the (d-1)-dimensional volume of their first objectives
    levels = np.unique(p[:, -1])
    volume = 0.0
    for k, level in enumerate(levels):
        top = levels[k + 1] if k + 1 < len(levels) else ref[-1]
        volume += (top - level) * _volume(p[p[:, -1] <= level, :-1], ref[:-1])
    return float(volume)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float], maximise: Sequence[bool]) -> float:
    """The hypervolume of ``points`` against ``reference`` (points not better than the
    reference in every objective add nothing)."""
    if len(points) == 0:
        return 0.0
    p = _minimised(points, maximise)
    ref = _minimised([reference], maximise)[0]
    p = p[np.all(p < ref, axis=1)]
    if len(p) == 0:
        return 0.0
    return _volume(p[non_dominated(p, [False] * p.shape[1])], ref)
