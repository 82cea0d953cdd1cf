"""Pareto plot of a search (PNG): every evaluated candidate, the front, the chosen family (as
searched and as re-measured) and random sub-networks for reference."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from dynofa_ros.fileio import atomic_write_bytes
from dynofa_ros.search.pareto import Point


def pareto_png(
    path: str | os.PathLike[str],
    *,
    title: str,
    candidates: Sequence[Point],
    front: Sequence[Point],
    family: Sequence[Point],
    random: Sequence[Point] = (),
    family_measured: Sequence[Point] = (),
    xlabel: str = "latency (ms)",
    ylabel: str = "top-1 accuracy (%)",
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def xy(points: Sequence[Point]) -> tuple[list[float], list[float]]:
        return [p.latency_ms for p in points], [100 * p.accuracy for p in points]

    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    if candidates:
        ax.scatter(
            *xy(candidates),
            s=6,
            c="#b0b0b0",
            alpha=0.5,
            label=f"evaluated ({len(candidates)})",
            linewidths=0,
        )
    if random:
        ax.scatter(*xy(random), s=14, c="#1f77b4", marker="x", label=f"random ({len(random)})")
    if front:
        fx, fy = xy(sorted(front, key=lambda p: p.latency_ms))
        ax.step(fx, fy, where="post", c="#d62728", lw=1.2, label=f"Pareto front ({len(front)})")
        ax.scatter(fx, fy, s=12, c="#d62728")
    if family:
        ax.scatter(
            *xy(family),
            s=90,
            facecolors="none",
            edgecolors="#2ca02c",
            linewidths=2,
            label=f"family, as searched ({len(family)})",
        )
    if family_measured:
        ax.scatter(*xy(family_measured), s=40, c="#2ca02c", marker="D", label="family, re-measured")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    p = Path(path)
    atomic_write_bytes(p, buf.getvalue())
    return p
