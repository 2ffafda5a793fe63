"""The plain-data records a run passes between its parts and keeps in its files.

A :class:`TrialSpec` goes to an executor, which runs it (:mod:`search.trial`) and hands
back a :class:`TrialRecord` (a line of ``trials.jsonl``) or, for a final network's test
measurement, a :class:`FinalRecord` (a line of ``final.jsonl``). They are dicts, so that
they travel to any worker and into JSON as they are; these types say what they hold.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional, TypedDict, Union

from .space import TRAINING, in_space

Rates = Union[list[float], float, dict[str, float]]

#: The keys of a trial spec that shape the network's training: a final network trains
#: again with each of these its best trial has.
TRAINING_KEYS = ("hardware_aware", "model", *TRAINING)


class TrialSpec(TypedDict, total=False):
    id: str  # unique in the run: erm, uniform-0.2, bayesft-001, random-003, final-bayesft, ...
    method: str  # a search.methods id, or a study variant's label
    rates: Rates  # one dropout rate per slot (a study variant may give one rate or a mapping)
    hardware_aware: bool  # train with the scenario's hardware-aware noise (the baseline's)
    hwa_scale: float  # a search dimension: train with the objective's device noise at this strength
    model: dict[str, Any]  # study: changes to the scenario's network
    trial: str  # final: the id of the trial whose rates it trains again
    stage: str  # "final": a test measurement (search.trial.final_record), else a search trial


class ScoreRow(TypedDict, total=False):
    preset: str
    t_inference: float
    metric: str  # what mean, std, ... are of: "accuracy", or a detector's "map50"
    mean: float
    std: float
    p10: float
    p90: float
    quantile: float
    n_chips: int
    chips: list[float]  # final records only: every chip's score


class TrialRecord(TrialSpec, total=False):
    status: str  # "ok" or "failed"
    reason: Optional[str]  # why it failed
    objective: Optional[float]  # validation objective (0 below objective.min_clean_score)
    feasible: bool
    val_clean: Optional[float]  # clean (digital) validation score: accuracy, or a detector's mAP
    epochs: int
    scores: list[ScoreRow]  # per preset and objective time, validation chips
    accuracy: list[ScoreRow]  # the old name of scores, the same rows (kept for scripts that read it)
    train_seconds: float
    seconds: float
    worker: str  # host:pid of the process that ran it (parallel executors)


class FinalRecord(TrialSpec, total=False):
    status: str
    reason: Optional[str]
    test_clean: Optional[float]  # clean (digital) test score
    val_clean: Optional[float]
    rows: list[ScoreRow]  # per preset and report time, test chips
    seconds: float
    worker: str


# ------------------------------------------------------------------ checks of records read back


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _rates_problem(rates: Any, n_slots: Optional[int]) -> Optional[str]:
    values = rates if isinstance(rates, list) else list(rates.values()) if isinstance(rates, dict) else [rates]
    if n_slots is not None and (not isinstance(rates, list) or len(rates) != n_slots):
        return f"rates should be a list of {n_slots} dropout rates, not {rates!r:.60}"
    if not all(_number(r) and 0 <= r < 1 for r in values):
        return f"rates should be numbers in [0, 1), not {rates!r:.60}"
    return None


def _common_problem(record: Any) -> Optional[str]:
    if not isinstance(record, dict):
        return f"a {type(record).__name__}, not a record (a JSON object)"
    for key in ("id", "method"):
        if not isinstance(record.get(key), str) or not record[key]:
            return f"no {key}" if key not in record else f"{key} should be a name, not {record[key]!r:.40}"
    if record.get("status") not in ("ok", "failed"):
        return f"status should be 'ok' or 'failed', not {record.get('status')!r:.40}"
    return None


def trial_problem(record: Any, n_slots: Optional[int] = None, ids: Optional[set] = None,
                  dims: Optional[list] = None, searched: Iterable[str] = ()) -> Optional[str]:
    """What is wrong with a record read back from ``trials.jsonl``, or None. With a
    scenario's ``n_slots``, trial ``ids`` and search space ``dims`` (which the trials of
    the ``searched`` methods must keep), a record must fit that scenario too."""
    problem = _common_problem(record)
    if problem:
        return problem
    if ids is not None and record["id"] not in ids:
        return f"{record['id']!r} is not a trial of this scenario"
    problem = _rates_problem(record.get("rates"), n_slots)
    if problem:
        return problem
    if dims is not None and record["method"] in set(searched):
        problem = in_space(dims, record)
        if problem:
            return problem
    if record["status"] == "ok":
        objective = record.get("objective")
        if not _number(objective) or not 0 <= objective <= 1:
            return f"objective should be a finite number in [0, 1], not {objective!r:.40}"
    return None


def worst(higher_is_better: bool = True) -> float:
    """The objective of a failed trial, or of one that missed ``objective.min_clean_score``:
    the worst a score in [0, 1] gets."""
    return 0.0 if higher_is_better else 1.0


def best_of_each_method(records: Iterable[TrialRecord], higher_is_better: bool = True) -> dict[str, TrialRecord]:
    """The best finished trial of each method by its validation objective (the first, on a tie)."""
    sign = 1.0 if higher_is_better else -1.0
    best: dict[str, TrialRecord] = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        method = record["method"]
        if method not in best or sign * record["objective"] > sign * best[method]["objective"]:
            best[method] = record
    return best


def final_problem(record: Any) -> Optional[str]:
    """What is wrong with a record read back from ``final.jsonl``, or None."""
    problem = _common_problem(record)
    if problem:
        return problem
    problem = _rates_problem(record.get("rates"), None)
    if problem:
        return problem
    if record["status"] == "ok":
        rows = record.get("rows")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return "rows should be a list of test measurements"
        for row in rows:
            if not isinstance(row.get("preset"), str) or not all(
                    _number(row.get(k)) for k in ("t_inference", "mean", "std", "p10", "p90")):
                return f"a row should hold a preset, a time and finite scores, not {row!r:.60}"
        if not _number(record.get("test_clean")):
            return f"test_clean should be a finite number, not {record.get('test_clean')!r:.40}"
    return None
