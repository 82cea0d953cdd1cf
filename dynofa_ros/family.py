"""Family files: the Pareto-optimal sub-networks of one super-network for one hardware target.

Written by ``dynofa search``, read by the engine, the manager and the nodes. A family is a JSON
document (configs, measured latency per processor / threads / frequency, accuracy, cost figures,
provenance) beside an optional safetensors file with each member's BatchNorm statistics. Reading
it runs no code and imports no torch, so the manager can use it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dynofa_ros.errors import DynofaError
from dynofa_ros.fileio import atomic_write_text
from dynofa_ros.validate import check_range

FORMAT = "dynofa-family"
VERSION = 1


class FamilyError(DynofaError):
    """A family file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class LatencyRecord:
    """One latency measurement of a member (median of repetitions, after warm-up)."""

    processor: str  # "cpu" | "cuda"
    backend: str  # "onnxruntime" | "torch-static" | "torch-dynamic" | "simulated"
    threads: int  # CPU intra-op threads (0 = not applicable)
    frequency_khz: int  # processor frequency during the measurement (0 = not pinned / unknown)
    median_ms: float
    p90_ms: float | None = None


@dataclass(frozen=True)
class FamilyMember:
    id: str
    config: Mapping[str, Any]  # the super-network's config dict (SubnetConfig.to_dict())
    accuracy: float  # top-1 in [0, 1]
    macs: int
    params: int
    latency: tuple[LatencyRecord, ...] = ()
    accuracy_source: str = "measured"  # "measured" | "predicted"
    # The member as the platform simulator sees it (platform.workload.Workload.to_dict(): macs,
    # layers, params, activations, runtime), so a simulated board can time it without torch.
    workload: Mapping[str, Any] | None = None

    def latency_ms(
        self,
        processor: str,
        *,
        backend: str | None = None,
        threads: int | None = None,
        frequency_khz: int | None = None,
    ) -> float | None:
        """Median latency of the best-matching record, or ``None`` when there is none."""
        for rec in self.latency:
            if rec.processor != processor:
                continue
            if backend is not None and rec.backend != backend:
                continue
            if threads is not None and rec.threads != threads:
                continue
            if frequency_khz is not None and rec.frequency_khz != frequency_khz:
                continue
            return rec.median_ms
        return None


@dataclass(frozen=True)
class Family:
    name: str
    processor: str  # the processor this family was searched for
    supernet: Mapping[str, Any]  # {"checkpoint": file name, "sha256": ..., "kind": ...}
    members: tuple[FamilyMember, ...]  # ordered by increasing latency on `processor`
    provenance: Mapping[str, Any] = field(default_factory=dict)
    bn_statistics: str | None = None  # safetensors file beside the JSON, keys "<id>/<bn name>"
    path: Path | None = None  # where it was loaded from (not serialised)

    def member(self, member_id: str) -> FamilyMember:
        for m in self.members:
            if m.id == member_id:
                return m
        ids = ", ".join(m.id for m in self.members)
        raise FamilyError(
            f"unknown sub-network id {member_id!r} in family {self.name} (one of: {ids})"
        )

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.members)

    def for_backend(self, backend: str | None = None) -> Family:
        """This family with the latency records of one engine backend (simulated records stay).

        A family measured with several backends (ONNX Runtime and torch-static, ~5x apart) must
        not be averaged over them: an engine runs one. ``None`` picks the backend the family was
        searched with (its provenance), else ONNX Runtime, when there are several."""
        measured = {r.backend for m in self.members for r in m.latency} - {"simulated"}
        if backend is None:
            if len(measured) <= 1:
                return self
            setting = (self.provenance.get("latency_source") or {}).get("setting") or {}
            backend = setting.get("backend") or "onnxruntime"
        if backend not in measured:
            if not measured:
                return self
            raise FamilyError(
                f"family {self.name} has no latency record for backend {backend!r} (recorded: "
                f"{', '.join(sorted(measured))})"
            )
        members = tuple(
            replace(m, latency=tuple(r for r in m.latency if r.backend in (backend, "simulated")))
            for m in self.members
        )
        return replace(self, members=members)

    def resolve(self, relative: str) -> Path:
        """A file named in the family, relative to the family file's folder."""
        base = self.path.parent if self.path is not None else Path.cwd()
        return base / relative

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "processor": self.processor,
            "supernet": dict(self.supernet),
            "bn_statistics": self.bn_statistics,
            "provenance": dict(self.provenance),
            "members": [
                {**asdict(m), "config": dict(m.config), "latency": [asdict(r) for r in m.latency]}
                for m in self.members
            ],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")


def _need(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise FamilyError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise FamilyError(f"{where}: field {key!r} must be {names}, got {value!r}")
    return value


def _in_range(value: float, where: str, lo: float = 0.0, hi: float = math.inf) -> float:
    return check_range(value, lo, hi, where, FamilyError)


def _parse_latency(raw: Mapping[str, Any], where: str) -> LatencyRecord:
    p90 = raw.get("p90_ms")
    return LatencyRecord(
        processor=_need(raw, "processor", str, where),
        backend=_need(raw, "backend", str, where),
        threads=int(_need(raw, "threads", int, where)),
        frequency_khz=int(_need(raw, "frequency_khz", int, where)),
        median_ms=_in_range(_need(raw, "median_ms", (int, float), where), f"{where}.median_ms"),
        p90_ms=None if p90 is None else _in_range(p90, f"{where}.p90_ms"),
    )


def _optional_mapping(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, Mapping):
        raise FamilyError(f"{where}: field {key!r} must be an object or null, got {value!r}")
    return value


def family_from_dict(doc: Mapping[str, Any], source: str = "family") -> Family:
    if not isinstance(doc, Mapping):
        raise FamilyError(f"{source}: not a JSON object")
    if doc.get("format") != FORMAT:
        raise FamilyError(f"{source}: field 'format' must be {FORMAT!r}, got {doc.get('format')!r}")
    if doc.get("version") != VERSION:
        raise FamilyError(
            f"{source}: unsupported family version {doc.get('version')!r} (this build reads "
            f"version {VERSION}); re-run `dynofa search` to regenerate it"
        )
    members = []
    for i, raw in enumerate(_need(doc, "members", list, source)):
        where = f"{source}: members[{i}]"
        if not isinstance(raw, Mapping):
            raise FamilyError(f"{where}: not an object")
        lat = _need(raw, "latency", list, where)
        members.append(
            FamilyMember(
                id=_need(raw, "id", str, where),
                config=_need(raw, "config", Mapping, where),
                accuracy=_in_range(
                    _need(raw, "accuracy", (int, float), where), f"{where}.accuracy", 0.0, 1.0
                ),
                macs=int(_need(raw, "macs", int, where)),
                params=int(_need(raw, "params", int, where)),
                latency=tuple(
                    _parse_latency(r, f"{where}.latency[{j}]") for j, r in enumerate(lat)
                ),
                accuracy_source=str(raw.get("accuracy_source", "measured")),
                workload=_optional_mapping(raw, "workload", where),
            )
        )
    if not members:
        raise FamilyError(f"{source}: field 'members' is empty")
    ids = [m.id for m in members]
    if len(set(ids)) != len(ids):
        raise FamilyError(f"{source}: duplicate member ids in {ids}")
    bn = doc.get("bn_statistics")
    if bn is not None and not isinstance(bn, str):
        raise FamilyError(f"{source}: field 'bn_statistics' must be a file name or null")
    return Family(
        name=_need(doc, "name", str, source),
        processor=_need(doc, "processor", str, source),
        supernet=_need(doc, "supernet", Mapping, source),
        members=tuple(members),
        provenance=doc.get("provenance") or {},
        bn_statistics=bn,
    )


def load_family(path: str | os.PathLike[str]) -> Family:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FamilyError(f"cannot read family file {p}: {exc.strerror or exc}") from exc
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FamilyError(f"family file {p} is not valid JSON ({exc}); is it truncated?") from exc
    fam = family_from_dict(doc, str(p))
    return Family(**{**fam.__dict__, "path": p})


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sort_by_latency(members: Iterable[FamilyMember], processor: str) -> tuple[FamilyMember, ...]:
    def key(m: FamilyMember) -> float:
        ms = m.latency_ms(processor)
        return math.inf if ms is None else ms

    return tuple(sorted(members, key=key))
