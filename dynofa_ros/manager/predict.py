"""The prediction every policy shares: latency and board power of a joint configuration.

* latency of a candidate = nominal latency from the family's records at the chosen frequency
  (:class:`~dynofa_ros.manager.model.LatencyTable`) times the online correction of its
  (model, processor) (median of measured / predicted, :class:`~dynofa_ros.manager.model.
  Corrections`); a GPU candidate combines a device part (at f_gpu) and a host part (at f_cpu),
  see :mod:`~dynofa_ros.manager.context`;
* models sharing a processor slow each other: on a GPU the device part by ``1 / (1 - s)`` with
  ``s`` the others' busy fraction; on a CPU (CPU models and the host parts of GPU models) only
  when their threads exceed the cores, by ``1 / (1 - s)`` with ``s`` the others' busy cores over
  the cores (processor sharing);
* board power = ``board_static_w + sum over processors of idle(f) + load * busy(f)``
  (:class:`~dynofa_ros.manager.model.PowerModel`), times the online correction from measured
  board power.

:func:`predict_rows` is the reference; :func:`settle_pair` is its two-model fast path, beside
it so that the two are read (and changed) together; test_manager_fast holds them equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dynofa_ros.manager.context import Context, Options

# Objective penalties, in "accuracy points" (see LevelPolicy): a latency violation outweighs any
# accuracy or energy gain, an exceeded energy budget outweighs accuracy, an accuracy floor
# outweighs energy. Each grows with the size of the violation so that, when nothing is
# feasible, the least violating configuration wins.
LATENCY_PENALTY = 10_000.0
BUDGET_PENALTY = 1_000.0
ACCURACY_PENALTY = 100.0
MAX_SHARE = 0.9  # processor sharing: others never take more than this of a processor


@dataclass(frozen=True)
class Joint:
    """A joint configuration: per model (processor name, options row), per processor a column
    of its usable frequency table (``Context.tables``)."""

    rows: Mapping[str, tuple[str, int]]
    cols: Mapping[str, int]


@dataclass(frozen=True)
class Prediction:
    latency_ms: Mapping[str, float]  # corrected, with contention
    alone_ms: Mapping[str, float]  # corrected, without the other models
    limiting: Mapping[str, str]  # per model: the processor whose column limits its latency
    load: Mapping[str, float]  # per processor, in [0, 1]
    power_w: float  # board power, corrected
    raw_power_w: float  # board power before the online correction


def first_at_most(row: np.ndarray, limit: float) -> int:
    """Index of the first entry ``<= limit`` (latency falls with frequency), or -1."""
    ok = row <= limit
    j = int(ok.argmax())
    return j if ok[j] else -1


def options_of(ctx: Context, model: str, processor: str) -> Options:
    return ctx.options[model][processor]


class Row(NamedTuple):
    """One model of a joint configuration for :func:`predict_rows`."""

    options: Options  # the model's candidates on the processor it runs on
    row: int
    factor: float  # its latency correction
    period_ms: float  # its frame period
    processor: str


def predict_rows(
    ctx: Context, sel: Sequence[Row], cols: Mapping[str, int]
) -> tuple[list[float], list[float], list[str], dict[str, float], float]:
    """:meth:`Policy.predict` on plain lists (the joint search calls it thousands of times per
    second): per model the latency with contention, alone, and the processor limiting it; per
    processor its load; and the board power before the online correction.

    Plain Python floats on purpose: numpy's per-call cost dominates arrays of two or three
    models, and ``**`` on floats is the C library's ``pow`` (numpy's vectorised ``power`` may
    differ in the last bit), so every caller gets the same numbers."""
    cpu = ctx.cpu_name
    n = len(sel)
    dev = [0.0] * n
    alone = [0.0] * n
    host: list[float | None] = [None] * n
    for i, (o, k, f, _, p) in enumerate(sel):
        hr = o.host_rows
        if hr is not None:
            d = o.main_rows[k][cols[p]] * f
            c = min(cols[cpu] if cpu is not None else 0, len(hr[k]) - 1)
            h = hr[k][c] * f
            host[i] = h
            alone[i] = (d**o.p + h**o.p) ** o.inv_p
        else:
            d = o.main_rows[k][cols[p]] * f
            alone[i] = d
        dev[i] = d
    # contention: frames of the models are taken to start together (cameras in step), so
    # another model occupies the GPU for the device share of its frame, and the CPU for its
    # busy cores over all cores (uniform time sharing), as on the simulated board
    cpu_load: list[float | None] = (
        []
        if n == 1
        else [
            (h / alone[i] if h is not None else (o.cores_list[k] if p == cpu else None))
            for i, ((o, k, _, _, p), h) in enumerate(zip(sel, host, strict=True))
        ]
    )
    lat = list(alone)
    limiting = [""] * n
    if n == 1:  # no contention: what the loop below gives for one model, without the sums
        o, _, _, _, p = sel[0]
        h0 = host[0]
        limiting[0] = p if h0 is None or dev[0] >= h0 else (cpu or p)
    for i, (o, _, _, _, p) in enumerate(sel if n > 1 else ()):
        d = dev[i]
        hi = host[i]
        if hi is not None:
            others = sum(min(1.0, dev[j] / alone[j]) for j in range(n) if j != i and sel[j][4] == p)
            d /= 1.0 - min(MAX_SHARE, others)
            cpu_part = hi
        else:
            cpu_part = d
        s = sum(v for j, v in enumerate(cpu_load) if j != i and v is not None) / ctx.cpu_cores
        if s > 0:
            cpu_part /= 1.0 - min(MAX_SHARE, s)
        if hi is not None:
            lat[i] = (d**o.p + cpu_part**o.p) ** o.inv_p
            limiting[i] = p if d >= cpu_part else (cpu or p)
        else:
            lat[i] = cpu_part
            limiting[i] = p
    # power
    load: dict[str, float] = {}
    raw = ctx.power.board_static_w
    for q, is_cpu, q_cores, idle, busy_w in ctx.power_rows:
        busy = 0.0
        for i, (o, k, _, period, p) in enumerate(sel):
            u = min(1.0, lat[i] / period)
            if is_cpu:
                if p == q or (host[i] is not None and q == cpu):
                    busy += u * o.cores_list[k] / q_cores
            elif p == q:
                busy += u
        load[q] = min(1.0, busy)
        j = cols[q]
        raw += idle[j] + load[q] * busy_w[j]
    return lat, alone, limiting, load, raw


class PairRow(NamedTuple):
    """One candidate of a two-model joint search, prepared once per plan by :func:`pair_row`."""

    main: tuple[float, ...]  # latency (CPU) or device part (GPU) per column of its processor
    host: tuple[float, ...] | None  # GPU: host part per CPU column
    host_last: int  # last host column
    factor: float
    period_ms: float
    processor: str
    p: float  # p-norm exponent of device and host parts
    inv_p: float
    cores: float  # CPU cores a frame keeps busy
    cpu_cores: float | None  # the same when it runs on the CPU, else None
    flags: tuple[int, ...]  # per board processor: 0 not counted, 1 cores / CPU cores, 2 busy


def pair_row(ctx: Context, row: Row) -> PairRow:
    """What :func:`settle_pair` needs of one candidate, looked up once: its latency rows, the
    last host column, correction, period, processor, p-norm exponents, cores, and per board
    processor how its load counts there (0: not, 1: busy cores over the CPU's, 2: busy)."""
    o, k, f, period, p = row
    key = (o.key, k)
    hit = ctx.pair_cache.get(key)
    if hit is None:
        cpu = ctx.cpu_name
        host = o.host_rows[k] if o.host_rows is not None else None
        flags = tuple(
            (1 if p == q or (host is not None and q == cpu) else 0)
            if is_cpu
            else (2 if p == q else 0)
            for q, is_cpu, _, _, _ in ctx.power_rows
        )
        cores = o.cores_list[k]
        hit = ctx.pair_cache[key] = (
            (o.main_rows[k], host, len(host) - 1 if host is not None else 0),
            (p, o.p, o.inv_p, cores, cores if p == cpu else None, flags),
        )
    (main, host_rows, host_last), fixed = hit
    return PairRow(main, host_rows, host_last, f, period, *fixed)


def settle_pair(  # noqa: PLR0915 - unrolled on purpose: the joint search's inner loop
    ctx: Context,
    r0: PairRow,
    r1: PairRow,
    cols: dict[str, int],
    *,
    caps: Mapping[str, int] | None,
    lim0: float,
    lim1: float,
) -> tuple[float, float, float]:
    """Two models: :func:`predict_rows` at ``cols``, then, when ``caps`` are given, the
    settling of ``DynOFA._settle`` (raise the column limiting a model over its limit, both
    models in order, until none is or the caps stop it), updating ``cols`` in place. Returns
    the two latencies and the board power before the online correction. Unrolled for the
    joint search's inner loop; every operation is the one :func:`predict_rows` does, in its
    order (sums of one term are the term: ``0 + x`` is ``x``)."""
    cpu = ctx.cpu_name
    n_cores = ctx.cpu_cores
    power_rows = ctx.power_rows
    main0, host0, hcap0, f0, per0, p0, pw0, ip0, c0, cl0_fixed, flags0 = r0
    main1, host1, hcap1, f1, per1, p1, pw1, ip1, c1, cl1_fixed, flags1 = r1
    same = p0 == p1
    for bumps in range(65):  # (at most 64 bumps, as _settle)
        d0 = main0[cols[p0]] * f0
        d1 = main1[cols[p1]] * f1
        if host0 is not None or host1 is not None:
            c = cols[cpu] if cpu is not None else 0
        if host0 is not None:
            h0 = host0[c if c < hcap0 else hcap0] * f0
            a0 = (d0**pw0 + h0**pw0) ** ip0
            cl0 = h0 / a0
        else:
            a0 = d0
            cl0 = cl0_fixed
        if host1 is not None:
            h1 = host1[c if c < hcap1 else hcap1] * f1
            a1 = (d1**pw1 + h1**pw1) ** ip1
            cl1 = h1 / a1
        else:
            a1 = d1
            cl1 = cl1_fixed
        # model 0
        if host0 is not None:
            d = d0 / (1.0 - min(MAX_SHARE, min(1.0, d1 / a1) if same else 0))
            part = h0
        else:
            d = part = d0
        s = (cl1 if cl1 is not None else 0) / n_cores
        if s > 0:
            part /= 1.0 - min(MAX_SHARE, s)
        if host0 is not None:
            lat0 = (d**pw0 + part**pw0) ** ip0
            lim_p0 = p0 if d >= part else (cpu or p0)
        else:
            lat0 = part
            lim_p0 = p0
        # model 1
        if host1 is not None:
            d = d1 / (1.0 - min(MAX_SHARE, min(1.0, d0 / a0) if same else 0))
            part = h1
        else:
            d = part = d1
        s = (cl0 if cl0 is not None else 0) / n_cores
        if s > 0:
            part /= 1.0 - min(MAX_SHARE, s)
        if host1 is not None:
            lat1 = (d**pw1 + part**pw1) ** ip1
            lim_p1 = p1 if d >= part else (cpu or p1)
        else:
            lat1 = part
            lim_p1 = p1
        if caps is None or bumps == 64:
            break
        bumped = False
        if lat0 > lim0 and cols[lim_p0] < caps[lim_p0]:
            cols[lim_p0] += 1
            bumped = True
        if lat1 > lim1 and cols[lim_p1] < caps[lim_p1]:
            cols[lim_p1] += 1
            bumped = True
        if not bumped:
            break
    # power (at the final columns)
    u0 = min(1.0, lat0 / per0)
    u1 = min(1.0, lat1 / per1)
    raw = ctx.power.board_static_w
    for (q, _, q_cores, idle, busy_w), g0, g1 in zip(power_rows, flags0, flags1, strict=True):
        busy = 0.0
        if g0 == 1:
            busy += u0 * c0 / q_cores
        elif g0 == 2:
            busy += u0
        if g1 == 1:
            busy += u1 * c1 / q_cores
        elif g1 == 2:
            busy += u1
        j = cols[q]
        raw += idle[j] + min(1.0, busy) * busy_w[j]
    return lat0, lat1, raw
