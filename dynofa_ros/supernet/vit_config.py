"""Sub-network configurations of the elastic Vision Transformer, as typed values (no torch).

A :class:`ViTConfig` names one sub-network of :class:`~dynofa_ros.supernet.vit.ElasticViT`: its
``depth`` (transformer layers executed), the attention ``heads`` and ``mlp_ratio`` of each of those
layers, the ``embed`` width shared by all of them and the input resolution ``r`` (fixed by the
super-network: the patch grid and position embeddings do not change). Only executed layers are
stored, so two configs that build the same network compare equal and share an :attr:`id`.

:class:`ViTSpace` holds the allowed values and the operations search and training need (validate,
largest / smallest / middle, sample, mutate, crossover), mirroring
:class:`~dynofa_ros.supernet.config.SearchSpace` so the layers above use either through the same
calls. It imports no torch, so the manager and family files can use it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dynofa_ros.supernet.config import CanonicalId

KIND = "vit"
FIELDS = ("depth", "heads", "mlp_ratio", "embed", "r")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"field {name!r} must be a positive integer, got {value!r}")
    return int(value)


def _int_list(value: Any, name: str, length: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"field {name!r} must be a list of {length} integers, got {value!r}")
    if len(value) != length:
        raise ValueError(
            f"field {name!r} must have one entry per layer (depth {length}), got {len(value)}"
        )
    return tuple(_positive_int(v, f"{name}[{i}]") for i, v in enumerate(value))


@dataclass(frozen=True)
class ViTConfig(CanonicalId):
    """One ViT sub-network: ``depth``, ``heads`` and ``mlp_ratio`` per layer, ``embed``, ``r``.

    Structural checks (types, one entry per layer) happen here; the allowed values depend on the
    super-network and are checked by :meth:`ViTSpace.validate`.
    """

    depth: int
    heads: tuple[int, ...]
    mlp_ratio: tuple[int, ...]
    embed: int
    r: int

    def __post_init__(self) -> None:
        depth = _positive_int(self.depth, "depth")
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "heads", _int_list(self.heads, "heads", depth))
        object.__setattr__(self, "mlp_ratio", _int_list(self.mlp_ratio, "mlp_ratio", depth))
        object.__setattr__(self, "embed", _positive_int(self.embed, "embed"))
        object.__setattr__(self, "r", _positive_int(self.r, "r"))

    # ----------------------------------------------------------------- identity and serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "heads": list(self.heads),
            "mlp_ratio": list(self.mlp_ratio),
            "embed": self.embed,
            "r": self.r,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ViTConfig:
        if not isinstance(raw, Mapping):
            raise ValueError(f"a ViT sub-network config must be a JSON object, got {raw!r}")
        missing = [k for k in FIELDS if k not in raw]
        if missing:
            raise ValueError(f"ViT sub-network config is missing field(s) {', '.join(missing)}")
        extra = sorted(set(raw) - {*FIELDS, "id"})
        if extra:
            raise ValueError(f"ViT sub-network config has unknown field(s) {', '.join(extra)}")
        cfg = cls(**{k: raw[k] for k in FIELDS})
        if "id" in raw and raw["id"] != cfg.id:
            raise ValueError(
                f"sub-network config field 'id' is {raw['id']!r} but the config's id is {cfg.id!r}"
            )
        return cfg

    @classmethod
    def from_json(cls, text: str) -> ViTConfig:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"ViT sub-network config is not valid JSON: {exc}") from exc
        return cls.from_dict(raw)

    def __str__(self) -> str:
        layers = "/".join(f"h{h}m{m}" for h, m in zip(self.heads, self.mlp_ratio, strict=True))
        return f"r{self.r} e{self.embed} d{self.depth} | {layers}"


def _sorted_unique(values: Sequence[Any], name: str) -> tuple[int, ...]:
    out = tuple(sorted({_positive_int(v, name) for v in values}))
    if not out:
        raise ValueError(f"ViT search space field {name!r} is empty")
    return out


@dataclass(frozen=True)
class ViTSpace:
    """Allowed values of each :class:`ViTConfig` field."""

    depth_list: tuple[int, ...] = (3, 4, 5, 6)
    heads_list: tuple[int, ...] = (2, 3, 4)
    mlp_ratio_list: tuple[int, ...] = (2, 3, 4)
    embed_list: tuple[int, ...] = (64, 96, 128)
    resolutions: tuple[int, ...] = (28,)

    kind = KIND

    def __post_init__(self) -> None:
        for name in ("depth_list", "heads_list", "mlp_ratio_list", "embed_list", "resolutions"):
            object.__setattr__(self, name, _sorted_unique(getattr(self, name), name))

    @property
    def max_depth(self) -> int:
        return max(self.depth_list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth_list": list(self.depth_list),
            "heads_list": list(self.heads_list),
            "mlp_ratio_list": list(self.mlp_ratio_list),
            "embed_list": list(self.embed_list),
            "resolutions": list(self.resolutions),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ViTSpace:
        try:
            return cls(**{k: tuple(raw[k]) for k in cls().to_dict()})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"ViT search space is missing or has a bad field: {exc}") from exc

    # ------------------------------------------------------------------------------ validation
    def validate(self, cfg: Any) -> ViTConfig:
        """Return ``cfg`` when every value is allowed; else raise ``ValueError`` naming the
        field, the index and the allowed values."""
        if not isinstance(cfg, ViTConfig):
            raise ValueError(f"expected a ViT sub-network config, got {type(cfg).__name__}")
        if cfg.depth not in self.depth_list:
            raise ValueError(
                f"field 'depth' = {cfg.depth} is not allowed (allowed: {list(self.depth_list)})"
            )
        for name, values, allowed in (
            ("heads", cfg.heads, self.heads_list),
            ("mlp_ratio", cfg.mlp_ratio, self.mlp_ratio_list),
        ):
            for i, v in enumerate(values):
                if v not in allowed:
                    raise ValueError(
                        f"field {name!r}[{i}] = {v} is not allowed (allowed: {list(allowed)})"
                    )
        if cfg.embed not in self.embed_list:
            raise ValueError(
                f"field 'embed' = {cfg.embed} is not allowed (allowed: {list(self.embed_list)})"
            )
        if cfg.r not in self.resolutions:
            raise ValueError(
                f"field 'r' = {cfg.r} is not allowed (allowed: {list(self.resolutions)})"
            )
        return cfg

    def config_from_dict(self, raw: Mapping[str, Any]) -> ViTConfig:
        """A config of this space's type from its dict (not validated)."""
        return ViTConfig.from_dict(raw)

    def parse(self, raw: Mapping[str, Any] | str) -> ViTConfig:
        """A config from a dict or JSON text, validated against this space."""
        cfg = ViTConfig.from_json(raw) if isinstance(raw, str) else ViTConfig.from_dict(raw)
        return self.validate(cfg)

    def contains(self, cfg: Any) -> bool:
        try:
            self.validate(cfg)
        except ValueError:
            return False
        return True

    # ------------------------------------------------------------------------------- members
    def _uniform(self, pick: Any, r: int | None) -> ViTConfig:
        d = pick(self.depth_list)
        return ViTConfig(
            depth=d,
            heads=(pick(self.heads_list),) * d,
            mlp_ratio=(pick(self.mlp_ratio_list),) * d,
            embed=pick(self.embed_list),
            r=pick(self.resolutions) if r is None else r,
        )

    def largest(self, r: int | None = None) -> ViTConfig:
        return self._uniform(max, r)

    def smallest(self, r: int | None = None) -> ViTConfig:
        return self._uniform(min, r)

    def middle(self) -> ViTConfig:
        return self._uniform(lambda v: sorted(v)[len(v) // 2], None)

    def sample(self, rng: random.Random, **restrict: Sequence[int]) -> ViTConfig:
        """A uniformly random config drawn with ``rng``; keyword ``<field>_list`` arguments
        restrict a field."""
        lists = {k: tuple(restrict.get(k) or v) for k, v in self.to_dict().items()}
        d = rng.choice(lists["depth_list"])
        return ViTConfig(
            depth=d,
            heads=tuple(rng.choice(lists["heads_list"]) for _ in range(d)),
            mlp_ratio=tuple(rng.choice(lists["mlp_ratio_list"]) for _ in range(d)),
            embed=rng.choice(lists["embed_list"]),
            r=rng.choice(lists["resolutions"]),
        )

    def _full_layers(self, cfg: ViTConfig, rng: random.Random) -> tuple[list[int], list[int]]:
        """Per-layer values for every possible layer (layers beyond the depth drawn at random),
        so a mutation that deepens the network has values to use."""
        heads = list(cfg.heads) + [rng.choice(self.heads_list) for _ in range(cfg.depth, 99)]
        mlp = list(cfg.mlp_ratio) + [rng.choice(self.mlp_ratio_list) for _ in range(cfg.depth, 99)]
        n = self.max_depth
        return heads[:n], mlp[:n]

    def mutate_fields(
        self, cfg: ViTConfig, rng: random.Random, arch_prob: float, resolution_prob: float
    ) -> ViTConfig:
        """Each per-layer value, the depth and the width re-drawn with ``arch_prob``; the
        resolution with ``resolution_prob`` (once-for-all's evolutionary mutation)."""
        heads, mlp = self._full_layers(cfg, rng)
        for i in range(len(heads)):
            if rng.random() < arch_prob:
                heads[i] = rng.choice(self.heads_list)
            if rng.random() < arch_prob:
                mlp[i] = rng.choice(self.mlp_ratio_list)
        d = rng.choice(self.depth_list) if rng.random() < arch_prob else cfg.depth
        embed = rng.choice(self.embed_list) if rng.random() < arch_prob else cfg.embed
        r = rng.choice(self.resolutions) if rng.random() < resolution_prob else cfg.r
        return ViTConfig(
            depth=d, heads=tuple(heads[:d]), mlp_ratio=tuple(mlp[:d]), embed=embed, r=r
        )

    def mutate(self, cfg: ViTConfig, prob: float, rng: random.Random) -> ViTConfig:
        return self.mutate_fields(cfg, rng, prob, prob)

    def crossover(self, a: ViTConfig, b: ViTConfig, rng: random.Random) -> ViTConfig:
        """Each field (and each layer's values) taken from ``a`` or ``b`` with equal odds."""
        ha, ma = self._full_layers(a, rng)
        hb, mb = self._full_layers(b, rng)
        d = rng.choice((a.depth, b.depth))
        heads = [rng.choice(p) for p in zip(ha, hb, strict=True)][:d]
        mlp = [rng.choice(p) for p in zip(ma, mb, strict=True)][:d]
        return ViTConfig(
            depth=d,
            heads=tuple(heads),
            mlp_ratio=tuple(mlp),
            embed=rng.choice((a.embed, b.embed)),
            r=rng.choice((a.r, b.r)),
        )

    def encode(self, cfg: ViTConfig) -> list[float]:
        """One-hot features (embed, depth, then heads and MLP ratio of every possible layer,
        zeros beyond the depth): the accuracy predictor's input for this space."""
        out: list[float] = [float(cfg.embed == v) for v in self.embed_list]
        out += [float(cfg.depth == v) for v in self.depth_list]
        for i in range(self.max_depth):
            h = cfg.heads[i] if i < cfg.depth else None
            m = cfg.mlp_ratio[i] if i < cfg.depth else None
            out += [float(h == v) for v in self.heads_list]
            out += [float(m == v) for v in self.mlp_ratio_list]
        return out

    def evolution_space(self) -> ViTEvolutionSpace:
        return ViTEvolutionSpace(self)


class ViTEvolutionSpace:
    """The evolutionary search's ``ConfigSpace`` over a :class:`ViTSpace`."""

    def __init__(self, space: ViTSpace) -> None:
        self.space = space

    def sample(self, rng: random.Random) -> ViTConfig:
        return self.space.sample(rng)

    def mutate(
        self, cfg: ViTConfig, rng: random.Random, arch_prob: float, resolution_prob: float
    ) -> ViTConfig:
        return self.space.mutate_fields(cfg, rng, arch_prob, resolution_prob)

    def crossover(self, a: ViTConfig, b: ViTConfig, rng: random.Random) -> ViTConfig:
        return self.space.crossover(a, b, rng)

    def key(self, cfg: ViTConfig) -> Hashable:
        return cfg.id

    def fastest(self) -> list[ViTConfig]:
        return [self.space.smallest(r) for r in self.space.resolutions]


# ------------------------------------------------------------------------------ cost model
def layer_macs(tokens: int, embed: int, attn_width: int, hidden: int) -> int:
    """Multiply-accumulates of one transformer layer on ``tokens`` tokens: q/k/v and output
    projections, attention scores and weighted sum, the two MLP layers."""
    return (
        tokens * embed * 3 * attn_width
        + 2 * tokens * tokens * attn_width
        + tokens * attn_width * embed
        + 2 * tokens * embed * hidden
    )


def layer_params(embed: int, attn_width: int, hidden: int) -> int:
    """Parameters of one extracted transformer layer (two LayerNorms, attention, MLP)."""
    return (
        2 * 2 * embed
        + (embed + 1) * 3 * attn_width
        + (attn_width + 1) * embed
        + (embed + 1) * hidden
        + (hidden + 1) * embed
    )
