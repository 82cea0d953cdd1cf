"""The manager's fast paths decide exactly what the plain code they replace decides.

``dynofa bench manager`` needs a decision in about 100 µs, so the manager's hot path uses
precomputed tables, unrolled two-model prediction, exact bounds to skip joint candidates, and a
p-th root taken only where feasibility is too close to call. These tests hold them to the plain
formulation, kept here as the reference (the manager's code before those changes): the same
floats, bit for bit, the same candidates in the same order, the same joint choice.
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from dynofa_ros.manager import ManagerConfig, ModelSpec, PriorityLevel, RuntimeManager
from dynofa_ros.manager.families import published_cpu_family, published_gpu_family
from dynofa_ros.manager.inputs import Effective
from dynofa_ros.manager.predict import (
    ACCURACY_PENALTY,
    BUDGET_PENALTY,
    LATENCY_PENALTY,
    MAX_SHARE,
    Joint,
    pair_row,
    settle_pair,
)
from dynofa_ros.platform.base import ProcessorKind
from dynofa_ros.platform.sim import SimulatedXavierNX

GPU_FAMILY = published_gpu_family()
CPU_FAMILY = published_cpu_family()


# ------------------------------------------------------------------------------- references
def reference_predict(policy, joint: Joint, eff, factor):
    """Policy.predict as first written: dicts per model, numpy elements turned into floats."""
    ctx = policy.ctx
    cpu = ctx.cpu.name if ctx.cpu is not None else None
    dev, host, pw, alone, cores, on = {}, {}, {}, {}, {}, {}
    for m, (p, k) in joint.rows.items():
        o = ctx.options[m][p]
        f = factor.get((m, p), 1.0)
        if o.dev_p is not None and o.host_p is not None:
            pw[m] = o.p
            d = float(o.dev_p[k, joint.cols[p]]) ** (1.0 / o.p) * f
            c = min(joint.cols[cpu] if cpu is not None else 0, o.host_p.shape[1] - 1)
            h = float(o.host_p[k, c]) ** (1.0 / o.p) * f
            host[m] = h
            t = (d**o.p + h**o.p) ** (1.0 / o.p)
        else:
            d = float(o.latency[k, joint.cols[p]]) * f
            t = d
        dev[m], alone[m], cores[m] = d, t, float(o.cores_busy[k])
        on.setdefault(p, []).append(m)
    lat = dict(alone)
    limiting = {}
    n_cores = max(ctx.cpu.cores, 1) if ctx.cpu is not None else 1
    cpu_load = {
        m: (host[m] / alone[m] if m in host else cores[m])
        for m in joint.rows
        if m in host or joint.rows[m][0] == cpu
    }
    for m, (p, _) in joint.rows.items():
        d = dev[m]
        gpu_side = m in host
        if gpu_side:
            others = sum(min(1.0, dev[j] / alone[j]) for j in on[p] if j != m)
            d /= 1.0 - min(MAX_SHARE, others)
        cpu_part = host.get(m) if gpu_side else d
        s = sum(v for j, v in cpu_load.items() if j != m) / n_cores
        if s > 0 and cpu_part is not None:
            cpu_part /= 1.0 - min(MAX_SHARE, s)
        if gpu_side:
            lat[m] = (d ** pw[m] + cpu_part ** pw[m]) ** (1.0 / pw[m])
            limiting[m] = p if d >= cpu_part else (cpu or p)
        else:
            lat[m] = cpu_part
            limiting[m] = p
    load = {}
    raw = ctx.power.board_static_w
    for proc in ctx.processors:
        busy = 0.0
        for m, (p, _) in joint.rows.items():
            u = min(1.0, lat[m] / eff[m].period_ms)
            if proc.kind is ProcessorKind.CPU:
                if p == proc.name or (m in host and proc.name == cpu):
                    busy += u * cores[m] / max(proc.cores, 1)
            elif p == proc.name:
                busy += u
        load[proc.name] = min(1.0, busy)
        j = joint.cols[proc.name]
        raw += float(ctx.idle_w[proc.name][j]) + load[proc.name] * float(ctx.busy_w[proc.name][j])
    return lat, alone, limiting, load, raw * ctx.power.correction, raw


def reference_rank(policy, model, e, factor, caps, *, budget_w, limit):
    """DynOFA._rank as first written: every candidate, full grids, sorted by score."""
    ctx = policy.ctx
    lp = ctx.config.levels[e.level]
    cpu = ctx.cpu.name if ctx.cpu is not None else None
    span = {q: (0 if policy.dvfs else caps[q], caps[q]) for q in caps}
    idle_floor = {q: span[q][0] for q in caps}
    st = ctx.static[model]
    out = []
    for pname, o in ctx.options[model].items():
        mask = np.ones(len(o.member_ids), dtype=bool)
        if not policy.mapping:
            if pname != st.processor:
                continue
            if not o.gpu:
                mask &= o.threads == st.threads
        if not policy.switching:
            mask &= np.array([m == st.member_id for m in o.member_ids])
        if not mask.any():
            continue
        f = factor.get((model, pname), 1.0)
        g0, g1 = span[pname]
        static = ctx.power.board_static_w + sum(
            float(ctx.idle_w[q.name][idle_floor[q.name]])
            for q in ctx.processors
            if q.name != pname and not (o.gpu and q.name == cpu)
        )
        if o.gpu and cpu is not None:
            c0, c1 = span[cpu]
            c1 = min(c1, o.host.shape[1] - 1)
            c0 = min(c0, c1)
            dev = o.dev[:, g0 : g1 + 1] * f
            host = o.host[:, c0 : c1 + 1] * f
            lat = (dev[:, :, None] ** o.p + host[:, None, :] ** o.p) ** (1.0 / o.p)
            gpu_w = (
                ctx.idle_w[pname][g0 : g1 + 1][None, :]
                + np.minimum(1.0, dev / e.period_ms) * ctx.busy_w[pname][g0 : g1 + 1][None, :]
            )
            cpu_w = (
                ctx.idle_w[cpu][c0 : c1 + 1][None, :]
                + np.minimum(1.0, host / e.period_ms)
                / max(ctx.cpu.cores, 1)
                * ctx.busy_w[cpu][c0 : c1 + 1][None, :]
            )
            power = static + gpu_w[:, :, None] + cpu_w[:, None, :]
        else:
            c0 = g0
            lat = (o.latency[:, g0 : g1 + 1] * f)[:, :, None]
            share = (o.cores_busy / max(o.processor.cores, 1))[:, None]
            busy = np.minimum(1.0, lat[:, :, 0] / e.period_ms) * share
            power = (
                static
                + ctx.idle_w[pname][g0 : g1 + 1][None, :]
                + busy * ctx.busy_w[pname][g0 : g1 + 1][None, :]
            )[:, :, None]
        power = power * ctx.power.correction
        k_n, _, n_c = lat.shape
        flat_lat, flat_pw = lat.reshape(k_n, -1), power.reshape(k_n, -1)
        feasible = flat_lat <= limit
        pick = np.where(
            feasible.any(axis=1),
            np.where(feasible, flat_pw, np.inf).argmin(axis=1),
            flat_lat.argmin(axis=1),
        )
        t, pw = flat_lat[np.arange(k_n), pick], flat_pw[np.arange(k_n), pick]
        score = (
            e.priority * lp.accuracy_weight * 100.0 * o.accuracy
            - lp.energy_weight * pw
            - LATENCY_PENALTY * np.maximum(0.0, t / limit - 1.0)
            - ACCURACY_PENALTY * 100.0 * np.maximum(0.0, e.min_accuracy - o.accuracy)
            - BUDGET_PENALTY * np.maximum(0.0, pw - budget_w)
        )
        gi, ci = np.divmod(pick, n_c)
        for k in np.flatnonzero(mask):
            cols = dict(idle_floor)
            cols[pname] = g0 + int(gi[k])
            if o.gpu and cpu is not None:
                cols[cpu] = c0 + int(ci[k])
            out.append((float(score[k]), pname, int(k), cols))
    out.sort(key=lambda c: -c[0])
    return out


def reference_score(policy, joint, lat, power, *, eff, limits, budget_w) -> float:
    levels = policy.ctx.config.levels
    total = energy_weight = 0.0
    for m, (p, k) in joint.rows.items():
        e, lp = eff[m], levels[eff[m].level]
        energy_weight = max(energy_weight, lp.energy_weight)
        acc = float(policy.ctx.options[m][p].accuracy[k])
        total += e.priority * lp.accuracy_weight * 100.0 * acc
        total -= LATENCY_PENALTY * max(0.0, lat[m] / limits[m] - 1.0)
        total -= ACCURACY_PENALTY * 100.0 * max(0.0, e.min_accuracy - acc)
    total -= energy_weight * power
    total -= BUDGET_PENALTY * max(0.0, power - budget_w)
    return total


def reference_search(policy, pools, *, eff, factor, caps, limits, budget_w):
    """The joint search as first written: every combination settled and scored in product
    order, the first best kept; also every combination's score."""
    models = list(policy.ctx.specs)
    best, best_joint, scores = -math.inf, None, []
    for combo in itertools.product(*pools):
        rows = {m: (c.processor, c.row) for m, c in zip(models, combo, strict=True)}
        cols = {p: max(c.cols[p] for c in combo) for p in caps}
        joint = Joint(rows, dict(cols))
        lat, _, limiting, _, power, _ = reference_predict(policy, joint, eff, factor)
        for _ in range(64 if policy.dvfs else 0):
            bumped = False
            for m in rows:
                p = limiting[m]
                if lat[m] > limits[m] and cols[p] < caps[p]:
                    cols[p] += 1
                    bumped = True
            if not bumped:
                break
            joint = Joint(rows, dict(cols))
            lat, _, limiting, _, power, _ = reference_predict(policy, joint, eff, factor)
        score = reference_score(
            policy, joint, lat, power, eff=eff, limits=limits, budget_w=budget_w
        )
        scores.append(score)
        if score > best:
            best, best_joint = score, joint
    return best_joint, best, scores


# ------------------------------------------------------------------------------- set-ups
def _manager(rng: random.Random, n_models: int, policy: str = "dynofa") -> RuntimeManager:
    specs = []
    for i in range(n_models):
        family = rng.choice([GPU_FAMILY, GPU_FAMILY, CPU_FAMILY])
        specs.append(
            ModelSpec(
                f"m{i}",
                family,
                latency_target_ms=rng.choice([20.0, 60.0, 150.0, 400.0]),
                frame_rate_hz=rng.choice([2.0, 7.5, 15.0]),
                min_accuracy=rng.choice([0.0, 0.0, 0.77]),
                priority=rng.choice([1.0, 2.0]),
                processors=rng.choice([None, None, ("cuda",), ("cpu",)])
                if family is GPU_FAMILY
                else None,
            )
        )
    config = ManagerConfig(candidates_per_model=rng.choice([2, 6]))
    mgr = RuntimeManager(specs, SimulatedXavierNX(seed=0), policy, config)
    if rng.random() < 0.5:  # a power correction other than 1
        mgr.context.power.observe(rng.uniform(3.0, 8.0), 5.0)
    return mgr


def _state(rng: random.Random, mgr: RuntimeManager):
    ctx = mgr.context
    factor = {(m, p): rng.uniform(0.6, 3.0) for m, opts in ctx.options.items() for p in opts}
    caps = {p.name: rng.randint(0, ctx.top_column(p.name)) for p in ctx.processors}
    if rng.random() < 0.5:
        caps = {p.name: ctx.top_column(p.name) for p in ctx.processors}
    eff = {
        m: Effective(
            latency_target_ms=rng.choice([15.0, 40.0, 80.0, 300.0]),
            period_ms=rng.choice([66.7, 133.3, 500.0]),
            min_accuracy=rng.choice([0.0, 0.76]),
            priority=rng.choice([1.0, 2.0]),
            level=rng.choice(list(PriorityLevel)),
        )
        for m in ctx.specs
    }
    budget_w = rng.choice([math.inf, math.inf, 4.5, 6.0])
    limits = {m: e.latency_target_ms * 0.9 for m, e in eff.items()}
    return factor, caps, eff, budget_w, limits


# ------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", range(4))
def test_prediction_is_the_reference_bit_for_bit(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        mgr = _manager(rng, rng.choice([1, 2, 3]))
        policy, ctx = mgr.policy, mgr.context
        factor, caps, eff, *_ = _state(rng, mgr)
        rows = {}
        for m, opts in ctx.options.items():
            p = rng.choice(list(opts))
            rows[m] = (p, rng.randrange(len(opts[p].member_ids)))
        cols = {p.name: rng.randint(0, ctx.top_column(p.name)) for p in ctx.processors}
        joint = Joint(rows, cols)
        got = policy.predict(joint, eff, factor)
        ref = reference_predict(policy, joint, eff, factor)
        assert (got.latency_ms, got.alone_ms, got.limiting, got.load) == ref[:4]
        assert (got.power_w, got.raw_power_w) == ref[4:]
        if len(rows) == 2:  # the unrolled pair, with and without settling
            (m0, (p0, k0)), (m1, (p1, k1)) = rows.items()
            r0 = pair_row(ctx, (ctx.options[m0][p0], k0, factor[m0, p0], eff[m0].period_ms, p0))
            r1 = pair_row(ctx, (ctx.options[m1][p1], k1, factor[m1, p1], eff[m1].period_ms, p1))
            lat0, lat1, raw = settle_pair(ctx, r0, r1, dict(cols), caps=None, lim0=1, lim1=1)
            assert (lat0, lat1, raw) == (ref[0][m0], ref[0][m1], ref[5])
            start = {p: min(c, caps[p]) for p, c in cols.items()}
            settled = dict(start)
            limits = {m0: rng.uniform(10, 200), m1: rng.uniform(10, 200)}
            lat0, lat1, raw = settle_pair(
                ctx, r0, r1, settled, caps=caps, lim0=limits[m0], lim1=limits[m1]
            )
            j, pred = policy._settle(rows, dict(start), eff, factor, caps=caps, limits=limits)
            assert settled == j.cols
            assert (lat0, lat1, raw) == (pred.latency_ms[m0], pred.latency_ms[m1], pred.raw_power_w)


@pytest.mark.parametrize("policy", ["dynofa", "switch-only", "dvfs-only"])
def test_standalone_ranking_is_the_reference(policy: str) -> None:
    rng = random.Random(policy)
    for _ in range(40):
        mgr = _manager(rng, rng.choice([1, 2]), policy)
        factor, caps, eff, budget_w, limits = _state(rng, mgr)
        for m in mgr.context.specs:
            ref = reference_rank(
                mgr.policy, m, eff[m], factor, caps, budget_w=budget_w, limit=limits[m]
            )
            kw = {"budget_w": budget_w, "limit": limits[m]}
            got = [tuple(c) for c in mgr.policy._rank(m, eff[m], factor, caps, **kw)]
            assert got == ref
            for top in (1, 2, 6):  # the pruned searches keep the head of the same list
                head = mgr.policy._rank(m, eff[m], factor, caps, top=top, **kw)
                assert [tuple(c) for c in head] == ref[:top]


@pytest.mark.parametrize("seed", range(3))
def test_joint_search_is_the_exhaustive_best_and_its_bounds_hold(seed: int) -> None:
    rng = random.Random(100 + seed)
    for _ in range(25):
        mgr = _manager(rng, rng.choice([2, 2, 3]), rng.choice(["dynofa", "switch-only"]))
        policy, ctx = mgr.policy, mgr.context
        factor, caps, eff, budget_w, limits = _state(rng, mgr)
        n = ctx.config.candidates_per_model
        pools = [
            policy._rank(m, eff[m], factor, caps, budget_w=budget_w, limit=limits[m], top=n)
            for m in ctx.specs
        ]
        joint, pred, score = policy._search(
            pools, eff, factor, caps=caps, limits=limits, budget_w=budget_w
        )
        ref_joint, ref_score, scores = reference_search(
            policy, pools, eff=eff, factor=factor, caps=caps, limits=limits, budget_w=budget_w
        )
        assert (joint, score) == (ref_joint, ref_score)
        assert pred.latency_ms == reference_predict(policy, joint, eff, factor)[0]
        if len(pools) == 2:
            assert policy.evaluated <= len(scores)
            models = list(ctx.specs)
            entries, energy_weight = [], 0.0
            for m, pool in zip(models, pools, strict=True):
                e, lp = eff[m], ctx.config.levels[eff[m].level]
                energy_weight = max(energy_weight, lp.energy_weight)
                entries.append([
                    ((ctx.options[m][c.processor], c.row, factor[m, c.processor], e.period_ms,
                      c.processor),
                     e.priority * lp.accuracy_weight * 100.0 * float(
                         ctx.options[m][c.processor].accuracy[c.row]),
                     0.0)
                    for c in pool
                ])  # fmt: skip
                for i, c in enumerate(pool):
                    acc = float(ctx.options[m][c.processor].accuracy[c.row])
                    pen = ACCURACY_PENALTY * 100.0 * max(0.0, e.min_accuracy - acc)
                    entries[-1][i] = (*entries[-1][i][:2], pen)
            prepared = [[pair_row(ctx, r) for r, _, _ in rl] for rl in entries]
            bounds = policy._pair_bounds(
                entries, prepared, pools, caps=caps, lims=[limits[m] for m in models],
                energy_weight=energy_weight, budget_w=budget_w,
            )  # fmt: skip
            assert bounds is not None
            assert all(b >= s for b, s in zip(bounds.tolist(), scores, strict=True))
