"""The elastic OFA-MobileNetV3 super-network, its presets, per-layer description and extraction.

The network is parameterised by an :class:`Architecture` (stage widths, strides, activations, SE,
input channels, classes). Presets:

* ``ofa-w1.0`` / ``ofa-w1.2``: exactly once-for-all's ``OFAMobileNetV3`` (same modules, same
  ``state_dict`` keys and shapes, ImageNet 1000 classes, RGB input);
* ``fmnist-small``: a narrow variant for 28x28 grey Fashion-MNIST (1 input channel, 10 classes,
  resolutions 24/28/32). Only the first convolution and stages 1-2 reduce the resolution (a
  32-pixel input ends at 4x4, not 1x1), stage widths 24-96 and a 384/512 head: largest sub-network
  21 MMACs, smallest 2.6 MMACs; it trains on this 2-core CPU in about half an hour.

``set_active(cfg)`` switches the active sub-network in place: it sets a few integers on the elastic
blocks and points every BatchNorm at the sub-network's stored statistics (references, no copy).
No weight is copied or reloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from dynofa_ros.supernet.config import MAX_BLOCKS_PER_STAGE, N_STAGES, SearchSpace, SubnetConfig
from dynofa_ros.supernet.ops import (
    BlockSpec,
    ConvLayer,
    ElasticBatchNorm2d,
    ElasticMBConv,
    LinearLayer,
    ResidualBlock,
    StaticMBConv,
    copy_static_bn,
    make_divisible,
    middle_channels,
    se_channels,
)
from dynofa_ros.supernet.vit import VIT_PRESETS, ElasticViT, ViTArchitecture

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFA_BASE_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)


@dataclass(frozen=True)
class Architecture:
    """Everything that fixes the super-network's tensors (stored in every checkpoint).

    ``base_widths``: first conv, first block, the 5 elastic stages, final expand, feature mix
    (each multiplied by ``width_mult`` and rounded with ``make_divisible(.., 8)``).
    ``strides``: the first block and the 5 stages; ``first_stride``: the first convolution.
    """

    name: str
    in_channels: int = 3
    num_classes: int = 1000
    base_widths: tuple[int, ...] = OFA_BASE_WIDTHS
    width_mult: float = 1.0
    first_stride: int = 2
    strides: tuple[int, ...] = (1, 2, 2, 2, 1, 2)
    acts: tuple[str, ...] = ("relu", "relu", "relu", "h_swish", "h_swish", "h_swish")
    se: tuple[bool, ...] = (False, False, True, False, True, True)
    dropout: float = 0.1
    space: SearchSpace = field(default_factory=SearchSpace)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name, n in (("base_widths", 9), ("strides", 6), ("acts", 6), ("se", 6)):
            if len(getattr(self, name)) != n:
                raise ValueError(f"architecture field {name!r} needs {n} entries")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError("architecture 'mean' / 'std' need one entry per input channel")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(make_divisible(w * self.width_mult, 8) for w in self.base_widths)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["space"] = self.space.to_dict()
        return d

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Architecture:
        try:
            kw = dict(raw)
            kw["space"] = SearchSpace.from_dict(kw["space"])
            for key in ("base_widths", "strides", "acts", "se", "mean", "std"):
                kw[key] = tuple(kw[key])
            return cls(**kw)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"architecture description is incomplete or invalid: {exc}") from exc


PRESETS: dict[str, Architecture | ViTArchitecture] = {
    "ofa-w1.0": Architecture(name="ofa-w1.0", width_mult=1.0),
    "ofa-w1.2": Architecture(name="ofa-w1.2", width_mult=1.2),
    "fmnist-small": Architecture(
        name="fmnist-small",
        in_channels=1,
        num_classes=10,
        base_widths=(16, 16, 24, 32, 48, 64, 96, 384, 512),
        first_stride=2,
        strides=(1, 2, 2, 1, 1, 1),
        dropout=0.1,
        space=SearchSpace(resolutions=(24, 28, 32)),
        mean=(0.2860,),
        std=(0.3530,),
    ),
    **VIT_PRESETS,
}


def preset(name: str) -> Architecture | ViTArchitecture:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown super-network preset {name!r} (one of: {', '.join(PRESETS)})"
        ) from None


def conv_out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


# --------------------------------------------------------------------------- layer description
def _shape(*dims: int) -> str:
    return "x".join(str(d) for d in dims)


@dataclass(frozen=True)
class LayerSpec:
    """One layer of an active sub-network, as once-for-all's latency lookup tables describe it.

    ``kind``: ``Conv`` (first conv), ``expanded_conv`` (an MBConv block), ``Conv_1`` (final
    expand), ``AvgPool2D``, ``Conv_2`` (feature mix), ``Logits`` (classifier). Shapes are
    (H, W, C) as in the table keys.
    """

    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    block: BlockSpec | None = None
    kernel_size: int = 1
    stride: int = 1
    act: str | None = None
    use_bn: bool = True

    @property
    def key(self) -> str:
        """The once-for-all lookup-table key of this layer."""
        parts = [
            self.kind,
            f"input:{_shape(*self.input_shape)}",
            f"output:{_shape(*self.output_shape)}",
        ]
        if self.kind == "expanded_conv":
            b = self.block
            assert b is not None
            parts += [
                f"expand:{b.mid_channels}",
                f"kernel:{b.kernel_size}",
                f"stride:{b.stride}",
                f"idskip:{int(b.id_skip)}",
                f"se:{int(b.use_se)}",
                f"hs:{int(b.act == 'h_swish')}",
            ]
        return "-".join(parts)

    @property
    def macs(self) -> int:
        h_in, w_in = self.input_shape[0], self.input_shape[1]
        h, w = self.output_shape[0], (self.output_shape[1] if len(self.output_shape) == 3 else 1)
        if self.kind in ("Conv", "Conv_1", "Conv_2"):
            cin, cout = self.input_shape[2], self.output_shape[2]
            return h * w * cin * cout * self.kernel_size**2
        if self.kind == "AvgPool2D":
            return 0
        if self.kind == "Logits":
            return self.input_shape[2] * self.output_shape[0]
        b = self.block
        assert b is not None
        macs = 0
        if b.expand_ratio != 1:
            macs += h_in * w_in * b.in_channels * b.mid_channels
        macs += h * w * b.mid_channels * b.kernel_size**2
        if b.use_se:
            s = se_channels(b.mid_channels)
            macs += 2 * b.mid_channels * s
        macs += h * w * b.mid_channels * b.out_channels
        return macs

    @property
    def params(self) -> int:
        if self.kind in ("Conv", "Conv_1", "Conv_2"):
            cin, cout = self.input_shape[2], self.output_shape[2]
            return cin * cout * self.kernel_size**2 + (2 * cout if self.use_bn else 0)
        if self.kind == "AvgPool2D":
            return 0
        if self.kind == "Logits":
            return (self.input_shape[2] + 1) * self.output_shape[0]
        b = self.block
        assert b is not None
        p = 0
        if b.expand_ratio != 1:
            p += b.in_channels * b.mid_channels + 2 * b.mid_channels
        p += b.mid_channels * b.kernel_size**2 + 2 * b.mid_channels
        if b.use_se:
            s = se_channels(b.mid_channels)
            p += 2 * b.mid_channels * s + s + b.mid_channels
        p += b.mid_channels * b.out_channels + 2 * b.out_channels
        return p

    def build(self) -> nn.Module:
        """A standalone static module for this layer (random weights), to time it alone. Its
        input is ``torch.randn(1, C, H, W)`` from :attr:`input_shape` (``(1, C)`` for Logits)."""
        if self.kind in ("Conv", "Conv_1", "Conv_2"):
            return ConvLayer(
                self.input_shape[2],
                self.output_shape[2],
                self.kernel_size,
                self.stride,
                use_bn=self.use_bn,
                act=self.act,
                elastic_bn=False,
            ).eval()
        if self.kind == "AvgPool2D":
            return _GlobalAvgPool().eval()
        if self.kind == "Logits":
            return nn.Linear(self.input_shape[2], self.output_shape[0]).eval()
        assert self.block is not None
        return ResidualBlock(StaticMBConv(self.block), self.block.id_skip).eval()

    def example_input(self, batch: int = 1) -> Tensor:
        if self.kind == "Logits":
            return torch.randn(batch, self.input_shape[2])
        h, w, c = self.input_shape
        return torch.randn(batch, c, h, w)


class _GlobalAvgPool(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean(3, keepdim=True).mean(2, keepdim=True)


# ------------------------------------------------------------------------------ networks
class StaticMobileNetV3(nn.Module):
    """A plain MobileNetV3 (one sub-network, copied weights): what extraction and ONNX export
    give."""

    def __init__(
        self,
        first_conv: nn.Module,
        blocks: list[nn.Module],
        final_expand_layer: nn.Module,
        feature_mix_layer: nn.Module,
        classifier: nn.Module,
    ) -> None:
        super().__init__()
        self.first_conv = first_conv
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_layer = final_expand_layer
        self.feature_mix_layer = feature_mix_layer
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        x = self.final_expand_layer(x)
        x = x.mean(3, keepdim=True).mean(2, keepdim=True)
        x = self.feature_mix_layer(x)
        x = x.flatten(1)
        x = self.classifier(x)
        return x


class ElasticMobileNetV3(nn.Module):
    """The super-network. ``set_active(cfg)`` picks the sub-network every forward uses."""

    kind = "mobilenetv3"
    uses_batchnorm: Literal[True] = True  # sub-networks need their own BN statistics (bnstats)

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        self.space = arch.space
        w = arch.widths
        self.first_conv = ConvLayer(arch.in_channels, w[0], 3, arch.first_stride, act="h_swish")
        first_spec = BlockSpec(
            in_channels=w[0],
            out_channels=w[1],
            mid_channels=w[0],
            kernel_size=3,
            stride=arch.strides[0],
            act=arch.acts[0],
            use_se=arch.se[0],
            expand_ratio=1,
        )
        blocks: list[nn.Module] = [
            ResidualBlock(StaticMBConv(first_spec, elastic_bn=True), first_spec.id_skip)
        ]
        self.blocks_per_stage = max(arch.space.depth_list)
        self.stage_blocks: list[list[int]] = []
        feature = w[1]
        for stage in range(N_STAGES):
            idx = []
            out_ch = w[2 + stage]
            for j in range(self.blocks_per_stage):
                stride = arch.strides[1 + stage] if j == 0 else 1
                conv = ElasticMBConv(
                    feature,
                    out_ch,
                    arch.space.ks_list,
                    arch.space.expand_list,
                    stride,
                    arch.acts[1 + stage],
                    arch.se[1 + stage],
                )
                idx.append(len(blocks))
                blocks.append(ResidualBlock(conv, stride == 1 and feature == out_ch))
                feature = out_ch
            self.stage_blocks.append(idx)
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_layer = ConvLayer(feature, w[7], 1, act="h_swish")
        self.feature_mix_layer = ConvLayer(w[7], w[8], 1, use_bn=False, act="h_swish")
        self.classifier = LinearLayer(w[8], arch.num_classes, arch.dropout)
        self.runtime_depth = [self.blocks_per_stage] * N_STAGES
        self.bn_modules: dict[str, ElasticBatchNorm2d] = {
            name: m for name, m in self.named_modules() if isinstance(m, ElasticBatchNorm2d)
        }
        # per-sub-network BN statistics: id -> {bn module name: (running_mean, running_var)}
        self.bn_stats: dict[str, dict[str, tuple[Tensor, Tensor]]] = {}
        self.bn_stats_configs: dict[str, SubnetConfig] = {}
        self._stage_convs = [
            [cast(ElasticMBConv, self.blocks[i].conv) for i in idx] for idx in self.stage_blocks
        ]
        self._bn_list = list(self.bn_modules.values())
        self._valid_ids: set[str] = set()  # configs already validated against the space
        self.active: SubnetConfig = self.space.largest()
        self.set_active(self.active)

    # ----------------------------------------------------------------------------- switching
    def set_active(self, cfg: SubnetConfig, *, require_bn_stats: bool = False) -> None:
        """Make ``cfg`` the active sub-network, in place (a few attribute writes).

        BatchNorm layers point at the stored statistics of ``cfg`` when there are some (see
        :mod:`dynofa_ros.supernet.bnstats`), else at the shared running buffers; with
        ``require_bn_stats`` a config without stored statistics raises ``ValueError``.
        """
        sid = cfg.id
        if sid not in self._valid_ids:
            self.space.validate(cfg)
            self._valid_ids.add(sid)
        stats = self.bn_stats.get(sid)
        if stats is None and require_bn_stats:
            raise ValueError(
                f"sub-network {cfg.id} has no stored BN statistics (calibrate it first)"
            )
        ks, e = cfg.ks, cfg.e
        for stage, convs in enumerate(self._stage_convs):
            depth = cfg.d[stage]
            self.runtime_depth[stage] = depth
            for j in range(depth):
                i = stage * MAX_BLOCKS_PER_STAGE + j
                convs[j].set_active(ks[i], e[i])
        # straight into __dict__: nn.Module.__setattr__ would cost ~3 us per layer
        if stats is None:
            for m in self._bn_list:
                m.__dict__["installed"] = None
        else:
            for name, m in self.bn_modules.items():
                m.__dict__["installed"] = stats.get(name)
        self.__dict__["active"] = cfg

    def has_bn_stats(self, cfg: SubnetConfig) -> bool:
        return cfg.id in self.bn_stats

    def store_bn_stats(self, cfg: SubnetConfig, stats: Mapping[str, tuple[Tensor, Tensor]]) -> None:
        unknown = sorted(set(stats) - set(self.bn_modules))
        if unknown:
            raise ValueError(f"BN statistics name unknown BatchNorm layer(s): {unknown[:3]}")
        self.bn_stats[cfg.id] = {k: (m.detach(), v.detach()) for k, (m, v) in stats.items()}
        self.bn_stats_configs[cfg.id] = cfg
        if self.active.id == cfg.id:
            self.set_active(cfg)

    def active_block_indices(self) -> list[int]:
        return [
            idx[j]
            for stage, idx in enumerate(self.stage_blocks)
            for j in range(self.runtime_depth[stage])
        ]

    def forward(self, x: Tensor) -> Tensor:
        x = self.first_conv(x)
        x = self.blocks[0](x)
        for stage, idx in enumerate(self.stage_blocks):
            for j in range(self.runtime_depth[stage]):
                x = self.blocks[idx[j]](x)
        x = self.final_expand_layer(x)
        x = x.mean(3, keepdim=True).mean(2, keepdim=True)
        x = self.feature_mix_layer(x)
        x = x.flatten(1)
        x = self.classifier(x)
        return x

    # --------------------------------------------------------------------------- description
    def layer_specs(self, cfg: SubnetConfig | None = None) -> list[LayerSpec]:
        """Every layer of sub-network ``cfg`` (default: the active one), in order, with the
        fields of once-for-all's latency-table keys."""
        cfg = self.active if cfg is None else self.space.validate(cfg)
        arch, w = self.arch, self.arch.widths
        r = cfg.r
        f = conv_out(r, arch.first_stride)
        specs = [
            LayerSpec(
                "Conv",
                (r, r, arch.in_channels),
                (f, f, w[0]),
                kernel_size=3,
                stride=arch.first_stride,
                act="h_swish",
            )
        ]
        first = cast(StaticMBConv, self.blocks[0].conv).spec
        fo = conv_out(f, first.stride)
        specs.append(
            LayerSpec(
                "expanded_conv",
                (f, f, first.in_channels),
                (fo, fo, first.out_channels),
                block=first,
            )
        )
        f = fo
        for stage, idx in enumerate(self.stage_blocks):
            for j in range(cfg.d[stage]):
                i = stage * MAX_BLOCKS_PER_STAGE + j
                blk = cast(ElasticMBConv, self.blocks[idx[j]].conv)
                spec = BlockSpec(
                    in_channels=blk.in_channels,
                    out_channels=blk.out_channels,
                    mid_channels=middle_channels(blk.in_channels, cfg.e[i]),
                    kernel_size=cfg.ks[i],
                    stride=blk.stride,
                    act=blk.act,
                    use_se=blk.use_se,
                    expand_ratio=cfg.e[i],
                )
                fo = conv_out(f, spec.stride)
                specs.append(
                    LayerSpec(
                        "expanded_conv",
                        (f, f, spec.in_channels),
                        (fo, fo, spec.out_channels),
                        block=spec,
                    )
                )
                f = fo
        specs.append(LayerSpec("Conv_1", (f, f, w[6]), (f, f, w[7]), act="h_swish"))
        specs.append(LayerSpec("AvgPool2D", (f, f, w[7]), (1, 1, w[7])))
        specs.append(LayerSpec("Conv_2", (1, 1, w[7]), (1, 1, w[8]), act="h_swish", use_bn=False))
        specs.append(LayerSpec("Logits", (1, 1, w[8]), (arch.num_classes,)))
        return specs

    def layer_inventory(self, resolution: int) -> dict[str, LayerSpec]:
        """Every distinct layer (key -> spec) any sub-network at ``resolution`` can use.

        A block's shapes depend only on its position (stride and widths are fixed per stage), so
        the uniform configs (every block kernel k / expand e, every stage at full depth) cover
        all keys."""
        space = self.space
        out: dict[str, LayerSpec] = {}
        for k in space.ks_list:
            for e in space.expand_list:
                cfg = SubnetConfig(
                    ks=(k,) * (N_STAGES * MAX_BLOCKS_PER_STAGE),
                    e=(e,) * (N_STAGES * MAX_BLOCKS_PER_STAGE),
                    d=(max(space.depth_list),) * N_STAGES,
                    r=resolution,
                )
                for spec in self.layer_specs(cfg):
                    out.setdefault(spec.key, spec)
        return out

    def bn_channels(self, cfg: SubnetConfig | None = None) -> dict[str, int]:
        """Name -> channel count of every BatchNorm sub-network ``cfg`` uses (default: active)."""
        cfg = self.active if cfg is None else self.space.validate(cfg)
        out = {
            name: m.num_features
            for name, m in self.bn_modules.items()
            if name.startswith(("first_conv.", "blocks.0.", "final_expand_layer."))
        }
        for stage, idx in enumerate(self.stage_blocks):
            for j in range(cfg.d[stage]):
                blk = cast(ElasticMBConv, self.blocks[idx[j]].conv)
                mid = middle_channels(blk.in_channels, cfg.e[stage * MAX_BLOCKS_PER_STAGE + j])
                p = f"blocks.{idx[j]}.conv."
                out[p + "inverted_bottleneck.bn.bn"] = mid
                out[p + "depth_conv.bn.bn"] = mid
                out[p + "point_linear.bn.bn"] = blk.out_channels
        return out

    def macs(self, cfg: SubnetConfig | None = None) -> int:
        """Multiply-accumulates of one image through sub-network ``cfg`` (conv + linear)."""
        return sum(s.macs for s in self.layer_specs(cfg))

    def params(self, cfg: SubnetConfig | None = None) -> int:
        """Parameters of sub-network ``cfg`` once extracted (BN affine included)."""
        return sum(s.params for s in self.layer_specs(cfg))

    # ---------------------------------------------------------------------------- extraction
    @torch.no_grad()
    def extract(self, cfg: SubnetConfig | None = None) -> StaticMobileNetV3:
        """The sub-network ``cfg`` (default: active) as plain modules with copied weights and its
        BN statistics; in eval mode. The super-network's active config is left as it was."""
        previous = self.active
        if cfg is not None:
            self.set_active(cfg)
        try:
            first_conv = _copy_conv_layer(self.first_conv)
            block = cast(ResidualBlock, self.blocks[0])
            first = cast(StaticMBConv, block.conv)
            b0 = StaticMBConv(first.spec)
            _copy_static_mbconv(b0, first)
            blocks: list[nn.Module] = [ResidualBlock(b0, block.identity)]
            for i in self.active_block_indices():
                block = cast(ResidualBlock, self.blocks[i])
                blocks.append(
                    ResidualBlock(cast(ElasticMBConv, block.conv).extract(), block.identity)
                )
            final = _copy_conv_layer(self.final_expand_layer)
            mix = _copy_conv_layer(self.feature_mix_layer)
            cls = LinearLayer(
                self.classifier.linear.in_features,
                self.classifier.linear.out_features,
                self.arch.dropout,
            )
            cls.linear.load_state_dict(self.classifier.linear.state_dict())
        finally:
            if cfg is not None:
                self.set_active(previous)
        return StaticMobileNetV3(first_conv, blocks, final, mix, cls).eval()


@torch.no_grad()
def _copy_conv_layer(src: ConvLayer) -> ConvLayer:
    act = None
    if src.act is not None:
        act = "relu" if isinstance(src.act, nn.ReLU) else "h_swish"
    dst = ConvLayer(
        src.in_channels,
        src.out_channels,
        src.kernel_size,
        src.stride,
        use_bn=src.bn is not None,
        act=act,
        elastic_bn=False,
    )
    dst.conv.weight.copy_(src.conv.weight)
    if src.bn is not None:
        assert dst.bn is not None  # built with use_bn=True just above
        copy_static_bn(dst.bn, src.bn)
    return dst


@torch.no_grad()
def _copy_static_mbconv(dst: StaticMBConv, src: StaticMBConv) -> None:
    for (name, p_dst), (_, p_src) in zip(
        dst.named_parameters(), src.named_parameters(), strict=True
    ):
        assert p_dst.shape == p_src.shape, name
        p_dst.copy_(p_src)
    for m_dst, m_src in zip(dst.modules(), src.modules(), strict=True):
        if isinstance(m_dst, nn.BatchNorm2d):
            copy_static_bn(m_dst, cast(nn.BatchNorm2d, m_src))  # same structure as m_dst


# ----------------------------------------------------------------- super-network families
# The one place that maps an architecture kind (the ``kind`` field of a checkpoint's
# ``architecture`` metadata; absent means the MobileNetV3 family) to its architecture class and
# network class. Everything else builds networks through these functions and then uses the
# network's common interface (``space``, ``set_active``, ``layer_specs``, ``extract``, ...).
SUPERNET_KINDS: dict[str, tuple[type, type]] = {
    "mobilenetv3": (Architecture, ElasticMobileNetV3),
    "vit": (ViTArchitecture, ElasticViT),
}
DEFAULT_KIND = "mobilenetv3"

AnyArchitecture = Architecture | ViTArchitecture
Supernet = ElasticMobileNetV3 | ElasticViT


def architecture_kind(arch: AnyArchitecture | Mapping[str, Any]) -> str:
    raw = arch.get("kind") if isinstance(arch, Mapping) else getattr(arch, "kind", None)
    return DEFAULT_KIND if raw is None else str(raw)


def architecture_from_dict(raw: Mapping[str, Any]) -> AnyArchitecture:
    """The architecture a checkpoint's metadata describes, of the class its ``kind`` names."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"architecture description must be a JSON object, got {raw!r}")
    kind = architecture_kind(raw)
    if kind not in SUPERNET_KINDS:
        raise ValueError(
            f"architecture field 'kind' = {kind!r} is unknown (one of: {', '.join(SUPERNET_KINDS)})"
        )
    arch_cls = SUPERNET_KINDS[kind][0]
    fields = {k: v for k, v in raw.items() if k != "kind"} if kind == DEFAULT_KIND else raw
    return arch_cls.from_dict(fields)  # type: ignore[attr-defined, no-any-return]


def build_supernet(arch: AnyArchitecture | str) -> Supernet:
    """The super-network of an architecture (or preset name), of the class its kind names."""
    arch = preset(arch) if isinstance(arch, str) else arch
    return SUPERNET_KINDS[architecture_kind(arch)][1](arch)  # type: ignore[no-any-return]


def count_static_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def param_count_mb(net: nn.Module) -> float:
    size: int = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    return size / 2**20


__all__ = [
    "PRESETS",
    "SUPERNET_KINDS",
    "Architecture",
    "ElasticMobileNetV3",
    "LayerSpec",
    "StaticMobileNetV3",
    "architecture_from_dict",
    "build_supernet",
    "conv_out",
    "preset",
]
