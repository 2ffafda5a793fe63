"""The plain-data records a run passes between its parts and keeps in its files.

A :class:`TrialSpec` goes to an executor, which runs it (:mod:`search.trial`) and hands
back a :class:`TrialRecord` (a line of ``trials.jsonl``) or, for a final network's test
measurement, a :class:`FinalRecord` (a line of ``final.jsonl``). They are dicts, so that
they travel to any worker and into JSON as they are; these types say what they hold.
"""

from __future__ import annotations

from typing import Any, Optional, TypedDict, Union

Rates = Union[list[float], float, dict[str, float]]


class TrialSpec(TypedDict, total=False):
    id: str  # unique in the run: erm, uniform-0.2, bayesft-001, random-003, final-bayesft, ...
    method: str  # a search.methods id, or a study variant's label
    rates: Rates  # one dropout rate per slot (a study variant may give one rate or a mapping)
    hardware_aware: bool  # train with the scenario's hardware-aware noise
    model: dict[str, Any]  # study: changes to the scenario's network
    trial: str  # final: the id of the trial whose rates it trains again
    stage: str  # "final": a test measurement (run_final), else a search trial


class AccuracyRow(TypedDict, total=False):
    preset: str
    t_inference: float
    mean: float
    std: float
    p10: float
    p90: float
    quantile: float
    n_chips: int
    chips: list[float]  # final records only: every chip's accuracy


class TrialRecord(TrialSpec, total=False):
    status: str  # "ok" or "failed"
    reason: Optional[str]  # why it failed
    objective: Optional[float]  # validation objective (0 below objective.min_clean_accuracy)
    feasible: bool
    val_clean: Optional[float]  # clean (digital) validation accuracy
    epochs: int
    accuracy: list[AccuracyRow]  # per preset and objective time, validation chips
    train_seconds: float
    seconds: float
    worker: str  # host:pid of the process that ran it (parallel executors)


class FinalRecord(TrialSpec, total=False):
    status: str
    reason: Optional[str]
    test_clean: Optional[float]  # clean (digital) test accuracy
    val_clean: Optional[float]
    rows: list[AccuracyRow]  # per preset and report time, test chips
    seconds: float
    worker: str
