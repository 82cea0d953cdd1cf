"""``dynofa``: the hierarchical Dynamic-OFA manager (see :mod:`~dynofa_ros.manager.registry` for
what it decides and the baselines it is compared with)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from dynofa_ros.manager.context import Options
from dynofa_ros.manager.guards import BatterySaver, ThermalGuard, power_budget_w
from dynofa_ros.manager.inputs import Effective, InputStore
from dynofa_ros.manager.policy import Policy
from dynofa_ros.manager.predict import (
    ACCURACY_PENALTY,
    BUDGET_PENALTY,
    LATENCY_PENALTY,
    Joint,
    PairRow,
    Prediction,
    Row,
    pair_row,
    predict_rows,
    settle_pair,
)
from dynofa_ros.manager.types import Choice, LatencyObservation, ManagerConfigError, PriorityLevel
from dynofa_ros.platform.base import ProcessorKind


class _Candidate(NamedTuple):
    score: float  # standalone objective (accuracy points)
    processor: str
    row: int
    cols: Mapping[str, int]


class HostSpan(NamedTuple):
    """What the search of a GPU block needs over its (device x host) columns (``_span``)."""

    g0: int  # first device column
    c0: int  # first host (CPU) column
    n_c: int  # host columns
    offsets: np.ndarray  # each row's offset in the flattened (K, G, C) grid
    static_w: float  # board static power with the other processors idle
    dev: np.ndarray  # (K, G) device part, ms
    host: np.ndarray  # (K, C) host part, ms
    idle_g: np.ndarray
    busy_g: np.ndarray
    idle_c: np.ndarray
    busy_c: np.ndarray


class FlatSpan(NamedTuple):
    """What the search of a block without a host part needs over its columns (``_span``)."""

    g0: int  # first column
    offsets: np.ndarray  # each row's offset in the flattened (K, F) grid
    static_w: float
    latency: np.ndarray  # (K, F) ms
    share: np.ndarray  # (K, 1) busy cores over the processor's
    idle_g: np.ndarray
    busy_g: np.ndarray
    fastest: np.ndarray  # (K,) fastest column of each row: bounds the block (_rank)


Span = HostSpan | FlatSpan


class _Searched(NamedTuple):
    """One block searched by ``_rank``: its best cell per row and that cell's score."""

    processor: str
    with_host: bool
    offset: int  # the block's first row in the model's options
    valid: np.ndarray  # rows this policy may choose
    pick: np.ndarray  # per row, the best cell's flat index
    n_c: int
    g0: int
    c0: int
    score: np.ndarray


class DynOFA(Policy):
    """The hierarchical manager (see the module docstring); ``switching`` / ``mapping`` /
    ``dvfs`` switch its levels on and off for the ablations."""

    name = "dynofa"
    description = "hierarchical: member + mapping + DVFS, feedback-corrected"

    def __init__(self, switching: bool = True, mapping: bool = True, dvfs: bool = True) -> None:
        self.switching = switching
        self.mapping = mapping
        self.dvfs = dvfs

    def reset(self) -> None:
        self.thermal = ThermalGuard(self.ctx)
        self.battery = BatterySaver(self.ctx)
        self.last_prediction: Prediction | None = None
        self.signature: tuple[object, ...] | None = None
        self._needs = self._needed()  # (fixed while bound)
        self._floor_cache: dict[tuple[object, ...], tuple[float, float]] = {}
        self.evaluated = 0  # combinations the last joint search settled and scored
        self._prepare()

    def needs(self, inputs: InputStore) -> Iterable[str]:
        return self._needs

    def _needed(self) -> tuple[str, ...]:
        out = [f"observation[{m}]" for m in self.ctx.specs]
        for p in self.thermal.caps:
            zt = self.thermal.zone(p)
            if zt is not None:
                out.append(f"temperature[{zt[0]}]")
        out.append("battery")
        return tuple(out)

    # ---- candidates ------------------------------------------------------------------------
    def _prepare(self) -> None:
        """What the standalone search needs that never changes while bound: per model, the
        processors it may use with their allowed rows, those with a host part (GPU) first."""
        ctx = self.ctx
        self._masks: dict[tuple[str, str], np.ndarray | None] = {}
        self._blocks: dict[str, list[tuple[str, Options, int, np.ndarray]]] = {}
        self._span_cache: dict[tuple[str, str, tuple[tuple[int, int], ...]], Span] = {}
        self._score_cache: dict[
            tuple[object, ...], tuple[np.ndarray, np.ndarray, float, float]
        ] = {}
        for m, opts in ctx.options.items():
            blocks: list[tuple[str, Options, int, np.ndarray]] = []
            offset = 0
            for pname, o in opts.items():
                mask = self._mask(m, pname)
                self._masks[m, pname] = mask
                if mask is not None:
                    blocks.append((pname, o, offset, np.flatnonzero(mask)))
                offset += len(o.member_ids)
            self._blocks[m] = sorted(blocks, key=lambda b: not b[1].gpu)  # stable

    def _mask(self, model: str, processor: str) -> np.ndarray | None:
        st = self.ctx.static[model]
        o = self.ctx.options[model][processor]
        mask = np.ones(len(o.member_ids), dtype=bool)
        if not self.mapping:
            if processor != st.processor:
                return None
            if not o.gpu:
                mask &= o.threads == st.threads
        if not self.switching:
            mask &= np.array([m == st.member_id for m in o.member_ids])
        if not mask.any():
            return None
        mask.setflags(write=False)
        return mask

    def _allowed(self, model: str, processor: str) -> np.ndarray | None:
        """Rows of ``model`` on ``processor`` this policy may choose (``None``: none)."""
        return self._masks.get((model, processor))

    def _span(
        self,
        model: str,
        pname: str,
        o: Options,
        span: Mapping[str, tuple[int, int]],
        key: tuple[str, str, tuple[tuple[int, int], ...]],
    ) -> Span:
        """What the search of ``model`` on ``pname`` needs over the columns it may use
        (``span``, which changes only with the thermal caps): table slices, the board's static
        power with the other processors idle, the row offsets in the flattened grid."""
        hit = self._span_cache.get(key)
        if hit is not None:
            return hit
        ctx = self.ctx
        cpu = ctx.cpu_name
        g0, g1 = span[pname]
        static = ctx.power.board_static_w + sum(
            idle[span[q][0]]
            for q, _, _, idle, _ in ctx.power_rows
            if q != pname and not (o.gpu and q == cpu)
        )
        idle_g = ctx.idle_w[pname][g0 : g1 + 1][None, :]
        busy_g = ctx.busy_w[pname][g0 : g1 + 1][None, :]
        k_n = len(o.member_ids)
        if o.gpu and o.dev is not None and o.host is not None and cpu is not None:
            c0, c1 = span[cpu]
            c1 = min(c1, o.host.shape[1] - 1)
            c0 = min(c0, c1)
            n_c = c1 - c0 + 1
            hit = HostSpan(
                g0,
                c0,
                n_c,
                np.arange(k_n) * ((g1 - g0 + 1) * n_c),
                static,
                o.dev[:, g0 : g1 + 1],
                o.host[:, c0 : c1 + 1],
                idle_g,
                busy_g,
                ctx.idle_w[cpu][c0 : c1 + 1][None, :],
                ctx.busy_w[cpu][c0 : c1 + 1][None, :],
            )
        else:
            lat = o.latency[:, g0 : g1 + 1]
            hit = FlatSpan(
                g0,
                np.arange(k_n) * (g1 - g0 + 1),
                static,
                lat,
                (o.cores_busy / max(o.processor.cores, 1))[:, None],
                idle_g,
                busy_g,
                lat.min(axis=1),  # fastest column of each row: bounds the block (_rank)
            )
        if len(self._span_cache) > 512:
            self._span_cache.clear()
        self._span_cache[key] = hit
        return hit

    def _rank(  # noqa: PLR0915 - the vectorised standalone search, one pass over the grid (decision-time hot path)
        self,
        model: str,
        e: Effective,
        factor: Mapping[tuple[str, str], float],
        caps: Mapping[str, int],
        *,
        budget_w: float,
        limit: float,
        top: int | None = None,
    ) -> list[_Candidate]:
        """The ``top`` best allowed candidates of ``model`` (all when ``None``), best first,
        each alone on the board at its least-power feasible frequencies and scored;
        vectorised per processor over (candidate, f_gpu, f_cpu) grids.

        Exact shortcuts (the result is what the full search gives, bit for bit): a CPU block
        whose candidates cannot reach the ``top``-th best score found so far, even at their
        fastest column with no energy cost, is skipped; the GPU grid's p-th root is taken only
        where feasibility is too close to call, at the picked cells and on rows where nothing
        is feasible."""
        ctx = self.ctx
        lp = ctx.config.levels[e.level]
        cpu = ctx.cpu_name
        # columns this model's search may use: with DVFS everything up to the cap, else the cap
        span = {q: (0 if self.dvfs else caps[q], caps[q]) for q in caps}
        span_key = tuple(span.values())
        corr = ctx.power.correction
        period = e.period_ms
        ew = lp.energy_weight
        top_k = top or 0
        done: list[_Searched] = []
        best: list[float] = []  # exact scores of the allowed rows searched so far
        for pname, o, offset, valid in self._blocks[model]:
            key = (model, pname, e.priority, lp.accuracy_weight, e.min_accuracy)
            terms = self._score_cache.get(key)
            if terms is None:
                if len(self._score_cache) > 512:
                    self._score_cache.clear()
                acc = o.accuracy
                a_term = e.priority * lp.accuracy_weight * 100.0 * acc
                acc_pen = ACCURACY_PENALTY * 100.0 * np.maximum(0.0, e.min_accuracy - acc)
                terms = self._score_cache[key] = (
                    a_term,
                    acc_pen,
                    float(a_term.take(valid).max()),
                    float(acc_pen.take(valid).min()),
                )
            a_term, acc_pen = terms[0], terms[1]
            f = factor.get((model, pname), 1.0)
            sp = self._span(model, pname, o, span, (model, pname, span_key))
            k_n = len(o.member_ids)
            offs, static, idle_g, busy_g = sp.offsets, sp.static_w, sp.idle_g, sp.busy_g
            if isinstance(sp, HostSpan):
                with_host, g0, c0, n_c = True, sp.g0, sp.c0, sp.n_c
                idle_c, busy_c = sp.idle_c, sp.busy_c
                dev = sp.dev * f  # (K, G)
                host = sp.host * f  # (K, C)
                # latency (dev^p + host^p)^(1/p) on the (K, G, C) grid: feasible where the sum
                # is <= limit^p; the root is only taken when a sum is within a relative 1e-9
                # of it (far wider than pow's error), to decide as the root would
                inv_p = 1.0 / o.p
                flat_s = ((dev**o.p)[:, :, None] + (host**o.p)[:, None, :]).reshape(k_n, -1)
                lo = (limit * (1.0 - 1e-9)) ** o.p
                hi = (limit * (1.0 + 1e-9)) ** o.p
                flat_lat = None
                if lo > 0.0 and hi < math.inf:
                    feasible = flat_s <= lo
                    if np.count_nonzero(flat_s < hi) != np.count_nonzero(feasible):
                        flat_lat = flat_s**inv_p
                else:
                    flat_lat = flat_s**inv_p
                if flat_lat is not None:
                    feasible = flat_lat <= limit
                gpu_w = idle_g + np.minimum(1.0, dev / period) * busy_g
                cpu_w = idle_c + np.minimum(1.0, host / period) / ctx.cpu_cores * busy_c
                power = (static + gpu_w)[:, :, None] + cpu_w[:, None, :]  # (K, G, C)
            else:
                with_host, g0, c0, n_c = False, sp.g0, sp.g0, 1
                lat_v, share, fastest = sp.latency, sp.share, sp.fastest
                if 0 < top_k <= len(best):
                    # an upper bound of every score of the block: the best accuracy term, the
                    # least accuracy penalty, no energy cost, and the latency penalty of the
                    # fastest cell of any row (each rounding step goes the same way as in the
                    # exact score, so the bound holds in floating point too)
                    a_max, pen_min = terms[2], terms[3]
                    t_lb = float(fastest.take(valid).min()) * f
                    ub = a_max - LATENCY_PENALTY * max(0.0, t_lb / limit - 1.0) - pen_min
                    if ub < sorted(best)[-top_k]:
                        continue
                flat_lat = flat_s = lat_v * f  # (K, F)
                inv_p = 1.0
                busy = np.minimum(1.0, flat_lat / period) * share
                power = static + idle_g + busy * busy_g
                feasible = flat_lat <= limit
            flat_pw = power.reshape(k_n, -1)
            if corr != 1.0:  # (x * 1.0 is x)
                flat_pw = flat_pw * corr
            masked = np.where(feasible, flat_pw, np.inf)
            pick = masked.argmin(axis=1)
            pw = masked.take(offs + pick)
            bad = pw == np.inf  # (power itself is finite)
            if bad.any():  # rows where nothing meets the limit: the fastest cell
                rows = np.flatnonzero(bad)
                rl = flat_lat[rows] if flat_lat is not None else flat_s[rows] ** inv_p
                pick[rows] = rl.argmin(axis=1)
                pw = flat_pw.take(offs + pick)
            at = offs + pick
            t = flat_lat.take(at) if flat_lat is not None else flat_s.take(at) ** inv_p
            score = a_term - ew * pw - LATENCY_PENALTY * np.maximum(0.0, t / limit - 1.0)
            score = score - acc_pen
            if budget_w != math.inf:  # (x - 0.0 is x)
                score = score - BUDGET_PENALTY * np.maximum(0.0, pw - budget_w)
            done.append(_Searched(pname, with_host, offset, valid, pick, n_c, g0, c0, score))
            if top_k:
                best.extend(score.take(valid).tolist())
        if not done:
            return []
        if len(done) == 1:
            d = done[0]
            index, scores = d.offset + d.valid, d.score.take(d.valid)
        else:
            done.sort(key=lambda d: d.offset)  # the options' order: ties go to the earlier block
            index = np.concatenate([d.offset + d.valid for d in done])
            scores = np.concatenate([d.score.take(d.valid) for d in done])
        if top == 1:
            chosen = [int(scores.argmax())]
        else:
            # stable: equal scores keep the (processor, row) order
            order = np.argsort(-scores, kind="stable")
            chosen = (order if top is None else order[:top]).tolist()
        idle_floor = {q: span[q][0] for q in caps}  # unused processors idle at their lowest
        index_list = index.tolist()
        score_list = scores.tolist()
        out: list[_Candidate] = []
        for i in chosen:
            j = index_list[i]
            for d in reversed(done):
                if d.offset <= j:
                    break
            pname, with_host, offset, _, pick, n_c, g0, c0, _ = d
            k = j - offset
            gi, ci = divmod(int(pick[k]), n_c)
            cols = idle_floor.copy()
            cols[pname] = g0 + gi
            if with_host:
                assert cpu is not None
                cols[cpu] = c0 + ci
            out.append(_Candidate(score_list[i], pname, k, cols))
        return out

    # ---- joint ------------------------------------------------------------------------------
    def _score(
        self,
        joint: Joint,
        pred: Prediction,
        eff: Mapping[str, Effective],
        limits: Mapping[str, float],
        budget_w: float,
    ) -> float:
        cfg = self.ctx.config
        total = 0.0
        energy_weight = 0.0
        for m, (p, k) in joint.rows.items():
            e = eff[m]
            lp = cfg.levels[e.level]
            energy_weight = max(energy_weight, lp.energy_weight)
            acc = float(self.ctx.options[m][p].accuracy[k])
            total += e.priority * lp.accuracy_weight * 100.0 * acc
            total -= LATENCY_PENALTY * max(0.0, pred.latency_ms[m] / limits[m] - 1.0)
            total -= ACCURACY_PENALTY * 100.0 * max(0.0, e.min_accuracy - acc)
        total -= energy_weight * pred.power_w
        total -= BUDGET_PENALTY * max(0.0, pred.power_w - budget_w)
        return total

    def _settle(
        self,
        rows: Mapping[str, tuple[str, int]],
        cols: dict[str, int],
        eff: Mapping[str, Effective],
        factor: Mapping[tuple[str, str], float],
        *,
        caps: Mapping[str, int],
        limits: Mapping[str, float],
    ) -> tuple[Joint, Prediction]:
        """Raise the columns limiting a model that misses its limit (contention) until every
        model meets it or the caps are reached."""
        joint = Joint(rows, dict(cols))
        pred = self.predict(joint, eff, factor)
        if not self.dvfs or len(rows) == 1:
            return joint, pred
        for _ in range(64):
            bumped = False
            for m in rows:
                if pred.latency_ms[m] > limits[m]:
                    p = pred.limiting[m]
                    if cols[p] < caps[p]:
                        cols[p] += 1
                        bumped = True
            if not bumped:
                break
            joint = Joint(rows, dict(cols))
            pred = self.predict(joint, eff, factor)
        return joint, pred

    def _pair_bounds(
        self,
        entries: Sequence[Sequence[tuple[Row, float, float]]],
        prepared: Sequence[Sequence[PairRow]],
        pools: Sequence[Sequence[_Candidate]],
        *,
        caps: Mapping[str, int],
        lims: Sequence[float],
        energy_weight: float,
        budget_w: float,
    ) -> np.ndarray | None:
        """For every pair of candidates (product order), an upper bound of the score the joint
        search gives it, or ``None`` when one is not a number.

        Settling only raises columns from the pair's start, up to the caps, and contention only
        slows models down, so: each model's latency is at least its latency alone at the
        fastest columns the caps allow (with a relative 1e-9 margin for ``pow``), and each
        processor's power at least its least idle and full-load power at or above the start
        column, with the loads those latencies give. Every step rounds the way the exact score
        does (sums and products of non-negative terms, in the same order), so the bound holds
        in floating point."""
        ctx = self.ctx
        cpu = ctx.cpu_name
        cache = self._floor_cache
        n_q = len(ctx.power_rows)
        parts = []
        for i, (row_list, prep, pool) in enumerate(zip(entries, prepared, pools, strict=True)):
            a: list[float] = []
            lat_pen: list[float] = []
            pen: list[float] = []
            loads: list[list[float]] = [[] for _ in range(n_q)]
            for (row, a_j, pen_j), pr in zip(row_list, prep, strict=True):
                o, k, f, period, p = row
                host = pr[1]
                hc = min(caps[cpu] if cpu is not None else 0, pr[2])
                key = (o.key, k, caps[p], hc)
                mins = cache.get(key)
                if mins is None:
                    if len(cache) > 4096:
                        cache.clear()
                    mins = cache[key] = (
                        min(pr[0][: caps[p] + 1]),
                        min(host[: hc + 1]) if host is not None else 0.0,
                    )
                d = mins[0] * f
                if host is not None:
                    h = mins[1] * f
                    lat = (d**o.p + h**o.p) ** o.inv_p * (1.0 - 1e-9)
                else:
                    lat = d
                a.append(a_j)
                pen.append(pen_j)
                lat_pen.append(LATENCY_PENALTY * max(0.0, lat / lims[i] - 1.0))
                u = min(1.0, lat / period)
                for q, flag in enumerate(pr[10]):
                    loads[q].append(
                        u * pr[8] / ctx.power_rows[q][2] if flag == 1 else (u if flag else 0.0)
                    )
            starts = [[c.cols[q[0]] for c in pool] for q in ctx.power_rows]
            parts.append((a, lat_pen, pen, loads, starts))
        (a0, l0, p0, u0, s0), (a1, l1, p1, u1, s1) = parts
        t0 = np.array([(x - y) - z for x, y, z in zip(a0, l0, p0, strict=True)])  # 0.0 + a is a
        total = ((t0[:, None] + np.array(a1)) - np.array(l1)) - np.array(p1)
        raw: np.ndarray | float = ctx.power.board_static_w
        for q, (name, _, _, _, _) in enumerate(ctx.power_rows):
            idle, busy_w = ctx.power_floor[name]
            start = np.maximum(np.array(s0[q])[:, None], np.array(s1[q]))
            busy = np.array(u0[q])[:, None] + np.array(u1[q])
            raw = raw + (idle.take(start) + np.minimum(1.0, busy) * busy_w.take(start))
        power = np.asarray(raw) * ctx.power.correction
        total = total - energy_weight * power
        if budget_w != math.inf:
            total = total - BUDGET_PENALTY * np.maximum(0.0, power - budget_w)
        out = total.ravel()
        return None if np.isnan(out).any() else out

    def _search(  # noqa: PLR0915 - the joint search with its unrolled two-model path (decision-time hot path)
        self,
        pools: Sequence[Sequence[_Candidate]],
        eff: Mapping[str, Effective],
        factor: Mapping[tuple[str, str], float],
        *,
        caps: Mapping[str, int],
        limits: Mapping[str, float],
        budget_w: float,
    ) -> tuple[Joint, Prediction, float]:
        """Several models: every combination of their best standalone candidates, started at
        the highest columns any of them needs, settled (:meth:`_settle`) and scored
        (:meth:`_score`); the first best in ``itertools.product`` order wins. The same
        arithmetic as :meth:`_settle` / :meth:`_score` on plain lists (:func:`predict_rows`).

        Two models (the common case, and the costly one): unrolled (:func:`settle_pair`), and
        pairs are settled in decreasing order of an upper bound of their score
        (:meth:`_pair_bounds`), stopping when the bound falls below the best score found: the
        pairs left could not win, so the choice is the exhaustive search's."""
        ctx = self.ctx
        cfg = ctx.config
        models = list(ctx.specs)
        corr = ctx.power.correction
        lims = [limits[m] for m in models]
        energy_weight = 0.0
        entries: list[list[tuple[Row, float, float]]] = []
        for m, pool in zip(models, pools, strict=True):
            e = eff[m]
            lp = cfg.levels[e.level]
            energy_weight = max(energy_weight, lp.energy_weight)
            row_list = []
            for c in pool:
                o = ctx.options[m][c.processor]
                acc = float(o.accuracy[c.row])
                row_list.append(
                    (
                        Row(o, c.row, factor.get((m, c.processor), 1.0), e.period_ms, c.processor),
                        e.priority * lp.accuracy_weight * 100.0 * acc,
                        ACCURACY_PENALTY * 100.0 * max(0.0, e.min_accuracy - acc),
                    )
                )
            entries.append(row_list)
        settle = self.dvfs
        best_score = -math.inf
        best: tuple[tuple[int, ...], dict[str, int]] | None = None
        self.evaluated = 0
        if len(models) == 2:
            lim0, lim1 = lims
            caps_or_none = caps if settle else None
            prepared = [[pair_row(ctx, r) for r, _, _ in row_list] for row_list in entries]
            n1 = len(pools[1])
            bound = self._pair_bounds(
                entries, prepared, pools, caps=caps, lims=lims, energy_weight=energy_weight,
                budget_w=budget_w,
            )  # fmt: skip
            if bound is None:
                order: Iterable[int] = range(len(pools[0]) * n1)
                bounds: list[float] = []
            else:
                order = np.argsort(-bound, kind="stable").tolist()
                bounds = bound.tolist()
            best_index = -1
            evaluated = 0
            for index in order:
                if bounds and bounds[index] < best_score:
                    break  # this and every later combination scores less than the best
                evaluated += 1
                j0, j1 = divmod(index, n1)
                _, a0, pen0 = entries[0][j0]
                _, a1, pen1 = entries[1][j1]
                cols0 = pools[0][j0].cols
                cols1 = pools[1][j1].cols
                cols = {p: max(cols0[p], cols1[p]) for p in caps}
                lat0, lat1, raw = settle_pair(
                    ctx, prepared[0][j0], prepared[1][j1], cols, caps=caps_or_none,
                    lim0=lim0, lim1=lim1,
                )  # fmt: skip
                power = raw * corr
                total = 0.0
                total += a0
                total -= LATENCY_PENALTY * max(0.0, lat0 / lim0 - 1.0)
                total -= pen0
                total += a1
                total -= LATENCY_PENALTY * max(0.0, lat1 / lim1 - 1.0)
                total -= pen1
                total -= energy_weight * power
                total -= BUDGET_PENALTY * max(0.0, power - budget_w)
                # the first best in product order, whatever the order of evaluation
                if total > best_score or (total == best_score and index < best_index):
                    best_score, best_index, best = total, index, ((j0, j1), cols)
            self.evaluated = evaluated
            assert best is not None
        combos = () if best is not None else itertools.product(*(range(len(p)) for p in pools))
        for combo in combos:
            self.evaluated += 1
            chosen = [entries[i][j] for i, j in enumerate(combo)]
            sel = [c[0] for c in chosen]
            cands = [pools[i][j] for i, j in enumerate(combo)]
            cols = {p: max(c.cols[p] for c in cands) for p in caps}
            lat, _, limiting, _, raw = predict_rows(ctx, sel, cols)
            if settle:
                for _ in range(64):
                    bumped = False
                    for i, p in enumerate(limiting):
                        if lat[i] > lims[i] and cols[p] < caps[p]:
                            cols[p] += 1
                            bumped = True
                    if not bumped:
                        break
                    lat, _, limiting, _, raw = predict_rows(ctx, sel, cols)
            power = raw * corr
            total = 0.0
            for i, (_, a, acc_penalty) in enumerate(chosen):
                total += a
                total -= LATENCY_PENALTY * max(0.0, lat[i] / lims[i] - 1.0)
                total -= acc_penalty
            total -= energy_weight * power
            total -= BUDGET_PENALTY * max(0.0, power - budget_w)
            if total > best_score:
                best_score, best = total, (combo, cols)
        assert best is not None
        combo, cols = best
        rows = {
            m: (pools[i][j].processor, pools[i][j].row)
            for i, (m, j) in enumerate(zip(models, combo, strict=True))
        }
        joint = Joint(rows, cols)
        return joint, self.predict(joint, eff, factor), best_score

    def observe_clocks(self, obs: LatencyObservation, ran_under: Choice) -> None:
        """A clock below the one this policy pinned is a cap the board put there (thermal or
        power limits nobody told the manager): :meth:`ThermalGuard.note_clock`."""
        c, board = ran_under.config, self.ctx.board
        for kind, pinned, ran in (
            (ProcessorKind.CPU, c.cpu_frequency_khz, obs.cpu_frequency_khz),
            (ProcessorKind.GPU, c.gpu_frequency_khz, obs.gpu_frequency_khz),
        ):
            proc = board.first(kind)
            if proc is not None and ran:
                self.thermal.note_clock(proc.name, pinned, int(ran), obs.stamp_s)

    def plan(
        self, inputs: InputStore, now_s: float, current: Mapping[str, Choice]
    ) -> dict[str, Choice] | None:
        ctx = self.ctx
        cfg = ctx.config
        saving = self.battery.update(inputs, now_s)
        eff = self.effective(inputs, cfg.saving_level if saving else None)
        power_mode = cfg.saving_power_mode if saving else None
        factor = self.factors(now_s)
        cur_joint = self.joint_of(current) if current else None
        running = dict(cur_joint.cols) if cur_joint is not None else {}
        self.thermal.update(inputs, now_s, running)
        caps = self.thermal.effective(now_s)
        budget_w = power_budget_w(inputs, now_s)
        limits = {m: e.latency_target_ms * (1.0 - cfg.latency_margin) for m, e in eff.items()}
        keep = {m: e.latency_target_ms * (1.0 - cfg.keep_margin) for m, e in eff.items()}

        models = list(ctx.specs)
        top = 1 if len(models) == 1 else cfg.candidates_per_model
        ranked = {
            m: self._rank(m, eff[m], factor, caps, budget_w=budget_w, limit=limits[m], top=top)
            for m in models
        }
        for m, r in ranked.items():
            if not r:
                raise ManagerConfigError(f"model {m}: no candidate allowed by policy {self.name}")
        if len(models) == 1:
            m = models[0]
            c = ranked[m][0]
            best_joint, best_pred = self._settle(
                {m: (c.processor, c.row)}, dict(c.cols), eff, factor, caps=caps, limits=limits
            )
            best_score = self._score(best_joint, best_pred, eff, limits, budget_w)
        else:
            best_joint, best_pred, best_score = self._search(
                [ranked[m] for m in models], eff, factor, caps=caps, limits=limits,
                budget_w=budget_w,
            )  # fmt: skip

        # hysteresis: keep the current configuration unless the new one is clearly better;
        # not after the requirements changed (level, targets, saving mode, budget, caps): the
        # hysteresis absorbs measurement noise, a new requirement is served at once
        signature = (tuple(sorted(eff.items())), saving, budget_w, tuple(sorted(caps.items())))
        changed, self.signature = signature != self.signature, signature
        if (
            not changed
            and cur_joint is not None
            and all(cur_joint.cols[p] <= caps[p] for p in caps)
        ):
            allowed = all(
                (mask := self._allowed(m, p)) is not None and bool(mask[k])
                for m, (p, k) in cur_joint.rows.items()
            )
            same_mode = all(ch.config.power_mode == power_mode for ch in current.values())
            if allowed and same_mode:
                if best_joint == cur_joint:  # (same joint, same inputs: same prediction)
                    self.last_prediction = best_pred
                    return None
                cur_pred = self.predict(cur_joint, eff, factor)
                cur_score = self._score(cur_joint, cur_pred, eff, keep, budget_w)
                if best_joint == cur_joint or best_score < cur_score + cfg.switch_gain:
                    self.last_prediction = cur_pred
                    return None
        self.last_prediction = best_pred
        reasons = self._reasons(
            best_joint,
            best_pred,
            eff,
            limits=limits,
            factor=factor,
            saving=saving,
            budget_w=budget_w,
            caps=caps,
        )
        return self.choices(best_joint, eff, best_pred, reasons, power_mode=power_mode, pin=True)

    def _reasons(
        self,
        joint: Joint,
        pred: Prediction,
        eff: Mapping[str, Effective],
        *,
        limits: Mapping[str, float],
        factor: Mapping[tuple[str, str], float],
        saving: bool,
        budget_w: float,
        caps: Mapping[str, int],
    ) -> dict[str, str]:
        ctx = self.ctx
        cfg = ctx.config
        notes: list[str] = []
        if saving:
            soc = self.battery.soc
            notes.append(
                f"battery {0 if soc is None else soc * 100:.0f}% < {cfg.battery_low * 100:.0f}%: "
                f"saving mode ({cfg.saving_level.name})"
            )
        for p in self.thermal.capped():
            notes.append(f"thermal cap {p} {ctx.tables[p][caps[p]] / 1000:g} MHz")
        if math.isfinite(budget_w):
            notes.append(f"budget {budget_w:.1f} W")
        freq = ", ".join(
            f"{p.name} {ctx.tables[p.name][joint.cols[p.name]] / 1000:g} MHz"
            for p in ctx.processors
            if ctx.settable(p.name)
        )
        out: dict[str, str] = {}
        for m, (p, k) in joint.rows.items():
            o = ctx.options[m][p]
            what = o.member_ids[k] + (f" x{int(o.threads[k])}" if not o.gpu else "")
            parts = [
                f"{self.name}: {what} on {p} ({100 * float(o.accuracy[k]):.1f}%), {freq}",
                f"predicted {pred.latency_ms[m]:.1f} ms for {eff[m].latency_target_ms:g} ms",
            ]
            if pred.latency_ms[m] > limits[m]:
                parts.append("nothing meets the target: least violating")
            k_f = factor.get((m, p), 1.0)
            if k_f > cfg.interference_ratio:
                parts.append(f"interference x{k_f:.2f} on {p}")
            if eff[m].level is not PriorityLevel.NORMAL:
                parts.append(f"level {eff[m].level.name}")
            out[m] = "; ".join(parts + notes)
        return out
