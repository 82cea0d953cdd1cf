"""pip packaging of the ROS-free core (train, profile, search, engine, simulate) for workstations.

On a robot the package is built by colcon from CMakeLists.txt (ament_cmake: messages, nodes,
launch files); `make setup` runs that same build into .venv. This file is for
`pip install .` where no ROS is wanted: it installs the Python package (without the generated
`dynofa_ros.msg`), the `dynofa` command and the shipped model / config files under
`<prefix>/share/dynofa_ros`.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def _requirements() -> list[str]:
    lines = (ROOT / "requirements" / "core.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def _share_files() -> list[tuple[str, list[str]]]:
    out = []
    for top in ("models", "config", "launch"):
        for folder in sorted({p.parent for p in (ROOT / top).rglob("*") if p.is_file()}):
            files = [str(p.relative_to(ROOT)) for p in sorted(folder.iterdir()) if p.is_file()]
            out.append((f"share/dynofa_ros/{folder.relative_to(ROOT)}", files))
    return out


setup(
    name="dynofa_ros",
    version="0.1.0",
    description="Dynamic-OFA perception: switchable once-for-all sub-networks, runtime manager",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["dynofa_ros", "dynofa_ros.*"]),
    install_requires=_requirements(),
    data_files=[("share/dynofa_ros", ["package.xml"]), *_share_files()],
    entry_points={"console_scripts": ["dynofa = dynofa_ros.cli:main"]},
)
