"""Non-domination and hypervolume on fronts made by hand, and against a Monte Carlo
estimate in three objectives."""

import itertools

import numpy as np
import pytest

from search.pareto import dominates, hypervolume, non_dominated

UP_DOWN = [True, False]  # a score maximised, a cost minimised


def test_domination():
    assert dominates([0.9, 1.0], [0.8, 2.0], UP_DOWN)
    assert dominates([0.9, 1.0], [0.9, 2.0], UP_DOWN)  # equal in one, better in the other
    assert not dominates([0.9, 1.0], [0.9, 1.0], UP_DOWN)  # equal: neither
    assert not dominates([0.9, 3.0], [0.8, 2.0], UP_DOWN)  # a trade-off: neither
    assert not dominates([0.8, 2.0], [0.9, 3.0], UP_DOWN)


def test_the_front_of_a_hand_made_set():
    points = [[0.9, 3.0], [0.8, 2.0], [0.7, 2.5], [0.5, 1.0], [0.9, 3.5], [0.8, 2.0]]
    # [0.7, 2.5] is dominated by [0.8, 2.0]; [0.9, 3.5] by [0.9, 3.0]; the duplicates both stay
    assert non_dominated(points, UP_DOWN) == [0, 1, 3, 5]
    assert non_dominated([], UP_DOWN) == []


def test_the_hypervolume_of_a_staircase():
    ref = [0.0, 4.0]
    # boxes: score 0.5 x cost (4 - 1) = 1.5; then 0.3 more score x (4 - 2) = 0.6; then 0.1 x (4 - 3) = 0.1
    points = [[0.5, 1.0], [0.8, 2.0], [0.9, 3.0]]
    assert hypervolume(points, ref, UP_DOWN) == pytest.approx(1.5 + 0.6 + 0.1)
    assert hypervolume(points + [[0.6, 2.5]], ref, UP_DOWN) == pytest.approx(2.2)  # a dominated point adds nothing
    assert hypervolume([[0.5, 5.0]], ref, UP_DOWN) == 0.0  # worse than the reference in the cost
    assert hypervolume([], ref, UP_DOWN) == 0.0
    # order does not matter
    for perm in itertools.permutations(points):
        assert hypervolume(list(perm), ref, UP_DOWN) == pytest.approx(2.2)


def test_three_objectives_agree_with_monte_carlo():
    rng = np.random.default_rng(0)
    points = rng.uniform(0.0, 1.0, size=(12, 3))
    ref = np.array([1.0, 1.0, 1.0])
    maximise = [False, False, False]
    exact = hypervolume(points.tolist(), ref.tolist(), maximise)
    samples = rng.uniform(0.0, 1.0, size=(200_000, 3))
    dominated = np.zeros(len(samples), dtype=bool)
    for p in points:
        dominated |= np.all(samples >= p, axis=1)
    share = dominated.mean()
    se = np.sqrt(share * (1 - share) / len(samples))
    assert abs(exact - share) < 4 * se  # the unit cube's volume is 1


def test_a_single_objective_is_the_distance_to_the_reference():
    assert hypervolume([[0.7], [0.9]], [0.2], [True]) == pytest.approx(0.7)
