"""Prepared ONNX files: every member of a family exported once, offline, beside the family.

``dynofa export-family FAMILY`` writes ``<family stem>.onnx/`` next to ``<stem>.family.json``: one
``.onnx`` file per member (the same export the engine does at start-up, with the family's BN
statistics) and ``manifest.json`` with what the engine needs besides the graphs (labels, input
channels, normalisation, resolution and simulator workload per member) and what the files were
made from (super-network and BN statistics sha256, each member's config, each file's sha256).

The onnxruntime engine uses these files when they are there, without importing torch: a board
whose torch is old, broken or absent still runs the family on ONNX Runtime. Files that no longer
match the family or the checkpoint are refused with one line naming what changed, never used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynofa_ros.engine.errors import EngineError
from dynofa_ros.family import Family, load_family, sha256_file
from dynofa_ros.fileio import atomic_write_bytes, atomic_write_text

FORMAT = "dynofa-onnx-family"
VERSION = 1
MANIFEST = "manifest.json"
FAMILY_SUFFIX = ".family.json"


@dataclass(frozen=True)
class PreparedMember:
    id: str
    config: Mapping[str, Any]  # the family member's config, as written when exported
    resolution: int
    file: str  # relative to the prepared folder
    sha256: str
    workload: Mapping[str, Any]  # platform.workload.Workload.to_dict()


@dataclass(frozen=True)
class PreparedFamily:
    path: Path  # the folder
    supernet_sha256: str
    bn_sha256: str | None
    labels: tuple[str, ...]
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    opset: int
    members: tuple[PreparedMember, ...]
    exported_with: Mapping[str, Any]

    def member(self, member_id: str) -> PreparedMember:
        for m in self.members:
            if m.id == member_id:
                return m
        raise EngineError(f"prepared ONNX files {self.path}: no member {member_id!r}")

    def model_bytes(self, member_id: str) -> bytes:
        """The member's ONNX graph, checked against the manifest's sha256 (a truncated or
        replaced file is refused)."""
        m = self.member(member_id)
        p = self.path / m.file
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise EngineError(f"cannot read prepared ONNX file {p}: {exc.strerror or exc}") from exc
        if hashlib.sha256(data).hexdigest() != m.sha256:
            raise EngineError(
                f"prepared ONNX file {p} does not match its sha256 in {self.path / MANIFEST}; "
                "re-run `dynofa export-family`"
            )
        return data


def prepared_dir(family_path: str | os.PathLike[str]) -> Path:
    """Where the prepared files of a family file live: ``<stem>.onnx`` beside it."""
    p = Path(family_path)
    name = p.name
    stem = name[: -len(FAMILY_SUFFIX)] if name.endswith(FAMILY_SUFFIX) else p.stem
    return p.with_name(f"{stem}.onnx")


def _file_name(index: int, member_id: str) -> str:
    return f"{index:02d}_{re.sub(r'[^A-Za-z0-9._-]', '_', member_id)}.onnx"


# ------------------------------------------------------------------------------ read
def _field(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise EngineError(f"{where}: field {key!r} is missing or not {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)


def _floats(values: Any, where: str) -> tuple[float, ...]:
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise EngineError(f"{where} must be a list of finite numbers")
    return tuple(float(v) for v in values)


def read_prepared(directory: str | os.PathLike[str]) -> PreparedFamily:
    """Read and check ``directory/manifest.json`` (not the graphs: see ``model_bytes``)."""
    d = Path(directory)
    mp = d / MANIFEST
    try:
        doc = json.loads(mp.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EngineError(f"cannot read {mp}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EngineError(f"{mp} is not valid JSON ({exc}); re-run `dynofa export-family`") from exc
    if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
        raise EngineError(f"{mp}: field 'format' must be {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise EngineError(
            f"{mp}: version {doc.get('version')!r} is not supported (this build reads {VERSION}); "
            "re-run `dynofa export-family`"
        )
    members = []
    for i, raw in enumerate(_field(doc, "members", list, str(mp))):
        where = f"{mp}: members[{i}]"
        if not isinstance(raw, Mapping):
            raise EngineError(f"{where}: not an object")
        res = _field(raw, "resolution", int, where)
        if not 1 <= res <= 4096:
            raise EngineError(f"{where}: resolution {res} is outside 1..4096")
        file = _field(raw, "file", str, where)
        if Path(file).name != file:
            raise EngineError(f"{where}: file {file!r} must be a plain name inside {d}")
        members.append(
            PreparedMember(
                id=_field(raw, "id", str, where),
                config=_field(raw, "config", Mapping, where),
                resolution=res,
                file=file,
                sha256=_field(raw, "sha256", str, where),
                workload=_field(raw, "workload", Mapping, where),
            )
        )
    if not members:
        raise EngineError(f"{mp}: field 'members' is empty")
    labels = _field(doc, "labels", list, str(mp))
    if not labels or not all(isinstance(x, str) for x in labels):
        raise EngineError(f"{mp}: field 'labels' must be a non-empty list of strings")
    in_ch = _field(doc, "in_channels", int, str(mp))
    mean = _floats(doc.get("mean"), f"{mp}: mean")
    std = _floats(doc.get("std"), f"{mp}: std")
    if not in_ch >= 1 or len(mean) != in_ch or len(std) != in_ch or min(std) <= 0:
        raise EngineError(
            f"{mp}: in_channels {in_ch} needs {in_ch} mean and {in_ch} positive std values"
        )
    bn = doc.get("bn_sha256")
    return PreparedFamily(
        path=d,
        supernet_sha256=_field(doc, "supernet_sha256", str, str(mp)),
        bn_sha256=bn if isinstance(bn, str) else None,
        labels=tuple(labels),
        in_channels=in_ch,
        mean=mean,
        std=std,
        opset=_field(doc, "opset", int, str(mp)),
        members=tuple(members),
        exported_with=doc.get("exported_with") or {},
    )


def check_matches(prepared: PreparedFamily, family: Family, checkpoint: Path | None) -> None:
    """Refuse prepared files made from another super-network, other BN statistics or other
    members than ``family`` (and ``checkpoint``, when that file is here) has now."""
    where = f"prepared ONNX files {prepared.path}"
    redo = "; re-run `dynofa export-family`"
    want = family.supernet.get("sha256")
    if want and want != prepared.supernet_sha256:
        raise EngineError(
            f"{where} were exported from super-network sha256 {prepared.supernet_sha256[:12]}..., "
            f"family {family.name} names {str(want)[:12]}...{redo}"
        )
    if checkpoint is not None and checkpoint.is_file():
        have = sha256_file(checkpoint)
        if have != prepared.supernet_sha256:
            raise EngineError(
                f"{where} were exported from super-network sha256 "
                f"{prepared.supernet_sha256[:12]}..., checkpoint {checkpoint} has {have[:12]}..."
                f"{redo}"
            )
    if family.bn_statistics is not None and prepared.bn_sha256 is not None:
        bn = family.resolve(family.bn_statistics)
        if bn.is_file() and sha256_file(bn) != prepared.bn_sha256:
            raise EngineError(f"{where}: BN statistics {bn} changed since the export{redo}")
    for m in family.members:
        try:
            pm = prepared.member(m.id)
        except EngineError:
            raise EngineError(
                f"{where} have no file for member {m.id} of {family.name}{redo}"
            ) from None
        if dict(pm.config) != dict(m.config):
            raise EngineError(
                f"{where}: member {m.id} has another config than in family {family.name}{redo}"
            )


def find_prepared(family: Family) -> Path | None:
    """The family's prepared folder when it has a manifest, else ``None``."""
    if family.path is None:
        return None
    d = prepared_dir(family.path)
    return d if (d / MANIFEST).is_file() else None


# ------------------------------------------------------------------------------ write
def export_family(
    checkpoint: str | os.PathLike[str] | None,
    family: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    progress: bool = False,
) -> PreparedFamily:
    """Export every member of ``family`` (with its BN statistics) to ``out`` (default: beside
    the family); ``checkpoint`` None = the super-network the family names. Needs torch."""
    import sys

    from dynofa_ros.engine.engine import family_configs, install_family_bn
    from dynofa_ros.runtime_versions import import_torch, installed_version

    fam = load_family(family)
    ckpt_path = (
        Path(checkpoint) if checkpoint is not None else fam.resolve(fam.supernet["checkpoint"])
    )
    torch = import_torch()
    from dynofa_ros.platform.workload import Workload, workload_from_layer_specs
    from dynofa_ros.supernet.checkpoint import load_checkpoint
    from dynofa_ros.supernet.export import DEFAULT_OPSET, export_onnx

    ckpt = load_checkpoint(ckpt_path)
    net = ckpt.net
    have = sha256_file(ckpt_path)
    want = fam.supernet.get("sha256")
    if want and want != have:
        raise EngineError(
            f"family {fam.name} was searched on super-network sha256 {str(want)[:12]}..., but "
            f"checkpoint {ckpt_path} has {have[:12]}...; use the family written for it"
        )
    configs = family_configs(fam, net)
    install_family_bn(fam, net, configs)
    d = Path(out) if out is not None else prepared_dir(fam.path or Path(family))
    d.mkdir(parents=True, exist_ok=True)
    members = []
    for i, m in enumerate(fam.members):
        cfg = configs[m.id]
        data = export_onnx(net, cfg)
        name = _file_name(i, m.id)
        atomic_write_bytes(d / name, data)
        workload = (
            Workload.from_dict(m.workload)
            if m.workload is not None
            else workload_from_layer_specs(m.id, net.layer_specs(cfg), runtime="onnxruntime")
        )
        members.append(
            {
                "id": m.id,
                "config": dict(m.config),
                "resolution": int(cfg.r),
                "file": name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "workload": workload.to_dict(),
            }
        )
        if progress:
            print(
                f"export-family: {m.id} -> {d / name} ({len(data) / 1e6:.1f} MB)",
                file=sys.stderr,
            )
    bn = fam.resolve(fam.bn_statistics) if fam.bn_statistics is not None else None
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "family": (fam.path or Path(family)).name,
        "supernet_checkpoint": ckpt_path.name,
        "supernet_sha256": have,
        "bn_sha256": sha256_file(bn) if bn is not None and bn.is_file() else None,
        "labels": list(ckpt.labels),
        "in_channels": int(net.arch.in_channels),
        "mean": [float(v) for v in net.arch.mean],
        "std": [float(v) for v in net.arch.std],
        "opset": DEFAULT_OPSET,
        "exported_with": {
            "torch": str(torch.__version__),  # type: ignore[attr-defined]
            "onnxruntime": installed_version("onnxruntime"),
        },
        "members": members,
    }
    atomic_write_text(d / MANIFEST, json.dumps(doc, indent=2) + "\n")
    return read_prepared(d)
