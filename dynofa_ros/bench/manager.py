"""``dynofa bench manager``: how long one runtime-manager decision takes (µs).

A decision is :meth:`RuntimeManager.observe` of one latency observation followed by
:meth:`RuntimeManager.step`. Two figures per model count, each the median / p95 over many
steps: ``plan`` forces the policy to plan at every step (dwell time 0: the worst case, a full
member x frequency search), ``event`` is the manager as deployed (default dwell time: most
steps only fold the observation into the latency correction). Observations alternate between
two latencies so the correction moves. The goal is a median at most 100 µs (``÷ goal``: the
median over it); the machine's timing noise is large (±30 %), so read ratios within one run.
A reference loop of plain Python arithmetic, timed in the same run, tells how fast the machine
itself is that day (the development VM has varied by a factor of two between days).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from dynofa_ros.manager import LatencyObservation, ManagerConfig, ModelSpec, RuntimeManager
from dynofa_ros.manager.families import published_gpu_family
from dynofa_ros.platform.sim import SimulatedXavierNX

GOAL_US = 100.0  # issue 7: a decision takes <= 100 µs median


def _specs(n_models: int) -> list[ModelSpec]:
    family = published_gpu_family()
    rates = (15.0, 7.5, 5.0)
    return [
        ModelSpec(f"m{i}", family, latency_target_ms=60.0 * (i + 1), frame_rate_hz=rates[i % 3])
        for i in range(n_models)
    ]


def measure(n_models: int, steps: int, *, plan_every_step: bool, policy: str = "dynofa") -> dict:
    """Median / p95 (µs) of observe + step over ``steps`` steps."""
    config = ManagerConfig()
    if plan_every_step:
        config = replace(config, dwell_s=0.0)
    specs = _specs(n_models)
    mgr = RuntimeManager(specs, SimulatedXavierNX(seed=0), policy, config)
    now = 0.0
    mgr.step(now)
    times: list[float] = []
    plans0 = mgr.plans
    for i in range(steps):
        now += 0.02
        spec = specs[i % n_models]
        d = mgr.current(spec.name)
        assert d is not None
        obs = LatencyObservation(
            now, spec.name, 40.0 + 15.0 * (i % 2), d.config.subnet_id, d.config.processor,
            d.config.threads, d.config.cpu_frequency_khz, d.config.gpu_frequency_khz, d.seq,
        )  # fmt: skip
        t0 = time.perf_counter_ns()
        mgr.observe(obs)
        mgr.step(now)
        times.append((time.perf_counter_ns() - t0) / 1e3)
    times.sort()
    return {
        "models": n_models,
        "mode": "plan" if plan_every_step else "event",
        "steps": steps,
        "plans": mgr.plans - plans0,
        "median_us": statistics.median(times),
        "p95_us": times[int(0.95 * (len(times) - 1))],
    }


def reference_ms(repeats: int = 5) -> float:
    """Median time (ms) of 10^6 Python float multiply-adds: the interpreter speed that the
    manager's scalar hot path rides on."""
    runs = []
    for _ in range(repeats):
        acc, x = 0.0, 1.000001
        t0 = time.perf_counter_ns()
        for _ in range(1_000_000):
            acc = acc * x + 1.0
        runs.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dynofa bench manager", description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000, help="steps per measurement")
    ap.add_argument("--policy", default="dynofa", help="policy to time")
    args = ap.parse_args(argv)
    if args.steps < 10:
        raise ValueError(f"--steps = {args.steps}: give at least 10")
    print(f"policy {args.policy}, {args.steps} steps each (goal: median <= {GOAL_US:g} µs)")
    print(
        f"{'models':>6}  {'mode':>5}  {'plans':>6}  {'median µs':>10}  {'p95 µs':>8}  {'÷ goal':>6}"
    )
    rows = []
    for n in (1, 2):
        for plan in (True, False):
            r = measure(n, args.steps, plan_every_step=plan, policy=args.policy)
            rows.append(r)
            print(f"{r['models']:>6}  {r['mode']:>5}  {r['plans']:>6}  "
                  f"{r['median_us']:>10.1f}  {r['p95_us']:>8.1f}  "
                  f"{r['median_us'] / GOAL_US:>6.2f}")  # fmt: skip
    base = rows[0]["median_us"]
    print("ratios to 1 model / plan: " + ", ".join(
        f"{r['models']}/{r['mode']} {r['median_us'] / base:.2f}" for r in rows))  # fmt: skip
    ref = reference_ms()
    print(f"machine reference: 10^6 Python float multiply-adds take {ref:.1f} ms here; "
          f"a 1-model plan takes as long as {base / ref * 1e3:.0f} of them")  # fmt: skip
    return 0
