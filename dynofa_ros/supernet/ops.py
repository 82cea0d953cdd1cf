"""Elastic operations: each holds the largest weight and slices it by its own active setting.

There are no global flags: every op reads its active setting from its own attributes (set by
:meth:`ElasticMobileNetV3.set_active`) and its input channel count from the input tensor. The
parameter and buffer names follow once-for-all's modules (``conv.conv.weight``, ``bn.bn.*``,
``7to5_matrix``, ``se.fc.reduce.*``) so an OFA ``state_dict`` loads without renaming.

The arithmetic follows once-for-all's ``dynamic_op.py`` (kernel transformation 7→5→3 with the
centre crop then a learned linear map per step, ``make_divisible`` rounding of the middle and SE
channels, h-swish as ``x * relu6(x + 3) / 6``), so the logits match to float rounding.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CHANNEL_DIVISIBLE = 8
SE_REDUCTION = 4


def make_divisible(v: float, divisor: int = CHANNEL_DIVISIBLE, min_val: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor`` without going down more than 10% (TF / OFA)."""
    if min_val is None:
        min_val = divisor
    new_v = max(min_val, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def middle_channels(in_channels: int, expand_ratio: float) -> int:
    """Channels of an MBConv block's expanded (depthwise) part."""
    if expand_ratio == 1:
        return in_channels
    return make_divisible(round(in_channels * expand_ratio), CHANNEL_DIVISIBLE)


def se_channels(channels: int) -> int:
    """Squeeze channels of the SE module over ``channels``."""
    return make_divisible(channels // SE_REDUCTION, CHANNEL_DIVISIBLE)


def sub_filter_start_end(kernel_size: int, sub_kernel_size: int) -> tuple[int, int]:
    center = kernel_size // 2
    dev = sub_kernel_size // 2
    return center - dev, center + dev + 1


class Hswish(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * F.relu6(x + 3.0) / 6.0


class Hsigmoid(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(x + 3.0) / 6.0


def build_activation(name: str | None) -> nn.Module | None:
    if name == "relu":
        return nn.ReLU()
    if name == "h_swish":
        return Hswish()
    if name == "h_sigmoid":
        return Hsigmoid()
    if name in (None, "none"):
        return None
    raise ValueError(f"unknown activation {name!r} (one of: relu, h_swish, h_sigmoid, none)")


def _sequential(layers: OrderedDict[str, nn.Module | None]) -> nn.Sequential:
    """``nn.Sequential(layers)``. Activation ``"none"`` gives a ``None`` layer: torch registers
    it as such, though its annotation of ``Sequential`` takes modules only."""
    return nn.Sequential(cast("OrderedDict[str, nn.Module]", layers))


# ------------------------------------------------------------------------------- batch norm
class _CalibrationAccumulator:
    """Averages per-batch mean / (biased) variance, weighted by batch size (as once-for-all)."""

    def __init__(self) -> None:
        self.mean: Tensor | None = None
        self.var: Tensor | None = None
        self.count = 0

    def update(self, mean: Tensor, var: Tensor, n: int) -> None:
        if self.mean is None or self.var is None:
            self.mean, self.var = mean.detach() * n, var.detach() * n
        elif self.mean.shape != mean.shape:
            raise RuntimeError("BN calibration saw two channel counts for one layer")
        else:
            self.mean += mean.detach() * n
            self.var += var.detach() * n
        self.count += n

    def result(self) -> tuple[Tensor, Tensor] | None:
        if self.mean is None or self.var is None or self.count == 0:
            return None
        return (self.mean / self.count).clone(), (self.var / self.count).clone()


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first ``x.size(1)`` channels of its largest parameters.

    * training: batch statistics, running buffers updated on the active slice (as OFA);
    * eval: the *installed* statistics of the active sub-network when there are some (a reference
      to small tensors held by a :class:`~dynofa_ros.supernet.bnstats.BNStatsStore`, set on switch,
      no copy), else the running buffers;
    * calibration (inside :func:`dynofa_ros.supernet.bnstats.calibrating`): normalises with the
      batch statistics and accumulates them; the buffers are not touched.
    """

    # always tracked (``track_running_stats`` is on), so never None as nn.BatchNorm2d allows
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.installed: tuple[Tensor, Tensor] | None = None
        self._calibration: _CalibrationAccumulator | None = None

    def forward(self, x: Tensor) -> Tensor:
        c = x.size(1)
        full = c == self.num_features
        weight = self.weight if full else self.weight[:c]
        bias = self.bias if full else self.bias[:c]
        if self._calibration is not None:
            mean = x.mean(dim=(0, 2, 3))
            var = (x - mean.view(1, -1, 1, 1)).square().mean(dim=(0, 2, 3))
            self._calibration.update(mean, var, x.size(0))
            return F.batch_norm(x, mean, var, weight, bias, False, 0.0, self.eps)
        if self.training:
            factor = 0.0
            if self.track_running_stats and self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
            return F.batch_norm(
                x,
                self.running_mean if full else self.running_mean[:c],
                self.running_var if full else self.running_var[:c],
                weight,
                bias,
                True,
                factor,
                self.eps,
            )
        stats = self.installed
        if stats is not None:
            mean, var = stats
            if mean.numel() != c:
                raise RuntimeError(
                    f"installed BN statistics have {mean.numel()} channels, input has {c}"
                )
        else:
            mean = self.running_mean if full else self.running_mean[:c]
            var = self.running_var if full else self.running_var[:c]
        return F.batch_norm(x, mean, var, weight, bias, False, 0.0, self.eps)


class DynamicBatchNorm2d(nn.Module):
    """OFA's wrapper (parameters under ``bn.*``) around an :class:`ElasticBatchNorm2d`."""

    def __init__(self, max_features: int) -> None:
        super().__init__()
        self.bn = ElasticBatchNorm2d(max_features)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(x)
        return x


# ------------------------------------------------------------------------------- convolutions
class DynamicConv2d(nn.Module):
    """Dense (pointwise) convolution: ``weight[:active_out, :x.size(1)]``."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = nn.Conv2d(max_in, max_out, kernel_size, stride=stride, bias=False)
        self.active_out_channels = max_out

    def active_weight(self, in_channels: int, out_channels: int | None = None) -> Tensor:
        out = self.active_out_channels if out_channels is None else out_channels
        return self.conv.weight[:out, :in_channels]

    def forward(self, x: Tensor) -> Tensor:
        w = self.active_weight(x.size(1)).contiguous()
        return F.conv2d(x, w, None, self.stride, self.kernel_size // 2)


class DynamicSeparableConv2d(nn.Module):
    """Depthwise convolution with elastic kernel size.

    A smaller kernel is the centre of the next larger one passed through a learned
    ``(k*k) x (k*k)`` matrix (``7to5_matrix``, ``5to3_matrix``), chained from the largest kernel
    (once-for-all's kernel transformation, ``KERNEL_TRANSFORM_MODE = 1``).
    """

    def __init__(self, max_channels: int, ks_list: tuple[int, ...], stride: int = 1) -> None:
        super().__init__()
        self.ks_set = tuple(sorted(set(ks_list)))
        self.stride = stride
        self.max_kernel = self.ks_set[-1]
        self.conv = nn.Conv2d(
            max_channels, max_channels, self.max_kernel, stride, groups=max_channels, bias=False
        )
        for small, large in zip(self.ks_set[:-1], self.ks_set[1:], strict=True):
            self.register_parameter(f"{large}to{small}_matrix", nn.Parameter(torch.eye(small**2)))
        self.active_kernel_size = self.max_kernel

    def active_weight(self, channels: int, kernel_size: int | None = None) -> Tensor:
        k = self.active_kernel_size if kernel_size is None else kernel_size
        filters = self.conv.weight[:channels]
        if k == self.max_kernel:
            return filters
        for i in range(len(self.ks_set) - 1, 0, -1):
            src, dst = self.ks_set[i], self.ks_set[i - 1]
            if src <= k:
                break
            start, end = sub_filter_start_end(src, dst)
            centre = filters[:, :, start:end, start:end].contiguous()
            flat = centre.view(-1, dst * dst)
            flat = F.linear(flat, getattr(self, f"{src}to{dst}_matrix"))
            filters = flat.view(channels, 1, dst, dst)
        return filters

    def forward(self, x: Tensor) -> Tensor:
        c = x.size(1)
        k = self.active_kernel_size
        w = self.active_weight(c, k).contiguous()
        return F.conv2d(x, w, None, self.stride, k // 2, 1, c)


class _SEFc(nn.Module):
    """Holds the SE convolutions under OFA's names (``fc.reduce``, ``fc.expand``)."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)


class DynamicSE(nn.Module):
    """Squeeze-excite over the first ``x.size(1)`` channels; squeeze width
    ``make_divisible(C // 4, 8)`` of the active channel count."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.fc = _SEFc(max_channels, se_channels(max_channels))

    def forward(self, x: Tensor) -> Tensor:
        c = x.size(1)
        mid = se_channels(c)
        reduce, expand = self.fc.reduce, self.fc.expand
        assert reduce.bias is not None and expand.bias is not None  # built with bias=True
        y = x.mean(3, keepdim=True).mean(2, keepdim=True)
        y = F.conv2d(y, reduce.weight[:mid, :c].contiguous(), reduce.bias[:mid])
        y = F.relu(y)
        y = F.conv2d(y, expand.weight[:c, :mid].contiguous(), expand.bias[:c])
        return x * (F.relu6(y + 3.0) / 6.0)


class DynamicLinear(nn.Module):
    """``weight[:active_out, :x.size(1)]`` (the OFA-MBv3 classifier itself is static)."""

    def __init__(self, max_in: int, max_out: int, bias: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(max_in, max_out, bias=bias)
        self.active_out_features = max_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.active_out_features
        w = self.linear.weight[:out, : x.size(1)].contiguous()
        b = self.linear.bias[:out] if self.linear.bias is not None else None
        return F.linear(x, w, b)


# ------------------------------------------------------------------------ fixed-size layers
class ConvLayer(nn.Module):
    """conv → (BN) → (activation), OFA's ``ConvLayer`` names (``conv``, ``bn``, ``act``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        *,
        use_bn: bool = True,
        act: str | None = "h_swish",
        elastic_bn: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False
        )
        bn_cls = ElasticBatchNorm2d if elastic_bn else nn.BatchNorm2d
        self.bn = bn_cls(out_channels) if use_bn else None
        self.act = build_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


class SEModule(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = _SEFc(channels, se_channels(channels))

    def forward(self, x: Tensor) -> Tensor:
        y = x.mean(3, keepdim=True).mean(2, keepdim=True)
        y = self.fc.expand(F.relu(self.fc.reduce(y)))
        return x * (F.relu6(y + 3.0) / 6.0)


class LinearLayer(nn.Module):
    """dropout → linear (OFA's ``LinearLayer``: parameters under ``linear.*``)."""

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.linear(x)
        return x


@dataclass(frozen=True)
class BlockSpec:
    """Everything that defines one MBConv block (static or the active part of an elastic one)."""

    in_channels: int
    out_channels: int
    mid_channels: int
    kernel_size: int
    stride: int
    act: str
    use_se: bool
    expand_ratio: float

    @property
    def id_skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


class StaticMBConv(nn.Module):
    """A plain MBConv block (OFA's ``MBConvLayer`` names); ``inverted_bottleneck`` is absent when
    the expand ratio is 1."""

    def __init__(self, spec: BlockSpec, elastic_bn: bool = False) -> None:
        super().__init__()
        self.spec = spec
        bn_cls = ElasticBatchNorm2d if elastic_bn else nn.BatchNorm2d
        mid = spec.mid_channels
        self.inverted_bottleneck: nn.Sequential | None
        if spec.expand_ratio != 1:
            self.inverted_bottleneck = _sequential(
                OrderedDict(
                    conv=nn.Conv2d(spec.in_channels, mid, 1, bias=False),
                    bn=bn_cls(mid),
                    act=build_activation(spec.act),
                )
            )
        else:
            self.inverted_bottleneck = None
        depth: OrderedDict[str, nn.Module | None] = OrderedDict(
            conv=nn.Conv2d(
                mid,
                mid,
                spec.kernel_size,
                spec.stride,
                spec.kernel_size // 2,
                groups=mid,
                bias=False,
            ),
            bn=bn_cls(mid),
            act=build_activation(spec.act),
        )
        if spec.use_se:
            depth["se"] = SEModule(mid)
        self.depth_conv = _sequential(depth)
        self.point_linear = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(mid, spec.out_channels, 1, bias=False), bn=bn_cls(spec.out_channels)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        x = self.point_linear(self.depth_conv(x))
        return x


class ElasticMBConv(nn.Module):
    """An MBConv block with elastic kernel size and expand ratio (OFA's ``DynamicMBConvLayer``)."""

    def __init__(  # noqa: PLR0917 - mirrors OFA's DynamicMBConvLayer signature
        self,
        in_channels: int,
        out_channels: int,
        ks_list: tuple[int, ...],
        expand_list: tuple[int, ...],
        stride: int,
        act: str,
        use_se: bool,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.ks_list, self.expand_list = tuple(sorted(ks_list)), tuple(sorted(expand_list))
        self.stride, self.act, self.use_se = stride, act, use_se
        max_mid = middle_channels(in_channels, max(self.expand_list))
        self.inverted_bottleneck = _sequential(
            OrderedDict(
                conv=DynamicConv2d(in_channels, max_mid),
                bn=DynamicBatchNorm2d(max_mid),
                act=build_activation(act),
            )
        )
        depth: OrderedDict[str, nn.Module | None] = OrderedDict(
            conv=DynamicSeparableConv2d(max_mid, self.ks_list, stride),
            bn=DynamicBatchNorm2d(max_mid),
            act=build_activation(act),
        )
        if use_se:
            depth["se"] = DynamicSE(max_mid)
        self.depth_conv = _sequential(depth)
        self.point_linear = nn.Sequential(
            OrderedDict(
                conv=DynamicConv2d(max_mid, out_channels), bn=DynamicBatchNorm2d(out_channels)
            )
        )
        self.active_kernel_size = max(self.ks_list)
        self.active_expand_ratio = max(self.expand_list)

        # direct references for set_active (a tuple is not registered as a sub-module)
        self._switch_targets = (self.inverted_bottleneck.conv, self.depth_conv.conv)
        self._mid_by_ratio = {e: middle_channels(in_channels, e) for e in self.expand_list}

    def set_active(self, kernel_size: int, expand_ratio: int) -> None:
        # plain attribute writes straight into __dict__: nn.Module.__setattr__ costs ~3 us each
        # and a switch does ~60 of them
        ib_conv, dw_conv = self._switch_targets
        ib, dw, mine = ib_conv.__dict__, dw_conv.__dict__, self.__dict__
        mine["active_kernel_size"] = kernel_size
        mine["active_expand_ratio"] = expand_ratio
        mid = self._mid_by_ratio.get(expand_ratio)
        ib["active_out_channels"] = (
            middle_channels(self.in_channels, expand_ratio) if mid is None else mid
        )
        dw["active_kernel_size"] = kernel_size

    def active_spec(self) -> BlockSpec:
        return BlockSpec(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            mid_channels=middle_channels(self.in_channels, self.active_expand_ratio),
            kernel_size=self.active_kernel_size,
            stride=self.stride,
            act=self.act,
            use_se=self.use_se,
            expand_ratio=self.active_expand_ratio,
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.inverted_bottleneck(x)
        x = self.depth_conv(x)
        x = self.point_linear(x)
        return x

    @torch.no_grad()
    def extract(self) -> StaticMBConv:
        """The active block as a :class:`StaticMBConv` with copied weights and the BN statistics
        this block uses now (installed ones when there are, else the running buffers)."""
        spec = self.active_spec()
        out = StaticMBConv(spec)
        mid, cin = spec.mid_channels, spec.in_channels
        # nn.Module.__getattr__ types the nn.Sequential children Tensor | Module: cast them
        ib, dw, pl = self.inverted_bottleneck, self.depth_conv, self.point_linear
        o_ib, o_dw, o_pl = out.inverted_bottleneck, out.depth_conv, out.point_linear
        assert o_ib is not None  # None only at expand ratio 1, which extract never supported
        cast(nn.Conv2d, o_ib.conv).weight.copy_(cast(DynamicConv2d, ib.conv).active_weight(cin))
        copy_bn(cast(nn.BatchNorm2d, o_ib.bn), cast(DynamicBatchNorm2d, ib.bn).bn)
        cast(nn.Conv2d, o_dw.conv).weight.copy_(
            cast(DynamicSeparableConv2d, dw.conv).active_weight(mid)
        )
        copy_bn(cast(nn.BatchNorm2d, o_dw.bn), cast(DynamicBatchNorm2d, dw.bn).bn)
        if spec.use_se:
            se_mid = se_channels(mid)
            src, dst = cast(DynamicSE, dw.se).fc, cast(SEModule, o_dw.se).fc
            assert src.reduce.bias is not None and src.expand.bias is not None  # bias=True
            assert dst.reduce.bias is not None and dst.expand.bias is not None
            dst.reduce.weight.copy_(src.reduce.weight[:se_mid, :mid])
            dst.reduce.bias.copy_(src.reduce.bias[:se_mid])
            dst.expand.weight.copy_(src.expand.weight[:mid, :se_mid])
            dst.expand.bias.copy_(src.expand.bias[:mid])
        cast(nn.Conv2d, o_pl.conv).weight.copy_(cast(DynamicConv2d, pl.conv).active_weight(mid))
        copy_bn(cast(nn.BatchNorm2d, o_pl.bn), cast(DynamicBatchNorm2d, pl.bn).bn)
        return out


class ResidualBlock(nn.Module):
    """``conv(x) (+ x)``: OFA's ``ResidualBlock`` names (``conv``; the identity has no weights)."""

    def __init__(self, conv: nn.Module, identity: bool) -> None:
        super().__init__()
        self.conv = conv
        self.identity = identity

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = self.conv(x)
        return y + x if self.identity else y


@torch.no_grad()
def copy_bn(dst: nn.BatchNorm2d, src: ElasticBatchNorm2d) -> None:
    """Copy the first ``dst.num_features`` channels of ``src`` (with the statistics ``src`` uses
    in eval mode now) into a plain BatchNorm."""
    c = dst.num_features
    dst.weight.copy_(src.weight[:c])
    dst.bias.copy_(src.bias[:c])
    dst.eps = src.eps
    if src.installed is not None:
        mean, var = src.installed
    else:
        mean, var = src.running_mean[:c], src.running_var[:c]
    assert dst.running_mean is not None and dst.running_var is not None  # tracked by default
    dst.running_mean.copy_(mean)
    dst.running_var.copy_(var)


@torch.no_grad()
def copy_static_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    if isinstance(src, ElasticBatchNorm2d):
        copy_bn(dst, src)
        return
    dst.load_state_dict(src.state_dict())
