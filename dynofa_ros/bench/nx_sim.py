"""``dynofa bench nx_sim``: the simulated Xavier NX next to the published Dynamic-OFA figures.

For each member of the published GPU family: the published latency, the simulator's latency at
the top GPU frequency (default power mode, CPU at its 1420.8 MHz cap) and the error; then, at
several GPU frequencies, the simulator's latency, average module power (VDD_IN) during the frame
and energy per frame (frames run on a fresh, idle simulated board, jitter off). Then the
published CPU family ends, and the published co-runner case (~46 -> ~62 ms).

These are simulator outputs, not measurements: the published figures are the only measured
numbers in the table.
"""

from __future__ import annotations

import argparse
import json

from dynofa_ros.platform.base import Setting
from dynofa_ros.platform.nx_data import GPU_FREQUENCIES_KHZ
from dynofa_ros.platform.sim import SimulatedXavierNX
from dynofa_ros.platform.workload import PUBLISHED_CPU_ENDS, PUBLISHED_GPU_FAMILY, Workload

DEFAULT_GPU_MHZ = (306.0, 510.0, 803.25, 1109.25)


def frame(workload: Workload, processor: str, khz: int, *, corunner: float = 0.0) -> dict:
    """Run one warm frame on a fresh board pinned at ``khz``; latency, power, energy."""
    nx = SimulatedXavierNX(seed=0, latency_jitter=0.0)
    nx.apply(
        Setting(
            frequencies_khz={processor: khz, "cpu": 1420800}
            if processor == "cuda"
            else {"cpu": khz}
        )
    )
    if corunner:
        nx.start_corunner("co-runner", "cuda", corunner)
    nx.run_frame(workload, processor)  # warm-up (settles governors / caches in the model)
    r = nx.run_frame(workload, processor)
    return {
        "latency_ms": r.latency_ms,
        "power_w": r.energy_j / (r.latency_ms / 1e3),
        "energy_mj": r.energy_j * 1e3,
    }


def _khz(mhz: float) -> int:
    khz = round(mhz * 1000)
    if khz not in GPU_FREQUENCIES_KHZ:
        table = ", ".join(f"{f / 1000:g}" for f in GPU_FREQUENCIES_KHZ)
        raise ValueError(f"GPU frequency {mhz} MHz is not in the table ({table} MHz)")
    return khz


def run(gpu_mhz: tuple[float, ...] = DEFAULT_GPU_MHZ) -> dict:
    freqs = [_khz(m) for m in gpu_mhz]
    top = GPU_FREQUENCIES_KHZ[-1]
    gpu = []
    for m in PUBLISHED_GPU_FAMILY:
        at_top = frame(m.workload, "cuda", top)
        gpu.append(
            {
                "member": m.workload.name,
                "config (estimate)": m.config,
                "top1": m.top1,
                "resolution": m.resolution,
                "mmacs (estimate)": m.workload.macs / 1e6,
                "layers (estimate)": m.workload.layers,
                "published_ms": m.latency_ms,
                "sim_ms": at_top["latency_ms"],
                "error_pct": 100 * (at_top["latency_ms"] / m.latency_ms - 1),
                "by_frequency": {str(f): frame(m.workload, "cuda", f) for f in freqs},
            }
        )
    cpu = [
        {
            "member": m.workload.name,
            "top1": m.top1,
            "published_ms": m.latency_ms,
            "sim_ms": frame(m.workload, "cpu", 1420800)["latency_ms"],
        }
        for m in PUBLISHED_CPU_ENDS
    ]
    w = PUBLISHED_GPU_FAMILY[1].workload
    co = {
        "member": w.name,
        "published_ms": [46.0, 62.0],
        "sim_ms": [
            frame(w, "cuda", top)["latency_ms"],
            frame(w, "cuda", top, corunner=0.5)["latency_ms"],
        ],
        "corunner_share": 0.5,
    }
    return {"gpu_family": gpu, "cpu_family_ends": cpu, "gpu_corunner": co, "gpu_mhz": list(gpu_mhz)}


def render(res: dict) -> str:
    lines = [
        "Simulated Xavier NX vs published Dynamic-OFA figures (GPU, PyTorch; simulator outputs,",
        "not measurements). Default power mode 15W_6CORE, CPU at 1420.8 MHz, GPU pinned.",
        "",
        f"{'member':<14} {'top-1':>6} {'res':>4} {'MMAC*':>6} {'lay*':>4} "
        f"{'published':>9} {'sim @1109':>9} {'err':>6}",
    ]
    for g in res["gpu_family"]:
        lines.append(
            f"{g['member']:<14} {100 * g['top1']:>5.2f}% {g['resolution']:>4} "
            f"{g['mmacs (estimate)']:>6.0f} {g['layers (estimate)']:>4} "
            f"{g['published_ms']:>7.1f}ms {g['sim_ms']:>7.1f}ms {g['error_pct']:>+5.1f}%"
        )
    lines.append("(* estimated: the published family gives accuracy / latency / resolution only)")
    lines += ["", "latency ms / module power W / energy mJ per frame at GPU frequency:"]
    head = f"{'member':<14}" + "".join(f"{m:>22g} MHz" for m in res["gpu_mhz"])
    lines.append(head)
    for g in res["gpu_family"]:
        cells = []
        for v in g["by_frequency"].values():
            cells.append(f"{v['latency_ms']:>8.1f} /{v['power_w']:>5.2f} /{v['energy_mj']:>5.0f}")
        lines.append(f"{g['member']:<14}" + "".join(f"{c:>26}" for c in cells))
    lines += ["", "published CPU family ends (6 threads, 1420.8 MHz):"]
    for c in res["cpu_family_ends"]:
        pub, sim = c["published_ms"], c["sim_ms"]
        lines.append(
            f"  {c['member']:<22} top-1 {100 * c['top1']:.1f}%  published {pub:.0f} ms"
            f"  sim {sim:.0f} ms"
        )
    co = res["gpu_corunner"]
    lines += [
        "",
        f"GPU co-runner (share {co['corunner_share']}), {co['member']}: published "
        f"~{co['published_ms'][0]:.0f} -> ~{co['published_ms'][1]:.0f} ms, "
        f"sim {co['sim_ms'][0]:.1f} -> {co['sim_ms'][1]:.1f} ms",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dynofa bench nx_sim", description=__doc__.split("\n")[0])
    p.add_argument(
        "--gpu-mhz",
        type=float,
        nargs="+",
        default=list(DEFAULT_GPU_MHZ),
        help="GPU frequencies (MHz, table steps) for the frequency columns",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    res = run(tuple(args.gpu_mhz))
    print(json.dumps(res, indent=2) if args.json else render(res))
    return 0
