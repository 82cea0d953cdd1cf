"""``dynofa bench supernet``: in-place switch time, dynamic vs extracted static forward time.

For the largest and smallest sub-networks (and any ``--subnet`` ids the checkpoint stores):

* switch: median of N ``set_active`` calls into that sub-network (from the other one), BN
  statistics installed;
* forward: median time of one batch through the dynamic super-network and through the extracted
  static module (same inputs, eval mode), and their ratio.

Figures are medians within one run (this machine's timing noise is about ±30% between runs);
compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from dynofa_ros.resources import default_checkpoint


def _median_s(fn, reps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dynofa bench supernet", description=__doc__.split("\n")[0])
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="super-network checkpoint (default: the embedded Fashion-MNIST model)",
    )
    p.add_argument(
        "--preset",
        default=None,
        help="use a randomly initialised preset instead of a checkpoint (e.g. ofa-w1.0)",
    )
    p.add_argument("--switches", type=int, default=1000, help="switches timed per sub-network")
    p.add_argument("--forwards", type=int, default=50, help="forward passes timed per path")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = p.parse_args(argv)

    import torch

    from dynofa_ros.supernet.bnstats import calibrate
    from dynofa_ros.supernet.checkpoint import load_checkpoint
    from dynofa_ros.supernet.network import build_supernet

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.preset:
        net = build_supernet(args.preset).eval()
        source = f"preset {args.preset} (random weights)"
    else:
        path = args.checkpoint or default_checkpoint()
        net = load_checkpoint(path).net
        source = str(path)
    space = net.space
    # configs of net's own family (SubnetConfig or ViTConfig, whichever net takes)
    cfgs: dict[str, Any] = {"largest": space.largest(), "smallest": space.smallest()}
    c = net.arch.in_channels
    for cfg in cfgs.values():
        if not net.has_bn_stats(cfg):  # so that a switch installs statistics, as in deployment
            calibrate(net, cfg, lambda r: [torch.randn(8, c, r, r) for _ in range(2)])
    print(f"super-network: {source}; torch threads {torch.get_num_threads()}; batch {args.batch}")
    print(
        f"{'sub-network':<10} {'id':<10} {'MMACs':>7} {'switch us':>10} {'dynamic ms':>11} "
        f"{'static ms':>10} {'dyn/static':>10}"
    )
    names = list(cfgs)
    with torch.no_grad():
        for name in names:
            cfg = cfgs[name]
            other = cfgs[names[1] if name == names[0] else names[0]]

            times: list[float] = []

            def switch(cfg=cfg, other=other, times=times) -> None:
                net.set_active(other)
                t = time.perf_counter()
                net.set_active(cfg)
                times.append(time.perf_counter() - t)

            for _ in range(args.switches):
                switch()
            switch_us = statistics.median(times) * 1e6
            x = torch.randn(args.batch, c, cfg.r, cfg.r)
            net.set_active(cfg)
            dyn = _median_s(lambda x=x: net(x), args.forwards)
            static = net.extract(cfg)
            stat = _median_s(lambda x=x, static=static: static(x), args.forwards)
            print(
                f"{name:<10} {cfg.id:<10} {net.macs(cfg) / 1e6:7.2f} {switch_us:10.1f} "
                f"{dyn * 1e3:11.3f} {stat * 1e3:10.3f} {dyn / stat:10.2f}"
            )
    print(
        "switch: set_active() into the sub-network (median of "
        f"{args.switches}); no weight is copied, BN statistics are installed by reference"
    )
    return 0
