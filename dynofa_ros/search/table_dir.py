"""A directory of latency tables (``<r>_lookup_table.yaml``), ours or once-for-all's, checked
against the super-network it is used for, with where its numbers come from.

A table carries its origin in its ``# dynofa-lut`` header: a profile made here by ``dynofa
profile`` (the machine, processor, backend, threads), or a table imported by ``dynofa
import-ofa-tables`` (``board``, the source file and its SHA-256). A once-for-all table without
a header says nothing about where it was measured: the board is then what the user names
(``--board``), else ``unknown``. Nothing here relabels a board's table as a measurement of this
machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynofa_ros.search.errors import LatencyTableError
from dynofa_ros.search.lut import LatencyTable, TableSet, table_filename

_NAME_RE = re.compile(r"^(\d+)_lookup_table\.yaml$")
UNKNOWN_BOARD = "unknown"


def table_resolutions(directory: str | Path) -> list[int]:
    """The resolutions ``directory`` holds a table for (from the file names), sorted."""
    d = Path(directory)
    if not d.is_dir():
        raise LatencyTableError(f"latency table directory {d} does not exist")
    found = sorted(int(m.group(1)) for p in d.iterdir() if (m := _NAME_RE.match(p.name)))
    if not found:
        raise LatencyTableError(f"latency table directory {d} holds no <r>_lookup_table.yaml")
    return found


def origin(table: LatencyTable, board: str | None = None) -> dict[str, Any]:
    """Where a table's numbers were measured: ``{"board": ..., "measured_here": bool, ...}``.

    A table with a ``dynofa-lut`` header is ``dynofa profile``'s (its provenance names the
    machine) unless it names a ``board`` (imported); a header-less one (once-for-all's own) is
    ``board``'s, else an unknown board's."""
    prov = dict(table.provenance)
    if prov.get("board"):
        return {**prov, "board": str(prov["board"]), "measured_by": "another board"}
    if prov:
        machine = prov.get("machine")
        host = machine.get("hostname", "?") if isinstance(machine, Mapping) else "?"
        return {"board": f"dynofa profile on {host}", "measured_by": "dynofa profile"}
    return {
        "board": board or UNKNOWN_BOARD,
        "measured_by": "another board",
        "note": "once-for-all lookup table without a provenance header"
        + ("" if board else "; the board it was measured on is unknown (name it with --board)"),
    }


def _preset_inventories(resolution: int) -> dict[str, set[str]]:
    from dynofa_ros.search.profile import layer_inventory
    from dynofa_ros.supernet.network import Architecture, ElasticMobileNetV3, preset
    from dynofa_ros.supernet.ofa_import import OFA_PRESETS

    out = {}
    for name in OFA_PRESETS:
        arch = preset(name)
        assert isinstance(arch, Architecture)  # once-for-all's presets are MobileNetV3s
        net = ElasticMobileNetV3(arch)
        out[name] = set(layer_inventory(net, resolution))
    return out


def check_covers(table: LatencyTable, path: Path, net: Any) -> None:
    """Raise naming ``path`` when the table lacks a layer of ``net`` at its resolution; a table
    for the other once-for-all width is named as such."""
    from dynofa_ros.search.profile import layer_inventory

    keys = set(layer_inventory(net, table.resolution))
    missing = sorted(table.missing(keys))
    if not missing:
        return
    name = getattr(getattr(net, "arch", None), "name", "this super-network")
    for other, inv in _preset_inventories(table.resolution).items():
        if other != name and not table.missing(inv):
            raise LatencyTableError(
                f"{path}: latency table is for super-network {other}, not {name} "
                f"(expected layers such as {missing[0]!r})"
            )
    raise LatencyTableError(
        f"{path}: latency table lacks {len(missing)} of the {len(keys)} layers of {name} at "
        f"resolution {table.resolution}, e.g. {missing[0]!r}"
    )


@dataclass(frozen=True)
class TableDir:
    """Checked tables of a directory, their resolutions and their origin."""

    tables: TableSet
    resolutions: tuple[int, ...]
    origin: dict[str, Any]
    files: dict[int, dict[str, Any]]

    @property
    def measured_here(self) -> bool:
        return self.origin.get("measured_by") == "dynofa profile"


def load_table_dir(
    directory: str | Path,
    net: Any,
    resolutions: Sequence[int] | None = None,
    *,
    board: str | None = None,
    setting: Mapping[str, Any] | None = None,
) -> TableDir:
    """The tables of ``resolutions`` (default: every table in ``directory``), each checked for
    its resolution and against ``net``'s layers; all from one origin."""
    from dynofa_ros.family import sha256_file

    d = Path(directory)
    res = tuple(sorted({int(r) for r in (resolutions or table_resolutions(d))}))
    tables = TableSet.load(d, res, **dict(setting or {}))
    origins: dict[int, dict[str, Any]] = {}
    files: dict[int, dict[str, Any]] = {}
    for r in res:
        path = d / table_filename(r)
        check_covers(tables.table(r), path, net)
        origins[r] = origin(tables.table(r), board)
        files[r] = {"file": str(path), "sha256": sha256_file(path)}
    boards = {o["board"] for o in origins.values()}
    if len(boards) > 1:
        raise LatencyTableError(
            f"latency table directory {d} mixes tables of several boards ({', '.join(boards)})"
        )
    first = origins[res[0]]
    return TableDir(tables, res, first, files)


def import_tables(
    src: str | Path,
    dst: str | Path,
    net: Any,
    board: str,
    resolutions: Sequence[int] | None = None,
) -> list[Path]:
    """once-for-all's tables of ``src`` checked against ``net`` and written to ``dst`` with a
    provenance header naming ``board``, the source file and its SHA-256. Every table is read and
    checked before the first one is written."""
    from dynofa_ros.family import sha256_file
    from dynofa_ros.search.build import utc_now

    if not board or not board.strip():
        raise LatencyTableError("--board must name the board the tables were measured on")
    s = Path(src)
    res = tuple(sorted({int(r) for r in (resolutions or table_resolutions(s))}))
    tables = TableSet.load(s, res)
    out = []
    for r in res:
        path = s / table_filename(r)
        t = tables.table(r)
        check_covers(t, path, net)
        prov = {
            "board": board.strip(),
            "source": "once-for-all lookup table" if not t.provenance else "dynofa table",
            "file": str(path.resolve()),
            "sha256": sha256_file(path),
            "supernet": net.arch.name,
            "imported": utc_now(),
            **({"original_provenance": dict(t.provenance)} if t.provenance else {}),
        }
        out.append(LatencyTable(r, t.entries, t.overhead_ms, prov))
    d = Path(dst)
    d.mkdir(parents=True, exist_ok=True)
    return [t.save(d / table_filename(t.resolution)) for t in out]
