"""The runtime matrix the package supports, and the start-up check against it.

Robots run the ROS distribution's Python and numpy and the board's own torch / ONNX Runtime (a
Jetson's come from NVIDIA's JetPack wheels), not the versions pinned for this repository's venv.
The engine calls :func:`require` before it loads anything, so a version outside the matrix stops
start-up with one line naming the package, the version found and the range needed, instead of an
obscure failure later (e.g. ``torch.onnx.export`` rejecting an argument at configure).

The ranges are the matrix in README.md ("Supported runtime") and package.xml; the tests run the
ROS-free core at both ends of it (``make test-matrix``).
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from dataclasses import dataclass

from dynofa_ros.errors import DynofaError

Version = tuple[int, int, int]


class RuntimeVersionError(DynofaError):
    """An installed package outside the supported range, or a needed one missing."""


@dataclass(frozen=True)
class Supported:
    """``minimum <= version < below`` (release numbers only: local / pre-release tags such as
    JetPack's ``2.3.0a0+...nv24.05`` count as their release)."""

    package: str
    minimum: Version
    below: Version
    # distributions that provide the module (the first one installed is read)
    distributions: tuple[str, ...]
    hint: str = ""

    @property
    def needed(self) -> str:
        return f">={_show(self.minimum)},<{_show(self.below)}"


# Floors: Ubuntu 22.04's numpy (Humble), JetPack 6.0's torch, the oldest ONNX Runtime the Jetson
# Zoo builds for JetPack 6. Tops: the next major release, which nobody has tested.
SUPPORTED: dict[str, Supported] = {
    "numpy": Supported("numpy", (1, 21, 5), (3, 0, 0), ("numpy",)),
    "torch": Supported(
        "torch",
        (2, 3, 0),
        (3, 0, 0),
        ("torch",),
        "; without torch the onnxruntime backend runs the prepared ONNX files that "
        "`dynofa export-family` writes beside the family",
    ),
    "onnxruntime": Supported(
        "onnxruntime",
        (1, 17, 0),
        (2, 0, 0),
        ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    ),
}
PYTHON = Supported("python", (3, 10, 0), (4, 0, 0), ())


def parse_version(text: str) -> Version | None:
    """The release numbers at the start of a version string (missing parts are 0)."""
    m = re.match(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if m is None:
        return None
    return (int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0))


def _show(v: Version) -> str:
    return ".".join(map(str, v[:2] if v[2] == 0 else v))


def installed_version(package: str) -> str | None:
    """The installed version of ``package`` (a key of :data:`SUPPORTED`) from its distribution
    metadata, without importing it; ``None`` when none of its distributions is installed."""
    for dist in SUPPORTED[package].distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def problem(spec: Supported, found: str | None) -> str | None:
    """The one-line complaint about ``found`` for ``spec``, or ``None`` when it is supported."""
    if found is None:
        return f"{spec.package} is not installed; dynofa_ros needs {spec.needed}{spec.hint}"
    version = parse_version(found)
    if version is None or not spec.minimum <= version < spec.below:
        return (
            f"{spec.package} {found} is outside the supported range: dynofa_ros needs "
            f"{spec.package} {spec.needed} (README: Supported runtime){spec.hint}"
        )
    return None


def require(*packages: str) -> None:
    """Raise :class:`RuntimeVersionError` (one line) for the first of ``packages`` that is missing
    or outside its range; the Python version is always checked."""
    py = ".".join(map(str, sys.version_info[:3]))
    complaint = problem(PYTHON, py)
    for name in packages:
        if complaint is not None:
            break
        complaint = problem(SUPPORTED[name], installed_version(name))
    if complaint is not None:
        raise RuntimeVersionError(complaint)


def import_torch() -> object:
    """``torch``, after the version check; a torch that is installed but cannot be imported
    (a broken CUDA install, a blocked import) is reported as one line too."""
    require("torch")
    try:
        import torch
    except ImportError as exc:
        raise RuntimeVersionError(
            f"torch is installed but cannot be imported ({' '.join(str(exc).split())})"
            f"{SUPPORTED['torch'].hint}"
        ) from exc
    return torch
