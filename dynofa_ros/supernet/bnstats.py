"""Per-sub-network BatchNorm statistics: calibrate from data, store keyed by sub-network id.

Sub-networks share weights but not activation statistics, so each one gets its own running mean /
variance of every BatchNorm layer it uses, measured with its weights on training images (as
once-for-all's ``set_running_statistics``: the average over batches of the batch mean and biased
variance). They are small tensors held by the network (``net.bn_stats[id]``); ``set_active``
points each BatchNorm at them (a reference, no copy), so a switch does no calibration and copies
nothing.

Serialised keys (safetensors): ``<id>/<bn module name>.running_mean`` / ``.running_var``; the
configs go in the JSON metadata as ``{id: config dict}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from dynofa_ros.supernet.config import CanonicalId
from dynofa_ros.supernet.network import ElasticMobileNetV3, Supernet
from dynofa_ros.supernet.ops import _CalibrationAccumulator

Stats = dict[str, tuple[Tensor, Tensor]]


@contextlib.contextmanager
def calibrating(net: ElasticMobileNetV3) -> Iterator[dict[str, _CalibrationAccumulator]]:
    """Inside: every BatchNorm normalises with batch statistics and accumulates them."""
    accs = {name: _CalibrationAccumulator() for name in net.bn_modules}
    for name, m in net.bn_modules.items():
        m._calibration = accs[name]
    try:
        yield accs
    finally:
        for m in net.bn_modules.values():
            m._calibration = None


@torch.no_grad()
def calibrate(
    net: Supernet,
    cfg: Any,
    batches: Iterable[Tensor] | Callable[[int], Iterable[Tensor]],
    *,
    store: bool = True,
) -> Stats:
    """Measure the BN statistics of sub-network ``cfg``.

    ``batches``: preprocessed input batches at resolution ``cfg.r``, or a function of the
    resolution returning them. With ``store`` (default) the result is kept in ``net.bn_stats``
    under ``cfg.id``. The network's active config and train/eval mode are restored.
    """
    if not net.uses_batchnorm:  # LayerNorm-only families (the ViT) have nothing to calibrate
        return {}
    previous, was_training = net.active, net.training
    net.set_active(cfg)
    net.eval()
    source = batches(cfg.r) if callable(batches) else batches
    try:
        with calibrating(net) as accs:
            seen = 0
            for x in source:
                net(x)
                seen += x.size(0)
            if seen == 0:
                raise ValueError("BN calibration got no images")
        active = net.bn_channels(cfg)
        stats: Stats = {}
        for name, acc in accs.items():
            res = acc.result()
            if res is not None and name in active:
                stats[name] = res
    finally:
        net.set_active(previous)
        net.train(was_training)
    if store:
        net.store_bn_stats(cfg, stats)
    return stats


def stats_to_tensors(net: Supernet) -> dict[str, Tensor]:
    """``net.bn_stats`` as flat safetensors entries ``<id>/<bn name>.running_mean|var``."""
    out: dict[str, Tensor] = {}
    for sid, stats in net.bn_stats.items():
        for name, (mean, var) in stats.items():
            out[f"{sid}/{name}.running_mean"] = mean.contiguous()
            out[f"{sid}/{name}.running_var"] = var.contiguous()
    return out


def stats_from_tensors(
    tensors: Mapping[str, Tensor], configs: Mapping[str, CanonicalId]
) -> dict[str, Stats]:
    """Inverse of :func:`stats_to_tensors`; every id must have a config and vice versa."""
    grouped: dict[str, dict[str, dict[str, Tensor]]] = {}
    for key, t in tensors.items():
        sid, _, rest = key.partition("/")
        name, _, kind = rest.rpartition(".")
        if not sid or not name or kind not in ("running_mean", "running_var"):
            raise ValueError(f"BN statistics key {key!r} is not '<id>/<bn>.running_mean|var'")
        grouped.setdefault(sid, {}).setdefault(name, {})[kind] = t
    missing = sorted(set(configs) - set(grouped))
    if missing:
        raise ValueError(f"BN statistics for sub-network(s) {missing} are missing")
    out: dict[str, Stats] = {}
    for sid, layers in grouped.items():
        if sid not in configs:
            raise ValueError(
                f"BN statistics for sub-network {sid!r} have no config in the metadata"
            )
        if configs[sid].id != sid:
            raise ValueError(
                f"BN statistics id {sid!r} does not match its config ({configs[sid].id})"
            )
        stats: Stats = {}
        for name, pair in layers.items():
            if set(pair) != {"running_mean", "running_var"}:
                raise ValueError(f"BN statistics {sid}/{name} lack running_mean or running_var")
            stats[name] = (pair["running_mean"], pair["running_var"])
        out[sid] = stats
    return out


def install_all(net: Supernet, stats: Mapping[str, Stats], configs: Mapping[str, Any]) -> None:
    """Put loaded statistics into the network, checking names and channel counts."""
    for sid, layer_stats in stats.items():
        cfg: Any = net.space.validate(configs[sid])  # of net's own config type
        expected = net.bn_channels(cfg)
        if set(layer_stats) != set(expected):
            extra = sorted(set(layer_stats) - set(expected))
            missing = sorted(set(expected) - set(layer_stats))
            raise ValueError(
                f"BN statistics of sub-network {sid}: "
                + (f"missing layer {missing[0]!r}" if missing else f"unexpected layer {extra[0]!r}")
            )
        for name, (mean, var) in layer_stats.items():
            c = expected[name]
            if tuple(mean.shape) != (c,) or tuple(var.shape) != (c,):
                raise ValueError(
                    f"BN statistics {sid}/{name} have shape {tuple(mean.shape)} / "
                    f"{tuple(var.shape)}, the layer uses ({c},) in this sub-network"
                )
        net.bn_stats[sid] = {k: (m.float(), v.float()) for k, (m, v) in layer_stats.items()}
        net.bn_stats_configs[sid] = cfg
    active: Any = net.active  # of net's own config type
    net.set_active(active)
