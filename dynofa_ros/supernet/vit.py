"""The elastic Vision Transformer super-network: ops, network, per-layer description, extraction.

A second super-network family beside :class:`~dynofa_ros.supernet.network.ElasticMobileNetV3`,
with the same interface (``set_active``, ``layer_specs``, ``macs``, ``params``, ``extract``,
``space``, ``arch``), so training, search, export and the engine use it unchanged.

Elastic dimensions, all by weight slicing (each op holds its largest weight and slices it by its
own active setting, as the CNN's ops do): the embedding width (first ``embed`` channels of every
tensor), the depth (first ``depth`` layers), the attention heads of each layer (first ``heads``
heads of a fixed width ``head_dim``) and the MLP ratio of each layer (first ``ratio * embed``
hidden units). The patch size and so the token grid are fixed. Normalisation is LayerNorm (sliced
to the active width), so a sub-network needs no BatchNorm statistics: ``uses_batchnorm`` is False
and the BN-per-sub-network machinery skips it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynofa_ros.supernet.vit_config import KIND, ViTConfig, ViTSpace, layer_macs, layer_params


@dataclass(frozen=True)
class ViTArchitecture:
    """Everything that fixes the ViT super-network's tensors (stored in every checkpoint)."""

    name: str
    in_channels: int = 1
    num_classes: int = 10
    patch_size: int = 7
    head_dim: int = 32
    dropout: float = 0.0
    space: ViTSpace = field(default_factory=ViTSpace)
    mean: tuple[float, ...] = (0.2860,)
    std: tuple[float, ...] = (0.3530,)
    kind: str = KIND

    def __post_init__(self) -> None:
        if self.kind != KIND:
            raise ValueError(f"architecture field 'kind' is {self.kind!r}, expected {KIND!r}")
        for r in self.space.resolutions:
            if r % self.patch_size:
                raise ValueError(
                    f"architecture field 'patch_size' = {self.patch_size} does not divide the "
                    f"resolution {r}"
                )
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError("architecture 'mean' / 'std' need one entry per input channel")
        if self.head_dim <= 0 or self.patch_size <= 0:
            raise ValueError("architecture 'head_dim' and 'patch_size' must be positive")

    @property
    def resolution(self) -> int:
        return max(self.space.resolutions)

    @property
    def tokens(self) -> int:
        return (self.resolution // self.patch_size) ** 2

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["space"] = self.space.to_dict()
        return d

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ViTArchitecture:
        try:
            kw = dict(raw)
            kw["space"] = ViTSpace.from_dict(kw["space"])
            for key in ("mean", "std"):
                kw[key] = tuple(kw[key])
            return cls(**kw)
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"ViT architecture description is incomplete or invalid: {exc}"
            ) from exc


# ---------------------------------------------------------------------------------- elastic ops
class ElasticLayerNorm(nn.LayerNorm):
    """LayerNorm over the last ``x.size(-1)`` features with the first entries of its affine."""

    def forward(self, x: Tensor) -> Tensor:
        n = x.size(-1)
        return F.layer_norm(x, (n,), self.weight[:n], self.bias[:n], self.eps)


class ElasticPatchEmbed(nn.Module):
    """Non-overlapping patches projected to the first ``active_embed`` channels, plus learned
    position embeddings: ``(B, C, H, W)`` → ``(B, tokens, embed)``."""

    def __init__(self, in_channels: int, max_embed: int, patch: int, tokens: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, max_embed, patch, patch)
        self.pos = nn.Parameter(torch.zeros(1, tokens, max_embed))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.patch = patch
        self.active_embed = max_embed

    def forward(self, x: Tensor) -> Tensor:
        e = self.active_embed
        assert self.proj.bias is not None  # built with bias=True
        x = F.conv2d(x, self.proj.weight[:e], self.proj.bias[:e], stride=self.patch)
        return x.flatten(2).transpose(1, 2) + self.pos[:, :, :e]


class ElasticAttention(nn.Module):
    """Multi-head self-attention with the first ``active_heads`` heads of width ``head_dim``.

    ``qkv.weight`` rows are laid out (q|k|v, head, head_dim), so a head count is a slice of each
    third; the input / output width follows the input tensor."""

    def __init__(self, max_embed: int, max_heads: int, head_dim: int) -> None:
        super().__init__()
        self.max_heads, self.head_dim = max_heads, head_dim
        self.qkv = nn.Linear(max_embed, 3 * max_heads * head_dim)
        self.proj = nn.Linear(max_heads * head_dim, max_embed)
        self.active_heads = max_heads

    def forward(self, x: Tensor) -> Tensor:
        b, n, e = x.shape
        h, hd = self.active_heads, self.head_dim
        a = h * hd
        w = self.qkv.weight.view(3, self.max_heads * hd, -1)[:, :a, :e].reshape(3 * a, e)
        bias = self.qkv.bias.view(3, self.max_heads * hd)[:, :a].reshape(3 * a)
        q, k, v = F.linear(x, w, bias).view(b, n, 3, h, hd).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        y = y.transpose(1, 2).reshape(b, n, a)
        return F.linear(y, self.proj.weight[:e, :a], self.proj.bias[:e])


class ElasticMLP(nn.Module):
    """Two linear layers with GELU; hidden width ``active_ratio * x.size(-1)``."""

    def __init__(self, max_embed: int, max_ratio: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(max_embed, max_ratio * max_embed)
        self.fc2 = nn.Linear(max_ratio * max_embed, max_embed)
        self.active_ratio = max_ratio

    def forward(self, x: Tensor) -> Tensor:
        e = x.size(-1)
        hidden = self.active_ratio * e
        x = F.gelu(F.linear(x, self.fc1.weight[:hidden, :e], self.fc1.bias[:hidden]))
        return F.linear(x, self.fc2.weight[:e, :hidden], self.fc2.bias[:e])


class ElasticViTLayer(nn.Module):
    """Pre-norm transformer layer: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``."""

    def __init__(self, max_embed: int, max_heads: int, head_dim: int, max_ratio: int) -> None:
        super().__init__()
        self.ln1 = ElasticLayerNorm(max_embed)
        self.attn = ElasticAttention(max_embed, max_heads, head_dim)
        self.ln2 = ElasticLayerNorm(max_embed)
        self.mlp = ElasticMLP(max_embed, max_ratio)

    def set_active(self, heads: int, mlp_ratio: int) -> None:
        # straight into __dict__: nn.Module.__setattr__ costs microseconds per call
        self.attn.__dict__["active_heads"] = heads
        self.mlp.__dict__["active_ratio"] = mlp_ratio

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


# ----------------------------------------------------------------------------------- static ops
class StaticViTLayer(nn.Module):
    """One transformer layer of an extracted sub-network (plain modules, explicit attention so
    the ONNX graph uses only opset-17 operators)."""

    def __init__(self, embed: int, heads: int, head_dim: int, hidden: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.scale = 1.0 / math.sqrt(head_dim)
        self.ln1 = nn.LayerNorm(embed)
        self.qkv = nn.Linear(embed, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, embed)
        self.ln2 = nn.LayerNorm(embed)
        self.fc1 = nn.Linear(embed, hidden)
        self.fc2 = nn.Linear(hidden, embed)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        h, hd = self.heads, self.head_dim
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, h, hd).permute(2, 0, 3, 1, 4).unbind(0)
        att = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, n, h * hd))
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return x


class StaticPatchEmbed(nn.Module):
    def __init__(self, in_channels: int, embed: int, patch: int, tokens: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed, patch, patch)
        self.pos = nn.Parameter(torch.zeros(1, tokens, embed))

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2) + self.pos
        return x


class StaticHead(nn.Module):
    """Final LayerNorm, mean over tokens, classifier."""

    def __init__(self, embed: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed)
        self.fc = nn.Linear(embed, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc(self.norm(x).mean(1))
        return x


class StaticViT(nn.Module):
    """A plain ViT (one sub-network, copied weights): what extraction and ONNX export give."""

    def __init__(self, embed: nn.Module, layers: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.embed = embed
        self.layers = nn.ModuleList(layers)
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        for layer in self.layers:
            x = layer(x)
        x = self.head(x)
        return x


# ---------------------------------------------------------------------------- layer description
@dataclass(frozen=True)
class ViTLayerSpec:
    """One layer of an active ViT sub-network, for latency tables and the simulator.

    ``kind``: ``PatchEmbed`` (patch projection + position embedding), ``TransformerLayer``,
    ``Head`` (final norm, token mean, classifier). Shapes: images (H, W, C), tokens (N, E),
    logits (classes,).
    """

    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    heads: int = 0
    head_dim: int = 0
    hidden: int = 0
    patch: int = 0

    @property
    def key(self) -> str:
        """The latency-table key of this layer (every field that changes its cost)."""
        parts = [
            self.kind,
            "input:" + "x".join(map(str, self.input_shape)),
            "output:" + "x".join(map(str, self.output_shape)),
        ]
        if self.kind == "TransformerLayer":
            parts += [f"heads:{self.heads}", f"headdim:{self.head_dim}", f"hidden:{self.hidden}"]
        if self.kind == "PatchEmbed":
            parts.append(f"patch:{self.patch}")
        return "-".join(parts)

    @property
    def macs(self) -> int:
        if self.kind == "PatchEmbed":
            n, e = self.output_shape
            return n * e * self.patch * self.patch * self.input_shape[2]
        if self.kind == "TransformerLayer":
            n, e = self.input_shape
            return layer_macs(n, e, self.heads * self.head_dim, self.hidden)
        return self.input_shape[1] * self.output_shape[0]

    @property
    def params(self) -> int:
        if self.kind == "PatchEmbed":
            n, e = self.output_shape
            return e * (self.patch * self.patch * self.input_shape[2] + 1) + n * e
        if self.kind == "TransformerLayer":
            return layer_params(self.input_shape[1], self.heads * self.head_dim, self.hidden)
        e = self.input_shape[1]
        return 2 * e + (e + 1) * self.output_shape[0]

    def build(self) -> nn.Module:
        """A standalone static module for this layer (random weights), to time it alone."""
        if self.kind == "PatchEmbed":
            n, e = self.output_shape
            return StaticPatchEmbed(self.input_shape[2], e, self.patch, n).eval()
        if self.kind == "TransformerLayer":
            return StaticViTLayer(
                self.input_shape[1], self.heads, self.head_dim, self.hidden
            ).eval()
        return StaticHead(self.input_shape[1], self.output_shape[0]).eval()

    def example_input(self, batch: int = 1) -> Tensor:
        if self.kind == "PatchEmbed":
            h, w, c = self.input_shape
            return torch.randn(batch, c, h, w)
        return torch.randn(batch, *self.input_shape)


# -------------------------------------------------------------------------------------- network
class ElasticViT(nn.Module):
    """The ViT super-network. ``set_active(cfg)`` picks the sub-network every forward uses."""

    kind = KIND
    uses_batchnorm: Literal[False] = False

    def __init__(self, arch: ViTArchitecture) -> None:
        super().__init__()
        self.arch = arch
        self.space = arch.space
        sp = arch.space
        self.max_embed = max(sp.embed_list)
        self.patch_embed = ElasticPatchEmbed(
            arch.in_channels, self.max_embed, arch.patch_size, arch.tokens
        )
        self.layers = nn.ModuleList(
            ElasticViTLayer(
                self.max_embed, max(sp.heads_list), arch.head_dim, max(sp.mlp_ratio_list)
            )
            for _ in range(sp.max_depth)
        )
        self.norm = ElasticLayerNorm(self.max_embed)
        self.head = nn.Linear(self.max_embed, arch.num_classes)
        self.dropout = nn.Dropout(arch.dropout)
        self.apply(_init_weights)
        self.runtime_depth = sp.max_depth
        # no BatchNorm: kept empty so code that lists stored statistics sees none
        self.bn_stats: dict[str, dict[str, tuple[Tensor, Tensor]]] = {}
        self.bn_stats_configs: dict[str, ViTConfig] = {}
        self._valid_ids: set[str] = set()
        self.active: ViTConfig = sp.largest()
        self.set_active(self.active)

    # ----------------------------------------------------------------------------- switching
    def set_active(self, cfg: ViTConfig, *, require_bn_stats: bool = False) -> None:
        """Make ``cfg`` the active sub-network, in place (a few attribute writes).
        ``require_bn_stats`` is accepted for interface parity and ignored: no BatchNorm."""
        sid = cfg.id
        if sid not in self._valid_ids:
            self.space.validate(cfg)
            self._valid_ids.add(sid)
        self.patch_embed.__dict__["active_embed"] = cfg.embed
        layers = cast("Iterable[ElasticViTLayer]", self.layers)
        for layer, h, m in zip(layers, cfg.heads, cfg.mlp_ratio, strict=False):
            layer.set_active(h, m)
        self.__dict__["runtime_depth"] = cfg.depth
        self.__dict__["active"] = cfg

    def has_bn_stats(self, cfg: ViTConfig) -> bool:
        return False

    def bn_channels(self, cfg: ViTConfig | None = None) -> dict[str, int]:
        return {}

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        for i in range(self.runtime_depth):
            x = self.layers[i](x)
        x = self.norm(x).mean(1)
        x = self.dropout(x)
        return F.linear(x, self.head.weight[:, : x.size(-1)], self.head.bias)

    # --------------------------------------------------------------------------- description
    def layer_specs(self, cfg: ViTConfig | None = None) -> list[ViTLayerSpec]:
        """Every layer of sub-network ``cfg`` (default: the active one), in order."""
        cfg = self.active if cfg is None else self.space.validate(cfg)
        arch, e = self.arch, cfg.embed
        n = (cfg.r // arch.patch_size) ** 2
        specs = [
            ViTLayerSpec(
                "PatchEmbed", (cfg.r, cfg.r, arch.in_channels), (n, e), patch=arch.patch_size
            )
        ]
        for h, m in zip(cfg.heads, cfg.mlp_ratio, strict=True):
            specs.append(
                ViTLayerSpec(
                    "TransformerLayer",
                    (n, e),
                    (n, e),
                    heads=h,
                    head_dim=arch.head_dim,
                    hidden=m * e,
                )
            )
        specs.append(ViTLayerSpec("Head", (n, e), (arch.num_classes,)))
        return specs

    def layer_inventory(self, resolution: int) -> dict[str, ViTLayerSpec]:
        """Every distinct layer (key -> spec) any sub-network at ``resolution`` can use: a layer's
        cost depends on (embed, heads, MLP ratio), not on its position."""
        sp, d = self.space, min(self.space.depth_list)
        out: dict[str, ViTLayerSpec] = {}
        for e in sp.embed_list:
            for h in sp.heads_list:
                for m in sp.mlp_ratio_list:
                    cfg = ViTConfig(
                        depth=d, heads=(h,) * d, mlp_ratio=(m,) * d, embed=e, r=resolution
                    )
                    for spec in self.layer_specs(cfg):
                        out.setdefault(spec.key, spec)
        return out

    def macs(self, cfg: ViTConfig | None = None) -> int:
        """Multiply-accumulates of one image through sub-network ``cfg`` (linear layers and
        attention products)."""
        return sum(s.macs for s in self.layer_specs(cfg))

    def params(self, cfg: ViTConfig | None = None) -> int:
        """Parameters of sub-network ``cfg`` once extracted."""
        return sum(s.params for s in self.layer_specs(cfg))

    # ---------------------------------------------------------------------------- extraction
    @torch.no_grad()
    def extract(self, cfg: ViTConfig | None = None) -> StaticViT:
        """The sub-network ``cfg`` (default: active) as plain modules with copied weights, in
        eval mode. The super-network's active config is left as it was."""
        cfg = self.active if cfg is None else self.space.validate(cfg)
        arch, e, hd = self.arch, cfg.embed, self.arch.head_dim
        pe = self.patch_embed
        embed = StaticPatchEmbed(arch.in_channels, e, arch.patch_size, arch.tokens)
        assert embed.proj.bias is not None and pe.proj.bias is not None  # built with bias=True
        embed.proj.weight.copy_(pe.proj.weight[:e])
        embed.proj.bias.copy_(pe.proj.bias[:e])
        embed.pos.copy_(pe.pos[:, :, :e])
        layers: list[nn.Module] = []
        elastic = cast("Iterable[ElasticViTLayer]", self.layers)
        for src, h, m in zip(elastic, cfg.heads, cfg.mlp_ratio, strict=False):
            a, hidden = h * hd, m * e
            dst = StaticViTLayer(e, h, hd, hidden)
            for d_ln, s_ln in ((dst.ln1, src.ln1), (dst.ln2, src.ln2)):
                d_ln.weight.copy_(s_ln.weight[:e])
                d_ln.bias.copy_(s_ln.bias[:e])
            at = src.attn
            dst.qkv.weight.copy_(
                at.qkv.weight.view(3, at.max_heads * hd, -1)[:, :a, :e].reshape(3 * a, e)
            )
            dst.qkv.bias.copy_(at.qkv.bias.view(3, at.max_heads * hd)[:, :a].reshape(3 * a))
            dst.proj.weight.copy_(at.proj.weight[:e, :a])
            dst.proj.bias.copy_(at.proj.bias[:e])
            dst.fc1.weight.copy_(src.mlp.fc1.weight[:hidden, :e])
            dst.fc1.bias.copy_(src.mlp.fc1.bias[:hidden])
            dst.fc2.weight.copy_(src.mlp.fc2.weight[:e, :hidden])
            dst.fc2.bias.copy_(src.mlp.fc2.bias[:e])
            layers.append(dst)
        head = StaticHead(e, arch.num_classes)
        head.norm.weight.copy_(self.norm.weight[:e])
        head.norm.bias.copy_(self.norm.bias[:e])
        head.fc.weight.copy_(self.head.weight[:, :e])
        head.fc.bias.copy_(self.head.bias)
        return StaticViT(embed, layers, head).eval()


def _init_weights(m: nn.Module) -> None:
    """ViT's usual initialisation: truncated normal (std 0.02) linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


VIT_PRESETS: dict[str, ViTArchitecture] = {
    "fmnist-vit-small": ViTArchitecture(
        name="fmnist-vit-small",
        in_channels=1,
        num_classes=10,
        patch_size=7,
        head_dim=32,
        space=ViTSpace(
            depth_list=(3, 4, 5, 6),
            heads_list=(2, 3, 4),
            mlp_ratio_list=(2, 3, 4),
            embed_list=(64, 96, 128),
            resolutions=(28,),
        ),
    ),
}

__all__ = [
    "VIT_PRESETS",
    "ElasticViT",
    "StaticViT",
    "ViTArchitecture",
    "ViTConfig",
    "ViTLayerSpec",
]
