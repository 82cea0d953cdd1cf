"""Closed loop: a policy inside :class:`~dynofa_ros.manager.runtime.RuntimeManager` against the
simulated Xavier NX, following a :class:`~dynofa_ros.manager.scenario.Scenario`.

Each model's camera delivers frames at its frame rate; a model busy when frames arrive processes
only the newest one when it is free (the others are dropped, as the perception node does). Models
with a frame waiting start together (``run_concurrent``: they slow each other down). After every
frame the manager observes the frame's latency and configuration and is stepped (event-driven);
board telemetry is observed at ``telemetry_hz``. Decisions are applied to the board at once
(between frames): frequencies are pinned, 0 leaves the processor to its governor (the board's
default ``schedutil`` / ``nvhost_podgov``, which the simulator runs with Linux's schedutil rule).
Switching members costs nothing here (Dynamic-OFA switches by re-indexing the super-network).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dynofa_ros.manager.families import workload_of
from dynofa_ros.manager.runtime import RuntimeManager
from dynofa_ros.manager.scenario import Scenario
from dynofa_ros.manager.types import Decision, LatencyObservation, Mission, Requirements
from dynofa_ros.platform.base import Setting
from dynofa_ros.platform.sim import CPU, GPU, FrameRequest, SimulatedXavierNX
from dynofa_ros.platform.workload import Workload


@dataclass
class FrameLog:
    """One processed frame."""

    model: str
    start_s: float
    latency_ms: float
    target_ms: float
    subnet_id: str
    processor: str
    accuracy: float
    energy_j: float


@dataclass
class RunResult:
    scenario: str
    policy: str
    duration_s: float
    energy_j: float  # module (VDD_IN) energy over the run
    frames: list[FrameLog] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)
    max_temperature_c: float = 0.0
    throttled_s: float = 0.0
    final_soc: float = 1.0
    timeline: list[tuple[float, str, str, int, int]] = field(default_factory=list)

    def metrics(self, model: str | None = None) -> dict[str, float]:
        frames = [f for f in self.frames if model is None or f.model == model]
        lat = np.array([f.latency_ms for f in frames]) if frames else np.zeros(1)
        miss = sum(f.latency_ms > f.target_ms for f in frames)
        switches = 0
        last: dict[str, str] = {}
        for f in frames:
            if f.model in last and last[f.model] != f.subnet_id:
                switches += 1
            last[f.model] = f.subnet_id
        n = max(len(frames), 1)
        dropped = sum(v for k, v in self.dropped.items() if model is None or k == model)
        return {
            "energy_j": self.energy_j,
            "power_w": self.energy_j / self.duration_s,
            "mj_per_frame": 1e3 * self.energy_j / max(len(self.frames), 1),
            "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)),
            "miss_pct": 100.0 * miss / n,
            "accuracy_pct": 100.0 * sum(f.accuracy for f in frames) / n,
            "switches": float(switches),
            "frames": float(len(frames)),
            "dropped": float(dropped),
            "max_temp_c": self.max_temperature_c,
        }


def _board(sc: Scenario) -> SimulatedXavierNX:
    b = sc.board
    nx = SimulatedXavierNX(
        seed=sc.seed,
        ambient_c=b.ambient_c,
        state_of_charge=b.state_of_charge,
        base_load_w=b.base_load_w,
        latency_jitter=b.latency_jitter,
        power_mode=b.power_mode,
        start_temperature_c=b.start_temperature_c,
    )
    nx.set_thermal_resistance(b.thermal_resistance)
    return nx


def apply_decision(nx: SimulatedXavierNX, d: Decision) -> None:
    """Apply the board-wide part of a decision (non-zero frequencies, power mode)."""
    freqs = {}
    if d.cpu_frequency_khz:
        freqs[CPU] = d.cpu_frequency_khz
    if d.gpu_frequency_khz:
        freqs[GPU] = d.gpu_frequency_khz
    if freqs or d.power_mode is not None:
        nx.apply(Setting(frequencies_khz=freqs, power_mode=d.power_mode))


def run(
    sc: Scenario,
    policy: str,
    *,
    on_frame: Callable[[float], None] | None = None,
) -> RunResult:
    """Run ``policy`` on ``sc`` in closed loop; deterministic for the scenario's seed."""
    nx = _board(sc)
    mgr = RuntimeManager(sc.models, nx, policy, sc.manager)
    specs = {m.name: m for m in sc.models}
    workloads: dict[str, dict[str, Workload]] = {
        m.name: {fm.id: workload_of(fm) for fm in m.family.members} for m in sc.models
    }
    accuracy = {m.name: {fm.id: fm.accuracy for fm in m.family.members} for m in sc.models}
    period = {m.name: 1.0 / (m.frame_rate_hz or 1000.0 / m.period_ms) for m in sc.models}
    target = {m.name: m.latency_target_ms or m.period_ms for m in sc.models}
    res = RunResult(sc.name, mgr.policy_name, sc.duration_s, 0.0)
    res.dropped = dict.fromkeys(specs, 0)
    config: dict[str, Decision] = {}

    # timeline of events: (t, order, callable)
    events: list[tuple[float, int, Callable[[], None]]] = []

    def add(t: float, fn: Callable[[], None]) -> None:
        events.append((t, len(events), fn))

    for ev in sc.mission:
        add(
            ev.t,
            lambda ev=ev: mgr.observe(
                Mission(
                    nx.now_s,
                    ev.level,
                    ev.latency_target_ms,
                    ev.min_accuracy,
                    ev.energy_budget_j,
                    ev.mission_duration_s,
                    ev.reason,
                )
            ),
        )
        if ev.latency_target_ms > 0:
            add(ev.t, lambda ev=ev: target.update(dict.fromkeys(target, ev.latency_target_ms)))

    def requirement(ev: object) -> None:
        assert hasattr(ev, "model")
        names = [ev.model] if ev.model else list(specs)  # type: ignore[attr-defined]
        mgr.observe(
            Requirements(
                nx.now_s,
                ev.model,  # type: ignore[attr-defined]
                ev.latency_target_ms,  # type: ignore[attr-defined]
                ev.frame_rate_hz,  # type: ignore[attr-defined]
                ev.min_accuracy,  # type: ignore[attr-defined]
                ev.priority,  # type: ignore[attr-defined]
            )
        )
        for n in names:
            if ev.latency_target_ms is not None:  # type: ignore[attr-defined]
                target[n] = ev.latency_target_ms  # type: ignore[attr-defined]
            if ev.frame_rate_hz is not None:  # type: ignore[attr-defined]
                period[n] = 1.0 / ev.frame_rate_hz  # type: ignore[attr-defined]

    for ev in sc.requirements:
        add(ev.t, lambda ev=ev: requirement(ev))
    for ev in sc.corunners:
        add(ev.t, lambda ev=ev: nx.set_corunner(ev.name, ev.processor, ev.share, ev.memory_gbps))
    for ev in sc.values:
        if ev.kind == "ambient_c":
            add(ev.t, lambda v=ev.value: nx.set_ambient(v))
        elif ev.kind == "soc":
            add(ev.t, lambda v=ev.value: nx.set_state_of_charge(v))
        else:
            add(ev.t, lambda v=ev.value: nx.set_thermal_resistance(v))
    events.sort(key=lambda e: (e[0], e[1]))
    ev_i = 0

    def act(decisions: Sequence[Decision]) -> None:
        for d in decisions:
            res.decisions.append(d)
            config[d.target_model] = d
            apply_decision(nx, d)
            res.timeline.append(
                (d.stamp_s, d.target_model, d.subnet_id, d.cpu_frequency_khz, d.gpu_frequency_khz)
            )

    tel_period = 1.0 / sc.telemetry_hz
    next_tel = 0.0
    next_arrival = dict.fromkeys(specs, 0.0)  # next camera frame per model
    pending = dict.fromkeys(specs, False)  # a frame is waiting
    last_tel_t = 0.0
    while True:
        now = nx.now_s
        if now >= sc.duration_s - 1e-9:
            break
        while ev_i < len(events) and events[ev_i][0] <= now + 1e-9:
            events[ev_i][2]()
            ev_i += 1
        for m in specs:  # frames that arrived while busy: keep the newest
            while next_arrival[m] <= now + 1e-9:
                if pending[m]:
                    res.dropped[m] += 1
                pending[m] = True
                next_arrival[m] += period[m]
        if now >= next_tel - 1e-9:
            tel = nx.telemetry()
            mgr.observe(tel)
            res.max_temperature_c = max(res.max_temperature_c, *tel.temperatures_c.values())
            if tel.throttled:
                res.throttled_s += now - last_tel_t
            last_tel_t = now
            next_tel = now + tel_period
            act(mgr.step(now))
        if not config:
            act(mgr.step(now))
        due = [m for m in specs if pending[m] and m in config]
        if not due:
            wake = min(
                [next_tel, sc.duration_s, *next_arrival.values()]
                + ([events[ev_i][0]] if ev_i < len(events) else [])
            )
            nx.advance_to(max(wake, now + 1e-6))
            continue
        reqs = []
        for m in due:
            d = config[m]
            w = workloads[m][d.subnet_id]
            reqs.append(FrameRequest(w, d.processor, d.threads if d.processor == CPU else None))
            pending[m] = False
        cpu_khz = nx.frequency_khz(CPU)
        gpu_khz = nx.frequency_khz(GPU)
        start = nx.now_s
        results = nx.run_concurrent(reqs)
        for m, r in zip(due, results, strict=True):
            d = config[m]
            res.frames.append(
                FrameLog(
                    m,
                    start,
                    r.latency_ms,
                    target[m],
                    d.subnet_id,
                    d.processor,
                    accuracy[m][d.subnet_id],
                    r.energy_j,
                )
            )
            mgr.observe(
                LatencyObservation(
                    r.end_s,
                    m,
                    r.latency_ms,
                    d.subnet_id,
                    d.processor,
                    r.threads if d.processor == CPU else 0,
                    cpu_khz,
                    gpu_khz,
                    d.seq,
                )
            )
        act(mgr.step(nx.now_s))
        if on_frame is not None:
            on_frame(nx.now_s)
    res.energy_j = nx.energy_j
    res.warnings = dict(mgr.warnings)
    res.final_soc = nx.state_of_charge
    return res


COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("energy_j", "energy J", "{:.1f}"),
    ("mj_per_frame", "mJ/frame", "{:.0f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p95_ms", "p95 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("miss_pct", "miss %", "{:.1f}"),
    ("accuracy_pct", "top-1 %", "{:.2f}"),
    ("switches", "switches", "{:.0f}"),
    ("frames", "frames", "{:.0f}"),
    ("dropped", "dropped", "{:.0f}"),
    ("max_temp_c", "max °C", "{:.1f}"),
)


def table(
    results: Sequence[RunResult],
    model: str | None = None,
    baseline: str | None = "static-schedutil",
) -> str:
    """One row per policy; with ``baseline``, energy and p50 change relative to it."""
    rows = [(r.policy, r.metrics(model)) for r in results]
    base = next((mt for name, mt in rows if name == baseline), None)
    head = ["policy", *(h for _, h, _ in COLUMNS)]
    if base is not None:
        head += ["ΔE vs su", "Δp50 vs su"]
    body = []
    for name, mt in rows:
        cells = [name, *(fmt.format(mt[k]) for k, _, fmt in COLUMNS)]
        if base is not None:
            cells.append(f"{100 * (mt['energy_j'] / base['energy_j'] - 1):+.0f}%")
            cells.append(f"{100 * (mt['p50_ms'] / base['p50_ms'] - 1):+.0f}%")
        body.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=True)]
    lines = [
        "  ".join(
            str(c).rjust(w) if i else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [head, *body]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def summary(results: Mapping[str, RunResult]) -> dict[str, dict[str, float]]:
    return {name: r.metrics() for name, r in results.items()}


def infinite_or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default
