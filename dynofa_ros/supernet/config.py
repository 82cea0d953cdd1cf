"""Sub-network configurations of the OFA-MobileNetV3 search space, as typed values.

A :class:`SubnetConfig` is what every layer above the super-network passes around: the kernel size
and expand ratio of each of the 20 elastic blocks (5 stages x at most 4 blocks), the depth of each
stage and the input resolution. It imports no torch, so the manager and family files can use it.

Canonical form
--------------
Blocks beyond a stage's depth are not executed, so their kernel size and expand ratio cannot change
the network. A config stores them as ``0`` (they are normalised on construction, whatever value was
given), so two configs that build the same network compare equal and have the same :attr:`id`.
Once-for-all stores arbitrary values there; :meth:`SubnetConfig.from_dict` accepts such configs and
:meth:`SearchSpace.expand_inactive` gives back a config with every block filled (the form
once-for-all's ``set_active_subnet`` and its evolutionary mutation expect).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

N_STAGES = 5
MAX_BLOCKS_PER_STAGE = 4
N_BLOCKS = N_STAGES * MAX_BLOCKS_PER_STAGE  # 20


def _int_tuple(value: Any, name: str, length: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"field {name!r} must be a list of {length} integers, got {value!r}")
    if len(value) != length:
        raise ValueError(f"field {name!r} must have {length} entries, got {len(value)}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"field {name!r}[{i}] must be an integer, got {v!r}")
        out.append(int(v))
    return tuple(out)


class CanonicalId:
    """What makes a sub-network config a key: canonical JSON of its ``to_dict()`` and the short
    id family files, BN statistics and commands name members by (one rule for every kind of
    super-network)."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the text the :attr:`id` hashes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @functools.cached_property
    def id(self) -> str:
        """Stable short id: the first 10 hex digits of the SHA-1 of :meth:`to_json`."""
        return hashlib.sha1(self.to_json().encode("ascii")).hexdigest()[:10]


@dataclass(frozen=True)
class SubnetConfig(CanonicalId):
    """One sub-network: ``ks`` (20), ``e`` (20), ``d`` (5), input resolution ``r``.

    Structural checks (lengths, integer types) happen here; the allowed values depend on the
    super-network and are checked by :meth:`SearchSpace.validate`.
    """

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int

    def __post_init__(self) -> None:
        d = _int_tuple(self.d, "d", N_STAGES)
        for i, depth in enumerate(d):
            if not 1 <= depth <= MAX_BLOCKS_PER_STAGE:
                raise ValueError(f"field 'd'[{i}] = {depth} is outside 1..{MAX_BLOCKS_PER_STAGE}")
        ks = list(_int_tuple(self.ks, "ks", N_BLOCKS))
        e = list(_int_tuple(self.e, "e", N_BLOCKS))
        for stage, depth in enumerate(d):
            for j in range(depth, MAX_BLOCKS_PER_STAGE):
                ks[stage * MAX_BLOCKS_PER_STAGE + j] = 0
                e[stage * MAX_BLOCKS_PER_STAGE + j] = 0
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"field 'r' must be a positive integer, got {self.r!r}")
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "ks", tuple(ks))
        object.__setattr__(self, "e", tuple(e))

    # ----------------------------------------------------------------- identity and serialisation
    def to_dict(self) -> dict[str, Any]:
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "r": self.r}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SubnetConfig:
        if not isinstance(raw, Mapping):
            raise ValueError(f"a sub-network config must be a JSON object, got {raw!r}")
        missing = [k for k in ("ks", "e", "d", "r") if k not in raw]
        if missing:
            raise ValueError(f"sub-network config is missing field(s) {', '.join(missing)}")
        extra = sorted(set(raw) - {"ks", "e", "d", "r", "id"})
        if extra:
            raise ValueError(f"sub-network config has unknown field(s) {', '.join(extra)}")
        cfg = cls(ks=raw["ks"], e=raw["e"], d=raw["d"], r=raw["r"])
        if "id" in raw and raw["id"] != cfg.id:
            raise ValueError(
                f"sub-network config field 'id' is {raw['id']!r} but the config's id is {cfg.id!r}"
            )
        return cfg

    @classmethod
    def from_json(cls, text: str) -> SubnetConfig:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"sub-network config is not valid JSON: {exc}") from exc
        return cls.from_dict(raw)

    # ----------------------------------------------------------------------------- structure
    def active_blocks(self) -> list[tuple[int, int, int, int]]:
        """``(stage, block index 0..19, kernel, expand)`` of each executed block, in order."""
        out = []
        for stage, depth in enumerate(self.d):
            for j in range(depth):
                i = stage * MAX_BLOCKS_PER_STAGE + j
                out.append((stage, i, self.ks[i], self.e[i]))
        return out

    def __str__(self) -> str:
        stages = []
        for stage, depth in enumerate(self.d):
            blocks = [f"k{self.ks[stage * 4 + j]}e{self.e[stage * 4 + j]}" for j in range(depth)]
            stages.append("/".join(blocks))
        return f"r{self.r} | " + " | ".join(stages)


@dataclass(frozen=True)
class SearchSpace:
    """Allowed values of each field. The OFA-MBv3 space is ks 3/5/7, e 3/4/6, d 2/3/4."""

    ks_list: tuple[int, ...] = (3, 5, 7)
    expand_list: tuple[int, ...] = (3, 4, 6)
    depth_list: tuple[int, ...] = (2, 3, 4)
    resolutions: tuple[int, ...] = field(default_factory=lambda: tuple(range(128, 225, 4)))

    def __post_init__(self) -> None:
        for name in ("ks_list", "expand_list", "depth_list", "resolutions"):
            values = tuple(sorted({int(v) for v in getattr(self, name)}))
            if not values:
                raise ValueError(f"search space field {name!r} is empty")
            object.__setattr__(self, name, values)
        if any(k % 2 == 0 or k < 1 for k in self.ks_list):
            raise ValueError(f"search space 'ks_list' must hold odd kernel sizes: {self.ks_list}")
        if max(self.depth_list) > MAX_BLOCKS_PER_STAGE or min(self.depth_list) < 1:
            raise ValueError(
                f"search space 'depth_list' must lie in 1..{MAX_BLOCKS_PER_STAGE}: "
                f"{self.depth_list}"
            )

    def to_dict(self) -> dict[str, list[int]]:
        return {
            "ks_list": list(self.ks_list),
            "expand_list": list(self.expand_list),
            "depth_list": list(self.depth_list),
            "resolutions": list(self.resolutions),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SearchSpace:
        try:
            return cls(
                ks_list=tuple(raw["ks_list"]),
                expand_list=tuple(raw["expand_list"]),
                depth_list=tuple(raw["depth_list"]),
                resolutions=tuple(raw["resolutions"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"search space is missing or has a bad field: {exc}") from exc

    # ------------------------------------------------------------------------------ validation
    def validate(self, cfg: SubnetConfig) -> SubnetConfig:
        """Return ``cfg`` when every active value is allowed; else raise ``ValueError`` naming the
        field, the index and the allowed values."""
        for i, depth in enumerate(cfg.d):
            if depth not in self.depth_list:
                raise ValueError(
                    f"field 'd'[{i}] = {depth} is not allowed (allowed: {list(self.depth_list)})"
                )
        for _, i, k, e in cfg.active_blocks():
            if k not in self.ks_list:
                raise ValueError(
                    f"field 'ks'[{i}] = {k} is not allowed (allowed: {list(self.ks_list)})"
                )
            if e not in self.expand_list:
                raise ValueError(
                    f"field 'e'[{i}] = {e} is not allowed (allowed: {list(self.expand_list)})"
                )
        if cfg.r not in self.resolutions:
            raise ValueError(
                f"field 'r' = {cfg.r} is not allowed (allowed: {_fmt_values(self.resolutions)})"
            )
        return cfg

    def parse(self, raw: Mapping[str, Any] | str) -> SubnetConfig:
        """A config from a dict or JSON text, validated against this space."""
        cfg = SubnetConfig.from_json(raw) if isinstance(raw, str) else SubnetConfig.from_dict(raw)
        return self.validate(cfg)

    def contains(self, cfg: SubnetConfig) -> bool:
        try:
            self.validate(cfg)
        except ValueError:
            return False
        return True

    # ------------------------------------------------------------------------------- members
    def largest(self, r: int | None = None) -> SubnetConfig:
        return SubnetConfig(
            ks=(max(self.ks_list),) * N_BLOCKS,
            e=(max(self.expand_list),) * N_BLOCKS,
            d=(max(self.depth_list),) * N_STAGES,
            r=max(self.resolutions) if r is None else r,
        )

    def smallest(self, r: int | None = None) -> SubnetConfig:
        return SubnetConfig(
            ks=(min(self.ks_list),) * N_BLOCKS,
            e=(min(self.expand_list),) * N_BLOCKS,
            d=(min(self.depth_list),) * N_STAGES,
            r=min(self.resolutions) if r is None else r,
        )

    def sample(
        self,
        rng: random.Random,
        *,
        ks_list: Sequence[int] | None = None,
        expand_list: Sequence[int] | None = None,
        depth_list: Sequence[int] | None = None,
        resolutions: Sequence[int] | None = None,
    ) -> SubnetConfig:
        """A uniformly random config drawn with ``rng`` (seed it for reproducibility). The
        optional lists restrict a field (progressive shrinking)."""
        ks_c = list(ks_list or self.ks_list)
        e_c = list(expand_list or self.expand_list)
        d_c = list(depth_list or self.depth_list)
        r_c = list(resolutions or self.resolutions)
        ks = [rng.choice(ks_c) for _ in range(N_BLOCKS)]
        e = [rng.choice(e_c) for _ in range(N_BLOCKS)]
        d = [rng.choice(d_c) for _ in range(N_STAGES)]
        return SubnetConfig(ks=tuple(ks), e=tuple(e), d=tuple(d), r=rng.choice(r_c))

    def expand_inactive(
        self, cfg: SubnetConfig, rng: random.Random | None = None
    ) -> dict[str, Any]:
        """The config as a dict with every block's ``ks`` / ``e`` filled: inactive blocks get the
        largest value (or a random one with ``rng``), as once-for-all's tools expect."""
        out = cfg.to_dict()
        for key, choices in (("ks", self.ks_list), ("e", self.expand_list)):
            out[key] = [
                v if v else (rng.choice(choices) if rng else max(choices)) for v in out[key]
            ]
        return out

    def mutate(self, cfg: SubnetConfig, prob: float, rng: random.Random) -> SubnetConfig:
        """Once-for-all's evolutionary mutation: each field re-drawn with probability ``prob``;
        blocks that become active through a deeper stage get random values."""
        full = self.expand_inactive(cfg, rng)
        ks = [rng.choice(self.ks_list) if rng.random() < prob else k for k in full["ks"]]
        e = [rng.choice(self.expand_list) if rng.random() < prob else v for v in full["e"]]
        d = [rng.choice(self.depth_list) if rng.random() < prob else v for v in full["d"]]
        r = rng.choice(self.resolutions) if rng.random() < prob else cfg.r
        return SubnetConfig(ks=tuple(ks), e=tuple(e), d=tuple(d), r=r)

    def crossover(self, a: SubnetConfig, b: SubnetConfig, rng: random.Random) -> SubnetConfig:
        """Each field of the child taken from ``a`` or ``b`` with equal probability."""
        fa, fb = self.expand_inactive(a, rng), self.expand_inactive(b, rng)
        ks = [rng.choice(pair) for pair in zip(fa["ks"], fb["ks"], strict=True)]
        e = [rng.choice(pair) for pair in zip(fa["e"], fb["e"], strict=True)]
        d = [rng.choice(pair) for pair in zip(fa["d"], fb["d"], strict=True)]
        return SubnetConfig(ks=tuple(ks), e=tuple(e), d=tuple(d), r=rng.choice((a.r, b.r)))


def _fmt_values(values: Sequence[int]) -> str:
    vals = list(values)
    if len(vals) > 6:
        step = vals[1] - vals[0]
        if all(b - a == step for a, b in itertools.pairwise(vals)):
            return f"{vals[0]}..{vals[-1]} step {step}"
    return str(vals)
