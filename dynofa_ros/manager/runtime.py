"""The runtime manager facade: inputs in, numbered decisions out, one policy inside.

The manager never acts on the platform: it reads its processors, frequency tables and
capabilities once, and returns :class:`~dynofa_ros.manager.types.Decision` values that the
caller (the ROS manager node, the perception runtime, ``dynofa simulate``) applies when allowed.
It is pure Python and deterministic: the same inputs at the same times give the same decisions.

Calling pattern: :meth:`RuntimeManager.observe` every reading as it arrives (telemetry, latency
observations, mission, requirements), and :meth:`RuntimeManager.step` either at every
observation (event-driven) or periodically. ``step`` plans only when something new arrived and
the policy's dwell time has passed since the last change, so calling it often is cheap.

Identity: every decision carries the manager's ``epoch`` (a random non-zero 64-bit incarnation
id, drawn at construction, on :meth:`RuntimeManager.set_policy` and on :meth:`RuntimeManager.reset`)
and a ``seq`` counting from 1 within it, so that a perception node follows a restarted manager or
a new policy at once (``msg/ReconfigurationCommand.msg`` has the rules). The epoch is the one
random part of a decision: pass ``epoch`` for reproducible ones.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from dynofa_ros.manager.config import ManagerConfig
from dynofa_ros.manager.context import Context
from dynofa_ros.manager.inputs import InputStore, Reading
from dynofa_ros.manager.model import Board
from dynofa_ros.manager.policy import Policy
from dynofa_ros.manager.registry import make_policy
from dynofa_ros.manager.types import (
    Choice,
    Decision,
    ManagerConfigError,
    ModelSpec,
    PowerReading,
    ProcessorLoad,
)
from dynofa_ros.platform.base import Platform, Telemetry

SEQ_MAX = 2**64 - 1  # seq and epoch are uint64 on the wire


def new_epoch() -> int:
    """A random non-zero 64-bit manager incarnation id (0 means "sent by hand")."""
    return secrets.randbits(64) or 1


class RuntimeManager:
    """Chooses, per perception model, the family member, processor, threads and frequencies.

    ``policy`` is a name from :data:`~dynofa_ros.manager.registry.POLICIES` or a
    :class:`~dynofa_ros.manager.policy.Policy` instance (not shared between managers).
    """

    def __init__(
        self,
        models: Sequence[ModelSpec],
        platform: Platform,
        policy: str | Policy = "dynofa",
        config: ManagerConfig | None = None,
        *,
        epoch: int | None = None,
    ) -> None:
        self.config = config or ManagerConfig()
        self.board = Board.from_platform(platform)
        self._models = tuple(models)
        self.context = Context(models, self.board, self.config)
        self.inputs = InputStore(models, self.board, self.config)
        self.plans = 0  # times the policy was asked for a plan
        self._start(policy, epoch)

    def _start(self, policy: str | Policy, epoch: int | None) -> None:
        """A new incarnation: a fresh policy, no decision in force, seq from 1 in a new epoch."""
        if epoch is not None and not 0 < epoch <= SEQ_MAX:
            raise ValueError(f"epoch {epoch} must be in 1..2^64-1")
        self.epoch = new_epoch() if epoch is None else int(epoch)
        self.policy = make_policy(policy) if isinstance(policy, str) else policy
        self.policy.bind(self.context)
        self._choices: dict[str, Choice] = {}
        self._current: dict[str, Decision] = {}
        self._seq = 0
        self._last_change_s = -math.inf
        self._dirty = True
        self._holding: tuple[str, ...] = ()
        self._resumed = False
        self._unheld: dict[str, Choice] = {}  # the choices in force before a hold began

    def set_policy(self, policy: str | Policy, *, epoch: int | None = None) -> None:
        """Decide with ``policy`` from now on, as a new incarnation (the next step decides for
        every model and the perception nodes take it at once); the inputs are kept."""
        self._start(policy, epoch)

    def reset(self, *, epoch: int | None = None) -> None:
        """Forget every input and decision (the clock jumped back: a bag loop) and start a new
        incarnation of the same policy."""
        self.inputs = InputStore(self._models, self.board, self.config)
        self._start(self.policy.name, epoch)

    # ---- read-only state --------------------------------------------------------------------
    @property
    def policy_name(self) -> str:
        return self.policy.name

    @property
    def warnings(self) -> Mapping[str, int]:
        """Ignored inputs so far, by ``"<field>: <why>"``."""
        return MappingProxyType(dict(self.inputs.warnings))

    @property
    def holding(self) -> tuple[str, ...]:
        """The stale inputs the manager is holding its decisions for (empty when planning)."""
        return self._holding

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.context.specs)

    def current(self, model: str) -> Decision | None:
        """The decision in force for ``model`` (``None`` before the first one)."""
        return self._current.get(model)

    # ---- inputs -----------------------------------------------------------------------------
    def observe(self, reading: Reading | Telemetry, now_s: float | None = None) -> bool:
        """Take one reading; ``False`` (and a counted warning) when it, or part of a telemetry
        snapshot, was rejected: NaN, negative, out of range, stale, unknown model / member /
        processor, older than the reading in force, or (given the receiver's clock ``now_s``)
        stamped further ahead of it than ``config.max_future_skew_s``."""
        if isinstance(reading, Telemetry):
            kept, offered = self.inputs.offer_telemetry(reading, now_s)
            ok = kept == offered
            if kept:
                self._dirty = True
            if reading.total_power_w is not None and ok:
                self.policy.observe_power(
                    PowerReading(reading.stamp_s, reading.total_power_w), self._choices
                )
            for name in reading.processors:
                proc = self.context.board.resolve(name)
                load = None if proc is None else self.inputs.load(proc.name, reading.stamp_s)
                if load is not None and load.stamp_s == reading.stamp_s:
                    self.policy.observe_load(load)
            return ok
        ok = self.inputs.offer(reading, now_s)
        if ok:
            self._dirty = True
            if isinstance(reading, PowerReading):
                self.policy.observe_power(reading, self._choices)
            elif isinstance(reading, ProcessorLoad):
                self.policy.observe_load(reading)
        return ok

    def foresee(self, schedule: Sequence[Any], origin_s: float = 0.0, lead_s: float = 0.0) -> None:
        """Hand a clairvoyant policy (``oracle``) the plan of the whole run; see
        :mod:`~dynofa_ros.manager.oracle`."""
        take = getattr(self.policy, "foresee", None)
        if take is None:
            raise ManagerConfigError(f"policy {self.policy.name!r} takes no schedule")
        take(schedule, origin_s, lead_s)
        self._dirty = True

    # ---- decisions --------------------------------------------------------------------------
    def step(self, now_s: float) -> list[Decision]:
        """Decisions that change something, each with a new sequence number (often none)."""
        if (
            isinstance(now_s, bool)
            or not isinstance(now_s, (int, float))
            or not math.isfinite(now_s)
        ):
            raise ValueError(f"step: now_s must be a finite time in seconds, got {now_s!r}")
        for obs in self.inputs.drain():
            self.policy.observe(obs, self.inputs, self._choices)
            d = self._current.get(obs.model)
            if d is not None and obs.command_seq == d.seq:  # it ran the decision in force
                self.policy.observe_clocks(obs, self._choices[obs.model])
        if self._choices:
            stale = tuple(n for n in self.policy.needs(self.inputs) if self.inputs.stale(n, now_s))
            if stale:
                return self._hold(stale, now_s)
            if self._holding:
                self._holding = ()
                self._dirty = True
                self._resumed = True  # a decision follows even if the configuration is the same
        if not self._dirty and not self.policy.due(now_s):
            return []
        if now_s - self._last_change_s < self.policy.dwell_s:
            return []
        self._dirty = False
        self.plans += 1
        plan = self.policy.plan(self.inputs, float(now_s), dict(self._choices))
        if plan is None and self._resumed:
            plan = self._unheld  # the policy keeps them: say so with their own reasons
        if plan is None:
            return []
        out: list[Decision] = []
        for model in self.context.specs:
            choice = plan[model]
            cur = self._choices.get(model)
            self._choices[model] = choice
            if cur is not None and cur.config == choice.config and not self._resumed:
                continue
            out.append(self._decide(model, choice, now_s))
        self._resumed = False
        if out:
            self._last_change_s = now_s
        return out

    def _decide(self, model: str, choice: Choice, now_s: float) -> Decision:
        if self._seq >= SEQ_MAX:  # never in practice; the wire's uint64 must not overflow
            self.epoch, self._seq = new_epoch(), 0
        self._seq += 1
        d = Decision.from_choice(self._seq, float(now_s), model, choice, self.epoch)
        self._current[model] = d
        return d

    def _hold(self, stale: tuple[str, ...], now_s: float) -> list[Decision]:
        """Keep the decisions in force while an input the policy needs is stale; say so once."""
        if stale == self._holding:
            return []
        if not self._holding:
            self._unheld = dict(self._choices)
        self._holding = stale
        why = (
            f"hold: {', '.join(stale)} stale (nothing for > {self.config.stale_after_s:g} s); "
            "keeping the last decision"
        )
        out = []
        for model, choice in self._choices.items():
            held = Choice(
                config=choice.config,
                predicted_latency_ms=choice.predicted_latency_ms,
                predicted_accuracy=choice.predicted_accuracy,
                predicted_power_w=choice.predicted_power_w,
                latency_target_ms=choice.latency_target_ms,
                reason=why,
                contention=choice.contention,
            )
            self._choices[model] = held
            out.append(self._decide(model, held, now_s))
        return out
