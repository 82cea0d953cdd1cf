"""Matplotlib figures of the report (Agg backend; no display needed)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from dynofa_ros.evaluation.metrics import ORACLE_POLICY, Relative, RunMetrics
from dynofa_ros.evaluation.records import FrameRecord, RunResults, Sample, subnets_of

MODEL_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
RUN_COLORS = (
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
)
EVENT_COLORS = {"priority": "#7b3294", "corunner": "#e66101", "battery_threshold": "#1a9641"}
MISS_COLOR = "#d62728"


def _step(ax: Any, t: Sequence[float], v: Sequence[float], **kw: Any) -> None:
    if len(t):
        ax.step(t, v, where="post", **kw)


def _from_zero(ax: Any) -> None:
    """y from 0 with headroom above the highest value (lines never sit on the frame)."""
    lines = [ln for ln in ax.get_lines() if len(ln.get_ydata())]
    top = max((float(np.nanmax(np.asarray(ln.get_ydata(), float))) for ln in lines), default=1.0)
    ax.set_ylim(0, top * 1.12 if top > 0 else 1.0)


def _throttle_spans(run: RunResults) -> list[tuple[float, float]]:
    samples = sorted(run.series("throttled"), key=lambda s: s.t_s)
    spans: list[tuple[float, float]] = []
    end_of_run = run.duration_s
    for a, b in zip(samples, [*samples[1:], None], strict=False):
        if a.value > 0.5:
            spans.append((a.t_s, b.t_s if b is not None else max(end_of_run, a.t_s)))
    if not samples:
        frames = sorted((f for f in run.frames if f.throttled is not None), key=lambda f: f.t_s)
        for fa, fb in zip(frames, [*frames[1:], None], strict=False):
            if fa.throttled:
                spans.append((fa.t_s, fb.t_s if fb is not None else fa.t_s))
    return spans


def subnet_order(run: RunResults) -> tuple[list[str], list[str], bool]:
    """Sub-networks used in ``run``, fastest first, with their tick labels, and whether the
    order is the family's (``RunInfo.extra["subnets"]``) rather than the observed latency's."""
    used: dict[str, list[float]] = {}
    for f in run.frames:
        used.setdefault(f.subnet_id or "?", []).append(f.latency_ms)
    known = [s for s in subnets_of(run.info) if s["id"] in used]
    info = {s["id"]: s for s in known}
    rest = sorted(
        (sid for sid in used if sid not in info), key=lambda sid: float(np.median(used[sid]))
    )
    order = [s["id"] for s in known] + rest

    def label(sid: str) -> str:
        text = sid[:12]
        acc = info.get(sid, {}).get("accuracy")
        return f"{text} ({100 * acc:.1f}%)" if isinstance(acc, int | float) else text

    return order, [label(sid) for sid in order], bool(known) and not rest


def timeline(run: RunResults) -> Any:
    models = run.models
    frames = {m: sorted(run.frames_of(m), key=lambda f: f.t_s) for m in models}
    all_frames = sorted(run.frames, key=lambda f: f.t_s)
    temps = sorted({s.series for s in run.samples if s.series.startswith("temperature/")})
    ambient = run.series("ambient")
    battery = sorted(run.series("battery"), key=lambda s: s.t_s)
    panels = ["subnet"]
    if any(f.processor for f in all_frames):
        panels.append("setting")
    panels.append("latency")
    if any(f.cpu_frequency_khz or f.gpu_frequency_khz for f in all_frames) or any(
        f.power_mode is not None for f in all_frames
    ):
        panels.append("freq")
    board_power = sorted(run.series("power"), key=lambda s: s.t_s)
    if board_power or any(f.power_w is not None for f in all_frames):
        panels.append("power")
    if temps or ambient or any(f.max_temperature_c is not None for f in all_frames):
        panels.append("temp")
    if battery or any(f.battery is not None for f in all_frames):
        panels.append("battery")
    heights = {
        "subnet": 1.6,
        "setting": 1.0,
        "latency": 2.4,
        "freq": 1.5,
        "power": 1.4,
        "temp": 1.5,
        "battery": 1.3,
    }
    fig, axes = plt.subplots(
        len(panels),
        1,
        sharex=True,
        figsize=(12, 0.9 + sum(heights[p] for p in panels)),
        gridspec_kw={"height_ratios": [heights[p] for p in panels]},
        squeeze=False,
    )
    ax_of = dict(zip(panels, axes[:, 0], strict=True))
    color = {m: MODEL_COLORS[i % len(MODEL_COLORS)] for i, m in enumerate(models)}

    sub_labels = _subnet_panel(ax_of["subnet"], run, models, frames, color)
    if "setting" in ax_of:
        _settings_panel(ax_of["setting"], models, frames, color)
    _latency_panel(ax_of["latency"], models, frames, all_frames, color)
    if "freq" in ax_of:
        _freq_panel(ax_of["freq"], all_frames)
    if "power" in ax_of:
        _power_panel(ax_of["power"], models, frames, board_power, color)
    if "temp" in ax_of:
        _temperature_panel(ax_of["temp"], run, temps, ambient, all_frames)
    if "battery" in ax_of:
        _battery_panel(ax_of["battery"], battery, all_frames)
    _finish(fig, axes, run, all_frames, sub_labels)
    return fig


Frames = dict[str, list[FrameRecord]]


def _subnet_panel(ax: Any, run: RunResults, models: list[str], frames: Frames,
                  color: dict[str, str]) -> list[str]:  # fmt: skip
    """Sub-networks over time; returns their tick labels."""
    # sub-network: the family's order (fast at the bottom) when the run names it, else by the
    # median latency observed
    order, labels, known_order = subnet_order(run)
    index = {sid: i for i, sid in enumerate(order)}
    for m in models:
        fs = frames[m]
        _step(
            ax,
            [f.t_s for f in fs],
            [index[f.subnet_id or "?"] for f in fs],
            color=color[m],
            lw=1.6,
            label=m,
        )
    ax.set_yticks(range(len(order)))
    step = max(1, math.ceil(len(order) / 10))
    ax.set_yticklabels([lab if i % step == 0 else "" for i, lab in enumerate(labels)], fontsize=7)
    ax.set_ylabel(
        "sub-network\n" + ("(fast → slow)" if known_order else "(by median latency)"), fontsize=8
    )
    ax.set_ylim(-0.5, max(len(order) - 0.5, 0.5))
    return labels


def _latency_panel(ax: Any, models: list[str], frames: Frames, all_frames: list[FrameRecord],
                   color: dict[str, str]) -> None:  # fmt: skip
    # latency vs target, misses marked; the scale (1.35 x the target, 1.3 x the 90th percentile)
    # keeps the target readable, frames above it are drawn as triangles on the top edge
    top = 0.0
    for m in models:
        fs = frames[m]
        t = [f.t_s for f in fs]
        lat = [f.latency_ms for f in fs]
        ax.plot(t, lat, color=color[m], lw=1.0, marker=".", ms=3, label=f"{m} latency")
        tg = [(f.t_s, f.target_ms) for f in fs if f.target_ms is not None]
        if tg:
            _step(
                ax,
                [a for a, _ in tg],
                [b for _, b in tg],
                color=color[m],
                lw=1.4,
                ls="--",
                label=f"{m} target",
            )
            top = max(top, max(b for _, b in tg) * 1.35)
        miss = [f for f in fs if f.deadline_missed]
        if miss:
            ax.plot(
                [f.t_s for f in miss],
                [f.latency_ms for f in miss],
                ls="none",
                marker="x",
                ms=5,
                color=MISS_COLOR,
                label=f"{m} missed ({len(miss)})",
            )
        if lat:
            top = max(top, float(np.percentile(lat, 90)) * 1.3)
    if top <= 0:
        top = max((f.latency_ms for f in all_frames), default=1.0) * 1.1 or 1.0
    for m in models:
        above = [f for f in frames[m] if f.latency_ms > top]
        if above:
            ax.plot(
                [f.t_s for f in above],
                [top * 0.97] * len(above),
                ls="none",
                marker="^",
                ms=6,
                color=color[m],
                markeredgecolor=MISS_COLOR,
                label=f"{m} > {top:.0f} ms ({len(above)})",
            )
    ax.set_ylim(0, top)
    ax.set_ylabel("latency (ms)", fontsize=8)


def _freq_panel(ax: Any, all_frames: list[FrameRecord]) -> None:
    t = [f.t_s for f in all_frames]
    cpu = [f.cpu_frequency_khz / 1000 for f in all_frames]
    gpu = [f.gpu_frequency_khz / 1000 for f in all_frames]
    if any(cpu):
        _step(ax, t, cpu, color="#ff7f0e", lw=1.4, label="CPU")
    if any(gpu):
        _step(ax, t, gpu, color="#17becf", lw=1.4, label="GPU")
    ax.set_ylabel("frequency\n(MHz)", fontsize=8)
    _from_zero(ax)
    _power_mode_marks(ax, all_frames)


def _power_panel(ax: Any, models: list[str], frames: Frames, board_power: list[Sample],
                 color: dict[str, str]) -> None:  # fmt: skip
    for m in models:
        fs = [f for f in frames[m] if f.power_w is not None]
        ax.plot([f.t_s for f in fs], [f.power_w for f in fs], color=color[m], lw=1.0, label=f"{m}")
    if board_power:
        ax.plot(
            [s.t_s for s in board_power],
            [s.value for s in board_power],
            color="black",
            lw=1.0,
            alpha=0.7,
            label="board",
        )
    ax.set_ylabel("power (W)", fontsize=8)
    _from_zero(ax)


def _temperature_panel(ax: Any, run: RunResults, temps: list[str], ambient: list[Sample],
                       all_frames: list[FrameRecord]) -> None:  # fmt: skip
    for i, series in enumerate(temps):
        ss = sorted(run.series(series), key=lambda s: s.t_s)
        ax.plot(
            [s.t_s for s in ss],
            [s.value for s in ss],
            lw=1.2,
            color=plt.cm.autumn(i / max(1, len(temps))),
            label=series.split("/", 1)[1],
        )
    if not temps:
        fs = [f for f in all_frames if f.max_temperature_c is not None]
        ax.plot(
            [f.t_s for f in fs],
            [f.max_temperature_c for f in fs],
            lw=1.2,
            color="#d62728",
            label="max",
        )
    if ambient:
        ss = sorted(ambient, key=lambda s: s.t_s)
        ax.plot(
            [s.t_s for s in ss],
            [s.value for s in ss],
            lw=1.0,
            ls="--",
            color="grey",
            label="ambient",
        )
    spans = _throttle_spans(run)
    for i, (a, b) in enumerate(spans):
        ax.axvspan(a, b, color=MISS_COLOR, alpha=0.15, lw=0, label="throttled" if i == 0 else None)
    ax.set_ylabel("temperature\n(°C)", fontsize=8)


def _battery_panel(ax: Any, battery: list[Sample], all_frames: list[FrameRecord]) -> None:
    if battery:
        ax.plot(
            [s.t_s for s in battery],
            [100 * s.value for s in battery],
            color="#2ca02c",
            lw=1.4,
            label="state of charge",
        )
    else:
        fs = [f for f in all_frames if f.battery is not None]
        ax.plot(
            [f.t_s for f in fs],
            [100 * f.battery for f in fs if f.battery is not None],
            color="#2ca02c",
            lw=1.4,
            label="state of charge",
        )
    ax.set_ylabel("battery (%)", fontsize=8)
    ax.set_ylim(0, 105)


def _finish(fig: Any, axes: Any, run: RunResults, all_frames: list[FrameRecord],
            sub_labels: list[str]) -> None:  # fmt: skip
    """Events on every panel, legends, limits, title and margins."""
    # events: vertical lines on every panel, labels above the top panel
    events = sorted(run.events, key=lambda e: e.t_s)
    for ax in axes[:, 0]:
        for ev in events:
            ax.axvline(ev.t_s, color=EVENT_COLORS.get(ev.kind, "black"), lw=1.0, ls=":", alpha=0.9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(
                handles,
                labels,
                loc="upper left",
                bbox_to_anchor=(1.005, 1.0),
                fontsize=7,
                frameon=False,
                borderaxespad=0,
            )
    top_ax = axes[0, 0]
    duration = max(run.duration_s, max((f.t_s for f in all_frames), default=0.0), 1e-3)
    top_ax.set_xlim(0, duration)
    for i, ev in enumerate(events):
        top_ax.annotate(
            ev.label,
            xy=(ev.t_s, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, 2 + 9 * (i % 3)),
            textcoords="offset points",
            fontsize=7,
            color=EVENT_COLORS.get(ev.kind, "black"),
            annotation_clip=False,
        )
    axes[-1, 0].set_xlabel("time (s)", fontsize=9)
    title = run.info.name + (f" — scenario {run.info.scenario}" if run.info.scenario else "")
    fig.suptitle(title, fontsize=11, x=0.02, ha="left")
    # room on the left for the longest sub-network tick label and the axis label (7 pt text)
    longest = max((len(lab) for lab in sub_labels), default=0)
    fig.subplots_adjust(
        left=min(0.3, max(0.115, (0.7 + 0.06 * longest) / fig.get_figwidth())),
        right=0.84,
        top=1 - 0.75 / fig.get_figheight(),
        bottom=0.45 / fig.get_figheight(),
        hspace=0.12,
    )


def _settings_panel(
    ax: Any, models: list[str], frames: dict[str, list[Any]], color: dict[str, str]
) -> None:
    """Processor and CPU threads per model as a categorical step (cuda rows above cpu rows)."""

    def label(f: Any) -> str:
        proc = f.processor or "?"
        return f"{proc} ×{f.threads}" if proc == "cpu" and f.threads else proc

    rows = sorted(
        {label(f) for m in models for f in frames[m]},
        key=lambda r: (not r.startswith("cpu"), r.startswith("?"), len(r), r),
    )
    index = {r: i for i, r in enumerate(rows)}
    for m in models:
        fs = frames[m]
        _step(ax, [f.t_s for f in fs], [index[label(f)] for f in fs], color=color[m], lw=1.6,
              label=m)  # fmt: skip
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=7)
    ax.set_ylim(-0.5, max(len(rows) - 0.5, 0.5))
    ax.set_ylabel("processor\n(threads)", fontsize=8)


def _power_mode_marks(ax: Any, frames: list[Any]) -> None:
    """Power mode (nvpmodel id) written at the start and at each change."""
    last: int | None = None
    for f in frames:
        if f.power_mode is None or f.power_mode == last:
            continue
        last = f.power_mode
        ax.axvline(f.t_s, color="#555555", lw=0.8, ls="-.", alpha=0.6)
        ax.annotate(
            f"power mode {f.power_mode}",
            xy=(f.t_s, 0.04),
            xycoords=("data", "axes fraction"),
            xytext=(3, 0),
            textcoords="offset points",
            fontsize=7,
            color="#333333",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )


def short_names(metrics: Sequence[RunMetrics]) -> list[str]:
    """Run names for tick labels: without the shared ``<scenario>-`` prefix, wrapped."""
    names = [m.name for m in metrics]
    scenarios = {m.scenario for m in metrics}
    if len(scenarios) == 1:
        prefix = f"{next(iter(scenarios))}-"
        if prefix != "-" and all(n.startswith(prefix) and len(n) > len(prefix) for n in names):
            names = [n[len(prefix) :] for n in names]
    # characters that fit under one bar of a comparison panel (13 in wide, 3 panels, 8 pt text)
    width = max(6, int(13 / 3 / max(1, len(names)) / 0.07))
    return ["\n".join(textwrap.wrap(n, min(width, 22), break_on_hyphens=True)) for n in names]


def comparison(metrics: Sequence[RunMetrics]) -> Any:
    """Bars per run (and per model, side by side, when a run has several): the perception
    energy, the board energy, p95 latency against the target, deadline misses, accuracy and
    configuration changes. ``n/a`` where a run could not measure it."""
    names = short_names(metrics)
    models = list(dict.fromkeys(mm.model for m in metrics for mm in m.models))
    panels = (
        ("energy_j", "perception energy (J)", 1.0, "{:.1f}"),
        ("board_energy_j", "board energy (J)", 1.0, "{:.1f}"),
        ("latency_p95_ms", "p95 latency (ms)", 1.0, "{:.1f}"),
        ("miss_rate", "deadline misses (%)", 100.0, "{:.1f}"),
        ("accuracy", "accuracy (%)", 100.0, "{:.1f}"),
        ("config_changes", "configuration changes", 1.0, "{:.0f}"),
    )
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.8))
    x = np.arange(len(metrics))
    for ax, (key, label, scale, fmt) in zip(axes.ravel(), panels, strict=True):
        per_run = key == "board_energy_j"  # a board quantity: one bar per run
        groups = [None] if per_run else models
        width = 0.8 / max(1, len(groups))
        for j, model in enumerate(groups):
            offs = x - 0.4 + width * (j + 0.5)
            labelled = False
            for i, rm in enumerate(metrics):
                if model is None:
                    value = getattr(rm, key)
                else:
                    mm = next((a for a in rm.models if a.model == model), None)
                    if mm is None:  # the run has no such model: no bar, no "n/a"
                        continue
                    value = mm.accuracy_or_expected()[0] if key == "accuracy" else getattr(mm, key)
                c = (
                    RUN_COLORS[i % len(RUN_COLORS)]
                    if len(groups) == 1
                    else MODEL_COLORS[j % len(MODEL_COLORS)]
                )
                if value is None:
                    ax.text(offs[i], 0, "n/a", ha="center", va="bottom", fontsize=8, color="grey")
                    continue
                ax.bar(
                    offs[i],
                    value * scale,
                    width * 0.9,
                    color=c,
                    label=model if (not labelled and len(groups) > 1) else None,
                )
                labelled = True
                ax.text(
                    offs[i],
                    value * scale,
                    fmt.format(value * scale),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
                )
            if key == "latency_p95_ms" and model is not None:
                targets = {
                    mm.target_ms
                    for rm in metrics
                    for mm in rm.models
                    if mm.model == model and mm.target_ms is not None
                }
                for t in sorted(targets):
                    ax.axhline(
                        t,
                        color=MODEL_COLORS[j % len(MODEL_COLORS)] if len(models) > 1 else "black",
                        ls="--",
                        lw=1.0,
                        label=f"target {model} {t:g} ms" if len(models) > 1 else f"target {t:g} ms",
                    )
        ax.set_title(label, fontsize=10)
        ax.set_xlim(-0.5, len(metrics) - 0.5)  # "n/a" texts do not widen the axes
        ax.set_xticks(x)
        ax.set_xticklabels(names, fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        ax.margins(y=0.15)
        if key in ("miss_rate", "accuracy"):
            ax.set_ylim(0, 105)
        ax.set_ylim(bottom=0)
        if key == "config_changes":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=7, loc="best", framealpha=0.9)
    scen = sorted({m.scenario for m in metrics if m.scenario})
    fig.suptitle(
        "Policy comparison" + (f" — scenario {', '.join(scen)}" if scen else ""), fontsize=12
    )
    fig.tight_layout()
    return fig


def relative(rows: Sequence[Relative]) -> Any:
    """Bars per run against the oracle run of its scenario: board energy as a multiple of the
    oracle's, deadline misses and accuracy as differences in percentage points."""
    names = [f"{r.name}" for r in rows]
    panels = (
        ("energy_ratio", "energy (x oracle)", "{:.2f}", 1.0),
        ("miss_points", "deadline misses (Δ points)", "{:+.1f}", 0.0),
        ("accuracy_points", "accuracy (Δ points)", "{:+.1f}", 0.0),
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2 + 0.12 * len(rows)))
    y = np.arange(len(rows))
    for ax, (key, label, fmt, ref) in zip(axes, panels, strict=True):
        for i, r in enumerate(rows):
            value = getattr(r, key)
            if value is None:
                ax.text(ref, y[i], "n/a", ha="center", va="center", fontsize=8, color="grey")
                continue
            color = "black" if r.policy == ORACLE_POLICY else RUN_COLORS[i % len(RUN_COLORS)]
            ax.barh(y[i], value - ref, left=ref, color=color, height=0.7)
            ax.text(value, y[i], " " + fmt.format(value), va="center", fontsize=7)
        ax.axvline(ref, color="black", lw=1.0)
        ax.set_title(label, fontsize=10)
        ax.set_yticks(y)
        ax.set_yticklabels(names if ax is axes[0] else [], fontsize=7)
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.2)
    fig.suptitle("Relative to the oracle (black: the oracle itself)", fontsize=12)
    fig.tight_layout()
    return fig
