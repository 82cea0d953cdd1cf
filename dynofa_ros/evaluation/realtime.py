"""Real-machine runs: the real engine on this machine, a real co-running CPU load, the manager.

``dynofa realtime SCENARIO`` (:mod:`.realtime_cli`) plays a real-machine scenario
(:mod:`.realtime_scenario`) once per policy:

* the closed loop is the one every runner shares (:class:`~.loop.ClosedLoop`), driven by this
  machine's clock;
* frames are due at the camera's rate (``1 / fps`` apart) and go through the real engine
  (:class:`~dynofa_ros.engine.Engine`: preprocessing of the camera-sized frame, the member's
  ONNX Runtime session at its thread count, top-k) inside a
  :class:`~dynofa_ros.perception.PerceptionSession`, the perception node's ROS-free half, so a
  decision is applied exactly as the node applies a command; a frame's latency is what the
  engine measured (buffer in -> top-k out, as the node reports it). A frame that is still due
  when a newer one is due is dropped (the node's newest-frame slot);
* the manager (:class:`~dynofa_ros.manager.RuntimeManager` on the generic Linux back-end, whose
  telemetry it also reads) is told every frame's measured latency and decides between frames;
  its latency model is the family's latency records of the engine's backend per thread count
  (:func:`~.realtime_scenario.measured_family`), corrected online from the measured latency;
* the co-runner is :class:`CoRunners`: busy child processes started and stopped at the
  scenario's times, each in its own process group, stopped when the run ends however it ends
  (error, Ctrl-C, SIGTERM), and exiting by themselves if this process dies first.

A run becomes :class:`~.records.RunResults` (mode ``real``), the record format ``dynofa report``
reads; :func:`summarise` computes what the scenario is judged by (share of frames within the
target after each load change's transient, the loaded / unloaded latency ratio, percentiles,
switches), :func:`probe` measures every (member, threads) under each co-runner load.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dynofa_ros.errors import DynofaError
from dynofa_ros.evaluation.loop import ClosedLoop, LoopModel
from dynofa_ros.evaluation.metrics import LatencyStats as Stats
from dynofa_ros.evaluation.metrics import compute
from dynofa_ros.evaluation.realtime_scenario import CoRunnerStep, RealScenario
from dynofa_ros.evaluation.records import (
    Event,
    ModelInfo,
    RecordBuilder,
    RunInfo,
    RunResults,
    subnets_extra,
)
from dynofa_ros.processes import NodeProcess, ProcessManager

if TYPE_CHECKING:
    from dynofa_ros.configuration import Configuration
    from dynofa_ros.engine import Engine
    from dynofa_ros.manager.oracle import Schedule
    from dynofa_ros.perception import Inference


# ------------------------------------------------------------------------------- co-runners
# Each co-runner checks that its parent is still this process and exits when it is not (this
# process was killed without a chance to stop it). The inner loop keeps the check cheap.
_SPIN = (
    "import os\n"
    "parent = os.getppid()\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(100_000):\n"
    "        pass\n"
)
_MATMUL = (
    "import os\n"
    "import numpy as np\n"
    "parent = os.getppid()\n"
    "a = np.full((256, 256), 0.5, np.float32)\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(20):\n"
    "        b = a @ a\n"
)
CORUNNER_CODE = {"spin": _SPIN, "matmul": _MATMUL}


class CoRunners:
    """Busy child processes (one core each), brought to a count by :meth:`set`.

    Started through :class:`~dynofa_ros.processes.ProcessManager` (own process group, output
    in ``log_dir``), single-threaded (BLAS / OpenMP pools of one). Use as a context manager, or
    call :meth:`stop_all`: every process started is stopped, once."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        env = dict(os.environ)
        env.update(
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        self._pm = ProcessManager(Path(log_dir), env=env)
        self.running: list[NodeProcess] = []
        self.kind: str | None = None
        self.started: list[int] = []  # pid of every process ever started

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(p.popen.pid for p in self.running)

    def set(self, processes: int, kind: str = "spin") -> None:
        """Run exactly ``processes`` co-runners of ``kind`` (a change of kind restarts them)."""
        if kind not in CORUNNER_CODE:
            raise ValueError(
                f"co-runner kind {kind!r} is unknown (one of: {', '.join(CORUNNER_CODE)})"
            )
        if processes < 0:
            raise ValueError(f"co-runner processes = {processes} must be >= 0")
        if kind != self.kind:
            self.stop_all()
            self.kind = kind
        while len(self.running) > processes:
            self.running.pop().stop(timeout_s=2.0)
        while len(self.running) < processes:
            proc = self._pm.start(
                [sys.executable, "-c", CORUNNER_CODE[kind]], name=f"corunner-{kind}"
            )
            self.running.append(proc)
            self.started.append(proc.popen.pid)

    def stop_all(self) -> None:
        while self.running:
            self.running.pop().stop(timeout_s=2.0)

    def __enter__(self) -> CoRunners:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``KeyboardInterrupt`` (in the main thread), so ``finally`` blocks stop
    the co-runners on ``kill`` as on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# ------------------------------------------------------------------------------- set-up
@dataclass(frozen=True)
class FramePool:
    """Camera frames composed before the run (raw ``sensor_msgs/Image`` buffers), cycled."""

    buffers: tuple[bytes, ...]
    labels: tuple[int | None, ...]
    width: int
    height: int
    encoding: str

    def __len__(self) -> int:
        return len(self.buffers)

    def infer(self, k: int) -> Inference:
        """The engine call of frame ``k`` (the perception node's raw-image path)."""
        data, w, h, enc = (
            self.buffers[k % len(self.buffers)],
            self.width,
            self.height,
            self.encoding,
        )
        return lambda e: e.infer_raw(data, w, h, enc)

    def label(self, k: int) -> int | None:
        return self.labels[k % len(self.labels)]


def compose_frames(scenario: RealScenario) -> FramePool:
    """The scenario's camera frames: Fashion-MNIST items composed into camera-sized frames
    (labelled, as the bag scenarios compose them), or seeded noise (no labels)."""
    cam = scenario.camera
    buffers: list[bytes] = []
    labels: list[int | None] = []
    if cam.source == "fashion_mnist":
        from dynofa_ros.evaluation.camera import FashionMnistFrames

        source = FashionMnistFrames(cam.spec(), scenario.seed)
        for k in range(cam.frames):
            f = source.frame(k, k * cam.period_s)
            buffers.append(np.ascontiguousarray(f.pixels).tobytes())
            labels.append(f.label)
    else:
        rng = np.random.default_rng(scenario.seed)
        shape = (cam.height, cam.width) if cam.encoding == "mono8" else (cam.height, cam.width, 3)
        for _ in range(cam.frames):
            buffers.append(rng.integers(0, 256, shape, dtype=np.uint8).tobytes())
            labels.append(None)
    return FramePool(tuple(buffers), tuple(labels), cam.width, cam.height, cam.encoding)


@dataclass
class Setup:
    """What every policy run of one scenario shares: the prepared engine and the frames."""

    scenario: RealScenario
    engine: Engine
    frames: FramePool

    def close(self) -> None:
        self.engine.close()


def prepare(scenario: RealScenario, *, progress: bool = True) -> Setup:
    """Load the checkpoint, prepare every member at every thread count, compose the frames."""
    from dynofa_ros.engine import Engine
    from dynofa_ros.family import load_family
    from dynofa_ros.search.build import load_bn_statistics
    from dynofa_ros.supernet.checkpoint import load_checkpoint

    m = scenario.model
    ckpt = load_checkpoint(m.checkpoint)
    family = m.family
    whole = load_family(m.family_path)
    if whole.bn_statistics is not None:
        # the statistics file holds every member of the family file: install them all, so a
        # scenario may run a subset of the members
        load_bn_statistics(whole, ckpt.net)
        family = replace(family, bn_statistics=None)
    engine = Engine.load(
        ckpt,
        family,
        backend=m.backend,
        processors=("cpu",),
        threads=m.threads,
        progress=progress,
    )
    return Setup(scenario, engine, compose_frames(scenario))


# ------------------------------------------------------------------------------- one run
# latency_of(frame index, due time s, measured ms, active configuration) -> latency the run
# records and the manager sees (tests inject latency with it; None = the measured latency)
LatencyHook = Callable[[int, float, float, "Configuration"], float]
CAMERA = "camera"  # the one camera of a real-machine scenario


@dataclass
class PolicyRun:
    """One policy's run: its records and what the loop itself saw."""

    results: RunResults
    dropped_at_s: list[float]  # due times of frames superseded before they could start
    rejected: list[str] = field(default_factory=list)  # decisions the session refused
    corunner_pids: tuple[int, ...] = ()  # every co-runner process the run started


def _sleep_until(clock: Callable[[], float], deadline: float) -> None:
    """Sleep to ``deadline`` (the kernel wakes us within its timer slack, ~50 µs)."""
    left = deadline - clock()
    if left > 0:
        time.sleep(left)


def run_policy(
    setup: Setup,
    policy: str,
    *,
    progress: bool = True,
    latency_of: LatencyHook | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    schedule: Schedule | None = None,
) -> PolicyRun:
    """Play the scenario once under ``policy`` (a name of
    :data:`~dynofa_ros.manager.registry.POLICIES`): the shared closed loop
    (:class:`~.loop.ClosedLoop`) on this machine's clock; see the module docstring. The
    ``oracle`` policy plays ``schedule`` (:func:`oracle_schedule`)."""
    from tqdm import tqdm

    sc = setup.scenario
    if (policy == "oracle") != (schedule is not None):
        raise DynofaError("the oracle policy, and only it, plays a schedule (oracle_schedule)")
    run = _RealRun(setup, policy, latency_of)
    if schedule is not None:
        # entries play one frame period early: the first frame of a load step runs its plan
        run.loop.manager.foresee(schedule, 0.0, sc.camera.period_s)
    bar = tqdm(
        total=sc.frame_count, unit="frame", desc=f"{sc.name} [{policy}]", disable=not progress,
        leave=False,
    )  # fmt: skip
    gc.collect()
    gc.disable()  # a collection in the middle of a frame would be this process's own noise
    try:
        with contextlib.ExitStack() as stack:
            logs = log_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="dynofa-rt-"))
            corunners = stack.enter_context(CoRunners(logs))
            stack.enter_context(sigterm_as_interrupt())
            run.warm_up()
            run.play(corunners, bar.update)
    finally:
        gc.enable()
        bar.close()
    return run.result(tuple(corunners.started))


class _RealRun:
    """One policy's run on this machine: the closed loop, its clock and what the loop saw."""

    def __init__(self, setup: Setup, policy: str, latency_of: LatencyHook | None) -> None:
        from dynofa_ros.configuration import Configuration
        from dynofa_ros.manager import ModelSpec, RuntimeManager
        from dynofa_ros.perception import PerceptionSession, most_accurate
        from dynofa_ros.platform import make_platform

        self.setup = setup
        self.latency_of = latency_of
        sc, m = setup.scenario, setup.scenario.model
        self.clock = time.perf_counter
        self.origin = self.clock() + sc.warmup_s  # t = 0 of the run, after the warm-up
        self.platform = make_platform("linux", clock=self.run_clock)
        spec = ModelSpec(
            name=m.name,
            family=m.family,
            latency_target_ms=m.latency_target_ms,
            frame_rate_hz=sc.camera.fps,
            min_accuracy=m.min_accuracy,
            processors=("cpu",),
            threads=m.threads,
        )
        session = PerceptionSession(
            setup.engine,
            model_name=m.name,
            initial=Configuration(most_accurate(setup.engine), "cpu", m.threads[0]),
        )
        self.model = LoopModel(m.name, CAMERA, session, m.latency_target_ms)
        self.t0_ns = time.time_ns() - round(self.run_clock() * 1e9)
        self.extra: dict[str, Any] = {
            "subnets": subnets_extra(m.family),
            "settings": settings_of(sc),
        }
        info = RunInfo(
            name=policy,
            policy=policy,
            scenario=sc.name,
            source=str(sc.path or ""),
            mode="real",
            t0_ns=self.t0_ns,
            duration_s=sc.duration_s,
            models={m.name: ModelInfo(m.latency_target_ms, CAMERA)},
            extra=self.extra,  # completed when the run ends
        )
        self.loop = ClosedLoop(
            RuntimeManager([spec], self.platform, policy, sc.manager),
            [self.model],
            RecordBuilder(info),
            stamp_offset_ns=self.t0_ns,
        )
        self.dropped: list[float] = []  # due times of frames superseded before they started
        self.delays: list[float] = []  # s from a frame's due time to its start

    def run_clock(self) -> float:
        return self.clock() - self.origin

    def warm_up(self) -> None:
        """The policy's first decision, then warm-up frames with it (not recorded, not fed)."""
        sc, pool = self.setup.scenario, self.setup.frames
        self.loop.decide(self.run_clock())
        k = 0
        while self.run_clock() < 0:
            _sleep_until(self.clock, self.origin - sc.warmup_s + (k + 1) * sc.camera.period_s)
            self.loop.apply_due(self.model, self.run_clock())
            self.model.session.run(pool.infer(k), self.run_clock())
            k += 1

    def play(self, corunners: CoRunners, advance: Callable[[int], object]) -> None:
        """Every frame at its due time (the newest when late), co-runners at their times."""
        sc, pool, loop = self.setup.scenario, self.setup.frames, self.loop
        period, n = sc.camera.period_s, sc.frame_count
        steps = list(sc.corunners)
        tel_period = 1.0 / sc.telemetry_hz if sc.telemetry_hz > 0 else float("inf")
        next_tel = 0.0
        i = 0
        while i < n:
            due = i * period
            while steps and steps[0].t <= due + 1e-9:
                step = steps.pop(0)
                corunners.set(step.processes, step.kind)
                loop.builder.events.append(_corunner_event(step, os.cpu_count() or 1))
            now = self.run_clock()
            if now < due:
                _sleep_until(self.clock, self.origin + due)
            elif now - due >= period:  # newer frames are due: the newest one is taken
                skip = min(int((now - due) / period), n - i)
                self.dropped.extend((i + j) * period for j in range(skip))
                i += skip
                advance(skip)
                loop.decide(self.run_clock())  # time moved on without a frame (a schedule)
                continue
            self.delays.append(self.run_clock() - due)
            hook = None
            if self.latency_of is not None:
                hook = functools.partial(_hooked, self.latency_of, i, due)
            loop.frame(
                CAMERA, self.t0_ns + round(due * 1e9), pool.infer(i), label=pool.label(i),
                clock=self.run_clock, latency_of=hook,
            )  # fmt: skip
            done = self.run_clock()
            if done >= next_tel:
                next_tel = done + tel_period
                loop.own_telemetry(self.platform.telemetry(), done)
            i += 1
            if i % 100 == 0:
                advance(100)

    def result(self, corunner_pids: tuple[int, ...]) -> PolicyRun:
        loop = self.loop
        self.extra.update(
            {
                "frames": loop.frame_counts(),
                "dropped_frames": len(self.dropped),
                "dropped_at_s": [round(t, 6) for t in self.dropped],
                "start_delay_ms": _delay_stats(self.delays),
                "rejected_commands": list(loop.rejected),
            }
        )
        return PolicyRun(loop.builder.build(), self.dropped, list(loop.rejected), corunner_pids)


def _hooked(hook: LatencyHook, k: int, due: float, latency: float, active: Configuration) -> float:
    return float(hook(k, due, latency, active))


def _delay_stats(delays: Sequence[float]) -> dict[str, float]:
    if not delays:
        return {}
    ms = np.asarray(delays, dtype=np.float64) * 1e3
    p50, p99 = np.percentile(ms, [50, 99])
    return {
        "p50": round(float(p50), 4),
        "p99": round(float(p99), 4),
        "max": round(float(ms.max()), 4),
    }


def _corunner_event(step: CoRunnerStep, cores: int) -> Event:
    share = min(1.0, step.processes / max(cores, 1))
    return Event(
        step.t,
        "corunner",
        step.label,
        None,
        {"name": step.kind, "processor": "cpu", "share": share, "processes": step.processes},
    )


def settings_of(sc: RealScenario) -> dict[str, str]:
    """The scenario's settings, as the report's run section shows them."""
    cam = sc.camera
    load = ", ".join(f"{s.t:g} s: {s.processes} {s.kind}" for s in sc.corunners) or "none"
    return {
        "machine": f"{os.cpu_count()} logical CPUs (Linux back-end)",
        "engine": f"{sc.model.backend}, threads {', '.join(map(str, sc.model.threads))}",
        "camera": f"{cam.width}x{cam.height} {cam.encoding} at {cam.fps:g} fps ({cam.source})",
        "latency target": f"{sc.model.latency_target_ms:g} ms",
        "co-runner processes": load,
        "transient": f"{sc.transient_frames} frames",
    }


# ------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class SegmentSummary:
    start_s: float
    end_s: float
    load: CoRunnerStep
    all: Stats
    after: Stats  # frames due after the segment's first ``transient_frames`` frame periods
    transient_misses: int  # misses (late or dropped) among those first frames
    configs: tuple[tuple[str, int, float], ...]  # (member, threads, share of frames), most used


@dataclass(frozen=True)
class PolicySummary:
    policy: str
    target_ms: float
    overall: Stats
    after: Stats  # every segment's frames after its transient, pooled
    segments: tuple[SegmentSummary, ...]
    loaded: Stats  # after-transient frames while a co-runner ran
    unloaded: Stats  # after-transient frames without a co-runner
    switches: int  # frame-to-frame member changes
    config_changes: int  # member or threads changes
    commands: int
    accuracy: float | None
    goal: float

    @property
    def goal_met(self) -> bool:
        return self.after.within is not None and self.after.within >= self.goal

    def ratio(self, stat: str) -> float | None:
        """Loaded / unloaded ratio of a latency statistic (``mean_ms``, ``p50_ms``, ...)."""
        a, b = getattr(self.loaded, stat), getattr(self.unloaded, stat)
        return None if a is None or not b else a / b

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["goal_met"] = self.goal_met
        d["loaded_over_unloaded"] = {
            k: self.ratio(k) for k in ("mean_ms", "p50_ms", "p95_ms", "p99_ms")
        }
        return d


def dropped_of(results: RunResults) -> list[float]:
    """Due times of the frames a run dropped (``extra["dropped_at_s"]``)."""
    raw = results.info.extra.get("dropped_at_s") if results.info.extra else None
    return [float(t) for t in raw] if isinstance(raw, list) else []


def summarise(run: PolicyRun | RunResults, scenario: RealScenario) -> PolicySummary:
    """What a real-machine run is judged by (see the module docstring). The transient of a
    segment (the run's start, each load change) is its first ``transient_frames`` frame
    periods: those frames are left out of the "after" figures, processed or dropped."""
    results = run.results if isinstance(run, PolicyRun) else run
    dropped = run.dropped_at_s if isinstance(run, PolicyRun) else dropped_of(results)
    target = scenario.model.latency_target_ms
    settle_s = scenario.transient_frames * scenario.camera.period_s
    frames = sorted(results.frames, key=lambda f: f.t_s)
    eps = 1e-9
    segments = []
    after_all: list[float] = []
    after_dropped = 0
    loaded: list[float] = []
    unloaded: list[float] = []
    drops = {True: 0, False: 0}
    for start, end, load in scenario.segments():
        seg = [f for f in frames if start - eps <= f.t_s < end - eps]
        seg_drop = [t for t in dropped if start - eps <= t < end - eps]
        cut = start + settle_s - eps
        after = [f.latency_ms for f in seg if f.t_s >= cut]
        n_drop_after = sum(1 for t in seg_drop if t >= cut)
        after_all += after
        after_dropped += n_drop_after
        (loaded if load.processes > 0 else unloaded).extend(after)
        drops[load.processes > 0] += n_drop_after
        used = Counter((f.subnet_id, f.threads) for f in seg)
        configs = tuple((mid, t, c / len(seg)) for (mid, t), c in used.most_common())
        transient = sum(1 for f in seg if f.t_s < cut and f.latency_ms > target)
        transient += sum(1 for t in seg_drop if t < cut)
        segments.append(
            SegmentSummary(
                start,
                end,
                load,
                Stats.of([f.latency_ms for f in seg], target, len(seg_drop)),
                Stats.of(after, target, n_drop_after),
                transient,
                configs,
            )
        )
    metrics = compute(results).model(scenario.model.name)
    pairs = list(itertools.pairwise(frames))
    return PolicySummary(
        policy=results.info.policy or results.info.name,
        target_ms=target,
        overall=Stats.of([f.latency_ms for f in frames], target, len(dropped)),
        after=Stats.of(after_all, target, after_dropped),
        segments=tuple(segments),
        loaded=Stats.of(loaded, target, drops[True]),
        unloaded=Stats.of(unloaded, target, drops[False]),
        switches=metrics.switches,
        config_changes=sum(
            1 for a, b in pairs if (a.subnet_id, a.threads) != (b.subnet_id, b.threads)
        ),
        commands=metrics.commands,
        accuracy=metrics.accuracy,
        goal=scenario.goal,
    )


# ------------------------------------------------------------------------------- text
def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"x{x:.2f}"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        pairs = enumerate(zip(r, widths, strict=True))
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in pairs]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def family_table(scenario: RealScenario) -> str:
    """The manager's latency model: the family's records the run uses, per thread count."""
    m = scenario.model
    rows = [("member", "top-1", *(f"x{t} ms" for t in m.threads))]
    for member in m.family.members:
        cells = []
        for t in m.threads:
            ms = member.latency_ms("cpu", backend=m.backend, threads=t)
            cells.append(_ms(ms))
        rows.append((member.id, f"{100 * member.accuracy:.2f} %", *cells))
    return _table(rows)


def summary_text(summaries: Sequence[PolicySummary], scenario: RealScenario) -> str:
    """The figures printed after the runs: one table, then each policy's segments."""
    n = scenario.transient_frames
    head = (
        "policy",
        "frames",
        "within",
        f"after {n}",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "mean ms",
        "loaded/unloaded: mean",
        "p99",
        "switches",
        "changes",
        "top-1",
        "dropped",
        "goal",
    )
    rows = [head]
    for s in summaries:
        rows.append(
            (
                s.policy,
                str(s.overall.frames),
                _pct(s.overall.within),
                _pct(s.after.within),
                _ms(s.overall.p50_ms),
                _ms(s.overall.p95_ms),
                _ms(s.overall.p99_ms),
                _ms(s.overall.mean_ms),
                _ratio(s.ratio("mean_ms")),
                _ratio(s.ratio("p99_ms")),
                str(s.switches),
                str(s.config_changes),
                _pct(s.accuracy),
                str(s.overall.dropped),
                ("met" if s.goal_met else "MISSED") + f" (>= {100 * s.goal:g} %)",
            )
        )
    out = [
        f"target {scenario.model.latency_target_ms:g} ms; within: frames in time / frames due "
        f"(dropped frames miss); 'after {n}': without the first {n} after the start and each "
        "load change; latency figures: processed frames; loaded/unloaded: after-transient "
        "frames with / without a co-runner",
        _table(rows),
    ]
    for s in summaries:
        seg_rows = [
            ("segment", "load", "frames", "dropped", f"after {n}", "miss in first", "p50", "p99",
             "mean", "configurations")
        ]  # fmt: skip
        for g in s.segments:
            seg_rows.append(
                (
                    f"{g.start_s:g}-{g.end_s:g} s",
                    f"{g.load.processes} {g.load.kind}" if g.load.processes else "none",
                    str(g.all.frames),
                    str(g.all.dropped),
                    _pct(g.after.within),
                    str(g.transient_misses),
                    _ms(g.after.p50_ms),
                    _ms(g.after.p99_ms),
                    _ms(g.after.mean_ms),
                    ", ".join(f"{mid} x{t} {100 * share:.0f}%" for mid, t, share in g.configs[:3]),
                )
            )
        out += ["", f"{s.policy}:", _table(seg_rows)]
    return "\n".join(out)


# ------------------------------------------------------------------------------- probe
@dataclass(frozen=True)
class ProbeRow:
    member_id: str
    threads: int
    processes: int
    kind: str
    stats: Stats


def probe(
    setup: Setup,
    seconds: float = 1.0,
    *,
    progress: bool = True,
    log_dir: str | os.PathLike[str] | None = None,
) -> list[ProbeRow]:
    """Every (member, threads) at the scenario's frame rate, ``seconds`` each, without a
    co-runner and under each co-runner load the scenario uses: the physics the scenario's
    settings rest on, measured on this machine."""
    from tqdm import tqdm

    sc = setup.scenario
    engine = setup.engine
    pool = setup.frames
    period = sc.camera.period_s
    target = sc.model.latency_target_ms
    levels = [CoRunnerStep(0.0, 0)]
    for s in sc.corunners:
        if s.processes and all((s.processes, s.kind) != (x.processes, x.kind) for x in levels):
            levels.append(s)
    configs = [(mid, t) for mid in engine.members for t in engine.threads]
    per = max(1, round(seconds / period))
    out: list[ProbeRow] = []
    bar = tqdm(total=len(levels) * len(configs), unit="config", desc="probe", disable=not progress)
    gc.collect()
    gc.disable()
    try:
        with contextlib.ExitStack() as stack:
            logs = log_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="dynofa-rt-"))
            corunners = stack.enter_context(CoRunners(logs))
            stack.enter_context(sigterm_as_interrupt())
            for level in levels:
                corunners.set(level.processes, level.kind)
                time.sleep(0.3)  # the co-runners are past their start-up
                for mid, t in configs:
                    engine.switch(mid, "cpu", t)
                    lat: list[float] = []
                    start = time.perf_counter()
                    for k in range(per + 20):  # 20 warm-up frames
                        _sleep_until(time.perf_counter, start + k * period)
                        r = pool.infer(k)(engine)
                        if k >= 20:
                            lat.append(r.total_ms)
                    out.append(ProbeRow(mid, t, level.processes, level.kind, Stats.of(lat, target)))
                    bar.update(1)
    finally:
        gc.enable()
        bar.close()
    return out


def oracle_schedule(rows: Sequence[ProbeRow], scenario: RealScenario) -> Schedule:
    """The clairvoyant reference on this machine: for each stretch of constant co-runner load,
    the most accurate (member, threads) whose frames :func:`probe` measured within the target
    at the scenario's goal share under that load (ties: fewer threads, then the faster);
    where none is, the one with the largest share within. The measured tables are its cost
    model, as the simulated board's is the simulated oracle's."""
    from dynofa_ros.configuration import Configuration
    from dynofa_ros.manager.oracle import ScheduleEntry, check_schedule

    m = scenario.model
    target = m.latency_target_ms
    entries: list[ScheduleEntry] = []
    for start, _, load in scenario.segments():
        here = [r for r in rows if r.processes == load.processes and
                (load.processes == 0 or r.kind == load.kind)]  # fmt: skip
        if not here:
            raise DynofaError(
                f"oracle: the probe has no measurement under {load.label}; probe the scenario"
            )

        def rank(r: ProbeRow) -> tuple[bool, float, float, int, float]:
            within = r.stats.within or 0.0
            ok = within >= scenario.goal
            acc = m.family.member(r.member_id).accuracy or 0.0
            return (ok, acc if ok else within, within, -r.threads, -(r.stats.p50_ms or 0.0))

        best = max(here, key=rank)
        config = Configuration(best.member_id, "cpu", best.threads, 0, 0)
        if entries and entries[-1].configs[m.name] == config:
            continue
        entries.append(
            ScheduleEntry(
                t_s=start,
                configs={m.name: config},
                targets_ms={m.name: target},
                latency_ms={m.name: best.stats.p50_ms or 0.0},
                accuracy={m.name: m.family.member(best.member_id).accuracy or 0.0},
                power_w=0.0,
                why=load.label,
            )
        )
    return check_schedule(entries, [m.name])


def probe_text(rows: Sequence[ProbeRow], scenario: RealScenario) -> str:
    """One line per (member, threads): p50 / p99 and the share within target at each load."""
    levels = list(dict.fromkeys((r.processes, r.kind) for r in rows))
    head = ["member", "threads", "family ms"]
    for p, kind in levels:
        name = f"{p} {kind}" if p else "no load"
        head += [f"{name}: p50", "p99", "mean", "within"]
    by = {(r.member_id, r.threads, r.processes, r.kind): r.stats for r in rows}
    out = [tuple(head)]
    m = scenario.model
    for mid, t in dict.fromkeys((r.member_id, r.threads) for r in rows):
        rec = m.family.member(mid).latency_ms("cpu", backend=m.backend, threads=t)
        cells = [mid, str(t), _ms(rec)]
        for p, kind in levels:
            s = by[(mid, t, p, kind)]
            cells += [_ms(s.p50_ms), _ms(s.p99_ms), _ms(s.mean_ms), _pct(s.within)]
        out.append(tuple(cells))
    return (
        f"latency (ms) at {scenario.camera.fps:g} fps, target {m.latency_target_ms:g} ms\n"
        + _table(out)
    )
