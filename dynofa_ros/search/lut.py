"""Per-layer latency lookup tables in once-for-all's YAML format (one file per input resolution).

Format (once-for-all ``ofa/nas/efficiency_predictor/latency_lookup_table.py``,
``MBv3LatencyTable``): the file ``<r>_lookup_table.yaml`` is one YAML mapping from a layer key
to ``{count, mean, std}`` (milliseconds), e.g.::

    expanded_conv-input:12x12x24-output:6x6x32-expand:72-kernel:7-stride:2-idskip:0-se:1-hs:0:
      count: 200
      mean: 0.0412
      std: 0.0031

Layer kinds are ``Conv`` (first convolution), ``expanded_conv`` (MBConv block; ``expand`` is the
number of middle channels, as once-for-all's ``query(mid=...)``), ``Conv_1`` (final expand),
``AvgPool2D``, ``Conv_2`` (feature mix) and ``Logits``. Once-for-all's reader sums ``mean`` over
the layers of a network; it reads our files unchanged (it ignores comments).

What this project adds, in YAML comments only (so the file stays once-for-all's format): a header
line ``# dynofa-lut: {json}`` with the resolution, the per-network overhead term and provenance
(machine, processor, backend, threads, frequency, versions, date). A network's predicted latency is
``sum(mean of its layers) + overhead_ms``: each ``mean`` is the layer's standalone latency minus
the backend's per-call overhead (measured on an identity model), and ``overhead_ms`` adds that call
overhead back once, since a whole network is one call.

That sum is what once-for-all predicts; a layer alone is not a layer in a network, so a profile
also fits a correction on measured whole networks (:mod:`dynofa_ros.search.correction`), stored
beside the tables as ``latency_correction.json``. :meth:`TableSet.predict` is the one place it is
applied: every consumer (the search, the family's searched latencies, the benchmarks) goes through
it, and a directory without a correction (once-for-all's own tables) predicts the plain sum.

This module imports no torch: layer keys come from the super-network's ``layer_specs``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dynofa_ros.fileio import atomic_write_text
from dynofa_ros.search.correction import CORRECTION_FILE, LatencyCorrection, file_sha256
from dynofa_ros.search.errors import LatencyTableError

HEADER_TAG = "# dynofa-lut: "
KINDS: tuple[str, ...] = ("Conv", "expanded_conv", "Conv_1", "AvgPool2D", "Conv_2", "Logits")
KINDS += ("PatchEmbed", "TransformerLayer", "Head")  # the ViT family (supernet/vit.py)
_KEY_RE = re.compile(
    r"^(?P<kind>[A-Za-z0-9_]+)-input:(?P<input>\d+(?:x\d+)*)-output:(?P<output>\d+(?:x\d+)*)"
    r"(?P<rest>(?:-[a-z_]+:\d+)*)$"
)
_BLOCK_FIELDS = ("expand", "kernel", "stride", "idskip", "se", "hs")


def table_filename(resolution: int) -> str:
    """Once-for-all's file name for the table of one input resolution."""
    return f"{int(resolution)}_lookup_table.yaml"


@dataclass(frozen=True)
class LayerKey:
    """A parsed layer key (the fields once-for-all's ``MBv3LatencyTable.query`` joins)."""

    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    fields: Mapping[str, int] = field(default_factory=dict)

    @property
    def text(self) -> str:
        parts = [
            self.kind,
            "input:" + "x".join(map(str, self.input_shape)),
            "output:" + "x".join(map(str, self.output_shape)),
        ]
        parts += [f"{k}:{v}" for k, v in self.fields.items()]
        return "-".join(parts)


def parse_key(key: str) -> LayerKey:
    """Parse ``key``; raise :class:`LatencyTableError` naming it when it is not a layer key."""
    m = _KEY_RE.match(key) if isinstance(key, str) else None
    if m is None or m.group("kind") not in KINDS:
        raise LatencyTableError(
            f"latency table key {key!r} is not a layer key "
            f"(<{'|'.join(KINDS)}>-input:HxWxC-output:...)"
        )
    fields: dict[str, int] = {}
    for part in filter(None, m.group("rest").split("-")):
        name, _, value = part.partition(":")
        fields[name] = int(value)
    if m.group("kind") == "expanded_conv" and tuple(fields) != _BLOCK_FIELDS:
        raise LatencyTableError(
            f"latency table key {key!r}: an expanded_conv key needs the fields "
            f"{', '.join(_BLOCK_FIELDS)} in that order"
        )
    return LayerKey(
        kind=m.group("kind"),
        input_shape=tuple(int(v) for v in m.group("input").split("x")),
        output_shape=tuple(int(v) for v in m.group("output").split("x")),
        fields=fields,
    )


@dataclass(frozen=True)
class LutEntry:
    """One layer's latency (ms): ``mean`` is what a prediction sums; ``count`` repetitions."""

    mean: float
    std: float = 0.0
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"count": int(self.count), "mean": float(self.mean), "std": float(self.std)}


@dataclass(frozen=True)
class LatencyTable:
    """The lookup table of one input resolution on one processor / backend / setting."""

    resolution: int
    entries: Mapping[str, LutEntry]
    overhead_ms: float = 0.0
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in self.entries:
            parsed = parse_key(key)
            if parsed.kind == "Conv" and parsed.input_shape[0] != self.resolution:
                raise LatencyTableError(
                    f"latency table for resolution {self.resolution} holds first-convolution key "
                    f"{key!r} of resolution {parsed.input_shape[0]}"
                )

    # ----------------------------------------------------------------------------- queries
    def query(self, key: str) -> float:
        try:
            return self.entries[key].mean
        except KeyError:
            raise LatencyTableError(
                f"latency table for resolution {self.resolution} has no entry for layer {key!r}; "
                "profile this super-network again (`dynofa profile`)"
            ) from None

    def predict(self, keys: Iterable[str]) -> float:
        """Predicted latency (ms) of a network made of the layers ``keys`` (one call)."""
        return math.fsum(self.query(k) for k in keys) + self.overhead_ms

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if k not in self.entries]

    # ----------------------------------------------------------------------------- file I/O
    def to_yaml(self) -> str:
        header = {
            "resolution": self.resolution,
            "overhead_ms": self.overhead_ms,
            "provenance": dict(self.provenance),
        }
        lines = [
            f"# Latency lookup table, input {self.resolution}x{self.resolution}, once-for-all "
            "MBv3LatencyTable format.",
            "# Values in milliseconds. mean: median standalone layer latency minus the backend's "
            "per-call",
            "# overhead; count: timed repetitions; std: their standard deviation. A network's "
            "latency is",
            "# the sum of its layers' mean plus overhead_ms below (once per network).",
            HEADER_TAG + json.dumps(header, sort_keys=True),
        ]
        body: str = yaml.safe_dump(
            {k: e.to_dict() for k, e in self.entries.items()},
            sort_keys=False,
            default_flow_style=False,
            width=1000,
        )
        return "\n".join(lines) + "\n" + body

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically; ``path`` may be a directory (then once-for-all's file name)."""
        p = Path(path)
        if p.is_dir():
            p = p / table_filename(self.resolution)
        atomic_write_text(p, self.to_yaml())
        return p

    @classmethod
    def from_yaml(
        cls, text: str, source: str = "latency table", resolution: int | None = None
    ) -> LatencyTable:
        """Parse a table (ours, or once-for-all's own without the header comment).

        With ``resolution`` the table must be for that input resolution; a table for another
        one raises naming both."""
        header: dict[str, Any] = {}
        for line in text.splitlines():
            if line.startswith(HEADER_TAG):
                try:
                    header = json.loads(line[len(HEADER_TAG) :])
                except json.JSONDecodeError as exc:
                    raise LatencyTableError(f"{source}: bad dynofa-lut header ({exc})") from exc
                break
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LatencyTableError(f"{source}: not valid YAML ({exc})") from exc
        if not isinstance(raw, Mapping) or not raw:
            raise LatencyTableError(f"{source}: not a latency table (expected a mapping of keys)")
        entries: dict[str, LutEntry] = {}
        conv_res: int | None = None
        for key, value in raw.items():
            parsed = parse_key(key)
            if not isinstance(value, Mapping) or "mean" not in value:
                raise LatencyTableError(f"{source}: entry {key!r} has no 'mean'")
            try:
                entry = LutEntry(
                    mean=float(value["mean"]),
                    std=float(value.get("std", 0.0)),
                    count=int(value.get("count", 1)),
                )
            except (TypeError, ValueError) as exc:
                raise LatencyTableError(f"{source}: entry {key!r} is malformed ({exc})") from exc
            if not math.isfinite(entry.mean) or entry.mean < 0:
                raise LatencyTableError(f"{source}: entry {key!r} has mean {entry.mean!r}")
            if parsed.kind == "Conv":
                conv_res = parsed.input_shape[0]
            entries[key] = entry
        found = header.get("resolution", conv_res)
        if found is None:
            raise LatencyTableError(
                f"{source}: cannot tell the table's resolution (no header, no 'Conv' entry)"
            )
        if conv_res is not None and conv_res != found:
            raise LatencyTableError(
                f"{source}: header says resolution {found} but the first convolution's input is "
                f"{conv_res}x{conv_res}"
            )
        if resolution is not None and int(found) != int(resolution):
            raise LatencyTableError(
                f"{source}: latency table is for input resolution {found}, not {resolution} "
                f"(use {table_filename(resolution)})"
            )
        overhead = float(header.get("overhead_ms", 0.0))
        if not math.isfinite(overhead) or overhead < 0:
            raise LatencyTableError(f"{source}: overhead_ms {overhead!r} is invalid")
        return cls(
            resolution=int(found),
            entries=entries,
            overhead_ms=overhead,
            provenance=header.get("provenance") or {},
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], resolution: int | None = None) -> LatencyTable:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise LatencyTableError(
                f"cannot read latency table {p}: {exc.strerror or exc}"
            ) from exc
        except UnicodeDecodeError as exc:
            raise LatencyTableError(f"latency table {p} is not text ({exc})") from exc
        return cls.from_yaml(text, str(p), resolution)


@dataclass(frozen=True)
class TableSet:
    """The tables of every resolution for one measurement setting (a profile directory)."""

    tables: Mapping[int, LatencyTable]
    processor: str = "cpu"
    backend: str = "onnxruntime"
    threads: int = 0
    frequency_khz: int = 0
    path: Path | None = None
    correction: LatencyCorrection | None = None

    def table(self, resolution: int) -> LatencyTable:
        try:
            return self.tables[resolution]
        except KeyError:
            have = ", ".join(map(str, sorted(self.tables))) or "none"
            where = f" in {self.path}" if self.path else ""
            raise LatencyTableError(
                f"no latency table for input resolution {resolution}{where} (have: {have}); "
                f"expected {table_filename(resolution)}"
            ) from None

    def predict(self, resolution: int, keys: Iterable[str]) -> float:
        """Predicted latency (ms): the correction's when there is one, else the table's sum."""
        if self.correction is None:
            return self.table(resolution).predict(keys)
        return self.correction.predict(self.table(resolution), list(keys))

    def predict_table(self, resolution: int, keys: Iterable[str]) -> float:
        """The table's own prediction (sum of layers + overhead), without the correction."""
        return self.table(resolution).predict(keys)

    @property
    def description(self) -> str:
        what = "sum of layers + overhead"
        if self.correction is not None:
            fit = self.correction.provenance.get("networks")
            what += ", corrected by a fit on " + (
                f"{len(fit)} measured networks" if isinstance(fit, list) else "measured networks"
            )
        return what

    @property
    def label(self) -> str:
        return setting_label(self.processor, self.backend, self.threads, self.frequency_khz)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for table in self.tables.values():
            table.save(d / table_filename(table.resolution))
        if self.correction is not None:
            self.correction.save(d)
        else:
            (d / CORRECTION_FILE).unlink(missing_ok=True)  # never leave one of older tables
        return d

    def table_hashes(self) -> dict[int, str]:
        """SHA-256 of each table file as saved in :attr:`path`."""
        if self.path is None:
            raise LatencyTableError("these latency tables were not saved or loaded from a folder")
        return {r: file_sha256(self.path / table_filename(r)) for r in self.tables}

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        resolutions: Iterable[int],
        *,
        processor: str = "cpu",
        backend: str = "onnxruntime",
        threads: int = 0,
        frequency_khz: int = 0,
    ) -> TableSet:
        """Load ``<r>_lookup_table.yaml`` for each resolution, each checked for its resolution,
        and the correction beside them when there is one (checked to be fitted on them)."""
        d = Path(directory)
        if not d.is_dir():
            raise LatencyTableError(f"latency table directory {d} does not exist")
        tables = {}
        for r in resolutions:
            p = d / table_filename(r)
            if not p.is_file():
                raise LatencyTableError(
                    f"latency table directory {d} has no table for resolution {r} ({p.name})"
                )
            tables[int(r)] = LatencyTable.load(p, resolution=r)
        out = cls(tables, processor, backend, threads, frequency_khz, d)
        if (d / CORRECTION_FILE).is_file():
            correction = LatencyCorrection.load(d / CORRECTION_FILE)
            correction.check_tables(out.table_hashes(), str(d))
            out = replace(out, correction=correction)
        return out


def setting_label(processor: str, backend: str, threads: int, frequency_khz: int) -> str:
    """A short directory-safe name of a measurement setting, e.g. ``cpu-onnxruntime-t2``."""
    label = f"{processor}-{backend}"
    if threads:
        label += f"-t{threads}"
    if frequency_khz:
        label += f"-f{frequency_khz}"
    return label
