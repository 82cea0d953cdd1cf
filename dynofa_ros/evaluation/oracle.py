"""The oracle: a clairvoyant reference schedule to measure the manager against.

It knows the whole scenario in advance (targets, mission, co-runners, ambient, frame rates) and
the simulated Xavier NX's true cost model, and picks for each interval between events the joint
configuration of every model (member, processor, threads; the board's CPU / GPU frequencies)
that is best by a lexicographic rule:

1. as many models as possible meet their latency target (then: the least total violation);
2. then the highest accuracy (the sum of the models' recorded top-1);
3. then the least board (``VDD_IN``) energy per second.

Costs are the board's own, evaluated under the interval's conditions (co-runners, package
temperature, power mode, thermal caps): latency from :meth:`~dynofa_ros.platform.sim.NXModel.
latency` with the co-runners' shares (what ``run_frame`` computes), and
energy by running the frame on a fresh noise-free copy of the board: board power per second =
idle power + sum over models of frame rate x (frame energy - idle power x latency). Several
models' frames share the board first come, first served (``run_concurrent``); a model's latency
is planned as a bound on what the others' overlapping frames take from it
(:meth:`BoardCosts.contended_ms`, checked against the board in the tests). The latency jitter of
the board (lognormal, ``sigma``) is covered by planning for ``latency x exp(JITTER_Z sigma)``,
about one frame in 700 over.

One model: for fixed frequencies its best row is found alone (most accurate feasible, cheapest
of equal accuracy), one pass over the frequency pairs x rows (member x processor x threads, the
manager's candidates), with energies only for the few rows that can win. Several models: every
combination of rows at every pair, most accurate first, so that the first one meeting every
target ends the search at its pair (:func:`_plan_joint`). A noise-free shadow board follows the
schedule through the scenario (events, frames) to know the thermal caps at each interval; a cap
change starts an interval of its own. The state of charge changes no cost on the simulated
board, so battery samples start no interval; ambient samples do when the value changes, but the
temperature adds the same leakage to every configuration's power, so the plan is the same unless
a cap moved.

Use::

    schedule = compute_schedule(scenario, specs, board)        # specs: manager ModelSpecs
    write_schedule("oracle.json", schedule, scenario=scenario.name)
    read_schedule("oracle.json", {s.name: s.family for s in specs})

The ``oracle`` policy (:mod:`dynofa_ros.manager.oracle`) plays a schedule; ``run_inprocess``
computes one when its policy is ``oracle`` (:func:`foresee`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dynofa_ros.configuration import Configuration
from dynofa_ros.errors import DynofaError
from dynofa_ros.evaluation.scenario import Scenario
from dynofa_ros.evaluation.timeline import AmbientItem, CoRunnerItem, PriorityItem, events
from dynofa_ros.family import Family
from dynofa_ros.fileio import atomic_write_text
from dynofa_ros.manager.config import ManagerConfig
from dynofa_ros.manager.context import Context
from dynofa_ros.manager.families import workload_of
from dynofa_ros.manager.inputs import InputStore
from dynofa_ros.manager.model import Board
from dynofa_ros.manager.oracle import Schedule, ScheduleEntry, check_schedule
from dynofa_ros.manager.types import Mission, ModelSpec
from dynofa_ros.platform.base import Setting
from dynofa_ros.platform.sim import (
    CPU,
    GPU,
    SHARE_MAX,
    LatencyParts,
    SimulatedXavierNX,
    frame_shares,
)
from dynofa_ros.platform.workload import Workload

FORMAT = "dynofa-oracle-schedule"
VERSION = 1
JITTER_Z = 3.0  # plan for latency x exp(z sigma) of the board's lognormal jitter
LEAD_S = 1e-3  # runners play an entry this early so that the interval's first frame runs it
_IDLE_S = 0.01  # idle span that measures idle power on a fresh board
CONTENDED_CAP = 20.0  # a latency beside other models is bounded at this x its latency alone


class OracleError(DynofaError):
    """A schedule file or an oracle input that cannot be used; names the file and the field."""


@dataclass(frozen=True)
class Row:
    """One candidate of one model: what a command can set besides the frequencies."""

    member: str
    processor: str
    threads: int
    accuracy: float
    workload: Workload


@dataclass(frozen=True)
class Conditions:
    """What the board's costs depend on, constant over an interval."""

    corunners: tuple[tuple[str, str, float, float], ...]  # (name, processor, share, GB/s)
    package_c: float
    ambient_c: float
    power_mode: int

    @classmethod
    def of(cls, board: SimulatedXavierNX) -> Conditions:
        cs = tuple((c.name, c.processor, c.share, c.memory_gbps) for c in board.corunners.values())
        return cls(cs, board.package_c, board.ambient_c, board.power_mode)


class BoardCosts:
    """Latency and energy of configurations on the simulated NX under fixed conditions."""

    def __init__(
        self, proto: SimulatedXavierNX, cond: Conditions, jitter: float | None = None
    ) -> None:
        self.model = proto.model
        self.cond = cond
        self.jitter = proto.latency_jitter if jitter is None else jitter
        probe = self.board(proto.model.cpu_frequencies_khz[0], proto.model.gpu_frequencies_khz[0])
        self.cores = probe.cores_online
        share = {CPU: 0.0, GPU: 0.0}
        for _, proc, s, _ in cond.corunners:
            share[proc] += s
        self.cpu_share = min(SHARE_MAX, share[CPU])
        self.gpu_share = min(SHARE_MAX, share[GPU])
        self._idle: dict[tuple[int, int], float] = {}
        self._frame: dict[tuple[Row, int, int], tuple[float, float]] = {}
        self._parts: dict[tuple[Row, int, int, float, float], LatencyParts] = {}

    def board(self, cpu_khz: int, gpu_khz: int) -> SimulatedXavierNX:
        """A fresh noise-free board in these conditions with both frequencies pinned."""
        c = self.cond
        b = SimulatedXavierNX(
            model=self.model,
            latency_jitter=0.0,
            ambient_c=c.ambient_c,
            start_temperature_c=c.package_c,
            power_mode=c.power_mode,
        )
        for name, proc, share, gbps in c.corunners:
            b.start_corunner(name, proc, share, gbps)
        b.apply(Setting(frequencies_khz={CPU: cpu_khz, GPU: gpu_khz}))
        return b

    def latency_ms(self, row: Row, cpu_khz: int, gpu_khz: int) -> float:
        """Noise-free latency of one frame (the formula ``run_frame`` uses)."""
        return self.parts(row, cpu_khz, gpu_khz).total_ms

    def parts(
        self, row: Row, cpu_khz: int, gpu_khz: int, gpu_extra: float = 0.0, cpu_extra: float = 0.0
    ) -> LatencyParts:
        """Noise-free latency and activity of one frame; ``*_extra``: what other frames take of
        the processors besides the co-runners (as the board adds them)."""
        key = (row, cpu_khz, gpu_khz, gpu_extra, cpu_extra)
        hit = self._parts.get(key)
        if hit is not None:
            return hit
        hit = self._parts[key] = self._compute_parts(row, cpu_khz, gpu_khz, gpu_extra, cpu_extra)
        return hit

    def _compute_parts(
        self, row: Row, cpu_khz: int, gpu_khz: int, gpu_extra: float, cpu_extra: float
    ) -> LatencyParts:
        return self.model.latency(
            row.workload, row.processor, threads=row.threads, khz=(cpu_khz, gpu_khz),
            cores_online=self.cores,
            shares=(self.cpu_share + cpu_extra, self.gpu_share + gpu_extra),
        )  # fmt: skip

    def contended_ms(
        self, picks: Sequence[tuple[Row, float]], cpu_khz: int, gpu_khz: int
    ) -> list[float]:
        """Per model of ``picks`` ((row, frames per second) each), a bound on its noise-free
        latency beside the others. The board serves frames first come, first served: a frame
        that arrives while others run gets what they leave (their activity as co-runner
        shares), so it loses ``1 - alone / beside`` of every millisecond they overlap it. The
        bound takes every overlap against it: per other model, the frames that can start within
        the latency (one in flight at arrival, then one per period), each its whole latency,
        and solves ``latency = alone + lost(latency)`` by fixed-point iteration (a processor
        asked for more than it has never settles, and stops at :data:`CONTENDED_CAP` x)."""
        alone = [self.parts(r, cpu_khz, gpu_khz) for r, _ in picks]
        out = []
        for i, (row, _) in enumerate(picks):
            li = alone[i].total_ms
            others = []
            for j, (_, fps_j) in enumerate(picks):
                if j == i:
                    continue
                pj = alone[j]
                beside = self.parts(
                    row, cpu_khz, gpu_khz, *frame_shares(pj.gpu_busy, pj.cpu_busy_cores, self.cores)
                ).total_ms
                others.append((1000.0 / fps_j, pj.total_ms, 1.0 - li / beside))
            lat = li
            for _ in range(50):
                lost = sum(
                    min(lat, (math.floor(lat / period) + 1) * lj) * frac
                    for period, lj, frac in others
                )
                new = li + lost
                if new <= lat + 1e-9 or new > CONTENDED_CAP * li:
                    lat = min(new, CONTENDED_CAP * li)
                    break
                lat = new
            out.append(lat)
        return out

    def idle_w(self, cpu_khz: int, gpu_khz: int) -> float:
        key = (cpu_khz, gpu_khz)
        hit = self._idle.get(key)
        if hit is None:
            b = self.board(cpu_khz, gpu_khz)
            e0 = b.energy_j
            b.advance(_IDLE_S)
            hit = self._idle[key] = (b.energy_j - e0) / _IDLE_S
        return hit

    def frame(self, row: Row, cpu_khz: int, gpu_khz: int) -> tuple[float, float]:
        """(latency ms, board energy J) of one frame run on a fresh board."""
        key = (row, cpu_khz, gpu_khz)
        hit = self._frame.get(key)
        if hit is None:
            b = self.board(cpu_khz, gpu_khz)
            r = b.run_frame(row.workload, row.processor, row.threads)
            hit = self._frame[key] = (r.latency_ms, r.energy_j)
        return hit

    def extra_w(self, row: Row, cpu_khz: int, gpu_khz: int, fps: float) -> float:
        """Board power a model adds over idle at ``fps`` frames per second."""
        lat, e = self.frame(row, cpu_khz, gpu_khz)
        return fps * (e - self.idle_w(cpu_khz, gpu_khz) * lat * 1e-3)

    @property
    def margin(self) -> float:
        """Factor on the noise-free latency that the plan keeps under the target."""
        return math.exp(JITTER_Z * self.jitter)


@dataclass(frozen=True)
class Plan:
    """The best joint configuration for one interval and its key (smaller is better)."""

    key: tuple[int, float, float, float]
    cpu_khz: int
    gpu_khz: int
    rows: Mapping[str, Row]
    latency_ms: Mapping[str, float]
    power_w: float


def plan_interval(
    costs: BoardCosts,
    rows: Mapping[str, Sequence[Row]],
    targets_ms: Mapping[str, float],
    fps: Mapping[str, float],
    *,
    cpu_table: Sequence[int],
    gpu_table: Sequence[int],
) -> Plan:
    """The lexicographic best (see the module doc) over every frequency pair and row."""
    if len(rows) > 1:
        return _plan_joint(costs, rows, targets_ms, fps, cpu_table=cpu_table, gpu_table=gpu_table)
    margin = costs.margin
    best: Plan | None = None
    for fc in cpu_table:
        for fg in gpu_table:
            idle = costs.idle_w(fc, fg)
            miss, viol, acc, power = 0, 0.0, 0.0, idle
            picks: dict[str, Row] = {}
            lats: dict[str, float] = {}
            for m, cands in rows.items():
                lim = targets_ms[m]
                lat = [costs.latency_ms(r, fc, fg) * margin for r in cands]
                ok = [i for i, x in enumerate(lat) if x <= lim]
                if ok:
                    a = max(cands[i].accuracy for i in ok)
                    pool = [i for i in ok if cands[i].accuracy == a]
                else:  # nothing meets the target: the least violating, then the most accurate
                    v = min(lat)
                    pool = [i for i, x in enumerate(lat) if x == v]
                    a = max(cands[i].accuracy for i in pool)
                    pool = [i for i in pool if cands[i].accuracy == a]
                    miss += 1
                    viol += v / lim - 1.0
                k = min(pool, key=lambda i: (costs.extra_w(cands[i], fc, fg, fps[m]), i))
                picks[m] = cands[k]
                lats[m] = lat[k] / margin
                acc += a
                power += costs.extra_w(cands[k], fc, fg, fps[m])
            key = (miss, viol, -acc, power)
            if best is None or key < best.key:
                best = Plan(key, fc, fg, picks, lats, power)
    assert best is not None
    return best


def _plan_joint(
    costs: BoardCosts,
    rows: Mapping[str, Sequence[Row]],
    targets_ms: Mapping[str, float],
    fps: Mapping[str, float],
    *,
    cpu_table: Sequence[int],
    gpu_table: Sequence[int],
) -> Plan:
    """:func:`plan_interval` for several models, which slow each other down
    (:meth:`BoardCosts.contended_ms`): the lexicographic best over every combination of the
    models' rows at every frequency pair. Exact, and fast where the models can meet their
    targets: combinations are tried most accurate first, and one that meets every target ends
    the search at its pair and bounds the accuracy the other pairs must reach; energy (the
    slow part, a board run per row) only decides between the combinations tied on the rest."""
    margin = costs.margin
    names = list(rows)
    combos = sorted(
        itertools.product(*(rows[m] for m in names)), key=lambda c: -sum(r.accuracy for r in c)
    )
    best: tuple[int, float, float] | None = None
    tied: list[tuple[int, int, tuple[Row, ...], list[float]]] = []
    for fc in reversed(cpu_table):  # fast clocks first: the accuracy bound comes early
        for fg in reversed(gpu_table):
            alone_ok = {
                (m, r): costs.parts(r, fc, fg).total_ms * margin <= targets_ms[m]
                for m in names
                for r in rows[m]
            }
            for combo in combos:
                acc = sum(r.accuracy for r in combo)
                if best is not None and best[0] == 0:
                    if -acc > best[2]:
                        break  # meets every target at best, and less accurate than the best
                    if not all(alone_ok[m, r] for m, r in zip(names, combo, strict=True)):
                        continue  # misses a target even alone: slower beside the others
                lats = costs.contended_ms(
                    [(r, fps[m]) for m, r in zip(names, combo, strict=True)], fc, fg
                )
                ratios = [lat * margin / targets_ms[m] for m, lat in zip(names, lats, strict=True)]
                over = [x - 1.0 for x in ratios if x > 1.0]
                key = (len(over), sum(over), -acc)
                if best is None or key < best:
                    best, tied = key, [(fc, fg, combo, lats)]
                elif key == best:
                    tied.append((fc, fg, combo, lats))
    assert best is not None

    def power(t: tuple[int, int, tuple[Row, ...], list[float]]) -> float:
        fc, fg, combo, _ = t
        return costs.idle_w(fc, fg) + sum(
            costs.extra_w(r, fc, fg, fps[m]) for m, r in zip(names, combo, strict=True)
        )

    watts, (fc, fg, combo, lats) = min(((power(t), t) for t in tied), key=lambda x: x[0])
    return Plan(
        (*best, watts), fc, fg, dict(zip(names, combo, strict=True)),
        dict(zip(names, lats, strict=True)), watts,
    )  # fmt: skip


def candidate_rows(specs: Sequence[ModelSpec], ctx: Context) -> dict[str, list[Row]]:
    """Per model, the manager's candidates (member x processor x threads), most accurate first."""
    out: dict[str, list[Row]] = {}
    for spec in specs:
        rows = []
        for pname, o in ctx.options[spec.name].items():
            for k, member in enumerate(o.member_ids):
                try:
                    w = workload_of(spec.family.member(member))
                except ValueError as exc:
                    raise OracleError(f"oracle: model {spec.name}: {exc}") from None
                threads = int(o.threads[k]) if pname == CPU else 1
                rows.append(Row(member, pname, threads, float(o.accuracy[k]), w))
        out[spec.name] = sorted(rows, key=lambda r: -r.accuracy)
    return out


def compute_schedule(
    scenario: Scenario,
    specs: Sequence[ModelSpec],
    board: SimulatedXavierNX,
    config: ManagerConfig | None = None,
    *,
    offset_s: float = 0.0,
) -> Schedule:
    """The oracle's schedule of ``scenario`` for the models ``specs`` (manager specs: families,
    frame rates, targets) on ``board`` as it is before the run; ``offset_s``: board time of the
    scenario's t = 0. Entries whose configuration and targets equal the previous one's are left
    out."""
    cfg = config or ManagerConfig()
    mboard = Board.from_platform(board)
    ctx = Context(specs, mboard, cfg)
    inputs = InputStore(specs, mboard, cfg)
    rows = candidate_rows(specs, ctx)
    fps = {
        s.name: float(s.frame_rate_hz or 1000.0 / float(s.latency_target_ms or 1e3)) for s in specs
    }
    by_camera: dict[str, list[str]] = {}
    for m in scenario.models:
        if m.name in ctx.specs:
            by_camera.setdefault(m.camera, []).append(m.name)
    shadow = _shadow(board)
    stream = _stream(scenario)

    entries: list[ScheduleEntry] = []
    plans: dict[tuple, Plan] = {}
    why: list[str] = ["start"]
    since: float | None = 0.0  # time of the first change since the last plan
    caps_planned: tuple[int, int] | None = None
    busy = dict.fromkeys(ctx.specs, -math.inf)
    for _, kind, _, t, item in stream:
        shadow.advance_to(offset_s + t)
        if kind == 0:
            changed = ""
            if isinstance(item, PriorityItem):
                inputs.offer(Mission.from_fields(t, item.change))
                changed = f"mission {item.change.level_name}"
            elif isinstance(item, CoRunnerItem):
                ev = item.event
                shadow.set_corunner(ev.name, ev.processor, ev.share)
                changed = f"co-runner {ev.name} {ev.share:g}"
            elif isinstance(item, AmbientItem):
                if item.celsius != shadow.ambient_c:
                    changed = f"ambient {item.celsius:g} degC"
                shadow.set_ambient(item.celsius)
            else:  # battery: no cost on the simulated board depends on it
                shadow.set_state_of_charge(item.soc)
            if changed:
                why.append(changed)
                since = t if since is None else since
            continue
        caps = (shadow.frequency_cap_khz(CPU), shadow.frequency_cap_khz(GPU))
        if caps_planned is not None and caps != caps_planned:
            why.append("thermal cap")
            since = t if since is None else since
        if since is not None:
            entry = _plan_entry(
                ctx,
                shadow,
                rows,
                inputs,
                fps=fps,
                caps=caps,
                t_s=since,
                why=why,
                jitter=board.latency_jitter,
                cache=plans,
            )
            last = entries[-1] if entries else None
            if last is None or (last.configs, last.targets_ms) != (entry.configs, entry.targets_ms):
                entries.append(entry)
            since, why, caps_planned = None, [], caps
        cur = entries[-1]
        for name in by_camera.get(item, ()):
            if t < busy[name]:
                continue
            conf = cur.configs[name]
            shadow.apply(
                Setting(frequencies_khz={CPU: conf.cpu_frequency_khz, GPU: conf.gpu_frequency_khz})
            )
            w = next(r.workload for r in rows[name] if r.member == conf.subnet_id)
            ran = shadow.run_frame(w, conf.processor, conf.threads, start_s=offset_s + t)
            busy[name] = t + ran.latency_ms * 1e-3
    return check_schedule(entries, list(ctx.specs))


def _shadow(board: SimulatedXavierNX) -> SimulatedXavierNX:
    """A noise-free copy of ``board`` in its present state, to follow a schedule through."""
    shadow = SimulatedXavierNX(
        seed=board.seed,
        model=board.model,
        latency_jitter=0.0,
        ambient_c=board.ambient_c,
        state_of_charge=board.state_of_charge,
        power_mode=board.power_mode,
        start_temperature_c=board.package_c,
    )
    for c in board.corunners.values():
        shadow.start_corunner(c.name, c.processor, c.share, c.memory_gbps)
    shadow.advance_to(board.now_s)
    return shadow


def _stream(scenario: Scenario) -> list[tuple[int, int, int, float, Any]]:
    """Events and frames in the runners' order: by stamp; events before frames; cameras in
    scenario order. Items: (stamp ns, 0 = event / 1 = frame, index, t s, event or camera)."""
    t0 = scenario.start_ns
    stream: list[tuple[int, int, int, float, Any]] = [
        (it.stamp_ns, 0, i, it.t, it) for i, it in enumerate(events(scenario))
    ]
    for ci, cam in enumerate(scenario.cameras):
        for t in cam.frame_times(scenario.duration_s):
            stream.append((t0 + round(t * 1e9), 1, ci, t, cam.name))
    stream.sort(key=lambda k: k[:3])
    return stream


def _plan_entry(
    ctx: Context,
    shadow: SimulatedXavierNX,
    rows: Mapping[str, Sequence[Row]],
    inputs: InputStore,
    *,
    fps: Mapping[str, float],
    caps: tuple[int, int],
    t_s: float,
    why: Sequence[str],
    jitter: float,
    cache: dict[tuple, Plan],
) -> ScheduleEntry:
    cond = Conditions.of(shadow)
    targets = {m: inputs.effective(m).latency_target_ms for m in ctx.specs}
    # the package temperature adds the same leakage to every configuration's power: it changes
    # no choice (only the thermal caps it causes do), so plans are reused across it
    key = (cond.corunners, cond.power_mode, caps, tuple(sorted(targets.items())))
    plan = cache.get(key)
    if plan is None:
        costs = BoardCosts(shadow, cond, jitter)
        tables = []
        for name, cap in ((CPU, caps[0]), (GPU, caps[1])):
            table = ctx.tables[name]
            tables.append([f for f in table if f <= cap] or [table[0]])
        plan = cache[key] = plan_interval(
            costs, rows, targets, fps, cpu_table=tables[0], gpu_table=tables[1]
        )
    configs = {
        m: Configuration(r.member, r.processor, r.threads, plan.cpu_khz, plan.gpu_khz)
        for m, r in plan.rows.items()
    }
    return ScheduleEntry(
        t_s=t_s,
        configs=configs,
        targets_ms=targets,
        latency_ms=dict(plan.latency_ms),
        accuracy={m: r.accuracy for m, r in plan.rows.items()},
        power_w=plan.power_w,
        why=", ".join(dict.fromkeys(why)),
    )


def foresee(
    manager: Any,
    scenario: Scenario,
    specs: Sequence[ModelSpec],
    board: SimulatedXavierNX,
    *,
    offset_s: float = 0.0,
) -> Iterator[tuple[str, float, None]]:
    """Compute the schedule, hand it to ``manager`` (a RuntimeManager running ``oracle``) on the
    replay clock (seconds of the scenario's stamps) and return the times to step it at, as
    ``("tick", t, None)`` in time order (entries played ``LEAD_S`` early)."""
    schedule = compute_schedule(scenario, specs, board, manager.config, offset_s=offset_s)
    origin = scenario.start_ns * 1e-9
    manager.foresee(schedule, origin, LEAD_S)
    return (("tick", origin + e.t_s - LEAD_S, None) for e in schedule)


# ------------------------------------------------------------------------------ files
def schedule_dict(schedule: Schedule, *, scenario: str = "") -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "scenario": scenario,
        "entries": [
            {
                "t_s": e.t_s,
                "why": e.why,
                "configs": {m: asdict(c) for m, c in e.configs.items()},
                "targets_ms": dict(e.targets_ms),
                "latency_ms": dict(e.latency_ms),
                "accuracy": dict(e.accuracy),
                "power_w": e.power_w,
            }
            for e in schedule
        ],
    }


def write_schedule(path: str | os.PathLike[str], schedule: Schedule, *, scenario: str = "") -> Path:
    """Write ``schedule`` as JSON, atomically."""
    p = Path(path)
    atomic_write_text(p, json.dumps(schedule_dict(schedule, scenario=scenario), indent=1) + "\n")
    return p


_CONFIG_FIELDS = {
    "subnet_id": str,
    "processor": str,
    "threads": int,
    "cpu_frequency_khz": int,
    "gpu_frequency_khz": int,
}


def read_schedule(
    path: str | os.PathLike[str], families: Mapping[str, Family] | None = None
) -> Schedule:
    """A schedule file; every member is checked against its model's family when ``families``
    are given. Errors are one line naming the file and the field."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OracleError(f"oracle schedule {p}: cannot read: {exc}") from None

    def fail(where: str, why: str) -> OracleError:
        return OracleError(f"oracle schedule {p}: {where}: {why}")

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise fail("format", f"expected {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise fail("version", f"{doc.get('version')!r} is not supported (only {VERSION})")
    raw = doc.get("entries")
    if not isinstance(raw, list) or not raw:
        raise fail("entries", "expected a non-empty list")
    out: list[ScheduleEntry] = []
    for i, e in enumerate(raw):
        where = f"entries[{i}]"
        if not isinstance(e, dict):
            raise fail(where, "expected a mapping")
        t = e.get("t_s")
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise fail(f"{where}.t_s", f"{t!r} is not a time >= 0 s")
        configs_raw = e.get("configs")
        if not isinstance(configs_raw, dict) or not configs_raw:
            raise fail(f"{where}.configs", "expected a mapping model -> configuration")
        configs: dict[str, Configuration] = {}
        for m, c in configs_raw.items():
            cw = f"{where}.configs.{m}"
            if not isinstance(c, dict):
                raise fail(cw, "expected a mapping")
            for key, typ in _CONFIG_FIELDS.items():
                v = c.get(key)
                if not isinstance(v, typ) or isinstance(v, bool):
                    raise fail(f"{cw}.{key}", f"{v!r} is not a {typ.__name__}")
            if families is not None:
                fam = families.get(m)
                if fam is None:
                    raise fail(cw, f"unknown model (one of: {', '.join(families)})")
                if c["subnet_id"] not in fam.ids:
                    raise fail(
                        f"{cw}.subnet_id",
                        f"unknown member {c['subnet_id']!r} (one of: {', '.join(fam.ids)})",
                    )
            mode = c.get("power_mode")
            configs[m] = Configuration(
                **{k: c[k] for k in _CONFIG_FIELDS}, power_mode=None if mode is None else int(mode)
            )
        numbers: dict[str, dict[str, float]] = {}
        for key in ("targets_ms", "latency_ms", "accuracy"):
            v = e.get(key, {})
            if not isinstance(v, dict) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in v.values()
            ):
                raise fail(f"{where}.{key}", "expected a mapping model -> number")
            numbers[key] = {k: float(x) for k, x in v.items()}
        missing = set(configs) - set(numbers["targets_ms"])
        if missing:
            raise fail(f"{where}.targets_ms", f"no target for {', '.join(sorted(missing))}")
        power = e.get("power_w", 0.0)
        if isinstance(power, bool) or not isinstance(power, int | float):
            raise fail(f"{where}.power_w", f"{power!r} is not a number")
        out.append(
            ScheduleEntry(
                float(t), configs, numbers["targets_ms"], numbers["latency_ms"],
                numbers["accuracy"], float(power), str(e.get("why", "")),
            )
        )  # fmt: skip
    try:
        return check_schedule(out, list(out[0].configs))
    except DynofaError as exc:
        raise OracleError(
            f"oracle schedule {p}: {str(exc).removeprefix('oracle schedule: ')}"
        ) from None
