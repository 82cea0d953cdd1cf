"""Where the package's shared files (models, config, launch) live: the source tree or an install.

A source checkout is recognised by ``package.xml`` next to the package directory; an installed
copy (colcon or ``make setup``) has them under ``<prefix>/share/dynofa_ros``.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

PACKAGE = "dynofa_ros"
# the embedded default super-network (models/): what every command and node runs unless told
DEFAULT_CHECKPOINT = "fmnist_mbv3_small.safetensors"


@cache
def share_dir() -> Path:
    source_root = Path(__file__).resolve().parent.parent
    if (source_root / "package.xml").is_file():
        return source_root
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, OSError):
        pass
    candidate = Path(sys.prefix) / "share" / PACKAGE
    if candidate.is_dir():
        return candidate
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} share directory (no source checkout, no ament index entry, "
        f"no {candidate}); build the package with colcon or `make setup`"
    )


def models_dir() -> Path:
    return share_dir() / "models"


def config_dir() -> Path:
    return share_dir() / "config"


def default_checkpoint() -> Path:
    return models_dir() / DEFAULT_CHECKPOINT
