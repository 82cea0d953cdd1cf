"""Report of one or more runs (policies side by side): Markdown, HTML, PNG plots, per-frame CSV.

``write_report(runs, out_dir)`` writes into ``out_dir``:

- ``report.md`` and ``report.html`` (self-contained page; images and CSV referenced relatively),
- ``comparison.png``: energy, p95 latency against the target, deadline-miss rate, accuracy per
  run (and model),
- ``oracle.png`` (when an ``oracle`` run is among the runs): each run's energy, misses and
  accuracy relative to the oracle run of its scenario (also a table in the document),
- ``timeline_<run>.png`` per run: sub-network, processor / threads, latency vs target (misses
  marked), CPU / GPU frequencies and power mode, power, temperatures (throttled time shaded),
  battery; events as vertical lines,
- ``frames_<run>.csv`` per run (:data:`~.records.CSV_COLUMNS`), ``commands_<run>.csv`` per run
  (:data:`~.records.COMMAND_COLUMNS`), ``metrics.json``.

Every file is written atomically; an older ``report.md`` / ``report.html`` in the directory is
removed first and the new ones are written last, so their presence means the report is complete.
RESULTS may be results files (``*.results.jsonl``), result bags, per-frame CSVs or directories
holding results files. The document is described in ``docs/evaluation.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynofa_ros.configuration import Configuration
from dynofa_ros.evaluation.metrics import (
    ModelMetrics,
    Reaction,
    Relative,
    RunMetrics,
    compute,
    relative_to_oracle,
)
from dynofa_ros.evaluation.records import (
    RESULTS_SUFFIX,
    CommandRecord,
    FrameRecord,
    ResultsError,
    RunInfo,
    RunResults,
    commands_csv,
    frames_csv,
    read_frames_csv,
    read_results,
)
from dynofa_ros.fileio import atomic_path, atomic_write_text
from dynofa_ros.validate import json_safe

# ------------------------------------------------------------------------------- loading


def load_run(path: str | os.PathLike[str], name: str | None = None) -> RunResults:
    """One run from a results file (``*.results.jsonl``), a result bag, or a per-frame CSV
    (frames only; the run is named after the file)."""
    p = Path(path)
    if not p.exists():
        raise ResultsError(f"results {p} do not exist")
    from dynofa_ros.evaluation.result_bag import is_result_bag, load_result_bag

    if is_result_bag(p):
        return load_result_bag(p, name=name)
    if p.is_file() and p.suffix.lower() == ".csv":
        stem = p.stem[len("frames_") :] if p.stem.startswith("frames_") else p.stem
        return RunResults(RunInfo(name=name or stem, source=str(p)), read_frames_csv(p))
    if p.is_file():
        run = read_results(p)
        if name is not None:
            run.info = dataclasses.replace(run.info, name=name)
        return run
    raise ResultsError(
        f"{p} is neither a results file ({RESULTS_SUFFIX}), a per-frame CSV nor a rosbag2 bag"
    )


def expand(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Directories that are not bags stand for the results files in them."""
    from dynofa_ros.evaluation.result_bag import is_result_bag

    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir() and not is_result_bag(p):
            found = sorted(p.glob(f"*{RESULTS_SUFFIX}"))
            if not found:
                raise ResultsError(
                    f"{p} holds no results files (*{RESULTS_SUFFIX}) and is not a rosbag2 bag"
                )
            out.extend(found)
        else:
            out.append(p)
    return out


def load_runs(paths: Iterable[str | os.PathLike[str]]) -> list[RunResults]:
    runs = [load_run(p) for p in expand(paths)]
    if not runs:
        raise ResultsError("no results given")
    seen: dict[str, int] = {}
    for run in runs:  # names label plots and files: make them unique
        n = seen.get(run.info.name, 0)
        seen[run.info.name] = n + 1
        if n:
            run.info = dataclasses.replace(run.info, name=f"{run.info.name} ({n + 1})")
    return runs


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"


# ------------------------------------------------------------------------------ document
@dataclass(frozen=True)
class _Block:
    kind: str  # h1 h2 h3 h4 p table img list
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()
    src: str = ""


def _fmt(x: Any, digits: int = 1, scale: float = 1.0, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x}{unit}"
    return f"{x * scale:.{digits}f}{unit}"


SUMMARY_HEADER = (
    "run",
    "model",
    "frames",
    "target ms",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "miss %",
    "accuracy %",
    "energy J",
    "avg power W",
    "battery end %",
    "max temp °C",
    "throttled s",
    "switches",
    "config changes",
    "commands",
)


def _summary_row(rm: RunMetrics, m: ModelMetrics) -> tuple[str, ...]:
    return (
        rm.name,
        m.model,
        str(m.frames),
        _fmt(m.target_ms, 0),
        _fmt(m.latency_p50_ms),
        _fmt(m.latency_p95_ms),
        _fmt(m.latency_p99_ms),
        _fmt(m.miss_rate, 1, 100),
        _accuracy_cell(m),
        _fmt(m.energy_j, 2),
        _fmt(m.average_power_w, 2),
        _fmt(m.battery_end, 1, 100),
        _fmt(m.max_temperature_c, 1),
        _fmt(m.time_throttled_s, 1),
        str(m.switches),
        str(m.config_changes),
        str(m.commands),
    )


def _accuracy_cell(m: ModelMetrics) -> str:
    """Measured accuracy; without ground truth the family's expected accuracy, marked ``*``."""
    value, source = m.accuracy_or_expected()
    return _fmt(value, 1, 100) + ("*" if source == "family" else "")


RELATIVE_HEADER = (
    "scenario",
    "run",
    "policy",
    "energy J",
    "energy x oracle",
    "miss %",
    "miss Δ pts",
    "accuracy %",
    "accuracy Δ pts",
)


def _relative_row(r: Relative) -> tuple[str, ...]:
    def signed(x: float | None) -> str:
        return "n/a" if x is None else f"{x:+.1f}"

    return (
        r.scenario,
        r.name,
        r.policy,
        _fmt(r.energy_j, 1),
        _fmt(r.energy_ratio, 3),
        _fmt(r.miss_rate, 1, 100),
        signed(r.miss_points),
        _fmt(r.accuracy, 1, 100),
        signed(r.accuracy_points),
    )


FRAMES_HEADER = (
    "run", "model", "in bag", "processed", "dropped by node", "lost in transport",
    "mJ / processed frame", "",
)  # fmt: skip
FEWER_FRAMES = 0.95  # a run below this share of its scenario's best run is flagged


def _frame_rows(runs: list[RunResults], metrics: list[RunMetrics]) -> list[tuple[str, ...]]:
    """Where each run's frames went (``RunInfo.extra["frames"]``, which every replay records),
    and the energy per processed frame; runs that processed noticeably fewer are flagged."""
    best: dict[tuple[str, str], int] = {}
    for run in runs:
        for model, f in (run.info.extra.get("frames") or {}).items():
            key = (run.info.scenario, model)
            best[key] = max(best.get(key, 0), int(f.get("processed", 0)))
    rows: list[tuple[str, ...]] = [FRAMES_HEADER]
    for run, rm in zip(runs, metrics, strict=True):
        for model, f in (run.info.extra.get("frames") or {}).items():
            processed = int(f.get("processed", 0))
            energy = next((m.energy_j for m in rm.models if m.model == model), None)
            few = processed < FEWER_FRAMES * best[(run.info.scenario, model)]
            rows.append(
                (
                    rm.name, model, str(f.get("in_bag", "n/a")), str(processed),
                    str(f.get("dropped_node", 0)), str(f.get("lost_transport", 0)),
                    _fmt(None if energy is None or not processed else 1e3 * energy / processed, 1),
                    "⚠" if few else "",
                )
            )  # fmt: skip
    return rows


REACTION_HEADER = (
    "t s",
    "event",
    "model",
    "frames",
    "misses",
    "reconfigured after s",
    "transient frames",
    "recovered after s",
    "within target after %",
)


def _reaction_row(r: Reaction) -> tuple[str, ...]:
    # no settled run of frames although the window had frames with a target: it never recovered
    never = r.transient_frames is None and r.misses > 0
    return (
        f"{r.event_t_s:.2f}",
        r.event,
        r.model,
        str(r.frames),
        str(r.misses),
        _fmt(r.reconfigured_after_s, 3) if r.reconfigured_after_s is not None else "no change",
        "never" if never else _fmt(r.transient_frames),
        "never" if never else _fmt(r.recovered_after_s, 3),
        _fmt(r.within_target_after, 1, 100),
    )


CONFIG_HEADER = (
    "model",
    "sub-network",
    "processor",
    "threads",
    "CPU MHz",
    "GPU MHz",
    "power mode",
    "frames",
    "share %",
    "p50 ms",
    "miss %",
)
MAX_CONFIG_ROWS = 12


def _mhz(khz: int) -> str:
    return f"{khz / 1000:g}" if khz else "n/a"


def _config_rows(run: RunResults) -> list[tuple[str, ...]]:
    """Frames per configuration (model, sub-network, processor, threads, frequencies, power
    mode), most used first."""
    groups: dict[tuple[str, Configuration], list[FrameRecord]] = {}
    for f in run.frames:
        groups.setdefault((f.model, f.config), []).append(f)
    per_model = {m: len(run.frames_of(m)) for m in run.models}
    rows: list[tuple[str, ...]] = []
    for (model, cfg), fs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0][0])):
        known = [f for f in fs if f.deadline_missed is not None]
        lat = sorted(f.latency_ms for f in fs)
        rows.append(
            (
                model,
                cfg.subnet_id or "n/a",
                cfg.processor or "n/a",
                str(cfg.threads) if cfg.threads else "n/a",
                _mhz(cfg.cpu_frequency_khz),
                _mhz(cfg.gpu_frequency_khz),
                "n/a" if cfg.power_mode is None else str(cfg.power_mode),
                str(len(fs)),
                _fmt(len(fs) / max(1, per_model.get(model, 0)), 1, 100),
                _fmt(_median(lat)),
                _fmt(sum(bool(f.deadline_missed) for f in known) / len(known) if known else None,
                     1, 100),
            )
        )  # fmt: skip
    return rows


def _median(sorted_values: list[float]) -> float | None:
    n = len(sorted_values)
    if not n:
        return None
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


COMMAND_HEADER = (
    "t s",
    "model",
    "seq",
    "sub-network",
    "processor",
    "threads",
    "CPU MHz",
    "GPU MHz",
    "power mode",
    "target ms",
    "reason",
)
MAX_COMMAND_ROWS = 20


def _command_row(c: CommandRecord) -> tuple[str, ...]:
    keep, k = "keep", c.config
    return (
        f"{c.t_s:.2f}",
        c.model,
        str(c.seq),
        k.subnet_id or keep,
        k.processor or keep,
        str(k.threads) if k.threads else keep,
        _mhz(k.cpu_frequency_khz) if k.cpu_frequency_khz else keep,
        _mhz(k.gpu_frequency_khz) if k.gpu_frequency_khz else keep,
        keep if k.power_mode is None else str(k.power_mode),
        _fmt(c.latency_target_ms, 0) if c.latency_target_ms else "none",
        c.reason,
    )


def _extra_text(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(json_safe(value), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


DEFINITIONS = (
    "Latency percentiles over all frames of the model; a frame misses its deadline when its "
    "latency exceeds the target in force.",
    "Accuracy: top-1 against the ground-truth label, over frames that have one; without ground "
    "truth (e.g. a builtin: family, which has no network), marked *, the family's recorded top-1 "
    "of the sub-network that ran each frame, averaged over the frames.",
    "Energy: the perception node's per-frame estimate summed over the run; average power: "
    "energy / run duration. Board energy: the increase of the board's energy counter over the "
    "run, else its power telemetry integrated over the run (the whole module, every model).",
    "Switches: frame-to-frame sub-network changes; configuration changes also count processor, "
    "threads, CPU / GPU frequency and power mode.",
    "Relative to the oracle (a clairvoyant reference that plans every interval between the "
    "scenario's events with the board's true costs: meet the target, then the best accuracy, "
    "then the least board energy): energy x oracle = board energy / the oracle run's; miss and "
    "accuracy Δ = difference in percentage points, over every model's frames together.",
    "Reaction to an event (window: until the next event): reconfigured after = first frame with "
    "a different configuration; transient = frames before the first 5 consecutive frames within "
    "target; recovered after = time of that frame; within target after = share of the window's "
    "frames after the transient that meet the target.",
)


def _document(
    runs: list[RunResults], metrics: list[RunMetrics], files: dict[str, dict[str, str]], title: str
) -> list[_Block]:
    b: list[_Block] = [_Block("h1", title)]
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    scen = sorted({r.info.scenario for r in runs if r.info.scenario})
    b.append(
        _Block(
            "p",
            f"{len(runs)} run(s)"
            + (f" of scenario {', '.join(scen)}" if scen else "")
            + f"; written {now}.",
        )
    )
    b.append(_Block("h2", "Summary"))
    rows: list[tuple[str, ...]] = [SUMMARY_HEADER]
    for rm in metrics:
        rows.extend(_summary_row(rm, m) for m in rm.models)
    b.append(_Block("table", rows=tuple(rows)))
    frames = _frame_rows(runs, metrics)
    if len(frames) > 1:
        b.append(_Block("h2", "Frames"))
        b.append(_Block("table", rows=tuple(frames)))
        if any(r[-1] for r in frames[1:]):
            b.append(
                _Block(
                    "p",
                    "⚠ marks a run that processed fewer than "
                    f"{100 * FEWER_FRAMES:.0f} % of the frames the most complete run of its "
                    "scenario processed: compare its energy per processed frame, not its total.",
                )
            )
    rel = relative_to_oracle(metrics)
    if rel:
        b.append(_Block("h2", "Relative to the oracle"))
        b.append(_Block("table", rows=(RELATIVE_HEADER, *(_relative_row(r) for r in rel))))
        b.append(
            _Block("img", "Energy, misses and accuracy relative to the oracle", src="oracle.png")
        )
    b.append(_Block("h2", "Policy comparison"))
    b.append(
        _Block(
            "img",
            "Energy, p95 latency, deadline-miss rate and accuracy per run",
            src="comparison.png",
        )
    )
    b.append(_Block("h2", "Runs"))
    for run, rm in zip(runs, metrics, strict=True):
        b.extend(_run_blocks(run, rm, files[run.info.name]))
    b.append(_Block("h2", "Definitions"))
    b.append(_Block("list", rows=tuple((d,) for d in DEFINITIONS)))
    b.append(_Block("p", "Machine-readable metrics: metrics.json", src="metrics.json"))
    return b


def _run_blocks(run: RunResults, rm: RunMetrics, f: dict[str, str]) -> list[_Block]:
    """One run's section: facts, settings, timeline, reactions, configurations, commands."""
    b: list[_Block] = []
    b.append(_Block("h3", run.info.name))
    facts = [
        ("policy", run.info.policy or "n/a"),
        ("scenario", run.info.scenario or "n/a"),
        ("mode", run.info.mode or "n/a"),
        ("duration", f"{rm.duration_s:.1f} s"),
        ("source", run.info.source or "n/a"),
    ]
    if rm.board_energy_j is not None:
        how = {"counter": "from the board's energy counter", "power": "from power telemetry"}
        facts.append(
            (
                "board energy",
                f"{rm.board_energy_j:.1f} J (average {_fmt(rm.board_average_power_w, 2)} W, "
                f"{how.get(rm.board_energy_source or '', 'measured')})",
            )
        )
    modes = sorted({p for m in rm.models for p in m.power_modes})
    if modes:
        facts.append(("power modes", ", ".join(map(str, modes))))
    b.append(_Block("p", "; ".join(f"{k}: {v}" for k, v in facts) + "."))
    extra = run.info.extra if isinstance(run.info.extra, Mapping) else {}
    settings = extra.get("settings")
    if isinstance(settings, Mapping) and settings:
        b.append(
            _Block("p", "Settings: " + "; ".join(f"{k} = {v}" for k, v in settings.items()) + ".")
        )
    details = {k: v for k, v in extra.items() if k not in ("settings", "subnets")}
    if details:
        b.append(
            _Block(
                "p",
                "Run details: "
                + "; ".join(f"{k} = {_extra_text(v)}" for k, v in details.items())
                + ".",
            )
        )
    b.append(_Block("img", f"Timeline of {run.info.name}", src=f["timeline"]))
    reactions = [r for m in rm.models for r in m.reactions]
    b.append(_Block("h4", "Reaction to events"))
    if reactions:
        b.append(_Block("table", rows=(REACTION_HEADER, *(_reaction_row(r) for r in reactions))))
    else:
        b.append(_Block("p", "No events in this run."))
    if run.frames:
        configs = _config_rows(run)
        b.append(_Block("h4", "Configurations used"))
        b.append(_Block("table", rows=(CONFIG_HEADER, *configs[:MAX_CONFIG_ROWS])))
        if len(configs) > MAX_CONFIG_ROWS:
            b.append(
                _Block("p", f"… and {len(configs) - MAX_CONFIG_ROWS} less used configurations.")
            )
    b.append(_Block("h4", f"Commands ({len(run.commands)})"))
    if run.commands:
        shown = sorted(run.commands, key=lambda c: (c.t_s, c.seq))[:MAX_COMMAND_ROWS]
        b.append(_Block("table", rows=(COMMAND_HEADER, *(_command_row(c) for c in shown))))
        more = len(run.commands) - len(shown)
        lead = f"… {more} more; all commands: " if more else "All commands: "
        b.append(_Block("p", f"{lead}{f['commands']}", src=f["commands"]))
    else:
        b.append(_Block("p", "No reconfiguration command in this run."))
    b.append(_Block("p", f"Per-frame data: {f['csv']}", src=f["csv"]))
    return b


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for blk in blocks:
        if blk.kind in ("h1", "h2", "h3", "h4"):
            out.append("#" * int(blk.kind[1]) + " " + blk.text)
        elif blk.kind == "p":
            if blk.src:
                label = blk.text.rsplit(blk.src, 1)[0]
                out.append(f"{label}[{blk.src}]({blk.src})")
            else:
                out.append(blk.text)
        elif blk.kind == "img":
            out.append(f"![{blk.text}]({blk.src})")
        elif blk.kind == "table":
            head, *body = blk.rows
            out.append("| " + " | ".join(_md_cell(c) for c in head) + " |")
            out.append("|" + "|".join("---" for _ in head) + "|")
            out.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in body)
        elif blk.kind == "list":
            out.extend(f"- {row[0]}" for row in blk.rows)
        out.append("")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1200px;color:#222;padding:0 1em}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.3em 0.6em;text-align:right}
th{background:#f0f0f0}td:first-child,td:nth-child(2),th:first-child{text-align:left}
tr:nth-child(even){background:#fafafa}img{max-width:100%;border:1px solid #ddd}
"""


def render_html(blocks: Sequence[_Block], title: str) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for blk in blocks:
        if blk.kind in ("h1", "h2", "h3", "h4"):
            out.append(f"<{blk.kind}>{e(blk.text)}</{blk.kind}>")
        elif blk.kind == "p":
            if blk.src:
                label = blk.text.rsplit(blk.src, 1)[0]
                out.append(f'<p>{e(label)}<a href="{e(blk.src)}">{e(blk.src)}</a></p>')
            else:
                out.append(f"<p>{e(blk.text)}</p>")
        elif blk.kind == "img":
            out.append(f'<p><img src="{e(blk.src)}" alt="{e(blk.text)}"></p>')
        elif blk.kind == "table":
            head, *body = blk.rows
            out.append(
                "<table><thead><tr>"
                + "".join(f"<th>{e(c)}</th>" for c in head)
                + "</tr></thead><tbody>"
            )
            out.extend("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in body)
            out.append("</tbody></table>")
        elif blk.kind == "list":
            out.append("<ul>" + "".join(f"<li>{e(r[0])}</li>" for r in blk.rows) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ writing
@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    markdown: Path
    html: Path
    comparison: Path
    timelines: dict[str, Path]
    csvs: dict[str, Path]
    metrics: Path
    commands: dict[str, Path] = dataclasses.field(default_factory=dict)
    oracle: Path | None = None  # oracle.png, when an oracle run is among the runs


def write_report(
    runs: Sequence[RunResults], out_dir: str | os.PathLike[str], title: str | None = None
) -> ReportFiles:
    from dynofa_ros.evaluation import plots

    if not runs:
        raise ResultsError("no runs to report")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ResultsError(f"report directory {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    for index in ("report.md", "report.html"):  # an older report is incomplete from here on
        (out / index).unlink(missing_ok=True)
    runs = list(runs)
    metrics = [compute(r) for r in runs]
    files: dict[str, dict[str, str]] = {}
    used: set[str] = set()
    for run in runs:
        s = slug(run.info.name)
        base, k = s, 2
        while s in used:
            s, k = f"{base}_{k}", k + 1
        used.add(s)
        files[run.info.name] = {
            "timeline": f"timeline_{s}.png",
            "csv": f"frames_{s}.csv",
            "commands": f"commands_{s}.csv",
        }
    for run in runs:
        f = files[run.info.name]
        atomic_write_text(out / f["csv"], frames_csv(run.frames))
        atomic_write_text(out / f["commands"], commands_csv(run.commands))
        fig = plots.timeline(run)
        _save(fig, out / f["timeline"])
    _save(plots.comparison(metrics), out / "comparison.png")
    rel = relative_to_oracle(metrics)
    if rel:
        _save(plots.relative(rel), out / "oracle.png")
    atomic_write_text(
        out / "metrics.json",
        json.dumps(json_safe([m.to_dict() for m in metrics]), indent=2, allow_nan=False) + "\n",
    )
    title = title or "dynofa evaluation report"
    blocks = _document(runs, metrics, files, title)
    atomic_write_text(out / "report.md", render_markdown(blocks))
    atomic_write_text(out / "report.html", render_html(blocks, title))
    return ReportFiles(
        directory=out,
        markdown=out / "report.md",
        html=out / "report.html",
        comparison=out / "comparison.png",
        timelines={n: out / f["timeline"] for n, f in files.items()},
        csvs={n: out / f["csv"] for n, f in files.items()},
        metrics=out / "metrics.json",
        commands={n: out / f["commands"] for n, f in files.items()},
        oracle=out / "oracle.png" if rel else None,
    )


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
