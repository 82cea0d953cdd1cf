"""Evolutionary search over an abstract config space, Pareto fronts and family selection."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynofa_ros.search.errors import SearchError
from dynofa_ros.search.evolution import (
    EvolutionOptions,
    EvolutionSearch,
    SubnetSpace,
    limit_range,
)
from dynofa_ros.search.pareto import (
    Candidate,
    dominated_fraction,
    dominates,
    pareto_front,
    select_spread,
)
from dynofa_ros.supernet.config import SearchSpace

N = 8  # genes, each 0..4


class ToySpace:
    """Configs are tuples of N ints in 0..4; the last gene plays the resolution."""

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        return tuple(rng.randint(0, 4) for _ in range(N))

    def mutate(self, cfg, rng, arch_prob, resolution_prob):
        out = [rng.randint(0, 4) if rng.random() < arch_prob else g for g in cfg[:-1]]
        r = rng.randint(0, 4) if rng.random() < resolution_prob else cfg[-1]
        return (*out, r)

    def crossover(self, a, b, rng):
        return tuple(rng.choice(p) for p in zip(a, b, strict=True))

    def key(self, cfg):
        return cfg

    def fastest(self):
        return [(0,) * N]


WEIGHTS = (1.0, 2.0, 0.5, 3.0, 1.5, 0.7, 2.5, 1.2)  # latency cost per unit of each gene
VALUES = (1.0, 1.0, 1.0, 2.0, 0.5, 0.2, 3.0, 2.0)  # accuracy gain per unit (concave)


def latency(cfgs):
    return [1.0 + sum(w * g for w, g in zip(WEIGHTS, c, strict=True)) for c in cfgs]


def accuracy(cfgs):
    return [sum(v * (g**0.5) for v, g in zip(VALUES, c, strict=True)) for c in cfgs]


def _best_under(limit: float) -> float:
    best = -1.0
    for c in itertools.product(range(5), repeat=N):
        if latency([c])[0] <= limit:
            best = max(best, accuracy([c])[0])
    return best


def test_search_meets_the_limit_and_finds_near_optimal_configs() -> None:
    opts = EvolutionOptions(population=60, generations=25, seed=1)
    search = EvolutionSearch(ToySpace(), latency, accuracy, opts, progress=False)
    for limit in (10.0, 25.0):
        result = search.run(limit)
        assert result.best.latency_ms <= limit
        assert result.best.accuracy >= 0.97 * _best_under(limit)
        assert result.best_per_generation == sorted(result.best_per_generation)  # elitist
    # every evaluated candidate's figures are the injected functions' values
    for c in search.evaluator.candidates():
        assert c.latency_ms == latency([c.config])[0] and c.accuracy == accuracy([c.config])[0]
    front = search.front()
    assert all(not dominates(b, a) for a in front for b in front)


def test_search_is_deterministic_for_a_seed() -> None:
    def run():
        opts = EvolutionOptions(population=30, generations=5, seed=7)
        s = EvolutionSearch(ToySpace(), latency, accuracy, opts, progress=False)
        return s.run(15.0).best.config, len(s.evaluator.candidates())

    assert run() == run()


def test_impossible_limit_is_a_clear_error() -> None:
    search = EvolutionSearch(ToySpace(), latency, accuracy, EvolutionOptions(), label="toy")
    with pytest.raises(SearchError, match=r"latency limit 0.5 ms is impossible on toy.*1 ms"):
        search.run(0.5)
    with pytest.raises(SearchError, match="must be a positive number"):
        search.run(float("nan"))


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"population": 1}, "population"),
        ({"mutation_ratio": 0.7, "crossover_ratio": 0.5}, "exceed 1"),
        ({"parent_ratio": 1.5}, "parent-ratio"),
        ({"arch_mutate_prob": -0.1}, "arch-mutate-prob"),
        ({"population": 3, "parent_ratio": 0.1}, "keeps no parent"),
    ],
)
def test_bad_options(kw, match) -> None:
    with pytest.raises(SearchError, match=match):
        EvolutionOptions(**kw)


def test_subnet_space_mutation_and_crossover_stay_in_space() -> None:
    space = SearchSpace(resolutions=(24, 28, 32))
    adapter = SubnetSpace(space)
    rng = random.Random(0)
    a, b = adapter.sample(rng), adapter.sample(rng)
    for _ in range(200):
        a = adapter.mutate(a, rng, 0.3, 0.5)
        c = adapter.crossover(a, b, rng)
        assert space.contains(a) and space.contains(c)
    assert [c.r for c in adapter.fastest()] == [24, 28, 32]


def test_limit_range() -> None:
    lims = limit_range(1.0, 8.0, 4)
    assert lims == pytest.approx([1.0, 2.0, 4.0, 8.0])
    with pytest.raises(SearchError):
        limit_range(0.0, 1.0, 3)


@dataclass(frozen=True)
class P:
    latency_ms: float
    accuracy: float


points = st.lists(st.builds(P, st.floats(0.1, 100.0), st.floats(0.0, 1.0)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(points)
def test_front_properties(pts) -> None:
    front = pareto_front(pts)
    assert front == sorted(front, key=lambda p: p.latency_ms)
    assert all(not dominates(b, a) for a in front for b in pts)  # nothing beats the front
    for p in pts:  # every point is on the front or dominated by it (or equal to a front point)
        assert p in front or any(
            dominates(f, p) or (f.latency_ms, f.accuracy) == (p.latency_ms, p.accuracy)
            for f in front
        )


@settings(max_examples=60, deadline=None)
@given(points, st.integers(1, 8))
def test_select_spread(pts, k) -> None:
    front = pareto_front(pts)
    chosen = select_spread(front, k)
    assert len(chosen) == min(k, len(front))
    assert all(c in front for c in chosen)
    assert chosen == sorted(chosen, key=lambda p: p.latency_ms)
    if k >= 2 and len(front) >= 2:
        assert chosen[0] is front[0] and chosen[-1] is front[-1]


def test_dominated_fraction() -> None:
    front = [Candidate("a", 1.0, 0.8), Candidate("b", 2.0, 0.9)]
    others = [P(1.5, 0.7), P(3.0, 0.95), P(2.0, 0.9), P(0.5, 0.1)]
    # (2.0, 0.9) equals a front point: not dominated (nothing strictly better)
    assert dominated_fraction(front, others) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        select_spread(front, 0)
