"""Evolutionary search (once-for-all's regularised evolution) under latency limits.

The search knows nothing about networks: it works on a :class:`ConfigSpace` (sample / mutate /
crossover) with injected, batched ``latency_fn`` and ``accuracy_fn``, so it runs on the latency
table, on measurements or on the simulator, with the predictor or measured accuracy.

One roll-out under a limit (as once-for-all's ``EvolutionFinder.run_evolution_search``): a random
population of configs meeting the limit; each generation keeps the best ``parent_ratio`` as
parents and refills the population with mutations (``mutation_ratio``) and crossovers
(``crossover_ratio``) of random parents, and fresh random configs for any remainder; children that
break the limit are drawn again. Every evaluated candidate is kept, so a sweep over several limits
gives the points a Pareto front is taken from.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tqdm import tqdm

from dynofa_ros.search.errors import SearchError
from dynofa_ros.search.pareto import Candidate, pareto_front


class ConfigSpace(Protocol):
    def sample(self, rng: random.Random) -> Any: ...

    def mutate(
        self, cfg: Any, rng: random.Random, arch_prob: float, resolution_prob: float
    ) -> Any: ...

    def crossover(self, a: Any, b: Any, rng: random.Random) -> Any: ...

    def key(self, cfg: Any) -> Hashable: ...

    def fastest(self) -> list[Any]:
        """Configs expected to be among the fastest (to tell an impossible limit quickly)."""
        ...


class SubnetSpace:
    """:class:`ConfigSpace` over a super-network's ``SearchSpace`` and ``SubnetConfig``s, with
    once-for-all's mutation (per-block kernel+expand with ``arch_prob``, depth per stage with
    ``arch_prob``, resolution with ``resolution_prob``)."""

    def __init__(self, space: Any) -> None:
        from dynofa_ros.supernet.config import SubnetConfig

        self.space = space
        self._cls = SubnetConfig

    def sample(self, rng: random.Random) -> Any:
        return self.space.sample(rng)

    def mutate(self, cfg: Any, rng: random.Random, arch_prob: float, resolution_prob: float) -> Any:
        full = self.space.expand_inactive(cfg, rng)
        ks, e, d = list(full["ks"]), list(full["e"]), list(full["d"])
        r = rng.choice(self.space.resolutions) if rng.random() < resolution_prob else cfg.r
        for i in range(len(ks)):
            if rng.random() < arch_prob:
                ks[i] = rng.choice(self.space.ks_list)
                e[i] = rng.choice(self.space.expand_list)
        for i in range(len(d)):
            if rng.random() < arch_prob:
                d[i] = rng.choice(self.space.depth_list)
        return self._cls(ks=tuple(ks), e=tuple(e), d=tuple(d), r=r)

    def crossover(self, a: Any, b: Any, rng: random.Random) -> Any:
        return self.space.crossover(a, b, rng)

    def key(self, cfg: Any) -> Hashable:
        ident: str = cfg.id
        return ident

    def fastest(self) -> list[Any]:
        return [self.space.smallest(r) for r in self.space.resolutions]


def config_space(space: Any) -> ConfigSpace:
    """The :class:`ConfigSpace` of a super-network's search space: its own when it defines one
    (``evolution_space()``, e.g. the ViT's), else once-for-all's MobileNetV3 adapter."""
    own = getattr(space, "evolution_space", None)
    return own() if own is not None else SubnetSpace(space)


@dataclass(frozen=True)
class EvolutionOptions:
    population: int = 100
    generations: int = 30
    arch_mutate_prob: float = 0.1
    resolution_mutate_prob: float = 0.5
    mutation_ratio: float = 0.5
    crossover_ratio: float = 0.5
    parent_ratio: float = 0.25
    max_tries: int = 200  # draws per child before giving up on a limit-meeting child
    seed: int = 0

    def __post_init__(self) -> None:
        if self.population < 2:
            raise SearchError(f"population must be at least 2, got {self.population}")
        if self.generations < 0:
            raise SearchError(f"generations must be >= 0, got {self.generations}")
        for name in (
            "arch_mutate_prob",
            "resolution_mutate_prob",
            "mutation_ratio",
            "crossover_ratio",
            "parent_ratio",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise SearchError(f"{name.replace('_', '-')} must be in [0, 1], got {v}")
        if self.mutation_ratio + self.crossover_ratio > 1.0 + 1e-9:
            raise SearchError(
                f"mutation ratio {self.mutation_ratio} + crossover ratio {self.crossover_ratio} "
                "exceed 1"
            )
        if self.parent_ratio * self.population < 1:
            raise SearchError(
                f"parent ratio {self.parent_ratio} of population {self.population} keeps no parent"
            )


BatchFn = Callable[[Sequence[Any]], Sequence[float]]


@dataclass
class RolloutResult:
    limit_ms: float
    best: Candidate
    best_per_generation: list[float] = field(default_factory=list)


class Evaluator:
    """Cached, batched latency and accuracy of configs (each config evaluated once)."""

    def __init__(self, space: ConfigSpace, latency_fn: BatchFn, accuracy_fn: BatchFn) -> None:
        self.space = space
        self.latency_fn = latency_fn
        self.accuracy_fn = accuracy_fn
        self.latency: dict[Hashable, float] = {}
        self.accuracy: dict[Hashable, float] = {}
        self.configs: dict[Hashable, Any] = {}

    def latencies(self, cfgs: Sequence[Any]) -> list[float]:
        todo = {}
        for c in cfgs:
            k = self.space.key(c)
            if k not in self.latency and k not in todo:
                todo[k] = c
        if todo:
            values = self.latency_fn(list(todo.values()))
            for (k, c), v in zip(todo.items(), values, strict=True):
                if not math.isfinite(v) or v <= 0:
                    raise SearchError(f"latency function gave {v!r} for config {k}")
                self.latency[k] = float(v)
                self.configs[k] = c
        return [self.latency[self.space.key(c)] for c in cfgs]

    def accuracies(self, cfgs: Sequence[Any]) -> list[float]:
        todo = {}
        for c in cfgs:
            k = self.space.key(c)
            if k not in self.accuracy and k not in todo:
                todo[k] = c
        if todo:
            values = self.accuracy_fn(list(todo.values()))
            for (k, c), v in zip(todo.items(), values, strict=True):
                self.accuracy[k] = float(v)
                self.configs[k] = c
        return [self.accuracy[self.space.key(c)] for c in cfgs]

    def candidates(self, source: str = "search") -> list[Candidate]:
        """Every config with both a latency and an accuracy."""
        return [
            Candidate(self.configs[k], self.latency[k], self.accuracy[k], source)
            for k in self.accuracy
            if k in self.latency
        ]


class EvolutionSearch:
    def __init__(
        self,
        space: ConfigSpace,
        latency_fn: BatchFn,
        accuracy_fn: BatchFn,
        options: EvolutionOptions | None = None,
        *,
        label: str = "",
        progress: bool = True,
    ) -> None:
        self.space = space
        self.options = options or EvolutionOptions()
        self.evaluator = Evaluator(space, latency_fn, accuracy_fn)
        self.rng = random.Random(self.options.seed)
        self.label = label
        self.progress = progress

    # ----------------------------------------------------------------------------- helpers
    def fastest_latency(self, n_random: int = 200) -> tuple[float, Any]:
        """The lowest latency seen among the space's fastest configs and random samples."""
        cfgs = list(self.space.fastest())
        cfgs += [self.space.sample(self.rng) for _ in range(n_random)]
        lats = self.evaluator.latencies(cfgs)
        i = min(range(len(cfgs)), key=lats.__getitem__)
        return lats[i], cfgs[i]

    def check_limit(self, limit_ms: float) -> Any:
        """A config meeting ``limit_ms`` (the fastest known), or raise naming the limit."""
        if not math.isfinite(limit_ms) or limit_ms <= 0:
            raise SearchError(f"latency limit {limit_ms!r} ms must be a positive number")
        best, cfg = self.fastest_latency()
        if best > limit_ms:
            where = f" on {self.label}" if self.label else ""
            raise SearchError(
                f"latency limit {limit_ms:.4g} ms is impossible{where}: the fastest sub-network "
                f"found ({self.space.key(cfg)}) takes {best:.4g} ms"
            )
        return cfg

    def _draw(self, make: Callable[[], Any], limit_ms: float, fallback: Any) -> Any:
        for _ in range(self.options.max_tries):
            cfg = make()
            if self.evaluator.latencies([cfg])[0] <= limit_ms:
                return cfg
        return fallback

    # ----------------------------------------------------------------------------- search
    def run(self, limit_ms: float) -> RolloutResult:
        """One roll-out maximising accuracy under ``limit_ms``."""
        o, rng = self.options, self.rng
        seed_cfg = self.check_limit(limit_ms)
        n_parents = max(1, round(o.parent_ratio * o.population))
        n_mut = round(o.mutation_ratio * o.population)
        n_cross = min(o.population - n_mut, round(o.crossover_ratio * o.population))
        n_rand = o.population - n_mut - n_cross

        def near_seed() -> Any:
            return self.space.mutate(seed_cfg, rng, 0.3, o.resolution_mutate_prob)

        population = []
        for _ in range(o.population):
            cfg = self._draw(lambda: self.space.sample(rng), limit_ms, None)
            if cfg is None:  # tight limit: random configs rarely meet it; start near the seed
                cfg = self._draw(near_seed, limit_ms, seed_cfg)
            population.append(cfg)
        scored = self._score(population)
        history = []
        desc = f"search ≤{limit_ms:.3g} ms" + (f" {self.label}" if self.label else "")
        for _ in tqdm(range(o.generations), desc=desc, disable=not self.progress, leave=False):
            parents = sorted(scored, key=lambda t: -t[0])[:n_parents]
            history.append(parents[0][0])
            children = []
            for _ in range(n_mut):
                par = rng.choice(parents)[1]
                children.append(
                    self._draw(
                        functools.partial(
                            self.space.mutate,
                            par, rng, o.arch_mutate_prob, o.resolution_mutate_prob,
                        ),
                        limit_ms,
                        par,
                    )
                )  # fmt: skip
            for _ in range(n_cross):
                a, b = rng.choice(parents)[1], rng.choice(parents)[1]
                children.append(
                    self._draw(functools.partial(self.space.crossover, a, b, rng), limit_ms, a)
                )
            for _ in range(n_rand):
                children.append(
                    self._draw(lambda: self.space.sample(rng), limit_ms, rng.choice(parents)[1])
                )
            scored = parents + self._score(children)
        acc, best_cfg = max(((a, c) for a, c in scored), key=lambda t: t[0])
        history.append(acc)
        lat = self.evaluator.latencies([best_cfg])[0]
        return RolloutResult(limit_ms, Candidate(best_cfg, lat, acc), history)

    def _score(self, cfgs: list[Any]) -> list[tuple[float, Any]]:
        accs = self.evaluator.accuracies(cfgs)
        return list(zip(accs, cfgs, strict=True))

    def sweep(self, limits: Sequence[float]) -> list[RolloutResult]:
        """One roll-out per limit (same evaluator: every candidate is kept)."""
        return [self.run(limit) for limit in limits]

    def front(self) -> list[Candidate]:
        return pareto_front(self.evaluator.candidates())


def limit_range(lo: float, hi: float, n: int) -> list[float]:
    """``n`` latency limits spread geometrically from ``lo`` to ``hi`` (inclusive)."""
    if n < 1:
        raise SearchError(f"number of latency limits must be >= 1, got {n}")
    if not (0 < lo <= hi):
        raise SearchError(f"latency limit range {lo}..{hi} ms is invalid")
    if n == 1:
        return [hi]
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
