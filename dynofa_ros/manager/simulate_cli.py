"""``dynofa simulate SCENARIO``: run manager policies in closed loop on the simulated Xavier NX.

SCENARIO is a YAML path or the name of a bundled scenario in ``config/scenarios/sim``
(``one_model``, ``two_models``, ``fig7_corunner``). ``--policy P`` runs one policy;
``--compare`` runs every policy on the same timeline and prints one table, with energy and p50
latency relative to ``static-schedutil`` (Linux's rule). ``--plot OUT.png`` draws latency
against time (with the target) and cumulative energy for every run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from dynofa_ros.fileio import atomic_path, atomic_write_text
from dynofa_ros.manager.policies import POLICIES
from dynofa_ros.manager.scenario import Scenario, find_scenario, load_scenario, scenarios_dir
from dynofa_ros.manager.simulate import RunResult, run, table


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="dynofa simulate",
        description="Run runtime-manager policies against the simulated Xavier NX.",
    )
    ap.add_argument(
        "scenario", help=f"scenario YAML, or a name in {scenarios_dir()} (e.g. one_model)"
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--policy", default="dynofa", choices=POLICIES, help="policy to run")
    mode.add_argument("--compare", action="store_true", help="run every policy, one table")
    ap.add_argument("--plot", metavar="OUT.png", help="latency / energy against time (PNG)")
    ap.add_argument("--json", metavar="OUT.json", help="metrics per policy and model (JSON)")
    ap.add_argument("--per-model", action="store_true", help="one table per model as well")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def run_with_progress(sc: Scenario, policy: str, quiet: bool) -> RunResult:
    """One closed-loop run with a tqdm bar over simulated seconds."""
    from tqdm import tqdm

    bar = tqdm(
        total=round(sc.duration_s, 3),
        unit="sim s",
        desc=f"{sc.name} [{policy}]",
        disable=quiet,
        leave=False,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} s [{elapsed}]",
    )
    last = [0.0]

    def tick(now_s: float) -> None:
        now = min(now_s, sc.duration_s)
        if now - last[0] >= 0.5:
            bar.update(now - last[0])
            last[0] = now

    try:
        return run(sc, policy, on_frame=tick)
    finally:
        bar.close()


def plot(results: Sequence[RunResult], out: str | Path) -> None:
    """Latency per frame (dots) with the target (line) per model, and cumulative energy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({f.model for r in results for f in r.frames})
    fig, axes = plt.subplots(
        len(models) + 1, 1, figsize=(10, 3 * (len(models) + 1)), sharex=True, squeeze=False
    )
    for r in results:
        for ax, m in zip(axes[:-1, 0], models, strict=True):
            frames = [f for f in r.frames if f.model == m]
            ax.plot([f.start_s for f in frames], [f.latency_ms for f in frames], ".", ms=2,
                    label=r.policy)  # fmt: skip
        frames = sorted(r.frames, key=lambda f: f.start_s)
        total, xs, ys = 0.0, [], []
        for f in frames:
            total += f.energy_j
            xs.append(f.start_s)
            ys.append(total)
        axes[-1, 0].plot(xs, ys, label=r.policy)
    for ax, m in zip(axes[:-1, 0], models, strict=True):
        frames = sorted((f for f in results[0].frames if f.model == m), key=lambda f: f.start_s)
        ax.step([f.start_s for f in frames], [f.target_ms for f in frames], "k--", lw=1,
                where="post", label="target")  # fmt: skip
        ax.set_ylabel(f"{m} latency (ms)")
        ax.legend(fontsize=7, ncol=4, markerscale=4)
    axes[-1, 0].set_ylabel("energy of frames (J)")
    axes[-1, 0].set_xlabel("simulated time (s)")
    axes[-1, 0].legend(fontsize=7, ncol=4)
    fig.suptitle(f"dynofa simulate {results[0].scenario}")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sc = load_scenario(find_scenario(args.scenario))
    # the oracle needs a schedule of the whole run: the fast replay computes one, this loop not
    policies = [p for p in POLICIES if p != "oracle"] if args.compare else [args.policy]
    results = [run_with_progress(sc, p, args.quiet) for p in policies]
    print(f"scenario {sc.name}: {sc.description}".rstrip(": "))
    print(f"{sc.duration_s:g} simulated s, models: {', '.join(m.name for m in sc.models)}")
    print(table(results))
    if args.per_model and len(sc.models) > 1:
        for m in sc.models:
            print(f"\nmodel {m.name}")
            print(table(results, m.name))
    warned = {r.policy: r.warnings for r in results if r.warnings}
    if warned:
        print(f"ignored inputs: {json.dumps(warned)}")
    if args.json:
        payload = {
            "scenario": sc.name,
            "results": {
                r.policy: {
                    "all": r.metrics(),
                    **{m.name: r.metrics(m.name) for m in sc.models},
                    "decisions": len(r.decisions),
                    "warnings": r.warnings,
                }
                for r in results
            },
        }
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
