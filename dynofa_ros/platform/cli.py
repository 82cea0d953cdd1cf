"""``dynofa platform``: what the platform back-end sees and can set, and setting it by hand.

::

    dynofa platform info [--backend auto|jetson|linux|sim-xavier-nx] [--sysfs-root PATH]
                         [--nvpmodel CMD] [--json]
    dynofa platform set  [--backend ...] [--cpu-khz F] [--gpu-khz F] [--cpu-governor G]
                         [--gpu-governor G] [--unpin cpu,cuda] [--cores N] [--power-mode N]

``set`` validates the whole setting first and applies all of it or nothing (a failed write
rolls back the earlier ones); it prints the telemetry afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from dynofa_ros.platform import BACKENDS, make_platform
from dynofa_ros.platform.base import Platform, Setting, Telemetry


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dynofa platform", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="action", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--backend", default="auto", choices=["auto", *BACKENDS])
        sp.add_argument("--sysfs-root", default="/", help="root of the sysfs tree (default /)")
        sp.add_argument("--nvpmodel", default="nvpmodel", help="nvpmodel command (Jetson)")
        sp.add_argument("--json", action="store_true", help="machine-readable output")

    info = sub.add_parser("info", help="processors, capabilities and one telemetry reading")
    common(info)
    st = sub.add_parser("set", help="apply a setting (all or nothing)")
    common(st)
    st.add_argument("--cpu-khz", type=int)
    st.add_argument("--gpu-khz", type=int)
    st.add_argument("--cpu-governor")
    st.add_argument("--gpu-governor")
    st.add_argument("--unpin", default="", help="comma-separated processors to release")
    st.add_argument("--cores", type=int, help="CPU cores online")
    st.add_argument("--power-mode", type=int, help="nvpmodel mode id")
    return p


def _platform(args: argparse.Namespace) -> Platform:
    kw: dict[str, Any] = {}
    if args.backend in ("auto", "jetson", "linux"):
        kw["sysfs_root"] = args.sysfs_root
    if args.backend == "jetson" or (args.backend == "auto" and args.nvpmodel != "nvpmodel"):
        kw["nvpmodel_cmd"] = args.nvpmodel
    return make_platform(args.backend, **kw)


def describe(platform: Platform, telemetry: Telemetry | None = None) -> dict[str, Any]:
    """Everything ``info`` prints, as plain JSON-able data."""
    t = telemetry or platform.telemetry()
    caps = platform.capabilities()
    return {
        "backend": platform.name,
        "processors": [
            {
                "name": p.name,
                "kind": p.kind.value,
                "cores": p.cores,
                "frequencies_khz": list(p.frequencies_khz),
            }
            for p in platform.processors()
        ],
        "capabilities": {
            "frequency": sorted(caps.frequency),
            "governor": sorted(caps.governor),
            "cores_online": caps.cores_online,
            "power_modes": {str(k): v for k, v in caps.power_modes.items()},
            "reasons": dict(caps.reasons),
        },
        "telemetry": _clean(
            {
                "stamp_s": t.stamp_s,
                "processors": {k: asdict(v) for k, v in t.processors.items()},
                "temperatures_c": dict(t.temperatures_c),
                "power_w": dict(t.power_w),
                "total_power_w": t.total_power_w,
                "energy_j": t.energy_j,
                "battery": None if t.battery is None else asdict(t.battery),
                "power_mode": t.power_mode,
                "throttled": t.throttled,
                "warnings": list(t.warnings),
            }
        ),
    }


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else round(obj, 4)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _table(freqs: Sequence[int]) -> str:
    if not freqs:
        return "no frequency table"
    return f"{len(freqs)} steps, {freqs[0] / 1000:g}..{freqs[-1] / 1000:g} MHz"


def _fmt(v: Any, unit: str = "", nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def render(d: dict[str, Any]) -> str:
    lines = [f"backend: {d['backend']}", "", "processors:"]
    caps = d["capabilities"]
    for p in d["processors"]:
        lines.append(
            f"  {p['name']:<5} {p['kind']:<4} {p['cores']:>4} cores  {_table(p['frequencies_khz'])}"
        )
    lines += ["", "can set:"]
    for key in ("frequency", "governor"):
        names = ", ".join(caps[key]) or "nothing"
        lines.append(f"  {key:<12} {names}")
    lines.append(f"  {'cores online':<12} {'yes' if caps['cores_online'] else 'no'}")
    modes = ", ".join(f"{k} {v}" for k, v in caps["power_modes"].items()) or "no"
    lines.append(f"  {'power modes':<12} {modes}")
    if caps["reasons"]:
        lines.append("  why not:")
        lines += [f"    {k}: {v}" for k, v in caps["reasons"].items()]
    t = d["telemetry"]
    lines += ["", "telemetry:"]
    for name, p in t["processors"].items():
        util = p["utilisation"]
        lines.append(
            f"  {name:<5} {_fmt(p['frequency_khz'] and p['frequency_khz'] / 1000, ' MHz', 1):>12}"
            f"  util {_fmt(util if util is None else 100 * util, '%', 0):>5}"
            f"  governor {p['governor'] or '-'}"
            + (f"  cores online {p['cores_online']}" if p["cores_online"] is not None else "")
        )
    temps = ", ".join(f"{k} {v:.1f} C" for k, v in t["temperatures_c"].items()) or "-"
    rails = ", ".join(f"{k} {v:.2f} W" for k, v in t["power_w"].items()) or "-"
    lines.append(f"  temperatures {temps}")
    lines.append(f"  power        {rails} (total {_fmt(t['total_power_w'], ' W', 2)})")
    b = t["battery"]
    if b:
        lines.append(
            f"  battery      {100 * b['state_of_charge']:.0f}%  {_fmt(b['voltage_v'], ' V', 2)}"
            f"  {_fmt(b['current_a'], ' A', 2)}"
        )
    else:
        lines.append("  battery      -")
    lines.append(
        f"  power mode   {_fmt(t['power_mode'])}   throttled {'yes' if t['throttled'] else 'no'}"
    )
    for w in t["warnings"]:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    platform = _platform(args)
    if args.action == "set":
        freqs = {}
        if args.cpu_khz is not None:
            freqs["cpu"] = args.cpu_khz
        if args.gpu_khz is not None:
            freqs["cuda"] = args.gpu_khz
        govs = {}
        if args.cpu_governor:
            govs["cpu"] = args.cpu_governor
        if args.gpu_governor:
            govs["cuda"] = args.gpu_governor
        setting = Setting(
            frequencies_khz=freqs,
            governors=govs,
            cores_online=args.cores,
            power_mode=args.power_mode,
            unpin=frozenset(x.strip() for x in args.unpin.split(",") if x.strip()),
        )
        platform.apply(setting)
    if platform.name != "sim-xavier-nx":
        platform.telemetry()  # utilisation and RAPL power are differences between two readings
        time.sleep(0.25)
    d = describe(platform)
    print(json.dumps(d, indent=2) if args.json else render(d))
    return 0
