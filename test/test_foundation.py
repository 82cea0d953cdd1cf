"""The package builds, installs and imports the way the README says, here and on a robot."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "dynofa_ros"
VENV_BIN = Path(sys.executable).parent
MSGS = ("ReconfigurationCommand", "PerceptionStatus", "MissionPriority", "ClassificationResult")

# Top-level import -> where the dependency is declared: a rosdep key in package.xml, a pip
# requirement in requirements/robot*.txt (no rosdep key, or one that would pull numpy 2), or
# "board:" -- the board's own install, named in requirements/robot.txt (torch on a Jetson).
DECLARED = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "matplotlib": "python3-matplotlib",
    "tqdm": "python3-tqdm",
    "psutil": "python3-psutil",
    "torch": "board:torch",
    "torchvision": "board:torchvision",
    "onnxruntime": "pip:onnxruntime",
    "rosbags": "pip:rosbags",
    "rclpy": "rclpy",
    "std_msgs": "std_msgs",
    "sensor_msgs": "sensor_msgs",
    "diagnostic_msgs": "diagnostic_msgs",
    "lifecycle_msgs": "lifecycle_msgs",
    "rosgraph_msgs": "rosgraph_msgs",
    "rcl_interfaces": "rcl_interfaces",
    "builtin_interfaces": "builtin_interfaces",
    "ament_index_python": "ament_index_python",
    "safetensors": "pip:safetensors",
    "onnx": "pip:onnx",
    "jtop": "pip:jetson-stats",
}
CORE = (
    "supernet", "search", "engine", "manager", "platform", "evaluation", "family.py",
    "perception.py", "launch_graph.py", "processes.py",
)  # fmt: skip
NO_TORCH = ("manager", "platform", "family.py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _sources(*parts: str) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        p = PKG / part
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.exists() else [])
    return out


def test_source_tree_import_finds_generated_messages() -> None:
    import dynofa_ros
    from dynofa_ros import msg

    assert Path(dynofa_ros.__file__).parent == PKG  # the source tree wins...
    assert Path(msg.__file__).parent.parent != PKG  # ...and the generated messages are found
    for name in MSGS:
        assert hasattr(msg, name)


def test_installed_copy_imports_without_the_source_tree(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = (
        "import rclpy, dynofa_ros, dynofa_ros.family\n"
        f"from dynofa_ros.msg import {', '.join(MSGS)}\n"
        "print(dynofa_ros.__file__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(sysconfig.get_paths()["purelib"])


def test_dependencies_are_declared_for_rosdep_and_pip() -> None:
    from catkin_pkg.package import parse_package

    package = parse_package(str(ROOT / "package.xml"))
    keys = {d.name for d in package.build_depends + package.exec_depends + package.test_depends}
    keys |= {d.name for d in package.buildtool_depends}
    robot_pip = "".join(p.read_text() for p in (ROOT / "requirements").glob("robot*.txt"))
    stdlib = set(sys.stdlib_module_names) | {"dynofa_ros"}
    for path in _sources("."):
        for name in _imports(path) - stdlib:
            assert name in DECLARED, f"{path.relative_to(ROOT)} imports undeclared {name!r}"
            key = DECLARED[name]
            if key.startswith("pip:"):
                assert key[4:] + "==" in robot_pip, f"{key[4:]} missing in requirements/robot*.txt"
            elif key.startswith("board:"):
                assert key[6:] in robot_pip, f"{key[6:]} not named in requirements/robot.txt"
            else:
                assert key in keys, f"{name}: rosdep key {key} missing in package.xml"


def test_core_layers_never_import_ros_and_manager_platform_never_torch() -> None:
    for path in _sources(*CORE):
        assert not {"rclpy", "rosidl_runtime_py"} & _imports(path), path
    for path in _sources(*NO_TORCH):
        assert not {"torch", "torchvision", "onnxruntime"} & _imports(path), path


def test_torchvision_is_imported_only_through_the_compat_module() -> None:
    for path in _sources("."):
        if path.name != "torchvision_compat.py":
            assert "torchvision" not in _imports(path), f"{path}: use import_torchvision()"


def test_torchvision_works_on_this_torch() -> None:
    import torch

    from dynofa_ros.torchvision_compat import import_torchvision

    tv = import_torchvision()
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.0]])
    keep = tv.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]
    assert import_torchvision() is tv  # idempotent


def test_cli_reports_unknown_command() -> None:
    out = subprocess.run(
        [str(VENV_BIN / "dynofa"), "no-such-command"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "unknown command 'no-such-command'" in out.stderr


@pytest.mark.slow
def test_make_setup_is_idempotent() -> None:
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    subprocess.run(["make", "-s", "setup"], cwd=ROOT, check=True, capture_output=True)
    # Question mode: exit 0 only when every set-up target is up to date (nothing would run).
    assert subprocess.run(["make", "-q", "setup"], cwd=ROOT).returncode == 0


@pytest.mark.slow
def test_broken_msg_fails_the_build_with_the_generator_message(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for item in ("CMakeLists.txt", "package.xml", "cmake", "msg", "srv"):
        copy = shutil.copytree if (ROOT / item).is_dir() else shutil.copy
        copy(ROOT / item, src / item)
    (src / "dynofa_ros").mkdir()
    (src / "msg" / "Broken.msg").write_text("float33 speed  # m/s\n")
    prefix = Path(sys.prefix)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix), PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    configure = subprocess.run(
        ["cmake", "-S", src, "-B", tmp_path / "build", f"-DCMAKE_PREFIX_PATH={prefix}",
         f"-DCMAKE_INSTALL_PREFIX={tmp_path / 'install'}", f"-DPython3_EXECUTABLE={sys.executable}",
         "-DBUILD_TESTING=OFF"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    result = configure
    if configure.returncode == 0:
        result = subprocess.run(
            ["cmake", "--build", tmp_path / "build", "-j", "2"], env=env, capture_output=True,
            text=True,
        )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "float33" in output and "Broken" in output, output[-3000:]
