"""Point the ROS 2 wheels' exported CMake files at this interpreter's headers.

The PyPI ROS 2 wheels are built in a manylinux container and their exported CMake files hard-code
that container's Python include dir and numpy include dir. A rosidl build in this venv needs them
to name this interpreter's (see TOOLCHAIN.md). Idempotent; prints how many files it changed.
Only used by `make setup` here; a robot's ROS install has correct paths already.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_PREFIX = re.compile(r"/opt/python/cp3\d+-cp3\d+")


def main(prefix: str) -> int:
    include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    changed = 0
    for path in Path(prefix, "share").rglob("*.cmake"):
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        if "/opt/python/" not in text:
            continue
        new = re.sub(
            BUILD_PREFIX.pattern + r"/lib/python3\.\d+/site-packages/numpy/_core/include",
            numpy_include,
            text,
        )
        new = re.sub(BUILD_PREFIX.pattern + r"/include/python3\.\d+", include, new)
        if new != text:
            path.write_text(new, encoding="utf-8", errors="surrogateescape")
            changed += 1
    print(f"fix_ros_wheel_cmake: {changed} CMake file(s) repointed to {include}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
