"""The runtime matrix check: a torch / onnxruntime / numpy outside the supported ranges stops
start-up with one line naming the package, the version found and the range needed.

Versions are faked the way a robot would present them: a ``<name>-<version>.dist-info`` folder
ahead of site-packages on ``sys.path``, read through the same metadata lookup the check uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_engine_support import CHECKPOINT, ROOT, tiny_family

from dynofa_ros.engine import Engine
from dynofa_ros.errors import DynofaError
from dynofa_ros.runtime_versions import (
    SUPPORTED,
    RuntimeVersionError,
    installed_version,
    parse_version,
    problem,
    require,
)


def fake_distribution(folder: Path, name: str, version: str) -> Path:
    """A metadata-only distribution ``name`` ``version`` in ``folder`` (put it on sys.path)."""
    info = folder / f"{name.replace('-', '_')}-{version.split('+', maxsplit=1)[0]}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return folder


def test_versions_parse_to_their_release_numbers() -> None:
    assert parse_version("2.13.0+cpu") == (2, 13, 0)
    assert parse_version("2.3.0a0+6ddf5cf85e.nv24.04") == (2, 3, 0)  # JetPack 6.0's torch
    assert parse_version("1.17") == (1, 17, 0)
    assert parse_version("2") == (2, 0, 0)
    assert parse_version("unknown") is None


def test_the_ranges_hold_both_ends_of_the_matrix() -> None:
    ok = {
        "torch": [
            "2.3.0a0+6ddf5cf85e.nv24.04",  # JetPack 6.0
            "2.3.1+cu121",
            "2.5.0a0+872d972e41.nv24.8",  # JetPack 6.1
            "2.13.0",
        ],
        "onnxruntime": ["1.17.3", "1.20.0", "1.32.0"],
        "numpy": ["1.21.5", "1.21.6", "1.26.4", "2.4.6"],
    }
    bad = {
        "torch": ["1.8.1", "2.2.2", "3.0.0"],
        "onnxruntime": ["1.16.3", "2.0.0"],
        "numpy": ["1.21.4", "3.0.0"],
    }
    for name, versions in ok.items():
        for v in versions:
            assert problem(SUPPORTED[name], v) is None, (name, v)
    for name, versions in bad.items():
        for v in versions:
            msg = problem(SUPPORTED[name], v)
            assert msg is not None and f"{name} {v}" in msg and SUPPORTED[name].needed in msg
    assert "not installed" in (problem(SUPPORTED["onnxruntime"], None) or "")


def test_an_old_torch_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path, "torch", "2.2.2")))
    assert installed_version("torch") == "2.2.2"
    with pytest.raises(RuntimeVersionError) as err:
        require("numpy", "torch")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("torch 2.2.2 is outside the supported range")
    assert "torch >=2.3,<3" in msg and "export-family" in msg


def test_the_engine_refuses_an_unsupported_onnxruntime_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    family, _ = tiny_family()
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path, "onnxruntime", "1.16.3")))
    with pytest.raises(DynofaError) as err:
        Engine.load(CHECKPOINT, family, backend="onnxruntime", progress=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert "onnxruntime 1.16.3" in msg and ">=1.17,<2" in msg


def test_a_jetpack_torch_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(
        str(fake_distribution(tmp_path, "torch", "2.3.0a0+6ddf5cf85e.nv24.04"))
    )
    require("torch")  # no exception


def test_the_cli_reports_an_old_torch_as_one_line_and_exit_1(tmp_path: Path) -> None:
    family, _ = tiny_family()
    fake = fake_distribution(tmp_path / "fake", "torch", "2.1.0")
    proc = subprocess.run(
        [sys.executable, "-m", "dynofa_ros.cli", "export-family", str(family), "-o",
         str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**_env(), "PYTHONPATH": f"{fake}:{ROOT}"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dynofa export-family: error: torch 2.1.0 is outside"), lines[0]
    assert not (tmp_path / "out").exists()


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
